"""Train one regressor run (rule train_regressor) or the open world's pretraining run (pretrain_regressor,
whose final weights are also written in SPIN's checkpoint layout); resumes from <run>/checkpoints/last.pt.
train.distributed.world_size > 1 (train_regressor only; a machine setting like threads, so not in params) starts
that many DDP workers (pipeline.train.distributed)."""

from pathlib import Path

import yaml

from pipeline.runtime import git_sha, resolve_device, setup_logging
from pipeline.train.distributed import launch_workers
from pipeline.train.loop import train
from pipeline.train.pretrain import export_spin_checkpoint
from pipeline.train.settings import TrainPaths, TrainSettings

log = setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
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
spin_layout = "checkpoint" in out.keys()
out_dir = Path(out.checkpoint).parent if spin_layout else Path(out.final).parent.parent
with open(out.settings, "w") as f:
    # the run's params (what determines the weights), then the machine it ran on
    record = {**snakemake.params.settings, "device": settings.device, "threads": settings.threads}
    yaml.safe_dump({**record, "git_sha": git_sha()}, f, sort_keys=False)
# train.distributed reaches the job as resources (get_train_worker_resources), which are not rerun triggers
world_size = int(snakemake.resources.get("ddp_workers", 1))
if world_size > 1:  # DDP workers (torchrun, or srun under SLURM); rank 0 writes what train() writes
    summary = launch_workers(settings, paths, out_dir, world_size=world_size,
                             backend=snakemake.resources.get("ddp_backend", "auto"), log_path=snakemake.log[0])
else:
    summary = train(settings, paths, out_dir)
log.info("summary: %s", summary)
if spin_layout:
    export_spin_checkpoint(out_dir / "checkpoints" / "final.pt", out.checkpoint)
    log.info("wrote %s (SPIN's model_checkpoint.pt layout)", out.checkpoint)
