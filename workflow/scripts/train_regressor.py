"""Train one regressor run (rule train_regressor); resumes from results/train/{run}/checkpoints/last.pt."""

from pathlib import Path

import torch._dynamo  # noqa: F401  (import before any EGL context; see tests/conftest.py)
import yaml

from pipeline.runtime import git_sha, resolve_device, setup_logging
from pipeline.train.loop import train
from pipeline.train.settings import TrainPaths, TrainSettings

log = setup_logging(snakemake.log[0])
inp = snakemake.input
settings = TrainSettings.from_dict(
    snakemake.params.settings, device=resolve_device(snakemake.params.device), threads=snakemake.threads
)
paths = TrainPaths(
    body_models=str(Path(inp.models[0]).parent),
    joint_regressors=inp.regressors,
    prior=inp.get("prior"),
    mean_params=inp.get("smpl_mean_params"),
    pretrained=inp.get("pretrained_checkpoint"),
    code=tuple(str(f) for f in inp.code),
)
out_dir = Path(snakemake.output.final).parent.parent
with open(snakemake.output.settings, "w") as f:
    yaml.safe_dump({**settings.to_dict(), "git_sha": git_sha()}, f, sort_keys=False)
summary = train(settings, paths, out_dir)
log.info("summary: %s", summary)
