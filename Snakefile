# Differentiable Semantic Rendering (Dwivedi et al., ICCV 2021) as a Snakemake pipeline.
# Main job: snakemake --cores N results/eval_3dpw.csv   (see README.md)
import os

from snakemake.utils import min_version

from pipeline.config import validate_config

min_version("9.0")

# pyrender renders headless through EGL (scan views, images, qualitative figures); the jobs inherit this, so
# a plain `snakemake ...` works without exporting it first. An explicit value (e.g. osmesa) is kept.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


configfile: "config/config.yaml"


# One-line errors naming the key and the allowed values; also fills schema defaults.
validate_config(config, workflow.source_path("workflow/schemas/config.schema.yaml"))


include: "workflow/rules/common.smk"
include: "workflow/rules/body.smk"
include: "workflow/rules/prior.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


# The open world generates every licensed-asset slot; the real world reads them from config paths.
if config["world"] == "open":

    include: "workflow/rules/world.smk"

else:

    include: "workflow/rules/real.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),
