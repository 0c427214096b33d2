"""Generate the open world's clothed scans (rule make_scans)."""

from pathlib import Path

from pipeline.runtime import setup_logging
from pipeline.world.scans import make_scans

log = setup_logging(snakemake.log[0])
names = [Path(p).stem for p in snakemake.output.obj]
make_scans(
    Path(snakemake.input.models[0]).parent,
    Path(snakemake.output.summary).parent,
    names,
    seed=snakemake.params.seed,
    accessory_prob=snakemake.params.accessory_prob,
    summary_path=snakemake.output.summary,
)
