"""Pseudo ground truth with realistic error: the open world's stand-in for EFT / SPIN fits.

Real pseudo-GT SMPL parameters of 2D-annotated datasets (COCO-EFT, SPIN's MPI-INF-3DHP fits) come from fitting
the body to 2D keypoints: the shape stays close to the mean, limb twist and the depth of each limb are not
seen by the keypoints, and the fits are noisy. The open world generates exact parameters, so the training
splits named in ``open_world.pseudo_gt.splits`` get their SMPL parameters passed through
:class:`PseudoGtNoise` (2D keypoints, 3D joints, images and label maps stay exact):

* betas: ``(1 - betas_shrink) * betas + N(0, betas_std)`` (SMPL's shape space has its mean at 0);
* every body joint's bone (joints 1..23) turns by a small random rotation in the camera frame, drawn
  independently per bone in a frame of that bone (``b`` its direction in the camera frame, ``z`` the optical
  axis):

  ========== ======================== ================================================ ===========================
  component  rotation axis            what it moves                                    std (degrees)
  ========== ======================== ================================================ ===========================
  swing      ``(b x z) x b`` (unit)   the bone's end across the image (seen in 2D)     ``joint_std_deg``
  depth      ``b x z`` (unit)         the bone's end along the viewing ray (unseen)    ``joint_std_deg * depth_factor``
  twist      ``b``                    nothing but the limb's roll (unseen)             ``joint_std_deg * twist_factor``
  ========== ======================== ================================================ ===========================

  (For a bone in the image plane the seen swing is the rotation *about* the viewing ray; the unseen ones are
  about axes across it.) Bone noise does not add up along the kinematic chain: each bone's camera-frame
  direction is perturbed on its own, as a fit to 2D keypoints errs per limb;
* the global orientation turns by an isotropic camera-frame rotation of std ``global_orient_std_deg``
  per axis (the whole body turns with it);
* ``level`` multiplies every amplitude (0: exact labels).

Alongside every open-world training split (noisy or not) the world writes the true parameters in
``<annotation stem>.truth.npz`` (:func:`truth_path`, :func:`write_truth`, :func:`read_truth`), for analysis
only: training never reads them. :mod:`pipeline.world.pseudo_gt_error` measures the pseudo-GT body against
the true one. This module imports neither torch nor the metrics: the DAG build imports :func:`truth_path`, and
the image rules, which import this module, do not rerun when the evaluation code changes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

#: Suffix of the truth file written next to an annotation file.
TRUTH_SUFFIX: str = ".truth.npz"
#: Keys every truth file holds (``gender`` only where the split has genders).
TRUTH_KEYS: tuple[str, ...] = ("imgname", "pose", "betas", "pseudo_gt_noisy")
NUM_POSE: int = 72
NUM_BETAS: int = 10
NUM_JOINTS: int = 24
#: Gender codes of a truth file: as in the labels ('m', 'f'), 'n' for neutral-model betas.
TRUTH_GENDERS: frozenset[str] = frozenset({"m", "f", "n"})
#: The camera's optical axis in its own frame (OpenCV convention: the camera looks along +z).
OPTICAL_AXIS: np.ndarray = np.array([0.0, 0.0, 1.0])
#: A bone closer than this (|b x z|) to the optical axis uses the camera's x axis to build its frame.
DEGENERATE_CROSS: float = 1e-6


class TruthFileError(ValueError):
    """A truth file is missing, damaged or does not follow the contract."""


# --------------------------------------------------------------------------------------------- file contract
def truth_path(annotations: str | Path) -> Path:
    """The truth file of an annotation file: ``<folder>/<name without suffix>.truth.npz``."""
    annotations = Path(annotations)
    return annotations.with_name(annotations.stem + TRUTH_SUFFIX)


def write_truth(path: str | Path, imgname: Sequence[str] | np.ndarray, pose: np.ndarray, betas: np.ndarray,
                gender: Sequence[str] | np.ndarray | None, noisy: bool) -> Path:
    """Write a truth file (written to a temporary name, then renamed).

    Args:
        path: the file (:func:`truth_path` of the annotation file).
        imgname: (N,) the annotation file's sample names, same order and strings as its reader returns.
        pose: (N, 72) true SMPL axis-angle, global orientation first, camera frame (as the labels).
        betas: (N, 10) true betas in the labels' body-model convention (neutral fits where the split has no
            gender, the gendered betas where it has).
        gender: (N,) 'm'/'f'/'n' as in the labels, or None where the split has no gender.
        noisy: whether the split's labels went through the pseudo-GT error model.
    """
    path = Path(path)
    names = np.asarray(imgname).astype(str)
    n = len(names)
    arrays: dict[str, np.ndarray] = {
        "imgname": names,
        "pose": np.asarray(pose, dtype=np.float32).reshape(n, NUM_POSE),
        "betas": np.asarray(betas, dtype=np.float32).reshape(n, NUM_BETAS),
        "pseudo_gt_noisy": np.asarray(bool(noisy)),
    }
    if gender is not None:
        arrays["gender"] = np.asarray(gender).astype("<U1").reshape(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a truth file: ``imgname`` (N,) str, ``pose`` (N, 72) and ``betas`` (N, 10) float32, optional
    ``gender`` (N,) str, ``pseudo_gt_noisy`` () bool.

    Raises:
        TruthFileError: naming the file and what is wrong (missing, not an npz, key missing, bad shape).
    """
    path = Path(path)
    hint = "regenerate it with the open world's make_images_train_* rule (snakemake --forcerun <rule>)"
    if not path.is_file():
        raise TruthFileError(f"{path}: truth file not found; the open world writes it beside each training "
                             f"split's annotation file: {hint}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise TruthFileError(f"{path}: not a readable npz file ({exc}): {hint}") from exc
    missing = [k for k in TRUTH_KEYS if k not in out]
    if missing:
        raise TruthFileError(f"{path}: lacks keys {missing} (has {sorted(out)}): {hint}")
    n = len(out["imgname"])
    expected = {"imgname": (n,), "pose": (n, NUM_POSE), "betas": (n, NUM_BETAS), "pseudo_gt_noisy": ()}
    if "gender" in out:
        expected["gender"] = (n,)
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise TruthFileError(f"{path}: key {key!r} has shape {out[key].shape}, expected {shape}: {hint}")
    out["imgname"] = out["imgname"].astype(str)
    out["pseudo_gt_noisy"] = out["pseudo_gt_noisy"].astype(bool)
    if "gender" in out:
        out["gender"] = out["gender"].astype(str)
        bad = sorted(set(out["gender"].tolist()) - TRUTH_GENDERS)
        if bad:
            raise TruthFileError(f"{path}: key 'gender' holds {bad}; allowed {sorted(TRUTH_GENDERS)}: {hint}")
    return out


# ------------------------------------------------------------------------------------------------ the noise
@dataclass(frozen=True)
class PseudoGtNoise:
    """The pseudo-GT error model (see the module docstring); angles in degrees."""

    level: float = 1.0
    betas_shrink: float = 0.0
    betas_std: float = 0.0
    joint_std_deg: float = 0.0
    depth_factor: float = 1.0
    twist_factor: float = 1.0
    global_orient_std_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("level", "betas_shrink", "betas_std", "joint_std_deg", "depth_factor", "twist_factor",
                     "global_orient_std_deg"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"open_world.pseudo_gt.{name} must be a finite number >= 0, got {value!r}")
        if self.level * self.betas_shrink > 1:
            raise ValueError(f"open_world.pseudo_gt: level x betas_shrink = {self.level * self.betas_shrink} > 1 "
                             "would flip the shape through the mean; lower betas_shrink or level")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PseudoGtNoise:
        """From ``open_world.pseudo_gt`` (its ``splits`` key is ignored here); unknown keys raise ``ValueError``."""
        keys = ("level", "betas_shrink", "betas_std", "joint_std_deg", "depth_factor", "twist_factor",
                "global_orient_std_deg")
        unknown = sorted(set(cfg) - set(keys) - {"splits"})
        if unknown:
            raise ValueError(f"unknown open_world.pseudo_gt key(s) {unknown}; allowed: {['splits', *keys]}")
        return cls(**{k: float(cfg[k]) for k in keys if k in cfg})

    @property
    def exact(self) -> bool:
        """True when the model leaves the labels unchanged."""
        return self.level == 0 or (self.betas_shrink == 0 and self.betas_std == 0 and self.joint_std_deg == 0
                                   and self.global_orient_std_deg == 0)


def bone_directions(rest_joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(..., 24, 3) unit rest-frame direction of each joint's bone: the mean offset to its children, or the
    offset from its parent for a leaf (hands, feet, head)."""
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    dirs = np.zeros_like(rest_joints)
    for j in range(NUM_JOINTS):
        children = [k for k in range(NUM_JOINTS) if parents[k] == j]
        if children:
            dirs[..., j, :] = rest_joints[..., children, :].mean(-2) - rest_joints[..., j, :]
        elif parents[j] >= 0:
            dirs[..., j, :] = rest_joints[..., j, :] - rest_joints[..., parents[j], :]
    norm = np.linalg.norm(dirs, axis=-1, keepdims=True)
    return dirs / np.where(norm > 0, norm, 1.0)


def global_rotations(pose: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(N, 24, 3, 3) camera-frame rotation of every joint from (N, 72) axis-angle poses."""
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    local = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(*pose.shape[:2], 3, 3)
    glob = np.empty_like(local)
    for j in range(NUM_JOINTS):
        glob[:, j] = local[:, j] if parents[j] < 0 else glob[:, parents[j]] @ local[:, j]
    return glob


def bone_frames(glob: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(N, 24, 3, 3) camera-frame axes of every bone, rows ``(swing, depth, twist)`` (module docstring).

    Args:
        glob: (N, 24, 3, 3) camera-frame joint rotations (:func:`global_rotations`).
        dirs: (N, 24, 3) or (24, 3) rest-frame bone directions (:func:`bone_directions`).
    """
    b = np.einsum("njab,njb->nja", glob, np.broadcast_to(dirs, glob.shape[:-1]))
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    depth = np.cross(b, OPTICAL_AXIS)
    small = np.linalg.norm(depth, axis=-1) < DEGENERATE_CROSS
    depth[small] = np.cross(b[small], np.array([1.0, 0.0, 0.0]))
    depth /= np.linalg.norm(depth, axis=-1, keepdims=True)
    swing = np.cross(depth, b)
    return np.stack([swing, depth, b], axis=-2)


def perturb_labels(pose: np.ndarray, betas: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray,
                   noise: PseudoGtNoise, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-GT SMPL parameters from true ones.

    Args:
        pose: (N, 72) true axis-angle, global orientation first, camera frame (the labels' convention).
        betas: (N, B) true betas.
        rest_joints: (N, 24, 3) or (24, 3) rest joints of the labels' body model (bone directions).
        parents: (24,) kinematic tree, ``parents[0] = -1``.
        noise: the error model.
        rng: random source (the draws: betas (N, B), bones (N, 23, 3), global (N, 3), in this order).

    Returns:
        (pose (N, 72), betas (N, B)) float64; equal to the input when ``noise.exact``.
    """
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, NUM_POSE)
    betas = np.asarray(betas, dtype=np.float64)
    n = len(pose)
    if noise.exact:
        return pose.copy(), betas.copy()
    lvl = noise.level
    new_betas = (1.0 - lvl * noise.betas_shrink) * betas + lvl * noise.betas_std * rng.normal(size=betas.shape)
    sigma = np.deg2rad(lvl * noise.joint_std_deg) * np.array([1.0, noise.depth_factor, noise.twist_factor])
    draws = rng.normal(size=(n, NUM_JOINTS - 1, 3)) * sigma
    global_draw = np.deg2rad(lvl * noise.global_orient_std_deg) * rng.normal(size=(n, 3))
    glob = global_rotations(pose, parents)
    frames = bone_frames(glob, bone_directions(rest_joints, parents))
    delta = np.einsum("njc,njca->nja", draws, frames[:, 1:])  # camera-frame rotation vectors of joints 1..23
    noisy = glob.copy()
    noisy[:, 1:] = Rotation.from_rotvec(delta.reshape(-1, 3)).as_matrix().reshape(n, -1, 3, 3) @ glob[:, 1:]
    noisy = Rotation.from_rotvec(global_draw).as_matrix()[:, None] @ noisy  # the whole body turns
    local = np.empty_like(noisy)
    local[:, 0] = noisy[:, 0]
    for j in range(1, NUM_JOINTS):
        local[:, j] = np.swapaxes(noisy[:, parents[j]], -1, -2) @ noisy[:, j]
    new_pose = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(n, NUM_POSE)
    return new_pose, new_betas
