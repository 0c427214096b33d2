"""Open world only: how well the accumulated prior matches the garment ground truth of the scans.

The open world's scans are the bodies' own meshes displaced by clothing, so the ground-truth label of body
vertex v in a scan is known from construction: the majority label of the scan's faces around v. Over all
scans that gives a ground-truth label frequency per vertex; the prior's top-1 label is compared with the
ground truth's top-1 label on vertices the prior saw at least ``min_seen`` times.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.parsing.labels import CIHP_LABELS, NUM_LABELS
from pipeline.prior.accumulate import face_to_vertex_counts


def ground_truth_vertex_frequency(scan_label_files: list[str | Path], faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(V, 20) fraction of scans in which each vertex carries each label (majority of its faces)."""
    freq = np.zeros((num_vertices, NUM_LABELS))
    for path in scan_label_files:
        labels = np.load(path)
        if len(labels) != len(faces):
            raise ValueError(f"{path}: {len(labels)} face labels, the body has {len(faces)} faces")
        one_hot = np.zeros((len(faces), NUM_LABELS), dtype=np.int64)
        one_hot[np.arange(len(faces)), labels] = 1
        per_vertex = face_to_vertex_counts(one_hot, faces, num_vertices)
        freq[np.arange(num_vertices), per_vertex.argmax(1)] += 1
    return freq / max(len(scan_label_files), 1)


def prior_quality(vertex_prob: np.ndarray, vertex_counts: np.ndarray, faces: np.ndarray,
                  scan_label_files: list[str | Path], out_json: str | Path | None = None,
                  min_seen: int = 3) -> dict[str, object]:
    """Top-1 agreement of the prior with the garment ground truth, overall and per ground-truth label."""
    freq = ground_truth_vertex_frequency(scan_label_files, faces, len(vertex_prob))
    truth = freq.argmax(1)
    seen = vertex_counts[:, 1:].sum(1) >= min_seen
    pred = vertex_prob[:, 1:].argmax(1) + 1
    # A hit: the prior's top label is a most frequent ground-truth label (ties between scans count).
    hit = (freq[np.arange(len(pred)), pred] >= freq.max(1) - 1e-12) & seen
    per_label = {}
    for k in range(1, NUM_LABELS):
        sel = seen & (truth == k)
        if sel.any():
            per_label[CIHP_LABELS[k]] = {"vertices": int(sel.sum()), "top1_agreement": float(hit[sel].mean())}
    report: dict[str, object] = {
        "n_scans": len(scan_label_files),
        "min_seen": min_seen,
        "vertices_seen": int(seen.sum()),
        "top1_agreement": float(hit.sum() / max(seen.sum(), 1)),
        "per_label": per_label,
    }
    if out_json is not None:
        Path(out_json).write_text(json.dumps(report, indent=2))
    return report
