"""Validation scores of the trained runs, per run and per variant, and their report section (rule
summarise_validation)."""

from pipeline.evaluate.sections import write_section_file
from pipeline.evaluate.validation import validation_section, write_validation
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
inp, out, p = snakemake.input, snakemake.output, snakemake.params
rows = write_validation(dict(zip(p.runs, inp.metrics)), p.dataset, out.table, out.by_variant, world=p.world)
for row in rows:
    log.info("%s", row)
write_section_file(out.section, validation_section(rows, p.dataset))
