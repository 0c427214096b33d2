"""Reduce per-scan label counts into the semantic prior (rule accumulate_prior)."""

import json
from pathlib import Path

import numpy as np

from pipeline.body.model import BodyModel
from pipeline.prior.accumulate import CleaningRule, build_prior, save_prior
from pipeline.runtime import git_sha, setup_logging

log = setup_logging(snakemake.log[0])
body = BodyModel(Path(snakemake.input.models[0]).parent)
counts = sum(np.load(path)["face_counts"] for path in snakemake.input.counts)
prior = build_prior(
    counts,
    body.faces.numpy(),
    body.vertex_part.numpy(),
    background_prob=snakemake.params.background_prob,
    rules=[CleaningRule.from_config(r) for r in snakemake.params.rules],
)
provenance = {"n_scans": len(snakemake.input.counts), "parser": snakemake.params.parser, "git_sha": git_sha()}
save_prior(prior, snakemake.output.prior, provenance)
Path(snakemake.output.report).write_text(json.dumps({**provenance, **prior.report}, indent=2))
log.info("semantic prior: %s", prior.report)
