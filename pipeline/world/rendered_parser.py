"""The open world's stand-in for a human parser: label maps rendered from ground truth + parser noise.

Scan views: the scan's per-face labels are rendered from the same cameras as the colour views and passed
through the parser-noise model. Dataset images: the label PNGs written beside the images by make_images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from pipeline.render.offscreen import Camera, SceneRenderer, render_label_map
from pipeline.world.layout import label_root
from pipeline.world.parser_noise import ParserNoise, apply_parser_noise


def parse_scan_views_rendered(scan_obj: str | Path, scan_labels: str | Path, views: dict[str, np.ndarray],
                              noise: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    """Parser-like label maps (V, H, W) uint8 of a scan's views (``views``: K, R, t, rgb from the views npz)."""
    mesh = trimesh.load(scan_obj, process=False)
    labels = np.load(scan_labels)
    if len(labels) != len(mesh.faces):
        raise ValueError(f"{scan_labels}: {len(labels)} labels for {len(mesh.faces)} faces of {scan_obj}")
    n, h, w = views["rgb"].shape[:3]
    out = np.zeros((n, h, w), np.uint8)
    with SceneRenderer(w, h) as renderer:
        for k in range(n):
            cam = Camera(views["K"][k], views["R"][k], views["t"][k], w, h)
            exact, _ = render_label_map([(np.asarray(mesh.vertices), np.asarray(mesh.faces), labels)], cam, w, h,
                                        renderer=renderer)
            out[k] = apply_parser_noise(exact, noise, rng)
    return out


def read_rendered_label_map(image_root: str | Path, imgname: str) -> np.ndarray:
    """The parser-like label map the open world wrote for ``imgname`` (H, W) uint8."""
    path = label_root(image_root) / Path(imgname).with_suffix(".png")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no rendered label map for {imgname}; the 'rendered' parser backend only "
                                "works on open-world images (use parser backend 'graphonomy' for real images)")
    return np.asarray(Image.open(path))
