"""Render one scan from a ring of views with its fitted body's visible faces (rule render_scan_views)."""

from pathlib import Path

from pipeline.prior.views import ViewSettings, render_scan_views
from pipeline.runtime import setup_logging, stage_seed

log = setup_logging(snakemake.log[0])
summary = render_scan_views(
    snakemake.input.obj,
    snakemake.input.fit,
    Path(snakemake.input.models[0]).parent,
    snakemake.output.views,
    snakemake.output.strip,
    ViewSettings.from_config(snakemake.params.settings),
    seed=stage_seed(snakemake.params.seed, "views", snakemake.wildcards.scan),
)
log.info("%s: %s", snakemake.wildcards.scan, summary)
