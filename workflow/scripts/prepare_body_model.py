"""SMPL download + SPIN's regressors -> resources/body_models (rule prepare_body_model, real world)."""

import json
from pathlib import Path

from pipeline.body.prepare import prepare_body_models
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
report = prepare_body_models(
    snakemake.params.smpl_dir,
    snakemake.input.j_regressor_h36m,
    snakemake.input.j_regressor_extra,
    Path(snakemake.output.regressors).parent,
)
Path(snakemake.output.report).write_text(json.dumps(report, indent=2))
log.info("body models prepared: %s", report)
