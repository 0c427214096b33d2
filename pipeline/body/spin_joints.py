"""SPIN's 49 joints (25 OpenPose + 24 ground truth), composed exactly as SPIN's ``models/smpl.py`` does.

SPIN concatenates 54 source joints and picks 49 of them through ``JOINT_MAP``
(../shared/reference/DSR_SPIN_EFT_NOTES.md C.2):

* sources 0-23: the SMPL layer's own joints (``J_regressor`` on the *shaped rest* vertices, carried through
  the kinematic chain: no vertex regressor on posed vertices reproduces them);
* sources 24-44: smplx's ``VertexJointSelector`` picks at fixed SMPL vertex ids (nose, eyes, ears, toes,
  heels, then ten finger tips; SPIN's 49 joints use only the first 11);
* sources 45-53: ``J_regressor_extra.npy`` (9 rows) applied to the posed vertices.

Of the 24 ground-truth joints 10 are SMPL joints (ankles, knees, wrists, elbows, shoulders), 9 come from
``J_regressor_extra`` (hips, LSP neck and head top, MPII pelvis and thorax, H36M spine, jaw and head) and 5
are vertex picks (nose, eyes, ears). The regressor file (``assets.joint_regressors``) therefore holds
``h36m`` (17, V) for evaluation, ``extra`` (9, V) and ``vertex_joints`` (11, V, one-hot rows for SMPL): a body
model of another topology (the open world's) provides its own rows with the same meaning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.body.joints import H36M_JOINT_NAMES, NUM_SMPL_JOINTS, OPENPOSE_NAMES, SPIN_PART_NAMES

#: smplx's vertex picks on SMPL's 6,890-vertex mesh that SPIN's 49 joints use, in smplx's order (its
#: ``vertex_ids['smplh']``: nose, eyes and ears, then the feet).
VERTEX_JOINT_NAMES: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
SMPL_VERTEX_IDS: tuple[int, ...] = (332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787)
#: Rows of SPIN's ``J_regressor_extra.npy`` (SPIN sources 45-53).
EXTRA_JOINT_NAMES: tuple[str, ...] = (
    "Right Hip", "Left Hip", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)",
    "Jaw (H36M)", "Head (H36M)",
)
NUM_SMPL_VERTICES: int = 6890

# SPIN's source numbering: 0-23 SMPL joints, 24-44 vertex picks (only 24-34 used), 45-53 J_regressor_extra.
_SPIN_VERTEX0, _SPIN_EXTRA0 = 24, 45
#: SPIN's ``JOINT_MAP`` for the 25 OpenPose joints (source index in SPIN's 54).
OPENPOSE_SOURCES: dict[str, int] = {
    "OP Nose": 24, "OP Neck": 12, "OP RShoulder": 17, "OP RElbow": 19, "OP RWrist": 21, "OP LShoulder": 16,
    "OP LElbow": 18, "OP LWrist": 20, "OP MidHip": 0, "OP RHip": 2, "OP RKnee": 5, "OP RAnkle": 8, "OP LHip": 1,
    "OP LKnee": 4, "OP LAnkle": 7, "OP REye": 25, "OP LEye": 26, "OP REar": 27, "OP LEar": 28, "OP LBigToe": 29,
    "OP LSmallToe": 30, "OP LHeel": 31, "OP RBigToe": 32, "OP RSmallToe": 33, "OP RHeel": 34,
}
#: SPIN's ``JOINT_MAP`` for the 24 ground-truth joints.
GT_SOURCES: dict[str, int] = {
    "Right Ankle": 8, "Right Knee": 5, "Right Hip": 45, "Left Hip": 46, "Left Knee": 4, "Left Ankle": 7,
    "Right Wrist": 21, "Right Elbow": 19, "Right Shoulder": 17, "Left Shoulder": 16, "Left Elbow": 18,
    "Left Wrist": 20, "Neck (LSP)": 47, "Top of Head (LSP)": 48, "Pelvis (MPII)": 49, "Thorax (MPII)": 50,
    "Spine (H36M)": 51, "Jaw (H36M)": 52, "Head (H36M)": 53, "Nose": 24, "Left Eye": 26, "Right Eye": 25,
    "Left Ear": 28, "Right Ear": 27,
}


def _compact(spin_source: int) -> int:
    """SPIN source index -> index into ``cat[smpl 24 | vertex picks 11 | extra 9]``."""
    if spin_source < _SPIN_VERTEX0 + len(VERTEX_JOINT_NAMES):  # SMPL joints and the vertex picks keep theirs
        return spin_source
    if spin_source >= _SPIN_EXTRA0:
        return spin_source - _SPIN_EXTRA0 + NUM_SMPL_JOINTS + len(VERTEX_JOINT_NAMES)
    raise ValueError(f"SPIN source {spin_source} (a finger tip) is not used by the 49 joints")


#: Index of each of SPIN's 49 joints (OpenPose first) in ``cat[smpl joints | vertex picks | extra]``.
J49_SOURCES: tuple[int, ...] = tuple(
    _compact(OPENPOSE_SOURCES[name]) for name in OPENPOSE_NAMES) + tuple(_compact(GT_SOURCES[name]) for name in SPIN_PART_NAMES)
NUM_OPENPOSE: int = len(OPENPOSE_NAMES)
#: Key -> row count of every regressor a ``joint_regressors.npz`` holds.
REGRESSOR_ROWS: dict[str, int] = {"h36m": len(H36M_JOINT_NAMES), "extra": len(EXTRA_JOINT_NAMES),
                                  "vertex_joints": len(VERTEX_JOINT_NAMES)}


def compose_j49(smpl_joints: torch.Tensor, vertices: torch.Tensor, extra: torch.Tensor,
                vertex_joints: torch.Tensor) -> torch.Tensor:
    """SPIN's 49 joints from the posed body.

    Args:
        smpl_joints: (B, 24, 3) the SMPL layer's posed joints.
        vertices: (B, V, 3) posed vertices.
        extra: (9, V) ``J_regressor_extra`` rows. vertex_joints: (11, V) vertex-pick rows.

    Returns:
        (B, 49, 3): 25 OpenPose joints then SPIN's 24 ground-truth joints.
    """
    picked = torch.einsum("jv,bvc->bjc", vertex_joints, vertices)
    regressed = torch.einsum("jv,bvc->bjc", extra, vertices)
    sources = torch.cat([smpl_joints[:, :NUM_SMPL_JOINTS], picked, regressed], dim=1)
    return sources[:, list(J49_SOURCES)]


def smpl_vertex_joint_rows(num_vertices: int = NUM_SMPL_VERTICES) -> np.ndarray:
    """(11, V) one-hot rows of smplx's vertex picks on SMPL's mesh."""
    if num_vertices <= max(SMPL_VERTEX_IDS):
        raise ValueError(f"smplx's vertex ids need SMPL's {NUM_SMPL_VERTICES}-vertex mesh, got {num_vertices} vertices")
    rows = np.zeros((len(SMPL_VERTEX_IDS), num_vertices))
    rows[np.arange(len(SMPL_VERTEX_IDS)), SMPL_VERTEX_IDS] = 1.0
    return rows


def build_spin_regressors(j_regressor_h36m: str | Path, j_regressor_extra: str | Path,
                          num_vertices: int = NUM_SMPL_VERTICES) -> dict[str, np.ndarray]:
    """The ``joint_regressors.npz`` arrays from SPIN's ``J_regressor_h36m.npy`` and ``J_regressor_extra.npy``.

    Returns:
        ``h36m`` (17, V), ``extra`` (9, V), ``vertex_joints`` (11, V) and their names, float64.
    """
    arrays = {}
    for key, path in (("h36m", j_regressor_h36m), ("extra", j_regressor_extra)):
        rows = REGRESSOR_ROWS[key]
        try:
            mat = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: cannot read SPIN's regressor ({err}); download it again from SPIN's "
                             f"data (fetch_data.sh)") from err
        if mat.shape != (rows, num_vertices):
            raise ValueError(f"{path}: expected a ({rows}, {num_vertices}) vertex regressor, got shape "
                             f"{mat.shape}; is it SPIN's file for the {num_vertices}-vertex SMPL mesh?")
        arrays[key] = np.asarray(mat, dtype=np.float64)
    arrays["vertex_joints"] = smpl_vertex_joint_rows(num_vertices)
    return {**arrays, **regressor_names()}


def regressor_names() -> dict[str, np.ndarray]:
    """Row names stored beside the regressors."""
    return {"h36m_names": np.array(H36M_JOINT_NAMES), "extra_names": np.array(EXTRA_JOINT_NAMES),
            "vertex_joint_names": np.array(VERTEX_JOINT_NAMES)}


