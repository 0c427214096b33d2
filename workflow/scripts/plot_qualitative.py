"""Predicted meshes over test images, from the side, and the ground truth from the side, one figure per run
(rule plot_qualitative)."""

from pathlib import Path

import torch._dynamo  # noqa: F401  (import before any EGL context; see tests/conftest.py)

from pipeline.evaluate.predict import load_body_models, load_predictions
from pipeline.evaluate.qualitative import qualitative_figure
from pipeline.masks.parse_images import read_dataset
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
genders = ("neutral", "male", "female") if p.ground_truth else ("neutral",)
models = load_body_models(Path(inp.models[0]).parent, inp.regressors, genders)
qualitative_figure(
    load_predictions(inp.predictions, models["neutral"]),
    read_dataset(inp.annotations, p.fmt),
    inp.images,
    models["neutral"].faces.numpy(),
    snakemake.output[0],
    count=p.num_images,
    tile=p.tile_px,
    columns=p.columns,
    body_models=models if p.ground_truth else None,
)
