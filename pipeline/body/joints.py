"""Joint names, kinematic tree, joint subsets and flip permutations (SMPL, SPIN, Human3.6M conventions).

Index lists follow SPIN's ``constants.py`` (../shared/reference/DSR_SPIN_EFT_NOTES.md C.2). "Left" is
always the body's own left. Everything here is a plain tuple so that importing the module has no cost.

Human3.6M order. SPIN's ``J_regressor_h36m`` (and the ``S`` arrays of its H36M npz files) follow the order
in which SPIN's preprocessing picks the 32 H3.6M mocap joints, ``h36m_idx = [11, 6, 7, 8, 1, 2, 3, 12,
24, 14, 15, 17, 18, 19, 25, 26, 27]``: mocap joints 6-8 are the *left* leg, so rows 1-3 are the left leg
and rows 4-6 the right one (the opposite of the VideoPose3D order that many repositories print as
"Pelvis, RHip, RKnee, ..."). This is the only order under which SPIN's ``H36M_TO_J17`` pairs each
regressed joint with the same-named one of the 24 ground-truth joints (e.g. ``H36M_TO_J17[0] = 6`` is the
"Right Ankle"), so :data:`H36M_JOINT_NAMES` uses it.
"""

from __future__ import annotations

NUM_SMPL_JOINTS = 24

#: The 24 SMPL joints in SMPL order.
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
    "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)
#: Parent of each SMPL joint (-1 for the pelvis); ``kintree_table[0]`` of an SMPL file.
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: SMPL joint index of each joint under a left/right mirror (SPIN's ``SMPL_JOINTS_FLIP_PERM``).
SMPL_JOINTS_FLIP_PERM: tuple[int, ...] = (
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
)
#: Index permutation of the 72-d axis-angle pose under a mirror (SPIN's ``SMPL_POSE_FLIP_PERM``): permute
#: the joint triplets with :data:`SMPL_JOINTS_FLIP_PERM`, then negate the y and z components (see
#: :data:`SMPL_POSE_FLIP_SIGN`).
SMPL_POSE_FLIP_PERM: tuple[int, ...] = tuple(3 * j + k for j in SMPL_JOINTS_FLIP_PERM for k in range(3))
#: Per-component sign applied after :data:`SMPL_POSE_FLIP_PERM` (x kept, y and z negated), 72 entries.
SMPL_POSE_FLIP_SIGN: tuple[float, ...] = (1.0, -1.0, -1.0) * NUM_SMPL_JOINTS

#: Human3.6M 17 joints in the row order of SPIN's ``J_regressor_h36m`` (left leg first, see module doc).
H36M_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "LHip", "LKnee", "LAnkle", "RHip", "RKnee", "RAnkle", "Spine", "Thorax", "Neck/Nose", "Head",
    "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)
#: H36M-17 index of each joint under a mirror.
H36M_FLIP_PERM: tuple[int, ...] = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)

#: SPIN's 24 ground-truth ("part") joints, in SPIN's order (the ``part`` / ``S`` arrays of its npz files).
SPIN_PART_NAMES: tuple[str, ...] = (
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle", "Right Wrist",
    "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist", "Neck (LSP)",
    "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose",
    "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)
#: SPIN part-24 index of each joint under a mirror (SPIN's ``J24_FLIP_PERM``).
J24_FLIP_PERM: tuple[int, ...] = (
    5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22,
)

#: Rows of the H36M-17 regressor that give the 17 evaluation joints (SPIN's ``H36M_TO_J17``) ...
H36M_TO_J17: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
#: ... and the 14 LSP-order ones used by MPJPE / PA-MPJPE (SPIN's ``H36M_TO_J14``).
H36M_TO_J14: tuple[int, ...] = H36M_TO_J17[:14]
#: The same joints picked from the SPIN part-24 array (SPIN's ``J24_TO_J17`` / ``J24_TO_J14``): ground truth
#: ``S[:, J24_TO_J14]`` pairs element-wise with regressed ``h36m[:, H36M_TO_J14]``.
J24_TO_J17: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17)
J24_TO_J14: tuple[int, ...] = J24_TO_J17[:14]
#: Names of the 14 LSP-order evaluation joints.
J14_NAMES: tuple[str, ...] = tuple(SPIN_PART_NAMES[i] for i in J24_TO_J14)

#: OpenPose BODY_25 joints (the first 25 of SPIN's 49).
OPENPOSE_NAMES: tuple[str, ...] = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow", "OP LWrist",
    "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle", "OP REye", "OP LEye",
    "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
)
OPENPOSE_FLIP_PERM: tuple[int, ...] = (
    0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21,
)
#: SPIN's 49 joints (25 OpenPose + 24 ground truth) under a mirror (SPIN's ``J49_FLIP_PERM``).
J49_FLIP_PERM: tuple[int, ...] = OPENPOSE_FLIP_PERM + tuple(len(OPENPOSE_NAMES) + i for i in J24_FLIP_PERM)
