"""Standard (SPIN/EFT) supervision terms, one small function each (paper Eq. 1, ``L_SD``).

Every function mirrors SPIN's ``train/trainer.py`` (../shared/reference/DSR_SPIN_EFT_NOTES.md A.7, C.6) and
returns an *unweighted* 0-d tensor; weights and the global ×60 live in :mod:`pipeline.losses.composite`.
Reductions follow SPIN exactly (e.g. the confidence-weighted MSE is a plain ``mean`` over batch, joints and
coordinates, so zero-confidence joints still count in the denominator). Sample selection by flags is done with
masks, not boolean indexing (no host synchronisation on GPU); a term with no supervised sample in the batch
returns an exact zero that is still connected to the prediction (so ``backward`` always works).
"""

from __future__ import annotations

import torch

from pipeline.model.geometry import axis_angle_to_rotmat

NUM_SMPL_JOINTS = 24
#: SPIN's 49 keypoints start with the 25 OpenPose BODY_25 detections, then 24 ground-truth joints.
NUM_OPENPOSE_JOINTS = 25
#: SPIN ``openpose_train_weight``: OpenPose detections are not supervised by default.
OPENPOSE_TRAIN_WEIGHT = 0.0
#: SPIN ``gt_train_weight``.
GT_TRAIN_WEIGHT = 1.0
#: Pelvis of SPIN's 24 ground-truth joints = mean of "Right Hip" (2) and "Left Hip" (3).
PELVIS_JOINTS: tuple[int, int] = (2, 3)
#: SPIN's camera term ``exp(-CAMERA_SCALE_FACTOR * s)²`` keeps the weak-perspective scale (depth) positive.
CAMERA_SCALE_FACTOR = 10.0


def _masked_mean(values: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, ...) over the samples whose flag is set: equals ``values[flags].mean()`` (SPIN's
    boolean selection) but without a host sync, and is an exact 0 still connected to ``values`` when no flag
    is set."""
    if flags.shape != values.shape[:1]:
        raise ValueError(f"sample flags must have shape ({values.shape[0]},), got {tuple(flags.shape)}")
    weight = flags.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
    per_sample = values[0].numel()
    return (values * weight).sum() / (weight.sum() * per_sample).clamp_min(1.0)


def keypoint_2d_loss(
    pred_keypoints_2d: torch.Tensor,
    gt_keypoints_2d: torch.Tensor,
    openpose_weight: float = OPENPOSE_TRAIN_WEIGHT,
    gt_weight: float = GT_TRAIN_WEIGHT,
    num_openpose: int = NUM_OPENPOSE_JOINTS,
) -> torch.Tensor:
    """Confidence-weighted 2D reprojection MSE (SPIN ``keypoint_loss``).

    Args:
        pred_keypoints_2d: (B, J, 2) float, projected joints in normalised crop coordinates ([-1, 1] =
            pixel / (S/2) − 1 with the principal point at the centre).
        gt_keypoints_2d: (B, J, 3) float, ``(x, y, confidence)`` in the same coordinates; confidence 0 = missing.
        openpose_weight: multiplier of the confidences of the first ``num_openpose`` joints.
        gt_weight: multiplier of the confidences of the remaining (ground-truth) joints.
        num_openpose: how many leading joints are OpenPose detections (25 for SPIN's 49 joints; 0 when only the
            24 ground-truth joints are passed).

    Returns:
        0-d tensor ``mean_{b,j,c}(w_j · conf_bj · (pred − gt)²)``.
    """
    if (
        pred_keypoints_2d.shape[:-1] != gt_keypoints_2d.shape[:-1]
        or pred_keypoints_2d.shape[-1] != 2
        or gt_keypoints_2d.shape[-1] != 3
    ):
        raise ValueError(
            f"keypoint_2d_loss expects pred (B, J, 2) and gt (B, J, 3), got {tuple(pred_keypoints_2d.shape)} "
            f"and {tuple(gt_keypoints_2d.shape)}"
        )
    conf = gt_keypoints_2d[..., 2:].clone()
    conf[:, :num_openpose] *= openpose_weight
    conf[:, num_openpose:] *= gt_weight
    return (conf * (pred_keypoints_2d - gt_keypoints_2d[..., :2]) ** 2).mean()


def keypoint_3d_loss(
    pred_joints_3d: torch.Tensor,
    gt_joints_3d: torch.Tensor,
    has_pose_3d: torch.Tensor,
    pelvis: tuple[int, int] = PELVIS_JOINTS,
) -> torch.Tensor:
    """Pelvis-centred, confidence-weighted 3D joint MSE on samples with 3D ground truth (SPIN).

    Args:
        pred_joints_3d: (B, J, 3) float, metres: predicted joints in SPIN's 24 ground-truth order (SPIN's
            ``pred_joints[:, 25:]``).
        gt_joints_3d: (B, J, 4) float: ``S`` of the npz, metres + confidence.
        has_pose_3d: (B,) bool/int flags.
        pelvis: the two joints whose midpoint is the pelvis (Right Hip, Left Hip).

    Returns:
        0-d tensor: ``mean(conf · (pred_c − gt_c)²)`` over the supervised samples (both centred on their own
        pelvis); exact 0 if no sample has 3D ground truth.
    """
    if (
        pred_joints_3d.shape[:-1] != gt_joints_3d.shape[:-1]
        or pred_joints_3d.shape[-1] != 3
        or gt_joints_3d.shape[-1] != 4
    ):
        raise ValueError(
            f"keypoint_3d_loss expects pred (B, J, 3) and gt (B, J, 4), got {tuple(pred_joints_3d.shape)} "
            f"and {tuple(gt_joints_3d.shape)}"
        )
    conf, gt_xyz = gt_joints_3d[..., 3:], gt_joints_3d[..., :3]
    a, b = pelvis
    gt_xyz = gt_xyz - 0.5 * (gt_xyz[:, a] + gt_xyz[:, b])[:, None]
    pred = pred_joints_3d - 0.5 * (pred_joints_3d[:, a] + pred_joints_3d[:, b])[:, None]
    return _masked_mean(conf * (pred - gt_xyz) ** 2, has_pose_3d)


def smpl_param_loss(
    pred_rotmat: torch.Tensor,
    pred_betas: torch.Tensor,
    gt_pose: torch.Tensor,
    gt_betas: torch.Tensor,
    has_smpl: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL parameter regression (SPIN ``smpl_losses``): rotation-matrix MSE and betas MSE.

    Args:
        pred_rotmat: (B, 24, 3, 3) predicted joint rotations.
        pred_betas: (B, num_betas).
        gt_pose: (B, 72) axis-angle (radians, global orientation first) or (B, 24, 3, 3) rotation matrices.
        gt_betas: (B, num_betas).
        has_smpl: (B,) bool/int flags (GT or valid pseudo-GT fits, e.g. EFT).

    Returns:
        ``(loss_pose, loss_betas)``: 0-d tensors, ``mean`` over the supervised samples' matrix entries /
        betas; exact zeros if no sample has SMPL parameters.
    """
    if gt_pose.shape[-2:] == (3, 3):
        gt_rotmat = gt_pose
    else:
        gt_rotmat = axis_angle_to_rotmat(gt_pose.reshape(-1, NUM_SMPL_JOINTS, 3))
    gt_rotmat = gt_rotmat.reshape(-1, NUM_SMPL_JOINTS, 3, 3)
    if gt_rotmat.shape != pred_rotmat.shape or gt_betas.shape != pred_betas.shape:
        raise ValueError(
            f"smpl_param_loss: shapes differ: rotmat {tuple(pred_rotmat.shape)} vs {tuple(gt_rotmat.shape)}, "
            f"betas {tuple(pred_betas.shape)} vs {tuple(gt_betas.shape)}"
        )
    loss_pose = _masked_mean((pred_rotmat - gt_rotmat.to(pred_rotmat.dtype)) ** 2, has_smpl)
    loss_betas = _masked_mean((pred_betas - gt_betas.to(pred_betas.dtype)) ** 2, has_smpl)
    return loss_pose, loss_betas


def vertex_loss(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor, has_smpl: torch.Tensor) -> torch.Tensor:
    """Per-vertex L1 on samples with SMPL ground truth (SPIN ``shape_loss``; weight 0 in SPIN/DSR).

    Args:
        pred_vertices, gt_vertices: (B, V, 3) metres, same (model) frame.
        has_smpl: (B,) flags.

    Returns:
        0-d tensor ``mean|pred − gt|`` over the supervised samples; exact 0 if none.
    """
    return _masked_mean((pred_vertices - gt_vertices).abs(), has_smpl)


def camera_loss(pred_cam: torch.Tensor) -> torch.Tensor:
    """SPIN's positive-depth term ``mean(exp(−10·s)²)`` on the weak-perspective scale.

    Args:
        pred_cam: (B, 3) ``[s, tx, ty]``.

    Returns:
        0-d tensor.
    """
    return (torch.exp(-CAMERA_SCALE_FACTOR * pred_cam[:, 0]) ** 2).mean()


def betas_prior_loss(pred_betas: torch.Tensor) -> torch.Tensor:
    """Shape prior: ``mean(β²)`` (betas are N(0, 1) under the SMPL shape PCA). Not in SPIN (weight 0 default).

    Args:
        pred_betas: (B, num_betas).

    Returns:
        0-d tensor.
    """
    return (pred_betas**2).mean()
