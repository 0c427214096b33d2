"""Qualitative figures: the predicted mesh over the test image, and the same mesh seen from the side.

The network's weak-perspective camera ``[s, tx, ty]`` lives in SPIN's 224-pixel crop (f = 5000 px, principal
point at the crop centre; :mod:`pipeline.render.camera`). The crop is an axis-aligned scaling of the original
image (:func:`pipeline.train.crop.crop_affine` at test time: no rotation), so the same camera in
**original-image pixels** is a pinhole camera with

* focal length ``f · side / 224`` where ``side = 200 · scale`` is the person box side in pixels, and
* principal point at the box centre ``center``,

and the body translated by ``weak_perspective_to_translation(cam)``. Rendering the posed neutral mesh with
this camera over the full image gives the overlay; rotating the mesh by 90° about the vertical axis through
its centre gives the side view. Both are then cut to the person box with the training crop so that small
people stay visible; a figure is a grid with one row per sample: ``input | overlay | side view``.

Rendering uses pyrender offscreen (:mod:`pipeline.render.offscreen`): set ``PYOPENGL_PLATFORM=egl`` and
import ``torch._dynamo`` before the first context (see that module).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.evaluate.predict import Predictions
from pipeline.io.images import read_image_rgb, tile_images
from pipeline.io.spin_npz import SPIN_BOX_PX, PersonDataset
from pipeline.render.camera import CROP_SIZE, FOCAL_LENGTH, weak_perspective_to_translation
from pipeline.render.offscreen import Camera, MeshData, render_rgb
from pipeline.train.crop import crop_affine, warp_image

log = logging.getLogger(__name__)

#: Mesh colour of the overlays (light blue, sRGB).
MESH_COLOR: tuple[int, int, int] = (140, 180, 235)
#: Background of the side view.
SIDE_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: Rotation of the side view about the vertical (camera y) axis, degrees.
SIDE_VIEW_DEG: float = 90.0
#: Side of each tile of the figure, pixels.
DEFAULT_TILE_PX: int = 192
#: Columns of one figure row.
PANELS: tuple[str, ...] = ("input", "overlay", "side view")


def image_camera(center: np.ndarray, scale: float, cam: np.ndarray, width: int, height: int) -> tuple[Camera, np.ndarray]:
    """The original-image pinhole camera of a weak-perspective crop camera (module docstring).

    Args:
        center: (2,) person box centre (x, y), continuous pixels of the original image.
        scale: SPIN scale (box side / 200).
        cam: (3,) ``[s, tx, ty]`` predicted for the 224-px convention.
        width, height: original image size.

    Returns:
        ``(camera, translation)``: the :class:`Camera` (R = I, t = translation) and the (3,) body translation,
        metres, camera frame.
    """
    focal = FOCAL_LENGTH * float(scale) * SPIN_BOX_PX / CROP_SIZE
    trans = weak_perspective_to_translation(torch.as_tensor(np.asarray(cam, np.float64))[None])[0].numpy()
    K = np.array([[focal, 0.0, float(center[0])], [0.0, focal, float(center[1])], [0.0, 0.0, 1.0]])
    return Camera(K=K, R=np.eye(3), t=trans, width=int(width), height=int(height)), trans


def fit_weak_perspective(joints: np.ndarray, keypoints: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """Least-squares weak-perspective camera ``[s, tx, ty]`` putting 3D joints on their 2D keypoints.

    Used to draw ground-truth bodies (whose camera is not annotated) and in tests.

    Args:
        joints: (J, 3) joints, metres, camera orientation, no translation.
        keypoints: (J, 3) original-image pixels + visibility (only visible ones are used; at least 2).
        center, scale: the person box.

    Returns:
        (3,) float64 ``[s, tx, ty]`` of the 224-px SPIN convention (normalised crop units).
    """
    vis = np.asarray(keypoints)[:, 2] > 0
    if vis.sum() < 2:
        raise ValueError(f"need at least 2 visible keypoints to fit a camera, got {int(vis.sum())}")
    side = float(scale) * SPIN_BOX_PX
    norm = (np.asarray(keypoints, np.float64)[vis, :2] - np.asarray(center, np.float64)) / (side / 2.0)
    x = np.asarray(joints, np.float64)[vis]
    a = np.zeros((2 * len(x), 3))
    a[0::2, 0], a[0::2, 1] = x[:, 0], 1.0
    a[1::2, 0], a[1::2, 2] = x[:, 1], 1.0
    s, stx, sty = np.linalg.lstsq(a, norm.reshape(-1), rcond=None)[0]
    return np.array([s, stx / s, sty / s])


def side_view_vertices(vertices: np.ndarray, degrees: float = SIDE_VIEW_DEG) -> np.ndarray:
    """Rotate (V, 3) vertices about the vertical axis (y, camera frame) through their centre."""
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    centre = vertices.mean(0)
    return (vertices - centre) @ rot.T + centre


def render_sample_views(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, center: np.ndarray,
                        scale: float, cam: np.ndarray, tile: int = DEFAULT_TILE_PX) -> list[np.ndarray]:
    """``[input, overlay, side view]`` tiles (tile, tile, 3) uint8 of one sample, cut to its person box.

    Args:
        image: (H, W, 3) uint8 original image.
        vertices: (V, 3) predicted neutral vertices, metres, camera orientation, no translation.
        faces: (F, 3) int.
        center, scale: the sample's box (as in the annotations).
        cam: (3,) predicted ``[s, tx, ty]``.
        tile: output side.
    """
    h, w = image.shape[:2]
    camera, _ = image_camera(center, scale, cam, w, h)
    colors = np.tile(np.array(MESH_COLOR, np.uint8), (len(vertices), 1))
    overlay, _ = render_rgb([MeshData(vertices, faces, colors)], camera, background=image)
    side, _ = render_rgb([MeshData(side_view_vertices(vertices + camera.t) - camera.t, faces, colors)], camera,
                         background=np.array(SIDE_BACKGROUND, np.uint8))
    affine = crop_affine(np.asarray(center, np.float64), float(scale), tile)
    return [warp_image(np.ascontiguousarray(x), affine, tile) for x in (image, overlay, side)]


def select_samples(n: int, count: int) -> np.ndarray:
    """``count`` sample indices spread evenly over ``n`` (the same for every run, so figures line up)."""
    if n <= 0 or count <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def qualitative_figure(pred: Predictions, data: PersonDataset, image_root: str | Path, faces: np.ndarray,
                       out_png: str | Path, *, count: int, tile: int = DEFAULT_TILE_PX) -> Path:
    """Write the grid PNG (one row per selected sample: input | overlay | side view), atomically.

    Args:
        pred: predictions of the split (same order as ``data``).
        data: the split's annotations (box ``center``/``scale``).
        image_root: the split's image folder.
        faces: (F, 3) faces of the body model that produced ``pred.vertices``.
        out_png: output file.
        count: number of samples (evenly spread, :func:`select_samples`).
        tile: side of every panel in pixels.
    """
    if len(pred) != len(data):
        raise ValueError(f"{len(pred)} predictions for {len(data)} annotated samples; rerun predict_test_split")
    rows = []
    for i in select_samples(len(data), count):
        image = read_image_rgb(Path(image_root) / str(data.imgname[i]))
        rows.append(render_sample_views(image, pred.vertices[i], faces, data.center[i], float(data.scale[i]),
                                        pred.cam[i], tile))
    if not rows:
        raise ValueError("qualitative figure: no samples selected (count must be >= 1 and the split non-empty)")
    grid = tile_images(rows)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.partial.png")
    try:
        Image.fromarray(grid).save(tmp)
        os.replace(tmp, out_png)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("qualitative figure %s: %d samples (%s)", out_png, len(rows), " | ".join(PANELS))
    return out_png


__all__: Sequence[str] = (
    "fit_weak_perspective", "image_camera", "qualitative_figure", "render_sample_views", "select_samples", "side_view_vertices",
)
