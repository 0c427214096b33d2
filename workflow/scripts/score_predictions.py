"""Protocol metrics of one (test split, run) (rule score_predictions)."""

from pathlib import Path

from pipeline.evaluate.predict import score_split
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
inp, wc = snakemake.input, snakemake.wildcards
score_split(
    inp.predictions,
    inp.annotations,
    snakemake.params.fmt,
    Path(inp.models[0]).parent,
    inp.regressors,
    snakemake.output.score,
    snakemake.output.result,
    split=wc.dataset,
    run=wc.run,
    world=snakemake.params.world,
)
