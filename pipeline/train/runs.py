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
=============== =============================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def run_names(variants: Sequence[str], repetitions: int) -> list[str]:
    """Ablation run names: each variant with suffixes ``-s0`` … ``-s{repetitions-1}``."""
    return [f"{v}-s{k}" for v in variants for k in range(repetitions)]
