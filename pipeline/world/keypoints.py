"""Ground-truth keypoints of generated people in SPIN's conventions.

``part`` = SPIN's 24 ground-truth joints and ``openpose`` = BODY_25 "detections" (SPIN's 25 OpenPose joints
with pixel noise), both from the posed body (:attr:`pipeline.body.model.BodyOutput.joints_j49`).
"""

from __future__ import annotations

import numpy as np

# SPIN part-24 indices (see pipeline.body.joints for names).
(R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST,
 NECK_LSP, HEAD_TOP, PELVIS_MPII, THORAX, SPINE_H36M, JAW, HEAD_H36M, NOSE, L_EYE, R_EYE, L_EAR, R_EAR) = range(24)

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
