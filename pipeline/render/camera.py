"""SPIN's crop camera: weak-perspective ``[s, tx, ty]`` -> perspective translation, and projection to pixels.

One camera for the whole project, shared by the keypoint losses and the differentiable semantic renderer so
that rendered masks and projected keypoints can never disagree.

Frames and units
----------------
* **Camera frame** (SPIN / OpenCV): x right, y down, z forward (away from the camera), metres. Predicted body
  vertices and joints live in this orientation (the regressed global orientation already contains the flip
  from SMPL's y-up model frame); the camera sits at the origin and the *body* is moved by the translation
  ``t``: ``X_cam = X + t``.
* **Pixel coordinates** of a square crop of ``image_size`` pixels (default 224): continuous, x right, y down,
  the crop spans ``[0, image_size]`` on both axes, pixel ``(row r, column c)`` covers ``[c, c+1] x [r, r+1]``
  and its centre is ``(c + 0.5, r + 0.5)``. The principal point is the crop centre ``image_size / 2``.
  ``x_pix = f · X_cam / Z_cam + image_size / 2``.
* **Normalised image coordinates** (SPIN's keypoint convention, and SoftRas' NDC up to the sign of y):
  ``x_norm = x_pix / (image_size / 2) − 1`` in ``[-1, 1]`` across the crop; one pixel is ``2 / image_size``.

The weak-perspective camera ``[s, tx, ty]`` maps a body point ``X`` to normalised coordinates
``s · (X_xy + [tx, ty])``; the equivalent perspective camera with focal length ``f`` puts the body at depth
``tz = 2 f / (image_size · s)`` so that ``f / tz = s · image_size / 2`` (SPIN ``utils/geometry.py``, DSR
``convert_camT_to_proj_mat``).
"""

from __future__ import annotations

import torch

#: SPIN / DSR focal length in pixels of the 224-pixel crop.
FOCAL_LENGTH: float = 5000.0
#: SPIN / DSR crop side in pixels.
CROP_SIZE: int = 224
#: Added to ``image_size · s`` before dividing, exactly as SPIN does, so that ``s = 0`` gives a finite depth.
WEAK_PERSPECTIVE_EPS: float = 1e-9


def weak_perspective_to_translation(
    cam: torch.Tensor,
    focal_length: float = FOCAL_LENGTH,
    image_size: int = CROP_SIZE,
    eps: float = WEAK_PERSPECTIVE_EPS,
) -> torch.Tensor:
    """Weak-perspective camera ``[s, tx, ty]`` -> perspective camera translation ``[tx, ty, tz]``.

    Args:
        cam: (B, 3) float, ``[s, tx, ty]``: scale (normalised crop units per metre) and translation (metres).
        focal_length: focal length in pixels of the ``image_size`` crop.
        image_size: crop side in pixels.
        eps: added to ``image_size · s`` (SPIN's guard against ``s = 0``).

    Returns:
        (B, 3) float, metres, camera frame: ``[tx, ty, 2 · focal_length / (image_size · s + eps)]``, the
        translation to add to body points before :func:`perspective_projection`.
    """
    if cam.shape[-1] != 3:
        raise ValueError(f"weak-perspective camera must be [..., 3] = [s, tx, ty]; got shape {tuple(cam.shape)}")
    scale, tx, ty = cam.unbind(-1)
    tz = 2.0 * focal_length / (image_size * scale + eps)
    return torch.stack([tx, ty, tz], dim=-1)


def perspective_projection(
    points: torch.Tensor,
    translation: torch.Tensor | None = None,
    focal_length: float = FOCAL_LENGTH,
    image_size: int = CROP_SIZE,
    rotation: torch.Tensor | None = None,
    min_depth: float | None = None,
) -> torch.Tensor:
    """Project body points to pixel coordinates of the crop (SPIN's ``perspective_projection``).

    Args:
        points: (B, N, 3) float, metres, camera orientation (x right, y down, z forward), before translation.
        translation: (B, 3) float, metres, added after ``rotation``; ``None`` means the points are already in
            the camera frame.
        focal_length: focal length in pixels of the ``image_size`` crop (square pixels).
        image_size: crop side in pixels; the principal point is ``(image_size / 2, image_size / 2)``.
        rotation: optional (B, 3, 3) rotation applied before the translation (``X_cam = R X + t``).
        min_depth: if given, depths are clamped to at least this value before dividing (the renderer passes its
            near plane so points behind the camera give finite, ignorable values); ``None`` divides by the raw
            depth exactly like SPIN.

    Returns:
        (B, N, 2) float, pixel coordinates (x right, y down; the crop spans ``[0, image_size]``).
    """
    cam_points = camera_points(points, translation, rotation)
    depth = cam_points[..., 2:3]
    if min_depth is not None:
        depth = depth.clamp(min=min_depth)
    centre = 0.5 * image_size
    return focal_length * cam_points[..., :2] / depth + centre


def camera_points(
    points: torch.Tensor, translation: torch.Tensor | None = None, rotation: torch.Tensor | None = None
) -> torch.Tensor:
    """Body points -> camera frame: ``X_cam = R X + t``.

    Args:
        points: (B, N, 3) float, metres.
        translation: (B, 3) float, metres, or ``None`` (zero).
        rotation: (B, 3, 3) float, or ``None`` (identity).

    Returns:
        (B, N, 3) float, metres, camera frame (x right, y down, z forward).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3); got shape {tuple(points.shape)}")
    if rotation is not None:
        points = torch.einsum("bij,bnj->bni", rotation, points)
    if translation is not None:
        if translation.shape != (points.shape[0], 3):
            raise ValueError(
                f"translation must be (B, 3) = ({points.shape[0]}, 3); got shape {tuple(translation.shape)}"
            )
        points = points + translation[:, None, :]
    return points


def pixels_to_normalized(pixels: torch.Tensor, image_size: int = CROP_SIZE) -> torch.Tensor:
    """Pixel coordinates -> SPIN's normalised keypoint coordinates ``x / (image_size / 2) − 1`` in [-1, 1].

    Args:
        pixels: (..., 2) float, pixel coordinates of the crop.
        image_size: crop side in pixels.

    Returns:
        (..., 2) float, normalised coordinates (x right, y down; one pixel = ``2 / image_size``).
    """
    return pixels / (0.5 * image_size) - 1.0


def normalized_to_pixels(normalized: torch.Tensor, image_size: int = CROP_SIZE) -> torch.Tensor:
    """Inverse of :func:`pixels_to_normalized`: (..., 2) normalised -> (..., 2) pixel coordinates."""
    return (normalized + 1.0) * (0.5 * image_size)


def scale_focal_length(focal_length: float, from_size: int, to_size: int) -> float:
    """Focal length in pixels of a crop resampled from ``from_size`` to ``to_size`` pixels (same field of view).

    Rendering the 224-pixel SPIN crop at 64 pixels, for example, uses ``scale_focal_length(5000, 224, 64)``.
    """
    return focal_length * to_size / from_size
