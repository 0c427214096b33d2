"""Pose and shape error metrics as pure, batched functions (SPIN / DSR semantics).

Every function takes metres and returns metres; the protocols (:mod:`pipeline.evaluate.protocols`) convert
to millimetres. Each accepts either numpy arrays or torch tensors and returns the same kind it was given:
numpy inputs are computed in float64 (evaluation numbers), torch inputs stay on their device and dtype
(validation during training, GPU batches).

``similarity_procrustes`` follows SPIN's ``compute_similarity_transform`` (``utils/pose_utils.py``; notes
C.3) for every sample of a batch at once: centre both point sets, variance of the prediction, SVD of the
3×3 cross-covariance ``K = X̄ᵀ Ȳ``, ``Z = diag(1, 1, sign det(U Vᵀ))`` so that the rotation is proper (never a
reflection), ``R = V Z Uᵀ``, ``s = tr(R K) / var(X)``, ``t = μ_Y − s R μ_X``.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
import torch

#: A batch of arrays, numpy or torch; functions return the kind they were given.
Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Point sets with a variance below this (m², summed over points and axes) are treated as a single point
#: (scale 0) instead of dividing by zero; SPIN would return NaN there.
MIN_VARIANCE: float = 1e-12


class SimilarityTransform(NamedTuple):
    """Result of :func:`similarity_procrustes` for a batch of B point sets of J points.

    aligned: (B, J, 3) ``s · X Rᵀ + t``, the prediction moved onto the target, metres.
    scale: (B,) similarity scale ``s``.
    rotation: (B, 3, 3) proper rotation ``R`` (det +1), acting on column vectors.
    translation: (B, 3) ``t``, metres.
    """

    aligned: np.ndarray | torch.Tensor
    scale: np.ndarray | torch.Tensor
    rotation: np.ndarray | torch.Tensor
    translation: np.ndarray | torch.Tensor


def _check_pair(pred: Array, gt: Array, name: str) -> None:
    if isinstance(pred, torch.Tensor) != isinstance(gt, torch.Tensor):
        raise TypeError(f"{name}: pred and gt must both be numpy arrays or both torch tensors, got "
                        f"{type(pred).__name__} and {type(gt).__name__}")
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have the same shape")
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{name}: expected (N, J, 3) point sets, got {tuple(pred.shape)}")


def _as_float64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def per_joint_errors(pred: Array, gt: Array) -> Array:
    """Euclidean distance per joint, no alignment.

    Args:
        pred: (N, J, 3) predicted joints, metres.
        gt: (N, J, 3) ground-truth joints, metres, same frame.

    Returns:
        (N, J) distances, metres.
    """
    _check_pair(pred, gt, "per_joint_errors")
    if isinstance(pred, torch.Tensor):
        return torch.linalg.vector_norm(pred - gt, dim=-1)
    return np.linalg.norm(_as_float64(pred) - _as_float64(gt), axis=-1)


def mpjpe(pred: Array, gt: Array) -> Array:
    """Mean per-joint position error per sample, no alignment (the caller aligns the roots).

    Args:
        pred: (N, J, 3) predicted joints, metres.
        gt: (N, J, 3) ground-truth joints, metres.

    Returns:
        (N,) mean joint distance of each sample, metres.
    """
    return per_joint_errors(pred, gt).mean(-1)


def _procrustes_numpy(x: np.ndarray, y: np.ndarray) -> SimilarityTransform:
    x = _as_float64(x)
    y = _as_float64(y)
    mu_x = x.mean(axis=1, keepdims=True)  # (B, 1, 3)
    mu_y = y.mean(axis=1, keepdims=True)
    xc = x - mu_x
    yc = y - mu_y
    var_x = np.sum(xc**2, axis=(1, 2))  # (B,)
    k = np.einsum("bji,bjk->bik", xc, yc)  # (B, 3, 3) = X̄ᵀ Ȳ (SPIN: X1 X2ᵀ with points as columns)
    u, _, vh = np.linalg.svd(k)
    v = np.swapaxes(vh, -1, -2)
    ut = np.swapaxes(u, -1, -2)
    z = np.broadcast_to(np.eye(3), k.shape).copy()
    z[:, 2, 2] = np.where(np.linalg.det(u @ vh) < 0.0, -1.0, 1.0)
    rot = v @ z @ ut
    scale = np.einsum("bii->b", rot @ k) / np.maximum(var_x, MIN_VARIANCE)
    trans = mu_y[:, 0] - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_x[:, 0])
    aligned = scale[:, None, None] * np.einsum("bij,bnj->bni", rot, x) + trans[:, None, :]
    return SimilarityTransform(aligned=aligned, scale=scale, rotation=rot, translation=trans)


def _procrustes_torch(x: torch.Tensor, y: torch.Tensor) -> SimilarityTransform:
    mu_x = x.mean(dim=1, keepdim=True)
    mu_y = y.mean(dim=1, keepdim=True)
    xc = x - mu_x
    yc = y - mu_y
    var_x = xc.pow(2).sum(dim=(1, 2))
    k = torch.einsum("bji,bjk->bik", xc, yc)
    u, _, vh = torch.linalg.svd(k)
    v = vh.transpose(-1, -2)
    ut = u.transpose(-1, -2)
    sign = torch.where(torch.linalg.det(u @ vh) < 0.0, -1.0, 1.0).to(x.dtype)
    diag = torch.ones(x.shape[0], 3, dtype=x.dtype, device=x.device)
    diag[:, 2] = sign
    rot = v @ torch.diag_embed(diag) @ ut
    scale = torch.einsum("bii->b", rot @ k) / var_x.clamp_min(MIN_VARIANCE)
    trans = mu_y[:, 0] - scale[:, None] * torch.einsum("bij,bj->bi", rot, mu_x[:, 0])
    aligned = scale[:, None, None] * torch.einsum("bij,bnj->bni", rot, x) + trans[:, None, :]
    return SimilarityTransform(aligned=aligned, scale=scale, rotation=rot, translation=trans)


def similarity_procrustes(x: Array, y: Array) -> SimilarityTransform:
    """Best similarity transform (scale, proper rotation, translation) taking each ``x`` onto its ``y``.

    Vectorised over the batch; the same numbers as SPIN's per-sample ``compute_similarity_transform``.

    Args:
        x: (B, J, 3) source points (the prediction), metres.
        y: (B, J, 3) target points (the ground truth), metres.

    Returns:
        :class:`SimilarityTransform` with ``aligned`` (B, J, 3) = ``s · x Rᵀ + t`` and the transform itself,
        as numpy float64 for numpy input, or torch in the input's dtype/device.
    """
    _check_pair(x, y, "similarity_procrustes")
    if isinstance(x, torch.Tensor):
        return _procrustes_torch(x, y)
    return _procrustes_numpy(x, y)


def pa_per_joint_errors(pred: Array, gt: Array) -> Array:
    """Per-joint distance after a per-sample similarity Procrustes alignment of ``pred`` onto ``gt``.

    Args:
        pred: (N, J, 3) predicted joints, metres.
        gt: (N, J, 3) ground-truth joints, metres.

    Returns:
        (N, J) distances, metres.
    """
    aligned = similarity_procrustes(pred, gt).aligned
    return per_joint_errors(aligned, gt if isinstance(aligned, torch.Tensor) else _as_float64(gt))


def pa_mpjpe(pred: Array, gt: Array) -> Array:
    """Procrustes-aligned MPJPE ("reconstruction error") per sample.

    Args:
        pred: (N, J, 3) predicted joints, metres.
        gt: (N, J, 3) ground-truth joints, metres.

    Returns:
        (N,) mean joint distance after aligning each sample with :func:`similarity_procrustes`, metres.
    """
    return pa_per_joint_errors(pred, gt).mean(-1)


def pve(pred_vertices: Array, gt_vertices: Array) -> Array:
    """Per-vertex error per sample, **without** any alignment (DSR / VIBE / PARE "V2V" on 3DPW).

    Args:
        pred_vertices: (N, V, 3) predicted mesh vertices, metres.
        gt_vertices: (N, V, 3) ground-truth vertices of the same topology, metres, same frame.

    Returns:
        (N,) mean vertex distance, metres.
    """
    _check_pair(pred_vertices, gt_vertices, "pve")
    return per_joint_errors(pred_vertices, gt_vertices).mean(-1)
