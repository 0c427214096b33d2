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
people stay visible.

When the split has SMPL ground truth (3DPW: ``pose``, ``shape``, ``gender``) a fourth panel shows the
ground-truth mesh (gendered model) from the same side, placed with a weak-perspective camera fitted to the
annotated 2D keypoints (the predicted camera when there are none), so a reader can compare the limbs.

A figure holds the same samples for every run (:func:`select_samples`), each as a block
``input | overlay | side view [| ground-truth side view]``, ``columns`` blocks per figure row, under a header
naming the panels (:func:`compose_figure`).

Rendering uses pyrender offscreen (:mod:`pipeline.render.offscreen`): set ``PYOPENGL_PLATFORM=egl`` and
import ``torch._dynamo`` before the first context (see that module).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from pipeline.body.model import BodyModel
from pipeline.evaluate.predict import Predictions
from pipeline.io.images import read_image_rgb, tile_images
from pipeline.io.spin_npz import SPIN_BOX_PX, PersonDataset
from pipeline.render.camera import CROP_SIZE, FOCAL_LENGTH, weak_perspective_to_translation
from pipeline.render.offscreen import Camera, MeshData, render_rgb
from pipeline.runtime import atomic_path
from pipeline.train.crop import crop_affine, warp_image

log = logging.getLogger(__name__)

#: Mesh colour of the overlays (light blue, sRGB).
MESH_COLOR: tuple[int, int, int] = (140, 180, 235)
#: Mesh colour of the ground truth (light green, sRGB).
GT_MESH_COLOR: tuple[int, int, int] = (150, 215, 150)
#: Background of the side view.
SIDE_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: Rotation of the side view about the vertical (camera y) axis, degrees.
SIDE_VIEW_DEG: float = 90.0
#: Side of each tile of the figure, pixels.
DEFAULT_TILE_PX: int = 192
#: Panels of one sample.
PANELS: tuple[str, ...] = ("input", "overlay", "side view")
#: Extra panel when the split has SMPL ground truth.
GT_PANEL: str = "ground truth, side"
#: Samples side by side in one figure row.
DEFAULT_COLUMNS: int = 2
#: Gap between panels of one sample, and between samples, pixels.
PANEL_PAD_PX: int = 2
SAMPLE_GAP_PX: int = 10
#: Height of the header naming the panels, pixels.
HEADER_PX: int = 16
#: Annotated keypoints needed to fit a ground-truth camera.
MIN_FIT_KEYPOINTS: int = 2
#: Gender codes of the annotations -> body model.
GENDER_MODELS: dict[str, str] = {"m": "male", "male": "male", "f": "female", "female": "female"}


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


def _crop(image: np.ndarray, center: np.ndarray, scale: float, tile: int) -> np.ndarray:
    affine = crop_affine(np.asarray(center, np.float64), float(scale), tile)
    return warp_image(np.ascontiguousarray(image), affine, tile)


def _side_view(vertices: np.ndarray, faces: np.ndarray, camera: Camera, color: tuple[int, int, int]) -> np.ndarray:
    """Full-image render of ``vertices`` (no translation) turned :data:`SIDE_VIEW_DEG` about their centre."""
    colors = np.tile(np.array(color, np.uint8), (len(vertices), 1))
    side, _ = render_rgb([MeshData(side_view_vertices(vertices + camera.t) - camera.t, faces, colors)], camera,
                         background=np.array(SIDE_BACKGROUND, np.uint8))
    return side


def render_sample_views(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, center: np.ndarray,
                        scale: float, cam: np.ndarray, tile: int = DEFAULT_TILE_PX,
                        gt_vertices: np.ndarray | None = None, gt_cam: np.ndarray | None = None,
                        ground_truth_panel: bool = False) -> list[np.ndarray]:
    """``[input, overlay, side view (, ground-truth side view)]`` tiles (tile, tile, 3) uint8, cut to the box.

    Args:
        image: (H, W, 3) uint8 original image.
        vertices: (V, 3) predicted neutral vertices, metres, camera orientation, no translation.
        faces: (F, 3) int.
        center, scale: the sample's box (as in the annotations).
        cam: (3,) predicted ``[s, tx, ty]``.
        tile: output side.
        gt_vertices: (V, 3) ground-truth vertices (same frame), drawn from the side in a fourth panel.
        gt_cam: (3,) camera placing the ground truth; None = ``cam``.
        ground_truth_panel: add the fourth panel even without ``gt_vertices`` (blank), so that every sample
            of a figure has the same panels.
    """
    h, w = image.shape[:2]
    camera, _ = image_camera(center, scale, cam, w, h)
    colors = np.tile(np.array(MESH_COLOR, np.uint8), (len(vertices), 1))
    overlay, _ = render_rgb([MeshData(vertices, faces, colors)], camera, background=image)
    views = [image, overlay, _side_view(vertices, faces, camera, MESH_COLOR)]
    tiles = [_crop(x, center, scale, tile) for x in views]
    if gt_vertices is not None:
        gt_camera, _ = image_camera(center, scale, cam if gt_cam is None else gt_cam, w, h)
        tiles.append(_crop(_side_view(gt_vertices, faces, gt_camera, GT_MESH_COLOR), center, scale, tile))
    elif ground_truth_panel:
        tiles.append(np.full((tile, tile, 3), SIDE_BACKGROUND, np.uint8))
    return tiles


def ground_truth_meshes(data: PersonDataset, index: np.ndarray, body_models: Mapping[str, BodyModel]
                        ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Ground-truth vertices and their fitted cameras for the samples ``index``.

    Each sample is posed with its gendered model (neutral when the gender is unknown) from ``pose``/``shape``;
    its camera is :func:`fit_weak_perspective` of the model's SPIN-24 joints to the annotated ``part``
    keypoints (None when fewer than :data:`MIN_FIT_KEYPOINTS` are visible or there are no SPIN regressors).

    Returns:
        ``(vertices, cams)``: per sample (V, 3) float32 metres or None (no SMPL ground truth), and (3,) or None.
    """
    index = np.asarray(index, dtype=int)
    verts: list[np.ndarray | None] = [None] * len(index)
    cams: list[np.ndarray | None] = [None] * len(index)
    if not (data.present.get("pose") and data.present.get("shape")):
        return verts, cams
    from smplx.lbs import batch_rodrigues

    for k, i in enumerate(index):
        if not bool(data.has_smpl[i]):
            continue
        model = body_models[GENDER_MODELS.get(str(data.gender[i]).strip().lower(), "neutral")]
        rot = batch_rodrigues(torch.as_tensor(data.pose[i], dtype=torch.float32).reshape(-1, 3))[None]
        betas = torch.as_tensor(data.shape[i], dtype=torch.float32)[None]
        with torch.no_grad():
            posed = model(betas=betas, body_pose=rot[:, 1:], global_orient=rot[:, :1], pose2rot=False)
        verts[k] = posed.vertices[0].numpy()
        part = data.part[i]
        if (data.present.get("part") and posed.joints_spin is not None
                and int((part[:, 2] > 0).sum()) >= MIN_FIT_KEYPOINTS):
            cams[k] = fit_weak_perspective(posed.joints_spin[0].double().numpy(), part, data.center[i],
                                           float(data.scale[i]))
    return verts, cams


def select_samples(n: int, count: int) -> np.ndarray:
    """``count`` sample indices spread evenly over ``n`` (the same for every run, so figures line up)."""
    if n <= 0 or count <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def _header(labels: Sequence[str], tile: int) -> np.ndarray:
    """(HEADER_PX, width, 3) uint8 strip naming the panels of one sample block, centred over each panel."""
    width = len(labels) * (tile + PANEL_PAD_PX) + PANEL_PAD_PX
    strip = Image.new("RGB", (width, HEADER_PX), SIDE_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for k, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x = PANEL_PAD_PX + k * (tile + PANEL_PAD_PX) + (tile - (right - left)) // 2
        draw.text((x - left, (HEADER_PX - (bottom - top)) // 2 - top), label, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def compose_figure(samples: Sequence[Sequence[np.ndarray]], labels: Sequence[str], columns: int = DEFAULT_COLUMNS
                   ) -> np.ndarray:
    """Lay out sample blocks (each a list of equal (t, t, 3) panels) ``columns`` per row under a header.

    Block ``k`` sits in figure row ``k // columns``, column ``k % columns`` (:func:`panel_box`).

    Returns:
        (H, W, 3) uint8, white between panels and after a last incomplete row.
    """
    if not samples:
        raise ValueError("qualitative figure: no samples (count must be >= 1 and the split non-empty)")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    tile = samples[0][0].shape[0]
    blocks = [tile_images([list(panels)], pad=PANEL_PAD_PX) for panels in samples]
    columns = min(columns, len(blocks))
    grid_rows = [blocks[r:r + columns] for r in range(0, len(blocks), columns)]
    grid = tile_images(grid_rows, pad=SAMPLE_GAP_PX)
    header = tile_images([[_header(labels, tile)] * columns], pad=SAMPLE_GAP_PX)[SAMPLE_GAP_PX:-SAMPLE_GAP_PX]
    return np.concatenate([header, grid[SAMPLE_GAP_PX // 2:]], axis=0)


def panel_box(sample: int, panel: int, tile: int, panels: int, columns: int = DEFAULT_COLUMNS
              ) -> tuple[slice, slice]:
    """(rows, cols) slices of panel ``panel`` of sample block ``sample`` in a :func:`compose_figure` grid."""
    block_w = panels * (tile + PANEL_PAD_PX) + PANEL_PAD_PX
    block_h = tile + 2 * PANEL_PAD_PX
    r, c = divmod(sample, columns)
    y = HEADER_PX + SAMPLE_GAP_PX - SAMPLE_GAP_PX // 2 + r * (block_h + SAMPLE_GAP_PX) + PANEL_PAD_PX
    x = SAMPLE_GAP_PX + c * (block_w + SAMPLE_GAP_PX) + PANEL_PAD_PX + panel * (tile + PANEL_PAD_PX)
    return slice(y, y + tile), slice(x, x + tile)


def qualitative_figure(pred: Predictions, data: PersonDataset, image_root: str | Path, faces: np.ndarray,
                       out_png: str | Path, *, count: int, tile: int = DEFAULT_TILE_PX,
                       columns: int = DEFAULT_COLUMNS, body_models: Mapping[str, BodyModel] | None = None) -> Path:
    """Write the figure PNG (:func:`compose_figure` of :func:`render_sample_views` blocks), atomically.

    Args:
        pred: predictions of the split (same order as ``data``).
        data: the split's annotations (box ``center``/``scale``; ``pose``/``shape``/``gender``/``part`` for the
            ground truth).
        image_root: the split's image folder.
        faces: (F, 3) faces of the body model that produced ``pred.vertices``.
        out_png: output file.
        count: number of samples (evenly spread, :func:`select_samples`).
        tile: side of every panel in pixels.
        columns: samples side by side in one figure row.
        body_models: ``{'neutral', 'male', 'female'}`` body models: draw the ground-truth side view when the
            split has SMPL ground truth; None = no ground-truth panel.
    """
    if len(pred) != len(data):
        raise ValueError(f"{len(pred)} predictions for {len(data)} annotated samples; rerun predict_test_split")
    index = select_samples(len(data), count)
    if body_models is not None:
        gt_verts, gt_cams = ground_truth_meshes(data, index, body_models)
    else:
        gt_verts, gt_cams = [None] * len(index), [None] * len(index)
    with_gt = any(v is not None for v in gt_verts)
    samples = []
    for k, i in enumerate(index):
        image = read_image_rgb(Path(image_root) / str(data.imgname[i]))
        samples.append(render_sample_views(image, pred.vertices[i], faces, data.center[i], float(data.scale[i]),
                                           pred.cam[i], tile, gt_vertices=gt_verts[k], gt_cam=gt_cams[k],
                                           ground_truth_panel=with_gt))
    labels = (*PANELS, GT_PANEL) if with_gt else PANELS
    grid = compose_figure(samples, labels, columns)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    log.info("qualitative figure %s: %d samples, %d per row (%s)", out_png, len(samples), min(columns, len(samples)),
             " | ".join(labels))
    return out_png


__all__: Sequence[str] = (
    "compose_figure", "fit_weak_perspective", "ground_truth_meshes", "image_camera", "panel_box", "qualitative_figure",
    "render_sample_views", "select_samples", "side_view_vertices",
)
