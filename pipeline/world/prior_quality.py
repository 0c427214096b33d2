"""Open world only: how well the accumulated prior matches the garment ground truth of the scans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.parsing.labels import NUM_LABELS


def prior_quality(face_prob: np.ndarray, scan_label_files: list[str | Path], out_json: str | Path) -> dict[str, float]:
    """Compare per-face prior with the label frequency of the same face over the generated scans.

    The open world's scans share the body's topology, so the ground-truth label of body face f in a scan is
    the scan's label of face f.
    """
    freq = np.zeros((face_prob.shape[0], NUM_LABELS))
    for path in scan_label_files:
        labels = np.load(path)
        if len(labels) != len(freq):
            raise ValueError(f"{path}: {len(labels)} face labels, prior has {len(freq)} faces")
        freq[np.arange(len(labels)), labels] += 1
    freq /= freq.sum(1, keepdims=True)
    fg = face_prob[:, 1:] / np.maximum(face_prob[:, 1:].sum(1, keepdims=True), 1e-12)
    report = {
        "n_scans": len(scan_label_files),
        "argmax_agreement": float((fg.argmax(1) == freq[:, 1:].argmax(1)).mean()),
        "mean_total_variation": float(0.5 * np.abs(fg - freq[:, 1:]).sum(1).mean()),
    }
    Path(out_json).write_text(json.dumps(report, indent=2))
    return report
