"""Loss-term names (torch-free, so configuration code can check them without importing torch)."""

from __future__ import annotations

#: Standard-term names (keys of ``terms``), each computed by :mod:`pipeline.losses.standard`.
STANDARD_TERMS: tuple[str, ...] = (
    "keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas", "vertices", "camera", "betas_prior",
)
#: DSR-term names (keys of ``terms``), the variants of :mod:`pipeline.losses.dsr`; gated by ``dsr_start_iter``.
DSR_TERMS: tuple[str, ...] = ("dsr_mc", "dsr_c", "dsr_fb", "soft_distm", "mvp")
ALL_TERMS: tuple[str, ...] = STANDARD_TERMS + DSR_TERMS
