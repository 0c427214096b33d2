"""Contact sheet of the generated world (rule plot_world)."""

from pathlib import Path

from pipeline.runtime import setup_logging
from pipeline.world.contact_sheet import world_contact_sheet

log = setup_logging(snakemake.log[0])
world_contact_sheet(
    Path(snakemake.input.scans).parent,
    snakemake.params.scans,
    snakemake.input.annotations,
    snakemake.input.images,
    snakemake.params.fmt,
    snakemake.output[0],
)
