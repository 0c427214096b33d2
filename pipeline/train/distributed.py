"""Training on several devices: torch.distributed DistributedDataParallel (config ``train.distributed``).

With ``world_size`` W > 1 the run is W worker processes (one per GPU, or W CPU processes with gloo), started by
:func:`launch_workers` (``torchrun --standalone`` on one node; ``srun``, one SLURM task per worker, inside a SLURM
allocation) and each running :func:`pipeline.train.loop.train` with its :class:`Workers`. W = 1 is the
single-process loop, untouched: none of this module runs.

What makes a W-worker run the 1-worker run (same ``batch_size``, seed and data), up to float reduction order:

* **Data.** ``train.batch_size`` B is the *global* batch. Worker r draws the flat positions
  ``k·B + r·B/W … k·B + (r+1)·B/W − 1`` of step k (:class:`pipeline.train.data.StepRange` with a ``shard``): a
  disjoint, contiguous, deterministic share of the ``(seed, step)`` batch, the same items the 1-worker run puts in
  those rows. B must be a multiple of W.
* **Losses.** Several terms are means over the samples that carry a label (``has_smpl``, ``has_pose_3d``, the DSR
  terms' valid samples with ``valid_mean``), so the mean of the workers' means is not the global mean when the
  workers hold different numbers of labelled samples. Each worker multiplies such a term by
  ``W · n_r / N`` (:func:`term_scales`; n_r its labelled samples, N the global count) before the backward pass;
  DDP's gradient average then gives exactly the gradient of the global-batch loss. Logged values are the
  global ones (:meth:`Workers.mean`).
* **BatchNorm: synchronised.** The ResNet backbone is trained in train mode (SPIN, DSR), so its BatchNorm
  layers normalise with batch statistics. SPIN-style per-device statistics (plain DDP) would normalise each
  worker's B/W samples on their own: a different model from the paper's single-GPU batch of 64, and one that
  changes with W. Here every BatchNorm normalises with the statistics of the whole global batch and updates its
  running statistics from them, so W does not change the model: :class:`torch.nn.SyncBatchNorm` on CUDA and
  :class:`GlobalBatchNorm` (same statistics, one differentiable all-gather per layer and pass) on the CPU,
  where torch's SyncBatchNorm refuses to run. Checkpoints keep BatchNorm's state-dict keys.
* **Dropout.** HMR's two dropout layers draw one mask for the whole global batch, from the torch RNG that every
  worker seeds and resumes identically, and keep their own rows (:class:`ShardedDropout`): the masks the
  1-worker run draws.
* **Rank 0 writes.** Validation, ``metrics.csv``, TensorBoard and checkpoints come from rank 0 only; every worker
  reads ``last.pt`` to resume (a shared file system on SLURM). The others wait for rank 0 at the next
  collective, so the process-group timeout (:data:`PROCESS_GROUP_TIMEOUT`) must exceed a validation pass.

Why not bit-identical: gradients are summed across workers by all-reduce and the BatchNorm statistics are
combined per worker and then across workers, a different float summation order than one process's; the
difference is ~1e-7 relative per step and grows slowly over steps (tests/test_ddp.py states the tolerance).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: ``train.distributed.backend`` values.
BACKENDS: tuple[str, ...] = ("auto", "nccl", "gloo")
#: Rank 0 validates while the others wait at their next collective: allow a long validation pass.
PROCESS_GROUP_TIMEOUT: timedelta = timedelta(hours=2)
#: Environment variables torchrun sets for each worker; the SLURM ones srun sets instead.
TORCHRUN_ENV: tuple[str, str, str] = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
SLURM_ENV: tuple[str, str, str] = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
#: Loss terms that average over labelled samples (term -> batch key of the per-sample flag).
FLAGGED_TERMS: dict[str, str] = {"keypoint_3d": "has_pose_3d", "smpl_pose": "has_smpl", "smpl_betas": "has_smpl"}


def resolve_backend(backend: str, device: str) -> str:
    """``auto`` -> ``nccl`` on CUDA, ``gloo`` on the CPU.

    Raises:
        ValueError: unknown backend, or nccl on the CPU (names the setting).
    """
    if backend not in BACKENDS:
        raise ValueError(f"train.distributed.backend: unknown value {backend!r}; allowed: {', '.join(BACKENDS)}")
    kind = torch.device(device).type
    if backend == "auto":
        return "nccl" if kind == "cuda" else "gloo"
    if backend == "nccl" and kind != "cuda":
        raise ValueError("train.distributed.backend: nccl needs CUDA devices but the run trains on the CPU; set "
                         "backend: gloo or auto (or device: cuda on a GPU machine)")
    return backend


def check_world_size(world_size: int, batch_size: int) -> int:
    """Samples per worker (``batch_size / world_size``).

    Raises:
        ValueError: world size below 1 or not dividing the global batch (names both settings).
    """
    if world_size < 1:
        raise ValueError(f"train.distributed.world_size must be >= 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(f"train.batch_size ({batch_size}) is the global batch and must be a multiple of "
                         f"train.distributed.world_size ({world_size}); change one of them")
    return batch_size // world_size


@dataclass(frozen=True)
class Workers:
    """This process's place among the run's workers (all defaults: the single-process run).

    Attributes:
        rank: 0 … world_size − 1 (rank 0 writes every output); world_size: W; local_rank: the GPU index on
        this node.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether there are several workers (torch.distributed in use)."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this worker writes the outputs (rank 0)."""
        return self.rank == 0

    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)`` for :class:`pipeline.train.data.StepRange`."""
        return self.rank, self.world_size

    def cuda_index(self) -> int:
        """This worker's GPU among those it sees: ``local_rank`` when every GPU of the node is visible
        (torchrun), ``local_rank mod visible`` when the scheduler binds each task to its own GPU (SLURM's
        ``--ntasks-per-gpu`` / ``--gpus-per-task`` leave one visible GPU per task, as index 0)."""
        visible = torch.cuda.device_count()
        if visible < 1:
            raise RuntimeError(f"worker {self.rank}: train.device is cuda but no CUDA device is visible "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        return self.local_rank % visible

    def device(self, device: str) -> torch.device:
        """The worker's device: ``cuda:<cuda_index()>`` on CUDA."""
        d = torch.device(device)
        return torch.device("cuda", self.cuda_index()) if d.type == "cuda" and self.distributed else d

    def all_sum(self, values: Mapping[str, float], device: torch.device) -> dict[str, float]:
        """Sum of each value over the workers (one all-gather, summed in rank order; float64 so sample counts
        stay exact)."""
        keys = sorted(values)
        if not self.distributed or not keys:
            return {k: float(values[k]) for k in keys}
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        return dict(zip(keys, gather(t).sum(0).tolist(), strict=True))

    def mean(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean over the workers of detached 0-d values (one all-gather): with :func:`term_scales` applied, the
        global batch's loss terms and total."""
        keys = list(values)
        if not self.distributed or not keys:
            return dict(values)
        t = gather(torch.stack([values[k].detach().to(torch.float64) for k in keys])).sum(0) / self.world_size
        return {k: v.to(values[k].dtype) for k, v in zip(keys, t, strict=True)}


#: The single-process run.
SINGLE = Workers()


def workers_from_env(env: Mapping[str, str] | None = None) -> Workers:
    """The worker set up by torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or srun (``SLURM_PROCID``,
    ``SLURM_NTASKS``, ``SLURM_LOCALID``); :data:`SINGLE` when neither is there."""
    env = os.environ if env is None else env
    for names in (TORCHRUN_ENV, SLURM_ENV):
        if all(n in env for n in names):
            rank, world, local = (int(env[n]) for n in names)
            return Workers(rank=rank, world_size=world, local_rank=local)
    return SINGLE


def init_workers(workers: Workers, backend: str, device: str) -> None:
    """Join the process group (rendezvous at ``MASTER_ADDR:MASTER_PORT``, set by torchrun or :func:`launch_workers`)."""
    if not workers.distributed or dist.is_initialized():
        return
    backend = resolve_backend(backend, device)
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(workers.cuda_index())
    dist.init_process_group(backend=backend, rank=workers.rank, world_size=workers.world_size,
                            timeout=PROCESS_GROUP_TIMEOUT)
    log.info("worker %d of %d joined (%s, local rank %d)", workers.rank, workers.world_size, backend,
             workers.local_rank)


# ------------------------------------------------------------------------------------------------ collectives
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every worker's ``tensor`` stacked in rank order, (W, *shape), on every worker (no gradient).

    Small per-step values (loss terms, sample counts, BatchNorm statistics) are combined by gathering and summing
    in rank order rather than by ``all_reduce``: gloo's all-reduce of a few hundred floats takes 1.0–1.7 ms on
    one host (2 workers, loopback), its all-gather 0.33 ms, and the sum is then bit-identical on every worker.
    """
    world = dist.get_world_size()
    out = tensor.new_empty(world * tensor.numel())
    dist.all_gather_into_tensor(out, tensor.reshape(-1).contiguous())
    return out.view(world, *tensor.shape)


class _GatherWithGrad(torch.autograd.Function):
    """:func:`gather` with a gradient: worker r's input receives the sum over workers of the gradient each one's
    output passes back to row r (one more all-gather in the backward pass)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return gather(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return gather(grad).sum(0)[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`gather`, differentiable (autograd flows back to every worker's input)."""
    return _GatherWithGrad.apply(tensor)


# ------------------------------------------------------------------------------------------------ model
class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the samples of every worker (the statistics of the global batch), on any device.

    Train mode: each worker reduces its share to per-channel ``(n_r, Σ x, M2_r = Σ (x − mean_r)²)``; one
    differentiable all-gather (:func:`gather_with_grad`) brings every worker's statistics, combined in rank order
    with Chan et al.'s parallel formula ``mean = Σ Σx / N``, ``M2 = Σ M2_r + Σ n_r (mean_r − mean)²`` and
    ``var = M2 / N`` (biased, as BatchNorm normalises; no E[x²] − mean² cancellation). Running statistics are
    updated with the unbiased ``var · N / (N − 1)`` as :func:`torch.nn.functional.batch_norm` does. Gradients flow
    back through the gather, so each worker's inputs get the gradient of the global normalisation: one collective
    forward and one backward per layer. Eval mode: plain BatchNorm with the running statistics. Same parameters,
    buffers and state-dict keys as :class:`torch.nn.BatchNorm2d`. Input: (B, C, ...) with B the worker's share.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (B, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        channels = input.shape[1]
        count = input.new_full((1,), input.numel() / channels)
        local_sum = input.sum(dims)
        local_m2 = (input - (local_sum / count).reshape(shape)).square().sum(dims)
        stats = gather_with_grad(torch.cat([local_sum, local_m2, count]))  # (W, 2C + 1)
        sums, m2s, counts = stats[:, :channels], stats[:, channels:-1], stats[:, -1:]
        n = counts.sum()
        mean = sums.sum(0) / n
        var = (m2s.sum(0) + (counts * (sums / counts - mean).square()).sum(0)) / n
        centred = input - mean.reshape(shape)
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm layer of ``module`` (in place where nested) with one sharing its parameters
        and buffers."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


class ShardedDropout(nn.Module):
    """Dropout whose mask is drawn for the global batch and sliced to this worker's rows.

    Every worker holds the same torch RNG state, draws the (W·b, ...) mask the single process would draw for the
    whole batch (:func:`torch.nn.functional.dropout` of ones: the same RNG use and scaling) and keeps rows
    ``rank·b … (rank+1)·b − 1``, the rows of its samples. Input: (b, ...) this worker's share.
    """

    def __init__(self, p: float, rank: int, world_size: int) -> None:
        super().__init__()
        self.p, self.rank, self.world_size = p, rank, world_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        b = x.shape[0]
        mask = F.dropout(x.new_ones((b * self.world_size, *x.shape[1:])), self.p, training=True)
        return x * mask[self.rank * b:(self.rank + 1) * b]

    def extra_repr(self) -> str:
        return f"p={self.p}, rank={self.rank}, world_size={self.world_size}"


def distribute_model(model: nn.Module, workers: Workers, device: torch.device) -> nn.Module:
    """Make ``model`` (on ``device``, identically initialised on every worker) a worker of the global batch:
    synchronised BatchNorm, sharded dropout, wrapped in DistributedDataParallel (which also broadcasts rank 0's
    weights and buffers). Returns the DDP module; ``.module`` is the model (checkpoints, validation)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = GlobalBatchNorm.convert(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                parent.add_module(name, ShardedDropout(child.p, workers.rank, workers.world_size))
    model.to(device)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (itself otherwise)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) \
        else model


# ------------------------------------------------------------------------------------------------ losses
def term_normalisers(terms: Sequence[str], batch: Mapping[str, torch.Tensor], dsr_counts: Mapping[str, int],
                     dsr_reduction: str) -> dict[str, float]:
    """Samples each term averages over in this worker's share (terms that average over every sample are left
    out: they need no correction)."""
    out: dict[str, float] = {}
    for name in terms:
        if name in FLAGGED_TERMS:
            out[name] = float(batch[FLAGGED_TERMS[name]].sum())
        elif name in dsr_counts and dsr_reduction == "valid_mean":
            out[name] = float(dsr_counts[name])
    return out


def term_scales(local: Mapping[str, float], total: Mapping[str, float], world_size: int) -> dict[str, float]:
    """Factor ``W · n_r / N`` per term: the worker's share of the global mean, times W for DDP's average.

    A worker without labelled samples holds an exact-zero term (factor irrelevant, 0); no labelled sample
    anywhere: factor 1 (every worker's term is zero).
    """
    return {k: (world_size * local[k] / total[k] if total[k] > 0 else 1.0) for k in local}


# ------------------------------------------------------------------------------------------------ launch
def free_port() -> int:
    """A free TCP port on this host (for the srun rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def worker_command(spec_path: str | Path, world_size: int, env: Mapping[str, str] | None = None) -> list[str]:
    """How to start the workers: ``srun`` with one task per worker inside a SLURM allocation (``SLURM_JOB_ID``
    set, e.g. a job the SLURM profile submitted with ``tasks``), else ``torchrun --standalone`` on this node."""
    env = os.environ if env is None else env
    worker = [sys.executable, "-m", "pipeline.train.distributed", str(spec_path)]
    if env.get("SLURM_JOB_ID"):
        return ["srun", f"--ntasks={world_size}", "--kill-on-bad-exit=1", *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world_size}",
            "--module", "pipeline.train.distributed", str(spec_path)]


def launch_workers(settings: Any, paths: Any, out_dir: str | Path, *, world_size: int, backend: str,
                   log_path: str | Path | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``settings`` with ``world_size`` worker processes and wait for them.

    The run is written to ``<out_dir>/checkpoints/workers.json`` (settings, paths, backend) for the workers; each
    worker logs to ``<log_path>.rank<r>`` (rank 0 also to the job's log through its stderr). Returns rank 0's
    summary (``checkpoints/summary.json``).

    Raises:
        ValueError: batch size not a multiple of ``world_size``; RuntimeError: a worker failed (names its log).
    """
    check_world_size(world_size, settings.batch_size)
    resolve_backend(backend, settings.device)
    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    spec = ckpt / "workers.json"
    spec.write_text(json.dumps({
        "settings": settings.to_dict(), "paths": {**asdict(paths), "code": list(paths.code)},
        "out_dir": str(out_dir), "backend": backend, "log": None if log_path is None else str(log_path),
        "stop_after": stop_after, "threads_per_worker": max(1, settings.threads // world_size)
        if settings.threads > 0 else 0,
    }, indent=1))
    summary_path = ckpt / "summary.json"
    summary_path.unlink(missing_ok=True)
    cmd = worker_command(spec, world_size)
    env = dict(os.environ)
    if cmd[0] == "srun":
        env.setdefault("MASTER_ADDR", socket.gethostname())
        env.setdefault("MASTER_PORT", str(free_port()))
    env.setdefault("OMP_NUM_THREADS", str(max(1, settings.threads // world_size) if settings.threads > 0 else 1))
    log.info("starting %d workers: %s", world_size, " ".join(cmd))
    result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        logs = f"{log_path}.rank<r>" if log_path is not None else "the workers' stderr"
        raise RuntimeError(f"distributed training of run {settings.run!r} failed (exit {result.returncode}); see "
                           f"{logs}")
    return json.loads(summary_path.read_text())


def run_worker(spec_path: str | Path) -> None:
    """One worker: read the run from ``spec_path`` (:func:`launch_workers`), join the group, train."""
    from pipeline.runtime import setup_logging
    from pipeline.train.loop import train
    from pipeline.train.settings import TrainPaths, TrainSettings

    spec = json.loads(Path(spec_path).read_text())
    workers = workers_from_env()
    log_path = spec["log"]
    setup_logging(None if log_path is None else f"{log_path}.rank{workers.rank}")
    raw = dict(spec["settings"])
    runtime = {k: raw.pop(k) for k in ("threads", "device", "progress")}
    runtime["threads"] = spec["threads_per_worker"]
    runtime["progress"] = runtime["progress"] and workers.main
    settings = TrainSettings.from_dict(raw, **runtime)
    p = spec["paths"]
    paths = TrainPaths(**{**p, "code": tuple(p["code"])})
    init_workers(workers, spec["backend"], settings.device)
    try:
        summary = train(settings, paths, spec["out_dir"], stop_after=spec["stop_after"], workers=workers)
        if workers.main:
            (Path(spec["out_dir"]) / "checkpoints" / "summary.json").write_text(json.dumps(summary, default=str))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m pipeline.train.distributed <checkpoints/workers.json>")
    run_worker(sys.argv[1])
