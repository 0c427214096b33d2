"""Parse one shard of a dataset's images (rule parse_images)."""

from pipeline.masks.parse_images import parse_image_shard
from pipeline.prior.parse import ParserSettings
from pipeline.runtime import resolve_device, setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
settings = ParserSettings.from_params(p.parser, resolve_device(p.parser.get("device", "cpu")))
counts = parse_image_shard(
    snakemake.input.annotations,
    p.fmt,
    snakemake.input.images,
    snakemake.output[0],
    int(snakemake.wildcards.shard),
    p.num_shards,
    settings,
    checkpoint=snakemake.input.get("checkpoint"),
)
log.info("%s shard %s: %s", snakemake.wildcards.dataset, snakemake.wildcards.shard, counts)
