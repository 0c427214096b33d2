"""Joint names, kinematic tree, joint subsets and flip permutations (SMPL / SPIN / H36M conventions).

Index lists follow SPIN's ``constants.py`` (see ../shared/reference/DSR_SPIN_EFT_NOTES.md C.2).
"""

from __future__ import annotations

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
    "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)
#: Parent of each SMPL joint (−1 for the pelvis).
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: Human3.6M 17 joints in the order of SPIN's ``J_regressor_h36m``.
H36M_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax", "Neck/Nose", "Head",
    "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)

#: SPIN's 24 ground-truth ("part") joints.
SPIN_PART_NAMES: tuple[str, ...] = (
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle", "Right Wrist",
    "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist", "Neck (LSP)",
    "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose",
    "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)

#: OpenPose BODY_25 joints.
OPENPOSE_NAMES: tuple[str, ...] = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow", "OP LWrist",
    "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle", "OP REye", "OP LEye",
    "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
)

H36M_TO_J17: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
H36M_TO_J14: tuple[int, ...] = H36M_TO_J17[:14]
J24_TO_J17: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17)
J24_TO_J14: tuple[int, ...] = J24_TO_J17[:14]
#: Names of the 14 LSP-order evaluation joints.
J14_NAMES: tuple[str, ...] = tuple(SPIN_PART_NAMES[i] for i in J24_TO_J14)

SMPL_JOINTS_FLIP_PERM: tuple[int, ...] = (
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
)
J24_FLIP_PERM: tuple[int, ...] = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22)
OPENPOSE_FLIP_PERM: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21)
J49_FLIP_PERM: tuple[int, ...] = OPENPOSE_FLIP_PERM + tuple(25 + i for i in J24_FLIP_PERM)


def smpl_pose_flip_perm() -> list[int]:
    """Permutation of the 72-d axis-angle pose under a horizontal flip (then negate y and z components)."""
    return [3 * j + k for j in SMPL_JOINTS_FLIP_PERM for k in range(3)]
