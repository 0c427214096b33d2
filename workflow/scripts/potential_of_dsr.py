"""The "Potential of DSR" experiment (rule potential_of_dsr): overfit one fixed batch with SD, SD + DSR (parser
masks) and SD + DSR (exact masks); see pipeline/world/potential.py."""

from pathlib import Path

import torch._dynamo  # noqa: F401  (import before any EGL context; see tests/conftest.py)

from pipeline.runtime import resolve_device, setup_logging
from pipeline.world.potential import (
                       PotentialPaths,
                       PotentialSettings,
                       run_potential,
                       write_report_section,
)

log = setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
paths = PotentialPaths(body_models=str(Path(inp.models[0]).parent), joint_regressors=inp.regressors,
                       prior=inp.prior, masks=inp.masks, truth=inp.get("truth"),
                       pretrained=inp.get("pretrained_checkpoint"),
                       mean_params=inp.get("smpl_mean_params"))
rows = run_potential(PotentialSettings.from_params(snakemake.params.settings), paths, out.table, out.joints,
                     out.figure, device=resolve_device(snakemake.params.device), threads=snakemake.threads)
log.info("potential of DSR: %s", rows)
write_report_section(out.table, out.figure, out.joints, out.section)
