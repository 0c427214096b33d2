"""Predict one test split with one run's checkpoint, or its mean parameters (n_iter 0; rule predict_test_split)."""

from pathlib import Path

import torch

from pipeline.evaluate.predict import predict_checkpoint
from pipeline.runtime import git_sha, resolve_device, setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, p, wc = snakemake.input, snakemake.params, snakemake.wildcards
predict_checkpoint(
    inp.checkpoint,
    inp.annotations,
    p.fmt,
    inp.images,
    Path(inp.models[0]).parent,
    inp.regressors,
    snakemake.output[0],
    split=wc.dataset,
    run=wc.run,
    batch_size=p.batch_size,
    device=resolve_device(p.device),
    store_vertices=p.store_vertices,
    git_sha=git_sha(),
    n_iter=p.n_iter,
)
