"""Figures of the semantic prior (rule plot_prior)."""

from pathlib import Path

import numpy as np

from pipeline.prior.figures import plot_prior
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
with np.load(snakemake.input.prior) as npz:
    vertex_prob = npz["vertex_prob"]
plot_prior(vertex_prob, Path(snakemake.input.models[0]).parent, snakemake.output.views, snakemake.output.heatmaps)
