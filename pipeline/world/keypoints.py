"""Ground-truth keypoints of generated people in SPIN's conventions.

``part`` = SPIN's 24 ground-truth joints (regressed from the posed body with the ``spin_part`` regressor),
``openpose`` = BODY_25 "detections" derived from the same body (feet from foot vertices) with pixel noise.
"""

from __future__ import annotations

import numpy as np

# SPIN part-24 indices (see pipeline.body.joints for names).
(R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST,
 NECK_LSP, HEAD_TOP, PELVIS_MPII, THORAX, SPINE_H36M, JAW, HEAD_H36M, NOSE, L_EYE, R_EYE, L_EAR, R_EAR) = range(24)

#: OpenPose BODY_25 joint -> SPIN part joint it is taken from (-1: computed from the feet).
OPENPOSE_FROM_PART: tuple[int, ...] = (
    NOSE, NECK_LSP, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST, PELVIS_MPII, R_HIP, R_KNEE,
    R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR, -1, -1, -1, -1, -1, -1,
)
# BODY_25 feet: LBigToe, LSmallToe, LHeel, RBigToe, RSmallToe, RHeel.
OP_FEET = (19, 20, 21, 22, 23, 24)
#: SMPL part ids of the feet (ankle + toes), left then right.
SMPL_FOOT_PARTS = {"L": (7, 10), "R": (8, 11)}


def foot_points(vertices: np.ndarray, vertex_part: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Big toe, small toe and heel of each foot from the posed body, (6, 3) in BODY_25 order.

    Args:
        vertices: (V, 3) posed body; vertex_part: (V,) SMPL part ids; joints: (24, 3) posed SMPL joints.
    """
    out = []
    for side, (ankle, toe) in (("L", (7, 10)), ("R", (8, 11))):
        sel = vertices[np.isin(vertex_part, SMPL_FOOT_PARTS[side])]
        direction = joints[toe] - joints[ankle]
        direction = direction / max(np.linalg.norm(direction), 1e-9)
        along = (sel - joints[ankle]) @ direction
        tips = sel[along > np.quantile(along, 0.9)]
        lateral_axis = np.sign(joints[ankle, 0] - joints[0, 0]) * np.array([1.0, 0.0, 0.0])
        lat = (tips - tips.mean(0)) @ lateral_axis
        big = tips[lat <= np.median(lat)].mean(0)
        small = tips[lat > np.median(lat)].mean(0) if (lat > np.median(lat)).any() else tips.mean(0)
        heel = sel[along < np.quantile(along, 0.05)].mean(0)
        out.extend([big, small, heel])
    return np.stack(out)


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of world points (N, 3) -> pixels (N, 2) and camera depth (N,) (OpenCV frame)."""
    cam = points @ R.T + t
    z = cam[:, 2]
    uv = cam[:, :2] / np.maximum(z[:, None], 1e-9) * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
    return uv, z


def keypoint_bbox(keypoints: np.ndarray, conf_threshold: float = 0.0, rescale: float = 1.2) -> tuple[np.ndarray, float]:
    """SPIN's person box from keypoints (N, 3): centre (2,) px and scale = rescale · max side / 200."""
    valid = keypoints[:, 2] > conf_threshold
    if not valid.any():
        raise ValueError("no valid keypoints to build a box from")
    pts = keypoints[valid, :2]
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2.0, float(rescale * (hi - lo).max() / 200.0)
