"""Gather the scores of every run into results/eval_<name>.csv and its siblings (rules evaluate_*)."""

from pipeline.evaluate.tables import write_eval_tables
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
paths = write_eval_tables(snakemake.input.scores, snakemake.output.table)
log.info("wrote %s", paths)
