"""Check the configured body models and draw them (rule check_body_model)."""

from pipeline.body.report import check_body_models
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
summary = check_body_models(
    snakemake.params.model_dir,
    snakemake.input.regressors,
    out_json=snakemake.output.report,
    out_png=snakemake.output.figure,
)
log.info("body model check: %s", summary)
