"""Parse one scan's views and count its visible body faces' labels (rule parse_scan_views)."""

from pathlib import Path

from pipeline.body.smpl_io import count_faces
from pipeline.prior.parse import ParserSettings, parse_scan_views
from pipeline.runtime import resolve_device, setup_logging, stage_seed
from pipeline.world.parser_noise import ParserNoise

log = setup_logging(snakemake.log[0])
p = snakemake.params
num_faces = count_faces(Path(snakemake.input.models[0]).parent)
settings = ParserSettings.from_params(p.parser, resolve_device(p.parser.get("device", "cpu")))
summary = parse_scan_views(
    snakemake.input.views,
    snakemake.output.labels,
    snakemake.output.counts,
    num_faces,
    settings,
    seed=stage_seed(p.parser.get("seed", 0), "parse", snakemake.wildcards.scan),
    checkpoint=snakemake.input.get("checkpoint"),
    scan_obj=snakemake.input.get("scan_obj"),
    scan_labels=snakemake.input.get("scan_labels"),
    noise=ParserNoise.from_config(p.parser.get("noise")),
)
log.info("%s: %s", snakemake.wildcards.scan, summary)
