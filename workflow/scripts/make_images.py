"""Generate one open-world image split (rules make_images_*) or one pretraining shard (make_pretrain_images)."""

from pipeline.runtime import setup_logging
from pipeline.world.images import make_image_split, pretrain_spec, split_spec
from pipeline.world.parser_noise import ParserNoise
from pipeline.world.pseudo_gt import PseudoGtNoise

log = setup_logging(snakemake.log[0])
p = snakemake.params
if p.group == "pretrain":
    spec = pretrain_spec(int(snakemake.wildcards.shard), **p.settings)
    noise = None
else:
    spec = split_spec(p.split, p.group, p.settings, p.fmt)
    noise = ParserNoise.from_config(p.noise)
pseudo_gt = PseudoGtNoise.from_config(p.pseudo_gt) if getattr(p, "pseudo_gt", None) else None
summary = make_image_split(
    snakemake.input.models[0].rsplit("/", 1)[0],
    snakemake.input.regressors,
    snakemake.output.annotations,
    snakemake.output.images,
    spec,
    size=p.size,
    focal_range=tuple(p.focal_range),
    person_height_range=tuple(p.height_range),
    noise=noise,
    seed=p.seed,
    azimuth_std_deg=p.azimuth_std_deg,
    pseudo_gt=pseudo_gt,
)
log.info("split %s: %s", spec.name, summary)
