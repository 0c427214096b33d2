"""Open world: agreement of the prior with the scans' garment ground truth (rule check_prior_quality)."""

from pathlib import Path

import numpy as np

from pipeline.body.model import BodyModel
from pipeline.runtime import setup_logging
from pipeline.world.prior_quality import prior_quality

log = setup_logging(snakemake.log[0])
faces = BodyModel(Path(snakemake.input.models[0]).parent).faces.numpy()
with np.load(snakemake.input.prior) as npz:
    report = prior_quality(npz["vertex_prob"], npz["vertex_counts"], faces, list(snakemake.input.labels), snakemake.output[0])
log.info("prior top-1 agreement %.4f over %d vertices", report["top1_agreement"], report["vertices_seen"])
