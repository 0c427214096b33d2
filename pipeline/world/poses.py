"""Plausible SMPL body poses for the open world: a joint-limited sampler plus canonical poses.

Frame: SMPL's (y up, body facing +z, x = the body's left). Poses are axis-angle, radians. With the arms
along ±x in the T-pose, left-elbow flexion is a rotation about −y and right-elbow flexion about +y;
knee flexion is +x, hip flexion −x; lowering the left arm is −z, the right arm +z.
"""

from __future__ import annotations

import numpy as np

NUM_BODY_JOINTS = 23
POSE_STYLES: tuple[str, ...] = ("random", "a_pose", "t_pose", "walking")

# (joint index in SMPL order, (x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi)) — joint limits in radians.
_LIMITS: dict[int, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    1: ((-1.2, 0.35), (-0.35, 0.35), (-0.1, 0.55)),  # L_Hip
    2: ((-1.2, 0.35), (-0.35, 0.35), (-0.55, 0.1)),  # R_Hip
    3: ((-0.15, 0.3), (-0.2, 0.2), (-0.12, 0.12)),  # Spine1
    4: ((0.0, 1.7), (-0.05, 0.05), (-0.05, 0.05)),  # L_Knee
    5: ((0.0, 1.7), (-0.05, 0.05), (-0.05, 0.05)),  # R_Knee
    6: ((-0.1, 0.2), (-0.2, 0.2), (-0.1, 0.1)),  # Spine2
    7: ((-0.35, 0.45), (-0.15, 0.15), (-0.15, 0.15)),  # L_Ankle
    8: ((-0.35, 0.45), (-0.15, 0.15), (-0.15, 0.15)),  # R_Ankle
    9: ((-0.1, 0.2), (-0.2, 0.2), (-0.1, 0.1)),  # Spine3
    10: ((-0.1, 0.1), (-0.05, 0.05), (-0.05, 0.05)),  # L_Foot
    11: ((-0.1, 0.1), (-0.05, 0.05), (-0.05, 0.05)),  # R_Foot
    12: ((-0.25, 0.35), (-0.4, 0.4), (-0.25, 0.25)),  # Neck
    13: ((-0.1, 0.1), (-0.15, 0.15), (-0.2, 0.1)),  # L_Collar
    14: ((-0.1, 0.1), (-0.15, 0.15), (-0.1, 0.2)),  # R_Collar
    15: ((-0.2, 0.3), (-0.35, 0.35), (-0.2, 0.2)),  # Head
    16: ((-0.5, 0.5), (-0.9, 0.5), (-1.3, 0.45)),  # L_Shoulder
    17: ((-0.5, 0.5), (-0.5, 0.9), (-0.45, 1.3)),  # R_Shoulder
    18: ((-0.3, 0.3), (-2.1, 0.0), (-0.1, 0.1)),  # L_Elbow
    19: ((-0.3, 0.3), (0.0, 2.1), (-0.1, 0.1)),  # R_Elbow
    20: ((-0.4, 0.4), (-0.3, 0.3), (-0.5, 0.5)),  # L_Wrist
    21: ((-0.4, 0.4), (-0.3, 0.3), (-0.5, 0.5)),  # R_Wrist
    22: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # L_Hand
    23: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # R_Hand
}


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper axis-angle limits, each (23, 3) float64, for body joints 1..23."""
    lo = np.zeros((NUM_BODY_JOINTS, 3))
    hi = np.zeros((NUM_BODY_JOINTS, 3))
    for joint, ranges in _LIMITS.items():
        for axis, (a, b) in enumerate(ranges):
            lo[joint - 1, axis], hi[joint - 1, axis] = a, b
    return lo, hi


def t_pose() -> np.ndarray:
    """Zero body pose (SMPL's T-pose), (69,)."""
    return np.zeros(NUM_BODY_JOINTS * 3)


def a_pose(arm_drop: float = 0.9) -> np.ndarray:
    """Arms lowered by ``arm_drop`` radians from horizontal, legs slightly apart, (69,)."""
    pose = np.zeros((NUM_BODY_JOINTS, 3))
    pose[16 - 1, 2] = -arm_drop
    pose[17 - 1, 2] = arm_drop
    pose[1 - 1, 2] = 0.08
    pose[2 - 1, 2] = -0.08
    return pose.reshape(-1)


def walking_pose(phase: float, stride: float = 0.45) -> np.ndarray:
    """A walking-like pose at gait ``phase`` (radians): opposite arm/leg swing, trailing knee bent."""
    pose = np.zeros((NUM_BODY_JOINTS, 3))
    swing = stride * np.sin(phase)
    pose[1 - 1, 0] = -swing  # left hip flexes forward when swing > 0
    pose[2 - 1, 0] = swing
    pose[4 - 1, 0] = 0.15 + 0.6 * max(0.0, np.sin(phase + np.pi / 2)) * (swing < 0)  # trailing left knee
    pose[5 - 1, 0] = 0.15 + 0.6 * max(0.0, np.sin(phase + np.pi / 2)) * (swing > 0)
    pose[16 - 1, 2] = -1.2  # arms down
    pose[17 - 1, 2] = 1.2
    pose[16 - 1, 1] = 0.5 * swing  # arms swing opposite to legs
    pose[17 - 1, 1] = 0.5 * swing
    pose[18 - 1, 1] = -0.3
    pose[19 - 1, 1] = 0.3
    return pose.reshape(-1)


def sample_body_pose(rng: np.random.Generator, style: str = "random", activity: float = 0.6) -> np.ndarray:
    """One body pose (69,) axis-angle within the joint limits.

    Args:
        rng: random generator.
        style: ``random`` (uniform within limits scaled by ``activity`` around a relaxed stance),
            ``a_pose``, ``t_pose`` or ``walking``; canonical styles get small random perturbations.
        activity: fraction of each joint range used by ``random``.
    """
    lo, hi = joint_limits()
    if style == "random":
        centre = a_pose(rng.uniform(0.3, 1.2)).reshape(NUM_BODY_JOINTS, 3)
        centre = np.clip(centre, lo, hi)
        sample = rng.uniform(lo, hi)
        pose = centre + activity * (sample - centre)
    elif style == "a_pose":
        pose = a_pose(rng.uniform(0.7, 1.1)).reshape(NUM_BODY_JOINTS, 3) + rng.normal(0, 0.03, (NUM_BODY_JOINTS, 3))
    elif style == "t_pose":
        pose = t_pose().reshape(NUM_BODY_JOINTS, 3) + rng.normal(0, 0.02, (NUM_BODY_JOINTS, 3))
    elif style == "walking":
        pose = walking_pose(rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.55)).reshape(NUM_BODY_JOINTS, 3)
        pose = pose + rng.normal(0, 0.03, (NUM_BODY_JOINTS, 3))
    else:
        raise ValueError(f"unknown pose style {style!r}; allowed: {list(POSE_STYLES)}")
    pose[[22 - 1, 23 - 1]] = 0.0  # fingers at rest: the open model merges them into one joint
    return np.clip(pose, lo, hi).reshape(-1)


def sample_global_orient(rng: np.random.Generator, max_tilt: float = 0.1) -> np.ndarray:
    """Random heading about the vertical (y) axis with a small tilt, axis-angle (3,)."""
    from scipy.spatial.transform import Rotation

    yaw = Rotation.from_rotvec([0.0, rng.uniform(-np.pi, np.pi), 0.0])
    tilt = Rotation.from_rotvec([rng.uniform(-max_tilt, max_tilt), 0.0, rng.uniform(-max_tilt, max_tilt)])
    return (yaw * tilt).as_rotvec()
