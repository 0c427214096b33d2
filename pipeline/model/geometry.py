"""Rotation representations used by the HMR regressor and the SMPL-parameter losses.

Conventions (SPIN's ``utils/geometry.py``, ../shared/reference/DSR_SPIN_EFT_NOTES.md C.4):

* **6D** (Zhou et al., CVPR 2019): the first two *columns* ``a1, a2`` of a rotation matrix, stored as the
  row-major flattening of the 3×2 matrix ``[a1 a2]``, i.e. ``x = (R00, R01, R10, R11, R20, R21)``. SPIN reads
  it with ``x.view(-1, 3, 2)``, so ``a1 = x[0::2]`` and ``a2 = x[1::2]``. ``smpl_mean_params.npz['pose']`` and
  SPIN's ``decpose`` output use this layout, so it must not change.
* Gram–Schmidt: ``b1 = a1/|a1|``, ``b2 = normalise(a2 − (b1·a2) b1)``, ``b3 = b1 × b2``, ``R = [b1 b2 b3]``
  (columns).
* Axis-angle: a 3-vector whose direction is the rotation axis and whose norm is the angle in radians
  (SMPL's ``pose``); rotation matrices act on column vectors (``x' = R x``).

Every function is pure, batched over arbitrary leading dimensions and differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Floor of vector norms before dividing (``F.normalize``'s default).
NORM_EPS: float = 1e-12
#: Below this angle (radians) Rodrigues' formula switches to its second-order Taylor expansion.
SMALL_ANGLE: float = 1e-6


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> rotation matrix (SPIN's Gram–Schmidt convention, see module doc).

    Args:
        x: (..., 6) float, ``(a1x, a2x, a1y, a2y, a1z, a2z)``. A flat (B, 6·J) tensor is *not* accepted: reshape
            it to (B, J, 6) first.

    Returns:
        (..., 3, 3) rotation matrices with columns ``b1, b2, b3``; same dtype/device as ``x``.
    """
    if x.shape[-1] != 6:
        raise ValueError(f"rot6d_to_rotmat expects (..., 6), got shape {tuple(x.shape)}")
    m = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = F.normalize(a1, dim=-1, eps=NORM_EPS)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=NORM_EPS)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> 6D representation (first two columns, SPIN's layout).

    Args:
        rotmat: (..., 3, 3) float rotation matrices.

    Returns:
        (..., 6): ``rot6d_to_rotmat(rotmat_to_rot6d(R)) == R`` for every proper rotation ``R``.
    """
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_rot6d expects (..., 3, 3), got shape {tuple(rotmat.shape)}")
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix ``[v]_x`` (``[v]_x w = v × w``)."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_rotmat(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, exact at zero angle (Taylor branch) and differentiable everywhere.

    Args:
        axis_angle: (..., 3) float, radians (e.g. SMPL ``pose`` reshaped to (B, 24, 3)).

    Returns:
        (..., 3, 3) rotation matrices ``R = I + sin θ/θ [v]_x + (1 − cos θ)/θ² [v]_x²``.
    """
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"axis_angle_to_rotmat expects (..., 3), got shape {tuple(axis_angle.shape)}")
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta_sq < SMALL_ANGLE**2
    theta_sq_safe = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = theta_sq_safe.sqrt()
    a = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0, (1.0 - torch.cos(theta)) / theta_sq_safe)
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> axis-angle (angle in [0, π]) via a unit quaternion (stable near 0 and π).

    Args:
        rotmat: (..., 3, 3) float rotation matrices.

    Returns:
        (..., 3) axis-angle, radians. Identity maps to exactly zero (no NaN, unlike torchgeometry's version
        that SPIN patches by hand).
    """
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_axis_angle expects (..., 3, 3), got shape {tuple(rotmat.shape)}")
    quat = rotmat_to_quaternion(rotmat)
    w, xyz = quat[..., :1], quat[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, w.abs())
    # The quaternion sign is chosen with w >= 0, so the angle lies in [0, π].
    sign = torch.where(w < 0, -torch.ones_like(w), torch.ones_like(w))
    small = sin_half < SMALL_ANGLE
    safe_sin = torch.where(small, torch.ones_like(sin_half), sin_half)
    scale = torch.where(small, 2.0 * torch.ones_like(angle), angle / safe_sin)
    return sign * xyz * scale


def rotmat_to_quaternion(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> unit quaternion ``(w, x, y, z)`` (Shepperd's method, best-conditioned branch).

    Args:
        rotmat: (..., 3, 3) float rotation matrices.

    Returns:
        (..., 4) unit quaternions with ``w >= 0``.
    """
    m = rotmat
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Sums / differences of the off-diagonal pairs: 4wx, 4wy, 4wz and 4xy, 4xz, 4yz for the true quaternion.
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    lead = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    # Four candidate (unnormalised) quaternions, candidate i = 4·q_i·q: well conditioned where lead[i] is largest.
    cands = torch.stack(
        (
            torch.stack((lead[..., 0], d21, d02, d10), -1),
            torch.stack((d21, lead[..., 1], s01, s02), -1),
            torch.stack((d02, s01, lead[..., 2], s12), -1),
            torch.stack((d10, s02, s12, lead[..., 3]), -1),
        ),
        dim=-2,
    )  # (..., 4 candidates, 4)
    best = lead.argmax(-1, keepdim=True)[..., None].expand(*lead.shape[:-1], 1, 4)
    quat = torch.gather(cands, -2, best).squeeze(-2)
    quat = F.normalize(quat, dim=-1, eps=NORM_EPS)
    return torch.where(quat[..., :1] < 0, -quat, quat)


def project_to_so3(matrix: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius norm) to each 3×3 matrix: ``U diag(1, 1, det(U Vᵀ)) Vᵀ`` from the SVD.

    Used to average rotations (the chordal L2 mean of ``R_i`` is ``project_to_so3(mean R_i)``).

    Args:
        matrix: (..., 3, 3) float.

    Returns:
        (..., 3, 3) proper rotation matrices (det = +1).
    """
    u, _, vh = torch.linalg.svd(matrix)
    det = torch.linalg.det(u @ vh)
    fix = torch.ones(*matrix.shape[:-2], 3, dtype=matrix.dtype, device=matrix.device)
    fix[..., 2] = det
    return u @ torch.diag_embed(fix) @ vh
