"""Build the open SMPL-format body model from Anny (rule build_body_model)."""

import json
from pathlib import Path

from pipeline.body.anny_build import build_open_body_model
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
out_dir = Path(snakemake.output.regressors).parent
report = build_open_body_model(
    out_dir, n_shape_samples=snakemake.params.n_shape_samples, seed=snakemake.params.seed
)
Path(snakemake.output.report).write_text(json.dumps(report, indent=2, default=float))
log.info("body model written to %s: %s", out_dir, report)
