"""Weighted composite of the standard (SPIN/EFT) and DSR terms.

``total = scale · Σ_k w_k · L_k`` with SPIN's structure (../shared/reference/DSR_SPIN_EFT_NOTES.md C.6, A.6):
``60 · [5·L_kp2d + 5·L_kp3d + 1·L_pose + 0.001·L_betas + 0·L_vertices + 1·L_cam + w_MC·L_MC + w_C·L_C]``.

DSR weights: the paper sets "the weighting parameters for both the components ... to 0.01" (§4), so
``dsr_mc = dsr_c = 0.01`` here, placed *inside* the ×60 like every other term (the official code puts its DSR
weights there too, with 0.1 each = an effective 6, notes A.6; the paper's 0.01 gives an effective 0.6 relative to
a unit-weight term outside the bracket). The ablation terms (DSR-FB, soft-DistM, MVP) replace DSR-MC in
their runs and get the same 0.01. All DSR terms are enabled only from ``dsr_start_iter`` on (paper: 10K).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from pipeline.losses.terms import ALL_TERMS, DSR_TERMS

#: SPIN's global loss multiplier (``loss *= 60``).
SPIN_LOSS_SCALE: float = 60.0
#: Paper's DSR weights (§4 "set to 0.01").
PAPER_DSR_WEIGHT: float = 0.01
#: Paper: DSR losses enabled after 10K iterations.
PAPER_DSR_START_ITER: int = 10_000


@dataclass(frozen=True)
class LossWeights:
    """Per-term weights (defaults: SPIN's ``train_options`` and the DSR paper) and the global scale.

    Attributes (one per term of :data:`ALL_TERMS`, plus ``scale``):
        keypoint_2d: 5.0 (SPIN ``keypoint_loss_weight``).
        keypoint_3d: 5.0 (SPIN ``keypoint_loss_weight``).
        smpl_pose: 1.0 (rotation-matrix MSE).
        smpl_betas: 0.001 (SPIN ``beta_loss_weight``).
        vertices: 0.0 (SPIN ``shape_loss_weight``).
        camera: 1.0 (SPIN's ``exp(-10 s)²`` term, unweighted).
        betas_prior: 0.0 (not in SPIN).
        dsr_mc, dsr_c, dsr_fb, soft_distm, mvp: 0.01 (paper).
        scale: 60.0 (SPIN's ``loss *= 60``).
    """

    keypoint_2d: float = 5.0
    keypoint_3d: float = 5.0
    smpl_pose: float = 1.0
    smpl_betas: float = 0.001
    vertices: float = 0.0
    camera: float = 1.0
    betas_prior: float = 0.0
    dsr_mc: float = PAPER_DSR_WEIGHT
    dsr_c: float = PAPER_DSR_WEIGHT
    dsr_fb: float = PAPER_DSR_WEIGHT
    soft_distm: float = PAPER_DSR_WEIGHT
    mvp: float = PAPER_DSR_WEIGHT
    scale: float = SPIN_LOSS_SCALE

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> LossWeights:
        """Build from a (config) mapping; unspecified keys keep their defaults.

        Raises:
            ValueError: unknown key (the message lists the allowed ones).
        """
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; allowed keys: {', '.join(allowed)}")
        return cls(**{k: float(v) for k, v in values.items()})


def dsr_enabled(step: int, dsr_start_iter: int) -> bool:
    """Whether the DSR terms are active at ``step`` (0-based optimiser step): ``step >= dsr_start_iter``.

    The training loop should skip rendering entirely while this is False.
    """
    return step >= dsr_start_iter


def total_loss(
    terms: Mapping[str, torch.Tensor],
    weights: LossWeights = LossWeights(),
    step: int = 0,
    dsr_start_iter: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the given terms.

    Args:
        terms: term name (from :data:`ALL_TERMS`) -> 0-d unweighted loss tensor. Missing terms count as absent
            (e.g. no DSR terms in an ``sd`` run or before ``dsr_start_iter``).
        weights: :class:`LossWeights`.
        step: current optimiser step (0-based).
        dsr_start_iter: first step at which DSR terms enter the total.

    Returns:
        ``(total, log)``: ``total`` 0-d tensor ``scale · Σ w_k L_k`` over the active terms with non-zero weight
        (zero-weight and inactive terms are left out, so a NaN there cannot leak); ``log`` maps every given term
        name to its detached unweighted value, plus ``"total"`` (detached) and ``"dsr_enabled"`` (0./1.). Values
        are 0-d tensors (no host sync here; call ``float()`` when writing logs).

    Raises:
        ValueError: no terms, an unknown term name (lists the allowed ones) or a non-scalar term.
    """
    if not terms:
        raise ValueError(f"total_loss needs at least one term; allowed names: {', '.join(ALL_TERMS)}")
    unknown = sorted(set(terms) - set(ALL_TERMS))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; allowed names: {', '.join(ALL_TERMS)}")
    enabled = dsr_enabled(step, dsr_start_iter)
    parts: list[torch.Tensor] = []
    log: dict[str, torch.Tensor] = {}
    for name, value in terms.items():
        if value.ndim != 0:
            raise ValueError(f"loss term {name!r} must be a 0-d tensor, got shape {tuple(value.shape)}")
        log[name] = value.detach()
        weight = getattr(weights, name)
        if weight == 0.0 or (name in DSR_TERMS and not enabled):
            continue
        parts.append(weight * value)
    first = next(iter(terms.values()))
    total = weights.scale * torch.stack(parts).sum() if parts else (first * 0.0)
    log["total"] = total.detach()
    log["dsr_enabled"] = torch.tensor(float(enabled), device=total.device)
    return total, log
