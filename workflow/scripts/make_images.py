"""Generate one open-world image split (rules make_images_*)."""

from pipeline.runtime import setup_logging
from pipeline.world.images import make_image_split, split_spec
from pipeline.world.parser_noise import ParserNoise

log = setup_logging(snakemake.log[0])
p = snakemake.params
summary = make_image_split(
    snakemake.input.models[0].rsplit("/", 1)[0],
    snakemake.input.regressors,
    snakemake.output.annotations,
    snakemake.output.images,
    split_spec(p.split, p.group, p.settings, p.fmt),
    size=p.size,
    focal_range=tuple(p.focal_range),
    person_height_range=tuple(p.height_range),
    noise=ParserNoise.from_config(p.noise),
    seed=p.seed,
)
log.info("split %s: %s", p.split, summary)
