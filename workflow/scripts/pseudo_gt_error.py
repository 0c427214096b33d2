"""Error of the open world's pseudo ground truth against the truth (rule pseudo_gt_error)."""

from pipeline.runtime import setup_logging
from pipeline.world.pseudo_gt_error import write_error_csv, write_report_section

log = setup_logging(snakemake.log[0])
p = snakemake.params
splits = {s: (snakemake.input[f"annotations_{s}"], p.formats[s]) for s in p.splits}
rows = write_error_csv(
    splits,
    snakemake.input.models[0].rsplit("/", 1)[0],
    snakemake.input.regressors,
    snakemake.output.table,
)
write_report_section(rows, snakemake.output.section)
for row in rows:
    log.info("pseudo-GT error %s", row)
