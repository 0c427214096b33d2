"""SPIN's person crop as one affine, shared by training (with augmentation) and evaluation (without).

Coordinates (same as :mod:`pipeline.render.offscreen` and :mod:`pipeline.render.camera`):

* **continuous** pixel coordinates: pixel ``[row i, col j]`` covers ``[j, j+1) × [i, i+1)``, centre
  ``(j + 0.5, i + 0.5)``. Annotation keypoints and the renderer use them.
* **index** coordinates: pixel centres at integers (cv2.warpAffine's and the mask store's convention).
  ``index = continuous − 0.5``.

The crop (SPIN ``get_transform``): the square of side ``h = 200 · scale · s`` around ``center`` fills the
``res``-pixel crop, rotated by ``rot`` degrees about the crop centre, then optionally mirrored
(``u → res − u``). As one continuous affine ``T`` (2, 3): ``crop = T @ [x, y, 1]``. The image, the keypoints
and the masks all go through the same ``T``; only the *labels* need extra care on a mirror (left/right joints,
pose, mask classes), see :mod:`pipeline.train.augment`.

Rotation convention: crop points move by ``u' = c + Rz(rot) (u − c)`` with ``Rz = [[cos, −sin], [sin, cos]]``
in the y-down crop frame; the same ``Rz`` applied to 3D points about the camera's optical axis commutes with
the perspective projection (principal point at the crop centre), so the body's global orientation becomes
``Rz @ R`` and 3D joints ``Rz @ X`` (:func:`rotation_z`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.io.spin_npz import SPIN_BOX_PX

#: ImageNet normalisation (SPIN/DSR ``constants.IMG_NORM_MEAN/STD``).
IMAGENET_MEAN: np.ndarray = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD: np.ndarray = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def crop_affine(center: np.ndarray, scale: float, res: int, *, rot: float = 0.0, zoom: float = 1.0,
                flip: bool = False) -> np.ndarray:
    """(2, 3) float64 continuous affine: original-image pixels -> crop pixels (module doc).

    Args:
        center: (2,) box centre (x, y), continuous pixels.
        scale: SPIN scale (box side / 200).
        res: crop side in pixels.
        rot: rotation in degrees (augmentation).
        zoom: multiplies the box side (SPIN's scale augmentation ``sc``; > 1 zooms out).
        flip: mirror the crop horizontally.
    """
    side = float(scale) * SPIN_BOX_PX * float(zoom)
    if not (math.isfinite(side) and side > 0 and np.isfinite(center).all()):
        raise ValueError(f"invalid person box: center {np.asarray(center).tolist()}, scale {scale}")
    s = res / side
    c = res / 2.0
    base = np.array([[s, 0.0, c - s * float(center[0])], [0.0, s, c - s * float(center[1])], [0.0, 0.0, 1.0]])
    full = _about_centre(rotation_2d(rot), c) @ base
    if flip:
        full = np.array([[-1.0, 0.0, float(res)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ full
    return full[:2]


def rotation_2d(rot: float) -> np.ndarray:
    """(2, 2) ``[[cos, −sin], [sin, cos]]`` of ``rot`` degrees."""
    r = math.radians(rot)
    return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])


def rotation_z(rot: float) -> np.ndarray:
    """(3, 3) rotation about the optical axis matching :func:`rotation_2d` in the crop."""
    out = np.eye(3)
    out[:2, :2] = rotation_2d(rot)
    return out


def _about_centre(rot2: np.ndarray, c: float) -> np.ndarray:
    out = np.eye(3)
    out[:2, :2] = rot2
    out[:2, 2] = np.array([c, c]) - rot2 @ np.array([c, c])
    return out


def to_homogeneous(affine: np.ndarray) -> np.ndarray:
    """(2, 3) -> (3, 3)."""
    return np.vstack([np.asarray(affine, dtype=np.float64), [0.0, 0.0, 1.0]])


def index_affine(affine: np.ndarray) -> np.ndarray:
    """A continuous-coordinate affine expressed in index coordinates (what cv2.warpAffine expects)."""
    a = np.asarray(affine, dtype=np.float64)
    out = a.copy()
    out[:, 2] = a[:, 2] + 0.5 * a[:, :2].sum(axis=1) - 0.5
    return out


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    a = np.asarray(affine, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ a[:, :2].T + a[:, 2]


def warp_image(image: np.ndarray, affine: np.ndarray, res: int) -> np.ndarray:
    """Crop an (H, W, 3) uint8 image with a continuous affine: bilinear, black outside the image."""
    return cv2.warpAffine(image, index_affine(affine), (res, res), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def normalize_image(crop: np.ndarray, pixel_noise: np.ndarray | None = None) -> np.ndarray:
    """(res, res, 3) uint8 RGB -> (3, res, res) float32, SPIN's pixel noise then ImageNet normalisation.

    Args:
        crop: the cropped image.
        pixel_noise: optional (3,) per-channel multipliers (SPIN: U[0.6, 1.4]); values are clipped to 255.
    """
    img = crop.astype(np.float32)
    if pixel_noise is not None:
        img = np.minimum(255.0, img * np.asarray(pixel_noise, dtype=np.float32))
    img = (img / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def denormalize_image(tensor: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_image` without noise: (3, res, res) float -> (res, res, 3) uint8."""
    img = np.asarray(tensor, dtype=np.float32).transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def pixels_to_normalized(points: np.ndarray, res: int) -> np.ndarray:
    """Continuous crop pixels -> SPIN's normalised coordinates ``u / (res / 2) − 1``."""
    return np.asarray(points, dtype=np.float64) / (res / 2.0) - 1.0


def store_to_crop_index(store_transform: np.ndarray, crop: np.ndarray, out_res: int, crop_res: int) -> np.ndarray:
    """Index-coordinate affine from a mask-store crop to a training crop rendered at ``out_res`` pixels.

    Args:
        store_transform: (2, 3) the store's ``crop_transform`` (original index coords -> store index coords).
        crop: (2, 3) continuous affine original -> training crop of ``crop_res`` pixels.
        out_res: side of the wanted mask (e.g. the renderer's resolution).
        crop_res: side the affine ``crop`` was built for.
    """
    rescale = np.diag([out_res / crop_res, out_res / crop_res, 1.0])
    target = index_affine((rescale @ to_homogeneous(crop))[:2])  # original index -> output index
    return (to_homogeneous(target) @ np.linalg.inv(to_homogeneous(store_transform)))[:2]
