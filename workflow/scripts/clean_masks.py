"""Clean a dataset's parse maps into the HDF5 mask store (rule clean_masks)."""

from pipeline.masks.clean import CleanSettings, clean_dataset
from pipeline.masks.mappings import resolve_mapping
from pipeline.masks.parse_images import read_dataset
from pipeline.runtime import git_sha, setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
qc = clean_dataset(
    read_dataset(snakemake.input.annotations, p.fmt),
    snakemake.input.shards,
    snakemake.output.store,
    mapping=resolve_mapping(p.settings["mapping"]),
    settings=CleanSettings.from_config(p.settings),
    dataset_name=snakemake.wildcards.dataset,
    qc_json=snakemake.output.qc,
    contact_sheet=snakemake.output.sheet,
    image_root=snakemake.input.images,
    parser=p.parser,
    config=p.settings,
    git_sha=git_sha(),
    seed=p.seed,
)
log.info("%s: %s", snakemake.wildcards.dataset, qc)
