"""Open world: agreement of the prior with the scans' garment ground truth (rule check_prior_quality)."""

import numpy as np

from pipeline.runtime import setup_logging
from pipeline.world.prior_quality import prior_quality

log = setup_logging(snakemake.log[0])
with np.load(snakemake.input.prior) as npz:
    face_prob = npz["face_prob"]
log.info("prior quality: %s", prior_quality(face_prob, list(snakemake.input.labels), snakemake.output[0]))
