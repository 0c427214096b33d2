"""Parse the rendered views of a scan (stage 4) and count the labels of its visible body faces.

Backends: ``rendered`` (open world: ground-truth label maps through the parser-noise model) and
``graphonomy`` (the Universal model with multi-scale + flip inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.params import canonical
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

    @classmethod
    def from_params(cls, params: Mapping[str, Any], device: str) -> ParserSettings:
        """Inverse of :func:`parser_params` (the keys a backend ignores keep their defaults); ``device`` is the
        resolved torch device."""
        values = {k: params[k] for k in ("backend", "flip") if k in params}
        if "scales" in params:
            values["scales"] = tuple(float(s) for s in params["scales"])
        return cls(**values, device=device)


def parser_params(parser_cfg: Mapping[str, Any], *, device: str, noise: Mapping[str, Any] | None = None,
                  seed: int | None = None) -> dict[str, Any]:
    """What determines a parse, as a rule's ``params`` (keys sorted), from ``prior.parser`` / ``masks.parser``.

    ``rendered`` reads the open world's label maps, so scales, flip and the device change nothing: only the
    backend, plus the parser-noise settings and the seed where the noise is drawn here (``noise``/``seed`` given:
    the scan views; the training images' label maps were drawn when they were generated). ``graphonomy``: its
    scales, flip and the configured device (``auto``/``cpu``/``cuda``: GPU and CPU kernels round differently);
    no noise, no randomness.

    Raises:
        ValueError: unknown backend (lists the allowed ones).
    """
    backend = parser_cfg["backend"]
    if backend not in PARSER_BACKENDS:
        raise ValueError(f"unknown parser backend {backend!r}; allowed: {list(PARSER_BACKENDS)}")
    if backend == "rendered":
        extra = {"noise": noise, "seed": None if seed is None else int(seed)}
        return canonical({"backend": backend, **{k: v for k, v in extra.items() if v is not None}})
    return canonical({"backend": backend, "device": device, "flip": bool(parser_cfg["flip"]),
                      "scales": [float(s) for s in parser_cfg["scales"]]})


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
    return {"views": len(labels), "labelled_face_pixels": int(counts.sum())}
