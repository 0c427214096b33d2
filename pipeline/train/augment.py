"""SPIN's training augmentation and what a mirror does to every label (image, joints, pose, masks).

Sampling (SPIN ``base_dataset.augm_params``, ../shared/reference/DSR_SPIN_EFT_NOTES.md A.9):
flip with probability 0.5; per-channel pixel noise ``U[1 − n, 1 + n]`` (n = 0.4); rotation
``clip(N(0, 30), ±60)`` degrees, set to 0 with probability 0.6; zoom ``clip(N(1, 0.25), 0.75, 1.25)``.

The geometric part is one affine (:func:`pipeline.train.crop.crop_affine`) applied to the image, the 2D
keypoints and the masks alike. A mirror also swaps left and right, which the labels must follow:

* 2D keypoints / 3D joints: SPIN's ``J49_FLIP_PERM`` / ``J24_FLIP_PERM`` (the 3D x coordinate negated);
* SMPL pose: ``SMPL_POSE_FLIP_PERM`` with the y, z axis-angle components negated;
* **masks** (the official DSR code forgot this): DSR-C class maps through the mapping's class permutation
  (LeftArm ↔ RightArm for ``official8``; identity for Table I), the ``valid_mc`` flags through
  ``MC_FLIP_PERMUTATION`` (LeftArm ↔ RightArm, LeftShoe ↔ RightShoe); the binary MC mask needs only the
  spatial mirror. CIHP-20 label maps (when used) through :func:`pipeline.parsing.labels.flip_permutation`.
  The ``official`` variant's switch ``no_flip_swap`` reproduces the omission (masks mirrored only,
  ``SampleSource(swap_lr_on_flip=False)`` in :mod:`pipeline.train.data`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.body.joints import J24_FLIP_PERM, J49_FLIP_PERM, SMPL_POSE_FLIP_PERM, SMPL_POSE_FLIP_SIGN
from pipeline.train.crop import rotation_z
from pipeline.train.settings import AugmentSettings

_J24_PERM = np.asarray(J24_FLIP_PERM)
_J49_PERM = np.asarray(J49_FLIP_PERM)
_POSE_PERM = np.asarray(SMPL_POSE_FLIP_PERM)
_POSE_SIGN = np.asarray(SMPL_POSE_FLIP_SIGN)


@dataclass(frozen=True)
class Augmentation:
    """One sample's draw: mirror, rotation (degrees), zoom, (3,) pixel-noise multipliers."""

    flip: bool = False
    rot: float = 0.0
    zoom: float = 1.0
    pixel_noise: tuple[float, float, float] = (1.0, 1.0, 1.0)


IDENTITY = Augmentation()


def sample_augmentation(rng: np.random.Generator, settings: AugmentSettings) -> Augmentation:
    """Draw one :class:`Augmentation` (identity when ``settings.enabled`` is False)."""
    if not settings.enabled:
        return IDENTITY
    flip = bool(rng.uniform() < settings.flip_prob)
    n = settings.noise_factor
    noise = tuple(float(v) for v in rng.uniform(1.0 - n, 1.0 + n, size=3))
    rot = float(np.clip(rng.normal() * settings.rot_factor, -settings.rot_max, settings.rot_max))
    if rng.uniform() >= settings.rot_prob:
        rot = 0.0
    zoom = float(np.clip(rng.normal() * settings.scale_factor + 1.0, 1.0 - settings.scale_factor,
                         1.0 + settings.scale_factor))
    return Augmentation(flip=flip, rot=rot, zoom=zoom, pixel_noise=noise)  # type: ignore[arg-type]


def flip_keypoints_labels(keypoints: np.ndarray) -> np.ndarray:
    """Permute SPIN's 49 keypoints (49, k) after a mirror (``J49_FLIP_PERM``); coordinates must already be
    mirrored (by the affine)."""
    keypoints = np.asarray(keypoints)
    if len(keypoints) != len(_J49_PERM):
        raise ValueError(f"expected SPIN's {len(_J49_PERM)} keypoints, got {len(keypoints)}")
    return keypoints[_J49_PERM]


def flip_joints_3d(joints: np.ndarray) -> np.ndarray:
    """Mirror SPIN-24 3D joints (24, 3|4) in the camera frame: x negated, left/right swapped."""
    out = np.array(joints, dtype=np.float64, copy=True)
    out[:, 0] = -out[:, 0]
    return out[_J24_PERM]


def flip_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror a (72,) SMPL axis-angle pose (global orientation in the camera frame)."""
    return np.asarray(pose, dtype=np.float64)[_POSE_PERM] * _POSE_SIGN


def rotate_pose(pose: np.ndarray, rot: float) -> np.ndarray:
    """Rotate the global orientation of a (72,) pose about the optical axis by ``rot`` degrees (the image
    rotation of :func:`pipeline.train.crop.crop_affine`)."""
    from scipy.spatial.transform import Rotation

    out = np.array(pose, dtype=np.float64, copy=True)
    if rot != 0.0:
        out[:3] = (Rotation.from_matrix(rotation_z(rot)) * Rotation.from_rotvec(out[:3])).as_rotvec()
    return out


def rotate_joints_3d(joints: np.ndarray, rot: float) -> np.ndarray:
    """Rotate (24, 3|4) camera-frame joints about the optical axis (confidence column kept)."""
    out = np.array(joints, dtype=np.float64, copy=True)
    out[:, :3] = out[:, :3] @ rotation_z(rot).T
    return out


def flip_class_map(class_map: np.ndarray, class_flip: np.ndarray) -> np.ndarray:
    """Relabel a mirrored DSR-C class map with the mapping's class permutation (``ClassMapping.flip_permutation``)."""
    return np.asarray(class_flip)[class_map]


def augment_targets(pose: np.ndarray, joints_3d: np.ndarray, aug: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    """Pose (72,) and 3D joints (24, 4) under an augmentation: rotation first, then the mirror."""
    pose = rotate_pose(pose, aug.rot)
    joints_3d = rotate_joints_3d(joints_3d, aug.rot)
    if aug.flip:
        pose, joints_3d = flip_pose(pose), flip_joints_3d(joints_3d)
    return pose, joints_3d
