"""Parse the rendered views of a scan (stage 4) and count the labels of its visible body faces.

Backends: ``rendered`` (open world: ground-truth label maps through the parser-noise model) and
``graphonomy`` (the Universal model with multi-scale + flip inference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.prior.accumulate import count_visible_labels

PARSER_BACKENDS: tuple[str, ...] = ("rendered", "graphonomy")


@dataclass(frozen=True)
class ParserSettings:
    """Config ``prior.parser`` / ``masks.parser``."""

    backend: str = "rendered"
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5)
    flip: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.backend not in PARSER_BACKENDS:
            raise ValueError(f"unknown parser backend {self.backend!r}; allowed: {list(PARSER_BACKENDS)}")


def parse_views(views: dict[str, np.ndarray], settings: ParserSettings, *, checkpoint: str | None,
                scan_obj: str | None, scan_labels: str | None, noise: Any, rng: np.random.Generator) -> np.ndarray:
    """Label maps (V, H, W) uint8 of the views with the configured backend."""
    if settings.backend == "rendered":
        from pipeline.world.rendered_parser import parse_scan_views_rendered

        if scan_obj is None or scan_labels is None:
            raise ValueError("parser backend 'rendered' needs the scan mesh and its per-face labels "
                             "({scan}.labels.npy): it is the open world's parser; use 'graphonomy' for real scans")
        return parse_scan_views_rendered(scan_obj, scan_labels, views, noise, rng)
    from pipeline.parsing.infer import GraphonomyParser

    parser = GraphonomyParser(checkpoint, device=settings.device, scales=settings.scales, flip=settings.flip)
    return np.stack([parser.parse(img) for img in views["rgb"]]).astype(np.uint8)


def parse_scan_views(views_npz: str | Path, out_npz: str | Path, counts_npz: str | Path, num_faces: int,
                     settings: ParserSettings, *, seed: int, checkpoint: str | None = None,
                     scan_obj: str | None = None, scan_labels: str | None = None, noise: Any = None) -> dict[str, Any]:
    """Parse one scan's views; write ``labels`` (V, H, W) and its visible-face label counts (F, 20)."""
    with np.load(views_npz) as npz:
        views = {k: npz[k] for k in ("rgb", "face_id", "K", "R", "t")}
    labels = parse_views(views, settings, checkpoint=checkpoint, scan_obj=scan_obj, scan_labels=scan_labels,
                         noise=noise, rng=np.random.default_rng(seed))
    counts = count_visible_labels(views["face_id"], labels, num_faces)
    for path, arrays in ((out_npz, {"labels": labels}), (counts_npz, {"face_counts": counts})):
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    return {"views": int(len(labels)), "labelled_face_pixels": int(counts.sum())}
