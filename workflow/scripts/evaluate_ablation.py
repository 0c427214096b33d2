"""Paper Table 1: mean ± std over repetitions per variant (rule evaluate_ablation)."""

from pipeline.evaluate.tables import write_ablation
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
rows = write_ablation(snakemake.input.scores, snakemake.params.variants, snakemake.output.table,
                      snakemake.output.runs)
for row in rows:
    log.info("%s", row)
