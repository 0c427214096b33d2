"""Run names: which loss variant a training run uses, and with which seed.

A run is named ``{variant}`` or ``{variant}-s{k}`` (repetition ``k`` of the variant with another seed, used by
the ablation target). Variants map to the DSR terms they add to the standard (SD) losses; the defaults are
the paper's Table 1 rows (config ``train.variants`` may redefine or add them):

=============== =============================================================
``sd``          standard losses only (SPIN/EFT)
``dsr_fb``      + DSR-FB (full-body soft-IoU silhouette)
``dsr_mc``      + DSR-MC (soft IoU, Eq. 3)
``dsr_mc_distm``+ DSR-MC as soft-DistM (Eq. 2)
``dsr_c``       + DSR-C (NLL, Eq. 4)
``dsr_mvp``     + DSR-MVP (argmax prior, hard IoU)
``dsr``         + DSR-C + DSR-MC (the paper's model)
``dsr_fb_bce``  + DSR-FB as per-pixel binary classification (Table 1 "+ DSR-FB")
``dsr_fb_distm``+ DSR-FB as soft-DistM (Table 1 "+ DSR-FB (s-DistM)")
``official``    + DSR-C + DSR-MC as the released DSR code computes them (:data:`OFFICIAL_SWITCHES`)
``dsr_sigma_px``+ DSR-C + DSR-MC rendered with the paper's blur in pixels at any render size
                (``sigma_px`` = :data:`PAPER_SIGMA_PX`: σ = 1e-5 at 224 px, 1.225e-4 at 64 px)
=============== =============================================================

Variant options (config ``train.variant_options``, defaults :data:`DEFAULT_VARIANT_OPTIONS`) override training
settings for one variant's runs (:data:`VARIANT_OPTION_KEYS`): ``fb_metric``, ``dsr_reduction``,
``dsr_c_requires_mc``, ``sigma_px`` (``train.renderer.sigma_px``), ``loss_weights`` (merged over
``train.loss_weights``) and ``official``, the list of
switches that reproduce the released code's choices one by one (../shared/reference/DSR_SPIN_EFT_NOTES.md A.2–A.6):

======================= =====================================================================================
``rowwise_iou``         DSR-MC as the row-wise soft IoU (``neg_iou_loss`` on a 2-D image: 1 − mean of per-row IoUs)
``ce_on_probs``         DSR-C as cross-entropy (log-softmax) on top of the rendered class probabilities
``classes8``            DSR-C on the official 8 classes (mask store cleaned with mapping ``official8``)
``class_ratio_weights`` DSR-C pixels weighted per class by ``min_j n_j / n_k`` (classes with ≤ 60 px: weight 0)
``no_flip_swap``        flip augmentation mirrors the masks without swapping left/right labels
``softras_bg_weight``   the renderer's background weight ``exp(2·eps/γ)``, as SoftRas' CUDA kernel applies it
======================= =====================================================================================

The ``official`` variant turns all six on and sets the DSR weights to the released config's 0.1. The other
official choices (batch reduction ``batch_mean``, DSR-C only with a valid MC mask) are settings of their own
(``dsr_reduction``, ``dsr_c_requires_mc``) and can be added per variant the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.losses.terms import DSR_TERMS
from pipeline.runtime import stage_seed

DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {
    "sd": (),
    "dsr_fb": ("dsr_fb",),
    "dsr_mc": ("dsr_mc",),
    "dsr_mc_distm": ("soft_distm",),
    "dsr_c": ("dsr_c",),
    "dsr_mvp": ("mvp",),
    "dsr": ("dsr_mc", "dsr_c"),
    "dsr_fb_bce": ("dsr_fb",),
    "dsr_fb_distm": ("dsr_fb",),
    "official": ("dsr_mc", "dsr_c"),
    "dsr_sigma_px": ("dsr_mc", "dsr_c"),
}
#: The paper's blur in pixels: σ = 1e-5 NDC units² at its 224-pixel renders is √1e-5 · 224/2 = 0.354 px
#: (:func:`pipeline.render.soft.sigma_to_pixels`, kept torch-free here).
PAPER_SIGMA_PX: float = math.sqrt(1e-5) * 224 / 2
#: The released DSR code's choices, each a switch of a variant's ``official`` option (module doc).
OFFICIAL_SWITCHES: tuple[str, ...] = (
    "rowwise_iou", "ce_on_probs", "classes8", "class_ratio_weights", "no_flip_swap", "softras_bg_weight",
)
#: The official code's DSR weights (``configs/dsr_train.cfg``: 0.1 each, inside SPIN's ×60, notes A.6).
OFFICIAL_DSR_WEIGHT: float = 0.1
#: Training settings a variant may override (``train.variant_options.<variant>``).
VARIANT_OPTION_KEYS: tuple[str, ...] = (
    "official", "loss_weights", "fb_metric", "dsr_reduction", "dsr_c_requires_mc", "sigma_px",
)
#: Built-in options; a variant listed under ``train.variant_options`` replaces its entry here (``{}`` drops it).
DEFAULT_VARIANT_OPTIONS: dict[str, dict[str, object]] = {
    "dsr_fb_bce": {"fb_metric": "bce"},
    "dsr_fb_distm": {"fb_metric": "soft_distm"},
    "official": {"official": list(OFFICIAL_SWITCHES),
                 "loss_weights": {"dsr_mc": OFFICIAL_DSR_WEIGHT, "dsr_c": OFFICIAL_DSR_WEIGHT}},
    "dsr_sigma_px": {"sigma_px": PAPER_SIGMA_PX},
}
#: Wildcard constraint of a run name (also used by the Snakemake rules).
RUN_PATTERN: str = r"[A-Za-z0-9_]+(-s[0-9]+)?"
_RUN_RE = re.compile(r"^(?P<variant>[A-Za-z0-9_]+?)(-s(?P<rep>[0-9]+))?$")


@dataclass(frozen=True)
class RunSpec:
    """A parsed run name.

    name: the run name; variant: the variant; repetition: k of ``-s{k}`` (0 without suffix);
    dsr_terms: DSR terms enabled; seed: the run's training seed (from the master seed, the variant-independent
    repetition, so ``sd-s1`` and ``dsr-s1`` share initial weights and data order).
    """

    name: str
    variant: str
    repetition: int
    dsr_terms: tuple[str, ...]
    seed: int

    @property
    def uses_dsr(self) -> bool:
        return bool(self.dsr_terms)


def parse_run(name: str, variants: Mapping[str, Sequence[str]] | None = None, master_seed: int = 0) -> RunSpec:
    """Parse ``{variant}`` / ``{variant}-s{k}``.

    Raises:
        ValueError: malformed name, unknown variant (lists the allowed ones) or an unknown DSR term in a variant.
    """
    variants = DEFAULT_VARIANTS if variants is None else variants
    m = _RUN_RE.match(name)
    if not m:
        raise ValueError(f"run name {name!r} must look like '<variant>' or '<variant>-s<k>' (e.g. dsr, dsr-s1)")
    variant, rep = m.group("variant"), int(m.group("rep") or 0)
    if variant not in variants:
        raise ValueError(f"run {name!r}: unknown variant {variant!r}; allowed: {', '.join(variants)} "
                         "(define more under train.variants)")
    terms = tuple(variants[variant])
    bad = [t for t in terms if t not in DSR_TERMS]
    if bad:
        raise ValueError(f"variant {variant!r}: unknown DSR term(s) {bad}; allowed: {', '.join(DSR_TERMS)}")
    return RunSpec(name=name, variant=variant, repetition=rep, dsr_terms=terms,
                   seed=stage_seed(master_seed, "train", str(rep)))


def variant_options(variant: str, configured: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The setting overrides of a variant: ``configured[variant]`` when listed there (config
    ``train.variant_options``), else :data:`DEFAULT_VARIANT_OPTIONS` (``{}`` for a variant without options).

    Raises:
        ValueError: an unknown option key or official switch (the message lists the allowed ones).
    """
    configured = {} if configured is None else configured
    options = dict(configured[variant] if variant in configured else DEFAULT_VARIANT_OPTIONS.get(variant, {}))
    bad = sorted(set(options) - set(VARIANT_OPTION_KEYS))
    if bad:
        raise ValueError(f"train.variant_options.{variant}: unknown option(s) {bad}; allowed: "
                         f"{', '.join(VARIANT_OPTION_KEYS)}")
    switches = list(options.get("official", []))
    unknown = [s for s in switches if s not in OFFICIAL_SWITCHES]
    if unknown:
        raise ValueError(f"train.variant_options.{variant}.official: unknown switch(es) {unknown}; allowed: "
                         f"{', '.join(OFFICIAL_SWITCHES)}")
    if "official" in options:  # canonical: the switches' own order, no duplicates
        options["official"] = tuple(s for s in OFFICIAL_SWITCHES if s in switches)
    return options


def run_names(variants: Sequence[str], repetitions: int) -> list[str]:
    """Ablation run names: each variant with suffixes ``-s0`` … ``-s{repetitions-1}``."""
    return [f"{v}-s{k}" for v in variants for k in range(repetitions)]
