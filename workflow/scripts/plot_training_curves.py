"""Training curves of one run from its metrics.csv (rule plot_training_curves)."""

from pipeline.evaluate.report import atomic_write_bytes, plot_training_curves
from pipeline.runtime import setup_logging

log = setup_logging(snakemake.log[0])
atomic_write_bytes(snakemake.output[0], plot_training_curves(snakemake.input.metrics))
