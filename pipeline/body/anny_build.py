"""Build the open SMPL-format body model from Anny (Apache-2.0 code, CC0 MakeHuman data).

``anny.Anny(rig="game_engine")`` is a rigged human mesh (13,718 vertices, 27,420 triangles, 53 bones)
whose shape is driven by phenotypes (gender, age, muscle, weight, height, proportions). This module turns
it into SMPL's model format (DESIGN §2), so that every later stage treats it exactly like real SMPL:

Bone merge
    Each Anny bone is assigned to one of SMPL's 24 joints by name (:func:`smpl_joint_of_bone`); the
    skinning weights of the bones of one joint are summed. Each joint has a *primary* bone whose head is
    the joint (pelvis, thigh_l, calf_l, ...); the hand joints ``L_Hand`` / ``R_Hand`` take all finger
    bones and sit at the mean of the four finger knuckles (heads of ``{index,middle,ring,pinky}_01``).
Frames
    Anny is z-up, facing -y, metres; SMPL is y-up, facing +z, metres (:data:`ANNY_TO_SMPL`). x is the
    body's own left in both, so ``*_l`` bones become ``L_*`` joints at x > 0.
T-pose
    Anny's rest pose is an A-pose. Each body is re-posed with Anny's own kinematics and skinning so that
    upper arm, forearm and hand point straight along the body's ±x axis with the palms facing down
    (:meth:`AnnyToSMPL.tpose_deltas`); that posed mesh is the SMPL rest mesh, so zero pose = T-pose.
Shape space
    ``n_shape_samples`` adult phenotypes per file are drawn from Anny's own WHO-calibrated phenotype
    distributions (:class:`AdultPhenotypeSampler`); ``v_template`` is their mean T-posed mesh and
    ``shapedirs`` the first ``num_betas`` principal directions scaled by their standard deviations, so
    betas of the sampled population are ~ N(0, 1). Male / female files fix the gender phenotype at 0 / 1,
    the neutral file draws it uniformly in [0, 1].
Regressors
    ``J_regressor`` (24 x V) is a sparse non-negative vertex regressor with rows summing to 1, fitted by
    NNLS over the sampled T-posed meshes to reproduce the merged-bone joint positions. The H36M-17 regressor
    and SPIN's 9 ``J_regressor_extra`` joints (``joint_regressors.npz``) are convex combinations of
    anatomical points (:data:`H36M_DEFINITIONS`, :data:`SPIN_PART_DEFINITIONS`): SMPL joints fitted the same
    way but over T-posed *and* randomly posed meshes (they are applied to posed meshes) and the crown of the
    head (a fixed vertex set). smplx's 11 vertex picks are Anny's own COCO keypoint regressor (nose, eyes,
    ears) and foot vertex sets (:func:`foot_vertex_rows`). SPIN's 49 joints are composed from these and the
    kinematic joints exactly as SPIN does (:mod:`pipeline.body.spin_joints`).

    Accuracy (120-400 bodies per gender, held-out): ``J_regressor`` mean error 2-3.3 mm, up to ~1 cm at
    the knees. That is the limit of non-negative weights here, not of the fit: Anny's joints slide
    relative to the nearby skin across phenotypes (the knee, 13 mm std vertically, correlated 0.93 with
    the height phenotype), which no convex combination of vertices follows (even over all vertices the
    knee stays at ~6.5 mm). It is also most of the remaining difference between smplx's LBS on these
    files and Anny's own skinning (~4.4 mm mean over random poses; 0.3 mm with Anny's exact joints).
Pose correctives
    Anny has none, so ``posedirs`` is zero.

Nothing here assumes SMPL's 6,890 vertices / 13,776 faces: counts come from the Anny mesh.
Outputs (see :func:`build_open_body_model`): ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` and ``.pkl`` (same arrays;
``smplx.SMPL`` 0.1.28 reads model files with ``pickle`` whatever their extension, so the ``.pkl`` is the one
it loads from ``model_path``; the ``.npz`` loads through ``data_struct``), ``joint_regressors.npz`` and
``parts.npz``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize
import torch
from tqdm import tqdm

from pipeline.body.joints import (
    H36M_JOINT_NAMES,
    NUM_SMPL_JOINTS,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    SPIN_PART_NAMES,
)
from pipeline.body.parts import vertex_parts_from_weights
from pipeline.body.smpl_io import save_smpl_pickle
from pipeline.body.spin_joints import EXTRA_JOINT_NAMES, VERTEX_JOINT_NAMES, regressor_names

if TYPE_CHECKING:  # anny initialises Warp on import: only imported when a model is built
    import anny

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------
# Conventions and constants
# --------------------------------------------------------------------------------------------------------

#: The Anny rig converted (53 bones, Unreal-style names).
ANNY_RIG = "game_engine"
#: ``x_smpl = ANNY_TO_SMPL @ x_anny``: Anny is z-up facing -y, SMPL y-up facing +z; x (the body's left) is
#: shared. A proper rotation (det = +1).
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: SMPL's pose-corrective basis width: 23 joints x 9 rotation-matrix entries.
NUM_POSE_BASIS = 207
#: Parent entry of the root in ``kintree_table[0]`` as stored by the official SMPL files (uint32 -1).
KINTREE_ROOT_PARENT = 2**32 - 1
#: Output file stem of each gender.
GENDER_FILES: dict[str, str] = {"neutral": "SMPL_NEUTRAL", "male": "SMPL_MALE", "female": "SMPL_FEMALE"}

#: SMPL joint -> its primary Anny bone: the bone whose head is the joint and whose delta carries the joint's
#: rotation. L_Hand / R_Hand have no single bone (see :data:`HAND_KNUCKLE_FINGERS`).
PRIMARY_BONES: dict[str, str] = {
    "Pelvis": "pelvis", "L_Hip": "thigh_l", "R_Hip": "thigh_r", "Spine1": "spine_01", "L_Knee": "calf_l",
    "R_Knee": "calf_r", "Spine2": "spine_02", "L_Ankle": "foot_l", "R_Ankle": "foot_r", "Spine3": "spine_03",
    "L_Foot": "ball_l", "R_Foot": "ball_r", "Neck": "neck_01", "L_Collar": "clavicle_l",
    "R_Collar": "clavicle_r", "Head": "head", "L_Shoulder": "upperarm_l", "R_Shoulder": "upperarm_r",
    "L_Elbow": "lowerarm_l", "R_Elbow": "lowerarm_r", "L_Wrist": "hand_l", "R_Wrist": "hand_r",
}
#: Finger names of the rig's finger bones ``{finger}_{01,02,03}_{l,r}``; all merge into L_Hand / R_Hand.
FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
#: Fingers whose first-bone heads (the knuckles) average to the SMPL hand joint.
HAND_KNUCKLE_FINGERS: tuple[str, ...] = ("index", "middle", "ring", "pinky")
#: Anny bones merged into a joint without being its primary bone (besides the fingers).
EXTRA_BONES: dict[str, str] = {"Root": "Pelvis"}
#: Bones whose rest direction is aimed along the body's ±x axis by the T-pose, per side, in chain order:
#: (bone, the bone whose head it is aimed at).
ARM_AIM_CHAIN: tuple[tuple[str, str], ...] = (
    ("upperarm", "lowerarm"), ("lowerarm", "hand"), ("hand", "middle_01"),
)

#: Morphological age range (years) of the sampled adults, mapped to Anny's age phenotype by Anny's own
#: calibration (:mod:`anny.shape_distribution`).
ADULT_AGE_YEARS: tuple[float, float] = (20.0, 60.0)
#: Anny's gender phenotype of the male and female files (0 = male, 1 = female); neutral draws U(0, 1).
GENDER_PHENOTYPE: dict[str, float | None] = {"male": 0.0, "female": 1.0, "neutral": None}
#: Anny's calibrated distributions switch from the male to the female tables above this gender value.
GENDER_TABLE_SWITCH = 0.5

#: Bodies skinned per Anny call (bounds peak memory: ~ chunk x V x 53 x 16 doubles inside Anny).
CHUNK = 50
#: A regressor row may use the template vertices within this distance (m) of the point's mean position
#: (at least :data:`REGRESSOR_MIN_CANDIDATES` nearest ones). Measured on 120 neutral bodies, held-out mean
#: J_regressor error: 12.4 / 4.7 / 4.0 / 3.3 mm for radii 0.10 / 0.15 / 0.20 / 0.30 m; the NNLS solutions
#: keep <= ~30 non-zeros whatever the radius. Wide neighbourhoods are needed because Anny's joints slide
#: relative to the nearby skin across phenotypes (e.g. the knee, 13 mm std vertically, with height), which
#: a convex combination of local vertices cannot follow.
REGRESSOR_RADIUS_M = 0.3
REGRESSOR_MIN_CANDIDATES = 100
#: Weight of the sum-to-one row appended to the NNLS system (metres are ~1e-1, so this enforces it tightly).
SUM_TO_ONE_WEIGHT = 1e3
#: The crown ("Top of Head") is the mean of the head vertices within this height (m) of the template's top.
CROWN_BAND_M = 0.01
#: Random poses used to fit the pose-robust landmark regressors: per-axis Gaussian spread (rad) of every
#: body joint, plus one-sided flexions drawn uniformly (joint, axis in SMPL frame, sign, max angle in rad).
FIT_POSE_SIGMA = 0.2
FIT_POSE_FLEXIONS: tuple[tuple[str, int, float, float], ...] = (
    ("L_Hip", 0, -1.0, 1.2), ("R_Hip", 0, -1.0, 1.2),  # hip flexion (thigh forward)
    ("L_Knee", 0, 1.0, 1.8), ("R_Knee", 0, 1.0, 1.8),  # knee flexion
    ("L_Shoulder", 2, -1.0, 1.3), ("R_Shoulder", 2, 1.0, 1.3),  # arms lowered
    ("L_Elbow", 1, -1.0, 2.0), ("R_Elbow", 1, 1.0, 2.0),  # elbow flexion
)

#: An anatomical point as a convex combination of sources: an SMPL joint name (pose-robust fitted
#: regressor), ``"crown"`` (top of the head) or ``"coco:<name>"`` (Anny's COCO keypoint regressor).
PointDef = tuple[tuple[str, float], ...]
_MID_HIPS: PointDef = (("L_Hip", 0.5), ("R_Hip", 0.5))
_STERNAL_NOTCH: PointDef = (("L_Collar", 0.5), ("R_Collar", 0.5))  # sterno-clavicular joints: neck base
_UPPER_NECK: PointDef = (("Neck", 0.5), ("Head", 0.5))  # between C7 and the skull pivot: chin level
_HEAD_CENTRE: PointDef = (("Head", 0.5), ("crown", 0.5))  # between the skull pivot and the crown
#: H36M-17 joints (SPIN row order). Limb joints are the SMPL joints; Pelvis = hip centre; Thorax = neck
#: base between the sterno-clavicular joints; Spine = midway pelvis-thorax; Neck/Nose = upper neck (chin
#: level); Head = centre of the cranium, midway between the skull pivot and the crown. On the 1.70 m
#: neutral template: pelvis->spine->thorax 24 + 24 cm, thorax->neck/nose->head 12.5 + 12.5 cm (H3.6M's
#: skeleton has about 23 + 25 and 11.5 + 11.5 cm).
H36M_DEFINITIONS: dict[str, PointDef] = {
    "Pelvis": _MID_HIPS,
    "LHip": (("L_Hip", 1.0),), "LKnee": (("L_Knee", 1.0),), "LAnkle": (("L_Ankle", 1.0),),
    "RHip": (("R_Hip", 1.0),), "RKnee": (("R_Knee", 1.0),), "RAnkle": (("R_Ankle", 1.0),),
    "Spine": (("L_Hip", 0.25), ("R_Hip", 0.25), ("L_Collar", 0.25), ("R_Collar", 0.25)),
    "Thorax": _STERNAL_NOTCH,
    "Neck/Nose": _UPPER_NECK,
    "Head": _HEAD_CENTRE,
    "LShoulder": (("L_Shoulder", 1.0),), "LElbow": (("L_Elbow", 1.0),), "LWrist": (("L_Wrist", 1.0),),
    "RShoulder": (("R_Shoulder", 1.0),), "RElbow": (("R_Elbow", 1.0),), "RWrist": (("R_Wrist", 1.0),),
}
#: SPIN's 24 part joints. The 17 that SPIN's evaluation pairs with H36M joints (``J24_TO_J17`` <->
#: ``H36M_TO_J17``) use the same definitions, so the two regressors agree exactly on them: Neck (LSP) =
#: Thorax, Top of Head (LSP) = crown, Pelvis (MPII) = Pelvis, Thorax (MPII) = midway between the shoulder
#: joints, Spine / Jaw / Head (H36M) = Spine / Neck/Nose / Head; nose, eyes and ears are Anny's COCO points.
#: Anny COCO keypoint of each face point among smplx's vertex picks (:data:`VERTEX_JOINT_NAMES`).
COCO_OF_VERTEX_JOINT: dict[str, str] = {
    "nose": "nose", "reye": "right_eye", "leye": "left_eye", "rear": "right_ear", "lear": "left_ear",
}
#: Toe tips = foot vertices beyond this quantile along ankle -> toe; the heel = those below HEEL_QUANTILE.
TOE_QUANTILE: float = 0.9
HEEL_QUANTILE: float = 0.05
SPIN_PART_DEFINITIONS: dict[str, PointDef] = {
    "Right Ankle": (("R_Ankle", 1.0),), "Right Knee": (("R_Knee", 1.0),), "Right Hip": (("R_Hip", 1.0),),
    "Left Hip": (("L_Hip", 1.0),), "Left Knee": (("L_Knee", 1.0),), "Left Ankle": (("L_Ankle", 1.0),),
    "Right Wrist": (("R_Wrist", 1.0),), "Right Elbow": (("R_Elbow", 1.0),),
    "Right Shoulder": (("R_Shoulder", 1.0),), "Left Shoulder": (("L_Shoulder", 1.0),),
    "Left Elbow": (("L_Elbow", 1.0),), "Left Wrist": (("L_Wrist", 1.0),),
    "Neck (LSP)": _STERNAL_NOTCH,
    "Top of Head (LSP)": (("crown", 1.0),),
    "Pelvis (MPII)": _MID_HIPS,
    "Thorax (MPII)": (("L_Shoulder", 0.5), ("R_Shoulder", 0.5)),
    "Spine (H36M)": H36M_DEFINITIONS["Spine"],
    "Jaw (H36M)": _UPPER_NECK,
    "Head (H36M)": _HEAD_CENTRE,
    "Nose": (("coco:nose", 1.0),),
    "Left Eye": (("coco:left_eye", 1.0),), "Right Eye": (("coco:right_eye", 1.0),),
    "Left Ear": (("coco:left_ear", 1.0),), "Right Ear": (("coco:right_ear", 1.0),),
}


# --------------------------------------------------------------------------------------------------------
# Bone merge
# --------------------------------------------------------------------------------------------------------


def smpl_joint_of_bone(name: str, parent: str | None = None, parent_joint: int | None = None) -> int:
    """SMPL joint (index into :data:`SMPL_JOINT_NAMES`) that an Anny bone merges into.

    Rules, in order: primary bones (:data:`PRIMARY_BONES`); :data:`EXTRA_BONES` (the rig's ``Root``);
    finger bones ``{finger}_NN_{l,r}`` -> ``L_Hand`` / ``R_Hand``; any other bone (twist, roll or leaf
    bones of other rigs) merges into its parent's joint.

    Args:
        name: Anny bone label.
        parent: label of its parent bone (only used in the error message).
        parent_joint: joint the parent merges into, or None for a root bone.

    Raises:
        ValueError: an unknown root bone (nothing to inherit from).
    """
    primary = {bone: SMPL_JOINT_NAMES.index(joint) for joint, bone in PRIMARY_BONES.items()}
    if name in primary:
        return primary[name]
    if name in EXTRA_BONES:
        return SMPL_JOINT_NAMES.index(EXTRA_BONES[name])
    if _is_finger(name):
        return SMPL_JOINT_NAMES.index("L_Hand" if name.endswith("_l") else "R_Hand")
    if parent_joint is None:
        raise ValueError(f"Anny bone {name!r} (parent {parent!r}) has no SMPL joint in the bone merge")
    return parent_joint


def _is_finger(name: str) -> bool:
    """Whether ``name`` is a finger bone ``{finger}_NN_{l,r}``."""
    parts = name.split("_")
    return len(parts) == 3 and parts[0] in FINGERS and parts[1].isdigit() and parts[2] in ("l", "r")


def bone_merge(bone_labels: Sequence[str], bone_parents: Sequence[int]) -> np.ndarray:
    """SMPL joint of every Anny bone, (num_bones,) int64 (bones are ordered parents first, as in Anny).

    Raises:
        ValueError: a root bone with no rule, or a primary bone of :data:`PRIMARY_BONES` missing.
    """
    joints = np.empty(len(bone_labels), dtype=np.int64)
    for b, (name, parent) in enumerate(zip(bone_labels, bone_parents, strict=True)):
        if parent >= b:
            raise ValueError(f"bone {name!r} comes before its parent: expected parents-first bone order")
        parent_joint = int(joints[parent]) if parent >= 0 else None
        joints[b] = smpl_joint_of_bone(name, bone_labels[parent] if parent >= 0 else None, parent_joint)
        if parent >= 0 and parent_joint == joints[b] and name not in EXTRA_BONES and not _is_finger(name):
            log.info("Anny bone %r merged into its parent's joint %s", name, SMPL_JOINT_NAMES[joints[b]])
    missing = [bone for bone in PRIMARY_BONES.values() if bone not in bone_labels]
    if missing:
        raise ValueError(f"Anny rig lacks the primary bones {missing}; rig {ANNY_RIG!r} expected")
    return joints


def merge_skinning_weights(
    bone_indices: np.ndarray, bone_weights: np.ndarray, bone_joint: np.ndarray, num_joints: int = NUM_SMPL_JOINTS
) -> np.ndarray:
    """Sum per-bone skinning weights into per-joint ones.

    Args:
        bone_indices: (V, K) int, the bones influencing each vertex (Anny's sparse skinning format).
        bone_weights: (V, K) float, their weights (rows sum to 1).
        bone_joint: (num_bones,) int, the SMPL joint of each bone (:func:`bone_merge`).

    Returns:
        (V, num_joints) float64, rows summing to 1.
    """
    num_verts = bone_indices.shape[0]
    weights = np.zeros((num_verts, num_joints))
    rows = np.repeat(np.arange(num_verts), bone_indices.shape[1])
    np.add.at(weights, (rows, bone_joint[bone_indices].ravel()), bone_weights.ravel())
    return weights / weights.sum(axis=1, keepdims=True)


def kintree_table() -> np.ndarray:
    """SMPL's (2, 24) int64 kinematic table: parents (root = 2**32 - 1, as in the official files), ids."""
    parents = [KINTREE_ROOT_PARENT if p < 0 else p for p in SMPL_PARENTS]
    return np.array([parents, list(range(NUM_SMPL_JOINTS))], dtype=np.int64)


# --------------------------------------------------------------------------------------------------------
# Phenotypes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdultPhenotypeSampler:
    """Adult Anny phenotypes from Anny's own calibrated (WHO height-for-age) distributions, seeded.

    Morphological age is uniform in :data:`ADULT_AGE_YEARS`; height, weight, muscle and proportions are
    drawn from Anny's age-conditional Beta distributions for the gender (male tables for gender <= 0.5).
    Heights measured over 400 T-posed bodies: male ~1.78 +- 0.07 m, female ~1.60 +- 0.08 m, neutral
    ~1.70 +- 0.11 m.

    Attributes:
        gender: ``neutral`` (gender phenotype ~ U(0, 1)), ``male`` (0) or ``female`` (1).
    """

    gender: str

    def __post_init__(self) -> None:
        if self.gender not in GENDER_PHENOTYPE:
            raise ValueError(f"unknown gender {self.gender!r}; allowed: {sorted(GENDER_PHENOTYPE)}")

    def sample(self, conv: AnnyToSMPL, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``n`` phenotypes: label -> (n,) float64 tensor for each of the model's ``phenotype_labels``."""
        model, dist = conv.model, conv.shape_distribution
        fixed = GENDER_PHENOTYPE[self.gender]
        gender = np.full(n, fixed) if fixed is not None else rng.uniform(0.0, 1.0, n)
        years = torch.as_tensor(rng.uniform(*ADULT_AGE_YEARS, n), dtype=torch.float64)
        age = dist.morphological_age_mapping.morphological_to_anny_age(years)
        values: dict[str, np.ndarray] = {"gender": gender, "age": age.numpy()}
        male = gender <= GENDER_TABLE_SWITCH
        for key in ("height", "weight", "muscle", "proportions"):
            draws = []
            for table in ("boys", "girls"):
                cond = getattr(dist, f"{table}_conditional_{key}_distribution")
                alpha, beta = cond.get_distribution_params(age)
                draws.append(rng.beta(alpha.numpy(), beta.numpy()))
            values[key] = np.where(male, draws[0], draws[1])
        missing = set(model.phenotype_labels) - set(values)
        if missing:
            raise ValueError(f"Anny exposes phenotypes {sorted(missing)} that the sampler does not draw")
        return {k: torch.as_tensor(values[k], dtype=torch.float64) for k in model.phenotype_labels}


# --------------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------------


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (B, 3, 3) taking directions ``a`` (B, 3) onto ``b`` (B, 3) (not antiparallel)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    if (c < -0.99).any():
        raise ValueError("cannot align nearly opposite directions with a smallest rotation")
    vx = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    return torch.eye(3, dtype=a.dtype) + vx + vx @ vx / (1.0 + c)[:, None, None]


def _rotation_about(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations (B, 3, 3) by ``angle`` (B,) rad about unit ``axis`` (B, 3) (Rodrigues)."""
    k = torch.zeros(axis.shape[0], 3, 3, dtype=axis.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, dtype=axis.dtype) + s * k + (1.0 - c) * k @ k


def _apply(transforms: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) rigid transforms to (..., 3) points."""
    return (transforms[..., :3, :3] @ points[..., None])[..., 0] + transforms[..., :3, 3]


def axis_angle_to_matrix(pose: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3), float64."""
    aa = torch.as_tensor(pose, dtype=torch.float64)
    shape = aa.shape[:-1]
    aa = aa.reshape(-1, 3)
    angle = aa.norm(dim=-1)
    axis = aa / angle.clamp_min(1e-12)[:, None]
    return _rotation_about(axis, angle).reshape(*shape, 3, 3)


def sample_fitting_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random SMPL poses to fit pose-robust regressors: (n, 24, 3) axis-angle, rad, SMPL frame.

    Global orientation is zero; every body joint gets N(0, :data:`FIT_POSE_SIGMA`) per axis plus the
    one-sided flexions of :data:`FIT_POSE_FLEXIONS` (hips, knees, shoulders, elbows).
    """
    pose = rng.normal(0.0, FIT_POSE_SIGMA, size=(n, NUM_SMPL_JOINTS, 3))
    pose[:, 0] = 0.0
    for joint, axis, sign, max_angle in FIT_POSE_FLEXIONS:
        pose[:, SMPL_JOINT_NAMES.index(joint), axis] += sign * rng.uniform(0.0, max_angle, n)
    return pose


# --------------------------------------------------------------------------------------------------------
# Anny in SMPL's T-pose and frame
# --------------------------------------------------------------------------------------------------------


@dataclass
class TPosedBodies:
    """A batch of Anny bodies re-posed into SMPL's T-pose.

    Attributes:
        vertices: (B, V, 3) float64, metres, SMPL frame: the SMPL rest meshes.
        joints: (B, 24, 3) float64, metres, SMPL frame: the merged-bone joint positions.
        rest: Anny's rest model of the batch (``rest_vertices`` (B, V, 3), ``rest_bone_heads`` (B, N, 3),
            ``rest_bone_poses`` (B, N, 4, 4), Anny frame, A-pose).
        deltas: (B, N, 4, 4) float64, Anny ``local-ref`` deltas of the T-pose (N = number of bones).
        transforms: (B, N, 4, 4) float64, Anny frame: each bone's rigid map from A-pose to T-pose.
    """

    vertices: np.ndarray
    joints: np.ndarray
    rest: dict[str, torch.Tensor]
    deltas: torch.Tensor
    transforms: torch.Tensor


class AnnyToSMPL:
    """Anny (``rig="game_engine"``) seen as an SMPL-format model: bone merge, frames, T-pose, posing.

    Args:
        model: an ``anny.Anny`` built with :data:`ANNY_RIG`; built here when None (about 45 s the first
            time on a machine, while Warp compiles its skinning kernel, then ~2 s).
    """

    def __init__(self, model: anny.Anny | None = None) -> None:
        if model is None:
            import anny

            model = anny.Anny(rig=ANNY_RIG)
        # deltas_from_smpl_pose relies on local-ref deltas acting in world axes about rest heads: no
        # reference orientations and an identity-oriented root.
        if model.reference_bone_orientations is not None or not model.root_identity_orientation:
            raise ValueError("Anny model must have no reference bone orientations and an identity root")
        self.model = model
        self.bone_labels: list[str] = list(model.bone_labels)
        self.bone_parents = np.asarray(model.bone_parents, dtype=np.int64)
        self.bone_joint = bone_merge(self.bone_labels, self.bone_parents.tolist())
        self.faces = model.get_triangular_faces().cpu().numpy().astype(np.int64)
        self.weights = merge_skinning_weights(
            model.vertex_bone_indices.cpu().numpy(), model.vertex_bone_weights.cpu().numpy(), self.bone_joint
        )
        self.num_vertices = int(self.weights.shape[0])
        self._primary = {SMPL_JOINT_NAMES.index(joint): self.bone(bone) for joint, bone in PRIMARY_BONES.items()}
        self._knuckles = {
            SMPL_JOINT_NAMES.index(f"{s.upper()}_Hand"): [self.bone(f"{f}_01_{s}") for f in HAND_KNUCKLE_FINGERS]
            for s in ("l", "r")
        }
        # The bones that carry each joint's rotation: those whose parent belongs to another joint (or none).
        self._group_tops = [
            b for b in range(len(self.bone_labels))
            if self.bone_parents[b] < 0 or self.bone_joint[self.bone_parents[b]] != self.bone_joint[b]
        ]
        self._to_smpl = torch.as_tensor(ANNY_TO_SMPL)
        self._shape_distribution: Any = None

    @property
    def shape_distribution(self) -> Any:
        """Anny's calibrated ``SimpleShapeDistribution`` for the model (loaded on first use)."""
        if self._shape_distribution is None:
            from anny.shape_distribution import SimpleShapeDistribution

            self._shape_distribution = SimpleShapeDistribution(self.model)
        return self._shape_distribution

    # ---- small helpers ----
    def bone(self, name: str) -> int:
        """Index of the Anny bone ``name``."""
        return self.bone_labels.index(name)

    def to_smpl(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) points from Anny's frame to SMPL's."""
        return points @ self._to_smpl.T

    def from_smpl(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) points from SMPL's frame to Anny's."""
        return points @ self._to_smpl

    def coco_regressor(self) -> tuple[list[str], np.ndarray]:
        """Anny's COCO keypoint regressor: labels and (K, V) non-negative weights, rows summing to 1."""
        from anny.keypoints import KeypointsRegressor

        coco = KeypointsRegressor.coco(self.model)
        weights = coco.regression_weights.cpu().numpy().astype(np.float64)
        return list(coco.labels), weights / weights.sum(axis=1, keepdims=True)  # stored sums are 1 +- 1e-7

    # ---- Anny calls ----
    def rest(self, phenotypes: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Anny's rest (A-pose) model for a batch of phenotypes (label -> (B,) tensors), Anny frame."""
        coeffs = self.model.get_phenotype_blendshape_coefficients(**phenotypes)
        return self.model.get_rest_model(coeffs)

    def skin(self, rest: dict[str, torch.Tensor], deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anny's own forward kinematics and skinning.

        Args:
            rest: :meth:`rest` output, batch B.
            deltas: (B, N, 4, 4) ``local-ref`` deltas.

        Returns:
            vertices (B, V, 3) and bone transforms (B, N, 4, 4) (rest -> posed), Anny frame.
        """
        transforms, _ = self.model.get_bone_transforms(
            deltas, rest["rest_bone_poses"], pose_parameterization="local-ref"
        )
        verts = self.model.get_skinned_vertices(rest["rest_vertices"].expand(deltas.shape[0], -1, -1), transforms)
        return verts, transforms

    # ---- T-pose ----
    def tpose_deltas(self, heads: torch.Tensor) -> torch.Tensor:
        """``local-ref`` deltas (B, N, 4, 4) taking Anny's A-pose to SMPL's T-pose.

        For each side, upper arm, forearm and hand are aimed (smallest rotations, in chain order) so that
        shoulder->elbow, elbow->wrist and wrist->middle knuckle point along the body's ±x; then the forearm
        is twisted about that axis so that the palm faces down (index knuckle forward of the pinky's, the
        SMPL T-pose). Other bones keep their rest orientation; the root's delta is its rest pose.

        Args:
            heads: (B, N, 3) rest bone heads, Anny frame.
        """
        batch = heads.shape[0]
        deltas = torch.eye(4, dtype=heads.dtype).repeat(batch, len(self.bone_labels), 1, 1)
        root = int(np.flatnonzero(self.bone_parents < 0)[0])
        deltas[:, root, :3, 3] = heads[:, root]  # the root's local-ref delta is its world pose
        forward = self.from_smpl(torch.tensor([0.0, 0.0, 1.0], dtype=heads.dtype))
        for side, sign in (("l", 1.0), ("r", -1.0)):
            target = torch.tensor([sign, 0.0, 0.0], dtype=heads.dtype).expand(batch, 3)
            glob = torch.eye(3, dtype=heads.dtype).expand(batch, 3, 3)  # clavicle and above stay at rest
            for bone, aim in ARM_AIM_CHAIN:
                b, a = self.bone(f"{bone}_{side}"), self.bone(f"{aim}_{side}")
                local_target = (glob.transpose(1, 2) @ target[..., None])[..., 0]
                rot = _rotation_between(heads[:, a] - heads[:, b], local_target)
                deltas[:, b, :3, :3] = rot
                glob = glob @ rot
            # Palm down: twist forearm + hand about ±x until the pinky->index knuckle line points forward.
            across = heads[:, self.bone(f"index_01_{side}")] - heads[:, self.bone(f"pinky_01_{side}")]
            across = (glob @ across[..., None])[..., 0]
            across = across - (across * target).sum(-1, keepdim=True) * target
            angle = torch.atan2(
                (torch.cross(across, forward.expand_as(across), dim=-1) * target).sum(-1),
                (across * forward).sum(-1),
            )
            twist = _rotation_about(target.contiguous(), angle)
            elbow = self.bone(f"lowerarm_{side}")
            upper = deltas[:, self.bone(f"upperarm_{side}"), :3, :3]
            deltas[:, elbow, :3, :3] = upper.transpose(1, 2) @ twist @ upper @ deltas[:, elbow, :3, :3]
        return deltas

    def tposed(self, phenotypes: Mapping[str, torch.Tensor]) -> TPosedBodies:
        """Re-pose a batch of phenotypes into SMPL's T-pose (see :class:`TPosedBodies`)."""
        with torch.no_grad():
            rest = self.rest(phenotypes)
            deltas = self.tpose_deltas(rest["rest_bone_heads"])
            verts, transforms = self.skin(rest, deltas)
            joints = self._joints(rest["rest_bone_heads"], transforms)
        return TPosedBodies(
            vertices=self.to_smpl(verts).numpy(),
            joints=self.to_smpl(joints).numpy(),
            rest=rest,
            deltas=deltas,
            transforms=transforms,
        )

    def _joints(self, heads: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
        """Merged-bone joint positions (B, 24, 3), Anny frame, from rest heads and bone transforms."""
        posed_heads = _apply(transforms, heads)
        joints = torch.zeros(heads.shape[0], NUM_SMPL_JOINTS, 3, dtype=heads.dtype)
        for j, b in self._primary.items():
            joints[:, j] = posed_heads[:, b]
        for j, bones in self._knuckles.items():
            joints[:, j] = posed_heads[:, bones].mean(1)
        return joints

    # ---- SMPL pose -> Anny pose ----
    def deltas_from_smpl_pose(
        self, tpose: TPosedBodies, rotmats: torch.Tensor, transl: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Anny ``local-ref`` deltas (B, N, 4, 4) that reproduce an SMPL pose through the bone merge.

        SMPL rotates joint j's bones by ``R_j`` about the T-posed joint ``J_j``, after its parent's
        transform. In Anny, each bone whose parent belongs to another joint (the top of a merged group;
        e.g. ``thigh_l``, or every ``*_01`` finger bone for ``L_Hand``) gets the delta rotation
        ``Q_pᵀ R_j Q_p D⁰`` (``Q_p``: its parent's T-pose rotation, ``D⁰``: its T-pose delta) about the
        point ``p_j`` = ``J_j`` pulled back to the A-pose; that is a rotation about its own head plus the
        translation ``(Q_pᵀ R_j Q_p - I)(h - p_j)`` (zero for primary bones, whose head is ``J_j``). The
        other bones of the group keep their T-pose deltas and follow rigidly.

        Args:
            tpose: the bodies' :class:`TPosedBodies` (batch B, or 1 to broadcast).
            rotmats: (B, 24, 3, 3) local joint rotations in the SMPL frame (global orientation first).
            transl: optional (B, 3) SMPL translation, metres.
        """
        rot = torch.as_tensor(rotmats, dtype=torch.float64)
        batch = rot.shape[0]
        c = self._to_smpl
        rot_anny = c.T @ rot @ c  # the same rotations in Anny's frame
        deltas = tpose.deltas.expand(batch, -1, -1, -1).clone()
        transforms = tpose.transforms.expand(batch, -1, -1, -1)
        heads = tpose.rest["rest_bone_heads"].expand(batch, -1, -1)
        joints_tpose = self.from_smpl(torch.as_tensor(tpose.joints)).expand(batch, -1, -1)
        eye = torch.eye(3, dtype=torch.float64)
        for b in self._group_tops:
            j = int(self.bone_joint[b])
            parent = int(self.bone_parents[b])
            if parent >= 0:
                q_par = transforms[:, parent, :3, :3]
                # J_j pulled back through the parent's A->T map (q_par, t_par): p = q_parᵀ (J - t_par).
                pivot = (q_par.transpose(1, 2) @ (joints_tpose[:, j] - transforms[:, parent, :3, 3])[..., None])[..., 0]
            else:
                q_par = eye.expand(batch, 3, 3)
                pivot = joints_tpose[:, j]
            local = q_par.transpose(1, 2) @ rot_anny[:, j] @ q_par
            deltas[:, b, :3, :3] = local @ deltas[:, b, :3, :3]
            shift = ((local - eye) @ (heads[:, b] - pivot)[..., None])[..., 0]
            deltas[:, b, :3, 3] = deltas[:, b, :3, 3] + shift
            if parent < 0 and transl is not None:
                deltas[:, b, :3, 3] += self.from_smpl(torch.as_tensor(transl, dtype=torch.float64))
        return deltas

    def posed(
        self, tpose: TPosedBodies, rotmats: torch.Tensor, transl: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose bodies with an SMPL pose through Anny's own kinematics and skinning.

        Args:
            tpose: :class:`TPosedBodies` of batch B (or 1, broadcast over the poses).
            rotmats: (B, 24, 3, 3) SMPL local joint rotations, SMPL frame.
            transl: optional (B, 3) translation, metres.

        Returns:
            vertices (B, V, 3) and merged-bone joints (B, 24, 3), float64, metres, SMPL frame.
        """
        with torch.no_grad():
            deltas = self.deltas_from_smpl_pose(tpose, rotmats, transl)
            rest = tpose.rest
            if rest["rest_vertices"].shape[0] != deltas.shape[0]:
                rest = {k: v.expand(deltas.shape[0], *v.shape[1:]) for k, v in rest.items()}
            verts, transforms = self.skin(rest, deltas)
            joints = self._joints(rest["rest_bone_heads"], transforms)
        return self.to_smpl(verts).numpy(), self.to_smpl(joints).numpy()


def _chunks(n: int, size: int) -> Iterator[int]:
    """Sizes of consecutive chunks covering ``n`` items."""
    for start in range(0, n, size):
        yield min(size, n - start)


# --------------------------------------------------------------------------------------------------------
# Sampling, shape space and regressors
# --------------------------------------------------------------------------------------------------------


@dataclass
class BodySamples:
    """T-posed (and optionally posed) bodies of one phenotype distribution, SMPL frame, metres.

    Attributes:
        vertices: (S, V, 3) T-posed meshes; joints: (S, 24, 3) their merged-bone joints.
        posed_vertices: (P, V, 3) randomly posed meshes (P may be 0); posed_joints: (P, 24, 3).
        heights: (S,) vertical extent of the T-posed meshes, metres.
    """

    vertices: np.ndarray
    joints: np.ndarray
    posed_vertices: np.ndarray
    posed_joints: np.ndarray

    @property
    def heights(self) -> np.ndarray:
        return self.vertices[..., 1].max(1) - self.vertices[..., 1].min(1)


def sample_bodies(
    conv: AnnyToSMPL,
    gender: str,
    n: int,
    rng: np.random.Generator,
    *,
    n_posed: int = 0,
    progress: bool = False,
) -> BodySamples:
    """Draw ``n`` adult phenotypes of ``gender``, T-pose them, and pose the first ``n_posed`` randomly.

    Args:
        conv: the converter. gender: ``neutral``, ``male`` or ``female``. rng: the random stream.
        n_posed: how many of the bodies also get a random pose (:func:`sample_fitting_poses`), <= n.
    """
    if not 0 <= n_posed <= n:
        raise ValueError(f"n_posed must be in [0, n={n}], got {n_posed}")
    sampler = AdultPhenotypeSampler(gender)
    verts, joints, posed_v, posed_j = [], [], [], []
    remaining_posed = n_posed
    chunks = list(_chunks(n, CHUNK))
    for size in tqdm(chunks, desc=f"anny {gender}", unit="chunk", disable=not progress):
        tpose = conv.tposed(sampler.sample(conv, size, rng))
        verts.append(tpose.vertices)
        joints.append(tpose.joints)
        k = min(size, remaining_posed)
        if k > 0:
            rot = axis_angle_to_matrix(sample_fitting_poses(k, rng))
            sub = TPosedBodies(
                vertices=tpose.vertices[:k], joints=tpose.joints[:k],
                rest={key: v[:k] for key, v in tpose.rest.items()},
                deltas=tpose.deltas[:k], transforms=tpose.transforms[:k],
            )
            pv, pj = conv.posed(sub, rot)
            posed_v.append(pv)
            posed_j.append(pj)
            remaining_posed -= k
    empty = np.zeros((0, conv.num_vertices, 3)), np.zeros((0, NUM_SMPL_JOINTS, 3))
    return BodySamples(
        vertices=np.concatenate(verts),
        joints=np.concatenate(joints),
        posed_vertices=np.concatenate(posed_v) if posed_v else empty[0],
        posed_joints=np.concatenate(posed_j) if posed_j else empty[1],
    )


def shape_space(vertices: np.ndarray, num_betas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA shape space of sampled rest meshes.

    Args:
        vertices: (S, V, 3) rest meshes (S > num_betas), metres, SMPL frame (y up).
        num_betas: number of principal directions kept.

    Returns:
        mean: (V, 3) the template.
        shapedirs: (V, 3, num_betas), each direction scaled by its standard deviation so that the sampled
            meshes have betas ~ N(0, 1). Signs: beta 0 grows the body's height, the others have their
            largest-magnitude entry positive.
        explained: (num_betas,) fraction of the total sampled variance each direction explains.
    """
    num_samples = vertices.shape[0]
    if num_samples <= num_betas:
        raise ValueError(f"need more shape samples ({num_samples}) than betas ({num_betas})")
    flat = vertices.reshape(num_samples, -1)
    mean = flat.mean(0)
    centred = flat - mean
    # PCA through the (S, S) Gram matrix: an SVD of the wide (S, 3V) matrix is ~30x slower here.
    eigval, eigvec = np.linalg.eigh(centred @ centred.T)
    order = np.argsort(eigval)[::-1][:num_betas]
    sing = np.sqrt(np.clip(eigval[order], 0.0, None))
    vt = (eigvec[:, order].T @ centred) / sing[:, None]  # unit principal directions (num_betas, 3V)
    var = sing**2 / (num_samples - 1)
    total_var = float((centred**2).sum()) / (num_samples - 1)
    dirs = vt * np.sqrt(var)[:, None]
    mean_v = mean.reshape(-1, 3)
    top, bottom = int(mean_v[:, 1].argmax()), int(mean_v[:, 1].argmin())
    for k in range(num_betas):
        d = dirs[k].reshape(-1, 3)
        growth = d[top, 1] - d[bottom, 1] if k == 0 else dirs[k, np.abs(dirs[k]).argmax()]
        if growth < 0:
            dirs[k] = -dirs[k]
    return mean_v, dirs.T.reshape(-1, 3, num_betas), var / total_var


def fit_vertex_regressor(
    vertices: np.ndarray,
    targets: np.ndarray,
    template: np.ndarray,
    *,
    radius: float = REGRESSOR_RADIUS_M,
    min_candidates: int = REGRESSOR_MIN_CANDIDATES,
    progress: str | None = None,
) -> np.ndarray:
    """Sparse non-negative vertex regressor, rows summing to 1, with ``targets ≈ R @ vertices``.

    The weights ``w`` of a row minimise ``Σ_s ||Σ_i w_i (v_si - t_s)||²`` over the samples s subject to
    ``w >= 0`` and ``Σ w = 1``, over the template vertices within ``radius`` of the point's mean position
    (at least the ``min_candidates`` nearest): NNLS with a heavily weighted sum-to-one row, then
    renormalised. Written relative to each sample's target, the residual is translation-invariant, so the
    constraint never trades against position. NNLS keeps a few tens of non-zeros per row.

    Non-negative weights cannot follow every Anny joint exactly (module doc: ~3 mm mean, ~1 cm at the
    knees); signed least squares can (~0.5 mm) but only with weights whose absolute values sum to 50-130,
    i.e. huge cancellations that break on any mesh off the sampled shapes, so they are not offered.

    Args:
        vertices: (S, V, 3) sample meshes. targets: (S, J, 3) the points to reproduce.
        template: (V, 3) mesh used to pick candidates (e.g. the sample mean).
        progress: tqdm description to show a bar over the rows, or None.

    Returns:
        (J, V) float64.
    """
    num_samples, num_verts, _ = vertices.shape
    reg = np.zeros((targets.shape[1], num_verts))
    for k in tqdm(range(targets.shape[1]), desc=progress, unit="row", disable=progress is None):
        dist = np.linalg.norm(template - targets[:, k].mean(0), axis=1)
        cand = np.flatnonzero(dist < radius)
        if len(cand) < min_candidates:
            cand = np.argsort(dist)[:min_candidates]
        num_candidates = len(cand)
        rel = vertices[:, cand, :] - targets[:, k, None, :]  # (S, C, 3)
        a = rel.transpose(0, 2, 1).reshape(num_samples * 3, num_candidates)
        a = np.vstack([a, np.full((1, num_candidates), SUM_TO_ONE_WEIGHT)])
        b = np.zeros(num_samples * 3 + 1)
        b[-1] = SUM_TO_ONE_WEIGHT
        w, _ = scipy.optimize.nnls(a, b, maxiter=50 * num_candidates)
        reg[k, cand] = w / w.sum()
    return reg


def regress(regressor: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Apply a (J, V) vertex regressor to (S, V, 3) meshes -> (S, J, 3)."""
    return np.matmul(regressor, vertices)


def crown_vertices(template: np.ndarray, vertex_part: np.ndarray) -> np.ndarray:
    """Indices of the head vertices within :data:`CROWN_BAND_M` of the top of a T-posed (y-up) template."""
    head = np.flatnonzero(vertex_part == SMPL_JOINT_NAMES.index("Head"))
    top = template[head, 1].max()
    return head[template[head, 1] > top - CROWN_BAND_M]


def compose_regressor(definitions: Mapping[str, PointDef], sources: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows of convex combinations of source regressor rows.

    Args:
        definitions: point name -> ((source, weight), ...), weights summing to 1.
        sources: source name -> (V,) regressor row (non-negative, summing to 1).

    Returns:
        (len(definitions), V) float64, in the order of ``definitions``.
    """
    rows = []
    for name, terms in definitions.items():
        total = sum(weight for _, weight in terms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"definition of {name!r} has weights summing to {total}, not 1")
        rows.append(sum(weight * sources[src] for src, weight in terms))
    return np.stack(rows)


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a compressed npz atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(path)


def smpl_model_arrays(
    template: np.ndarray, shapedirs: np.ndarray, j_regressor: np.ndarray, weights: np.ndarray, faces: np.ndarray
) -> dict[str, np.ndarray]:
    """The arrays of an SMPL model file, in the dtypes the official files use.

    Returns:
        ``v_template`` (V, 3) float64, ``shapedirs`` (V, 3, B) float64, ``posedirs`` (V, 3, 207) float32
        zeros (float32 halves the pickle; zero either way), ``J_regressor`` (24, V) float64 dense,
        ``weights`` (V, 24) float64, ``kintree_table`` (2, 24) int64, ``f`` (F, 3) int64, and
        ``joint_names`` (24,) str.
    """
    num_verts = template.shape[0]
    return {
        "v_template": np.ascontiguousarray(template, dtype=np.float64),
        "shapedirs": np.ascontiguousarray(shapedirs, dtype=np.float64),
        "posedirs": np.zeros((num_verts, 3, NUM_POSE_BASIS), dtype=np.float32),
        "J_regressor": np.ascontiguousarray(j_regressor, dtype=np.float64),
        "weights": np.ascontiguousarray(weights, dtype=np.float64),
        "kintree_table": kintree_table(),
        "f": np.ascontiguousarray(faces, dtype=np.int64),
        "joint_names": np.array(SMPL_JOINT_NAMES),
    }


def foot_vertex_rows(template: np.ndarray, vertex_part: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """OpenPose's foot points as vertex regressors: (6, V) rows (big toe, small toe, heel; left then right).

    On the T-posed ``template`` (V, 3) with SMPL ``joints`` (24, 3): each foot's vertices (parts ankle and
    toes) furthest along ankle -> toe (top :data:`TOE_QUANTILE`) are the toe tips, split at their median
    lateral coordinate into big toe (inner half) and small toe (outer half); the rearmost ones (bottom
    :data:`HEEL_QUANTILE`) are the heel. Each row averages its vertex set (SMPL's are single-vertex picks).
    """
    rows = []
    for ankle, toe in ((SMPL_JOINT_NAMES.index("L_Ankle"), SMPL_JOINT_NAMES.index("L_Foot")),
                       (SMPL_JOINT_NAMES.index("R_Ankle"), SMPL_JOINT_NAMES.index("R_Foot"))):
        sel = np.flatnonzero(np.isin(vertex_part, (ankle, toe)))
        direction = joints[toe] - joints[ankle]
        direction = direction / max(float(np.linalg.norm(direction)), 1e-9)
        along = (template[sel] - joints[ankle]) @ direction
        tips = sel[along > np.quantile(along, TOE_QUANTILE)]
        outward = np.sign(joints[ankle, 0] - joints[0, 0])  # the foot's own outer side along x
        lateral = outward * template[tips, 0]
        inner, outer = tips[lateral <= np.median(lateral)], tips[lateral > np.median(lateral)]
        heel = sel[along < np.quantile(along, HEEL_QUANTILE)]
        for verts in (inner, outer if outer.size else tips, heel):
            row = np.zeros(template.shape[0])
            row[verts] = 1.0 / verts.size
            rows.append(row)
    return np.stack(rows)


def landmark_regressors(
    conv: AnnyToSMPL, samples: BodySamples, template: np.ndarray, vertex_part: np.ndarray, progress: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """The vertex regressors of ``joint_regressors.npz``: H36M-17 (:data:`H36M_DEFINITIONS`), SPIN's 9 extra
    joints (the :data:`SPIN_PART_DEFINITIONS` of :data:`~pipeline.body.spin_joints.EXTRA_JOINT_NAMES`) and the
    11 vertex picks of :data:`~pipeline.body.spin_joints.VERTEX_JOINT_NAMES` (Anny's COCO nose, eyes and ears;
    :func:`foot_vertex_rows`).

    The SMPL-joint sources are fitted by :func:`fit_vertex_regressor` over the T-posed *and* posed bodies
    of ``samples`` (they are applied to posed meshes); the crown is :func:`crown_vertices` of ``template``;
    the COCO points are Anny's regressor.

    Args:
        conv: the converter. samples: neutral bodies with posed ones. template: (V, 3) neutral template.
        vertex_part: (V,) part of each vertex. progress: show a tqdm bar over the fitted joints.

    Returns:
        ``{"h36m": (17, V), "extra": (9, V), "vertex_joints": (11, V)}``, the crown vertex indices, and
        in-sample mean errors (mm) of the fitted regressors vs their exact definitions on the rest and the
        posed bodies.
    """
    if tuple(H36M_DEFINITIONS) != H36M_JOINT_NAMES or tuple(SPIN_PART_DEFINITIONS) != SPIN_PART_NAMES:
        raise ValueError("landmark definitions do not follow the H36M / SPIN joint orders")
    extra_definitions = {name: SPIN_PART_DEFINITIONS[name] for name in EXTRA_JOINT_NAMES}
    vertices = np.concatenate([samples.vertices, samples.posed_vertices])
    joints = np.concatenate([samples.joints, samples.posed_joints])
    joint_rows = fit_vertex_regressor(vertices, joints, template, progress="NNLS landmarks" if progress else None)
    crown = crown_vertices(template, vertex_part)
    crown_row = np.zeros(conv.num_vertices)
    crown_row[crown] = 1.0 / len(crown)
    coco_labels, coco_weights = conv.coco_regressor()
    coco = {label: coco_weights[k] for k, label in enumerate(coco_labels)}
    vertex_defined = {"crown": crown_row, **{f"coco:{label}": row for label, row in coco.items()}}
    sources = {**{name: joint_rows[j] for j, name in enumerate(SMPL_JOINT_NAMES)}, **vertex_defined}
    faces = [coco[COCO_OF_VERTEX_JOINT[name]] for name in VERTEX_JOINT_NAMES[:len(COCO_OF_VERTEX_JOINT)]]
    regressors = {
        "h36m": compose_regressor(H36M_DEFINITIONS, sources),
        "extra": compose_regressor(extra_definitions, sources),
        "vertex_joints": np.concatenate([np.stack(faces), foot_vertex_rows(template, vertex_part,
                                                                           regress(joint_rows, template[None])[0])]),
    }
    errors: dict[str, float] = {}
    for key, definitions in (("h36m", H36M_DEFINITIONS), ("extra", extra_definitions)):
        for kind, verts, exact_joints in (("rest", samples.vertices, samples.joints),
                                          ("posed", samples.posed_vertices, samples.posed_joints)):
            if len(verts):
                exact = _definition_targets(definitions, verts, exact_joints, vertex_defined)
                error = np.linalg.norm(regress(regressors[key], verts) - exact, axis=-1).mean()
                errors[f"{key}_{kind}"] = 1e3 * float(error)
    return regressors, crown, errors


def _definition_targets(
    definitions: Mapping[str, PointDef],
    vertices: np.ndarray,
    joints: np.ndarray,
    vertex_defined: Mapping[str, np.ndarray],
) -> np.ndarray:
    """Exact positions (S, P, 3) of defined points: SMPL-joint sources from ``joints`` (S, 24, 3), and
    vertex-defined sources (crown, COCO; name -> (V,) weights) applied to ``vertices`` (S, V, 3)."""
    out = np.zeros((vertices.shape[0], len(definitions), 3))
    for p, terms in enumerate(definitions.values()):
        for src, weight in terms:
            if src in vertex_defined:
                point = vertices.transpose(0, 2, 1) @ vertex_defined[src]
            else:
                point = joints[:, SMPL_JOINT_NAMES.index(src)]
            out[:, p] += weight * point
    return out


def build_open_body_model(
    out_dir: str | Path,
    *,
    n_shape_samples: int,
    seed: int,
    num_betas: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert Anny into SMPL-format model files.

    Writes into ``out_dir`` (each file atomically):

    - ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` (compressed) and ``.pkl`` (the same arrays, see
      :func:`smpl_model_arrays`); ``smplx.SMPL(model_path=out_dir, gender=...)`` loads the ``.pkl``.
    - ``joint_regressors.npz``: ``h36m`` (17, V), ``extra`` (9, V), ``vertex_joints`` (11, V) (the layout of
      :mod:`pipeline.body.spin_joints`), ``smpl`` (24, V) (the neutral ``J_regressor``), plus their names
      and ``crown_vertices``.
    - ``parts.npz``: ``vertex_part`` (V,) int64 (argmax of the skinning weights) and ``part_names`` (24,).

    Args:
        out_dir: output folder (created).
        n_shape_samples: phenotypes sampled per gender (> num_betas; 400 in the default config, 120 in
            the tests); the neutral ones are also posed once each for the landmark regressors.
        seed: seed of every random draw (phenotypes and fitting poses); same seed, same files.
        num_betas: principal shape directions kept.
        progress: show tqdm bars.

    Returns:
        Report: ``num_vertices``, ``num_faces``, ``num_betas``, ``n_shape_samples``, ``seed``,
        ``explained_variance`` (gender -> fraction of sampled shape variance the betas explain),
        ``explained_variance_per_beta``, ``height_m`` (gender -> mean/std of sampled heights),
        ``joint_regressor_error_mm`` (in-sample mean errors: ``smpl_<gender>`` vs merged-bone joints;
        ``h36m`` / ``extra`` ``_rest`` / ``_posed`` vs their definitions), ``seconds`` (per phase and
        ``total``).
    """
    if num_betas < 1 or n_shape_samples <= num_betas:
        raise ValueError(f"need 1 <= num_betas < n_shape_samples, got {num_betas} and {n_shape_samples}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conv = AnnyToSMPL()
    seconds = {"anny_init": time.perf_counter() - start, "sampling": 0.0, "fitting": 0.0, "writing": 0.0}
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(GENDER_FILES))]
    vertex_part = vertex_parts_from_weights(conv.weights)
    report: dict[str, Any] = {
        "num_vertices": conv.num_vertices, "num_faces": int(conv.faces.shape[0]), "num_betas": num_betas,
        "n_shape_samples": n_shape_samples, "seed": seed, "explained_variance": {},
        "explained_variance_per_beta": {}, "height_m": {}, "joint_regressor_error_mm": {},
    }
    neutral: tuple[BodySamples, np.ndarray, np.ndarray] | None = None
    for (gender, stem), rng in zip(GENDER_FILES.items(), streams, strict=True):
        t = time.perf_counter()
        n_posed = n_shape_samples if gender == "neutral" else 0
        samples = sample_bodies(conv, gender, n_shape_samples, rng, n_posed=n_posed, progress=progress)
        seconds["sampling"] += time.perf_counter() - t
        t = time.perf_counter()
        template, shapedirs, explained = shape_space(samples.vertices, num_betas)
        j_reg = fit_vertex_regressor(samples.vertices, samples.joints, template,
                                     progress=f"NNLS J_regressor {gender}" if progress else None)
        err = 1e3 * float(np.linalg.norm(regress(j_reg, samples.vertices) - samples.joints, axis=-1).mean())
        seconds["fitting"] += time.perf_counter() - t
        t = time.perf_counter()
        arrays = smpl_model_arrays(template, shapedirs, j_reg, conv.weights, conv.faces)
        _save_npz(out_dir / f"{stem}.npz", arrays)
        save_smpl_pickle(arrays, out_dir / f"{stem}.pkl")
        seconds["writing"] += time.perf_counter() - t
        report["explained_variance"][gender] = float(explained.sum())
        report["explained_variance_per_beta"][gender] = explained.tolist()
        report["height_m"][gender] = {"mean": float(samples.heights.mean()), "std": float(samples.heights.std())}
        report["joint_regressor_error_mm"][f"smpl_{gender}"] = err
        log.info("%s: %d betas explain %.4f%% of the shape variance; J_regressor fit %.2f mm",
                 gender, num_betas, 100 * explained.sum(), err)
        if gender == "neutral":
            neutral = (samples, template, j_reg)
    assert neutral is not None  # GENDER_FILES starts with neutral
    samples, template, j_reg = neutral

    t = time.perf_counter()
    regressors, crown, errors = landmark_regressors(conv, samples, template, vertex_part, progress)
    report["joint_regressor_error_mm"].update(errors)
    seconds["fitting"] += time.perf_counter() - t
    t = time.perf_counter()
    _save_npz(out_dir / "joint_regressors.npz", {
        **regressors, **regressor_names(), "smpl": j_reg,
        "smpl_names": np.array(SMPL_JOINT_NAMES), "crown_vertices": crown.astype(np.int64),
    })
    _save_npz(out_dir / "parts.npz", {"vertex_part": vertex_part, "part_names": np.array(SMPL_JOINT_NAMES)})
    seconds["writing"] += time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    report["seconds"] = seconds
    log.info("open body model written to %s in %.1f s", out_dir, seconds["total"])
    return report
