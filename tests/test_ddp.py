"""Training on several devices (pipeline.train.distributed): 2 gloo workers on the CPU against one process.

The world here is built in a second: a 60-vertex SMPL-format body, random joint regressors and 8 labelled
32-px images, with a ResNet-18 at 32 px, so a 2-worker run (torchrun, 2 processes) takes seconds.

Tolerance of the 1- vs 2-worker comparison: not bit-identical because the gradients are summed across workers
(all-reduce) and the BatchNorm statistics are summed per worker and then across workers, a different float
summation order than one process's (~1e-7 relative per operation). Adam turns that into more: its first steps
move each weight by about ±lr whatever its gradient's size, so a weight whose gradient is float noise (~0) may
step the other way. Hence the comparison is on what is not noise: the logged losses and gradient norm of every
step (losses 1e-3 relative; gradient norm 1e-5 at step 1, from identical weights, 5e-3 later) and the weight
update as a whole, ``‖Δw₂ − Δw₁‖ / ‖Δw₁‖ ≤ 0.05`` over all parameters (Δw from the initial weights).
Measured (lr 3e-5, 4 steps): losses within 7.5e-6 relative, gradient norms within 2.7e-4 (step 1: equal),
update 0.0035; with per-worker BatchNorm statistics the update differs by 1.24, with plain DDP averaging of the
masked means (no ``term_scales``) by 0.30: both fail.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from pipeline.train.data import StepRange
from pipeline.train.distributed import (
    GlobalBatchNorm,
    ShardedDropout,
    Workers,
    check_world_size,
    launch_workers,
    resolve_backend,
    term_normalisers,
    term_scales,
    worker_command,
    workers_from_env,
)
from pipeline.train.loop import train
from pipeline.train.settings import SourceSpec, TrainPaths, TrainSettings
from tests.conftest import make_tiny_smpl

#: Weight and loss tolerances of the 1- vs 2-worker comparison (module doc).
UPDATE_RTOL: float = 0.05
LOSS_RTOL: float = 1e-3
GRAD_NORM_RTOL: float = 5e-3
N_SAMPLES: int = 8
IMAGE_SIDE: int = 40
REGRESSOR_ROWS: dict[str, int] = {"h36m": 17, "extra": 9, "vertex_joints": 11}


def _world(root: Path) -> tuple[TrainSettings, TrainPaths]:
    """Body model, regressors and a labelled dataset where half the samples lack SMPL and 3D labels (so the
    workers' shares hold different numbers of labelled samples)."""
    rng = np.random.default_rng(0)
    models = root / "body_models"
    models.mkdir(parents=True)
    smpl = make_tiny_smpl(num_verts=60)
    np.savez(models / "SMPL_NEUTRAL.npz", **smpl)
    regressors = {}
    for key, rows in REGRESSOR_ROWS.items():
        m = rng.random((rows, 60))
        regressors[key] = m / m.sum(1, keepdims=True)
    np.savez(root / "joint_regressors.npz", **regressors)
    images = root / "images"
    images.mkdir()
    names = []
    for i in range(N_SAMPLES):
        name = f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)).save(images / name)
        names.append(name)
    part = np.concatenate([rng.uniform(5, 35, (N_SAMPLES, 24, 2)), np.ones((N_SAMPLES, 24, 1))], axis=2)
    S = np.concatenate([rng.normal(0, 0.3, (N_SAMPLES, 24, 3)), np.ones((N_SAMPLES, 24, 1))], axis=2)
    labelled = np.array([1, 1, 1, 0, 0, 1, 0, 0], dtype=bool)  # the two shares of a batch hold 0-2 labelled each
    S[~labelled, :, 3] = 0
    np.savez(root / "train.npz", imgname=np.array(names), center=np.full((N_SAMPLES, 2), IMAGE_SIDE / 2),
             scale=np.full(N_SAMPLES, IMAGE_SIDE / 200), part=part, openpose=np.zeros((N_SAMPLES, 25, 3)), S=S,
             pose=rng.normal(0, 0.2, (N_SAMPLES, 72)), shape=rng.normal(0, 0.5, (N_SAMPLES, 10)), has_smpl=labelled)
    settings = TrainSettings(
        run="sd", dsr_terms=(), seed=3, steps=4, batch_size=4, lr=3e-5, backbone="resnet18", image_size=32,
        render_size=16, datasets=(SourceSpec("toy", str(root / "train.npz"), str(images), "spin_npz"),),
        ratios=(1.0,), checkpoint_every=2, log_every=1, val_every=100, threads=1, device="cpu", progress=False,
    )
    paths = TrainPaths(body_models=str(models), joint_regressors=str(root / "joint_regressors.npz"))
    return settings, paths


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainSettings, TrainPaths, Path]:
    root = tmp_path_factory.mktemp("ddp")
    settings, paths = _world(root / "inputs")
    return settings, paths, root


@pytest.fixture(scope="module")
def one_worker(world: tuple[TrainSettings, TrainPaths, Path]) -> Path:
    settings, paths, root = world
    train(settings, paths, root / "w1")
    return root / "w1"


@pytest.fixture(scope="module")
def two_workers(world: tuple[TrainSettings, TrainPaths, Path]) -> Path:
    settings, paths, root = world
    summary = launch_workers(settings, paths, root / "w2", world_size=2, backend="gloo")
    assert summary["steps"] == settings.steps and summary["resumed_from"] == 0
    return root / "w2"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _train_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "train"]


# ------------------------------------------------------------------------------------ pure pieces
def test_step_range_shards_are_disjoint_and_make_up_the_batch() -> None:
    whole = list(StepRange(2, 4, 6))
    shards = [list(StepRange(2, 4, 6, (r, 3))) for r in range(3)]
    assert shards[1] == [14, 15, 20, 21]  # step 2 positions 2-3, step 3 positions 2-3
    assert sorted(i for shard in shards for i in shard) == whole
    assert len(StepRange(2, 4, 6, (0, 3))) == 4
    with pytest.raises(ValueError, match="does not split a batch of 6"):
        StepRange(0, 1, 6, (0, 4))


def test_settings_are_checked_with_their_names() -> None:
    assert check_world_size(2, 64) == 32
    with pytest.raises(ValueError, match=r"train.batch_size \(6\).*multiple of train.distributed.world_size \(4\)"):
        check_world_size(4, 6)
    assert resolve_backend("auto", "cpu") == "gloo" and resolve_backend("auto", "cuda") == "nccl"
    with pytest.raises(ValueError, match="train.distributed.backend: nccl needs CUDA"):
        resolve_backend("nccl", "cpu")
    with pytest.raises(ValueError, match="allowed: auto, nccl, gloo"):
        resolve_backend("mpi", "cpu")


def test_workers_come_from_torchrun_or_slurm_and_launch_accordingly() -> None:
    assert workers_from_env({}) == Workers()
    assert workers_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Workers(1, 2, 1)
    assert workers_from_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}) == Workers(3, 4, 1)
    local = worker_command("w.json", 2, {})
    assert local[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    slurm = worker_command("w.json", 2, {"SLURM_JOB_ID": "7"})
    assert slurm[:3] == ["srun", "--ntasks=2", "--kill-on-bad-exit=1"] and slurm[-1] == "w.json"


def test_each_worker_finds_its_gpu_whether_the_node_or_the_task_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun: every GPU of the node visible, worker r uses GPU r. SLURM with one GPU bound per task: each task
    sees one GPU, index 0, whatever its SLURM_LOCALID (``cuda:1`` there would be an invalid device ordinal)."""
    second = Workers(rank=1, world_size=2, local_rank=1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert second.cuda_index() == 1 and second.device("cuda") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert second.cuda_index() == 0 and second.device("cuda") == torch.device("cuda", 0)
    assert second.device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        second.device("cuda")


def test_world_size_stays_out_of_the_params(world: tuple[TrainSettings, TrainPaths, Path]) -> None:
    """The rule's params (and so every existing job) are the same with train.distributed at any value: the
    settings never hold it (a machine setting like threads)."""
    import yaml

    from pipeline.config import validate_config
    from pipeline.train.settings import settings_from_config
    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate_config(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert cfg["train"]["distributed"] == {"world_size": 1, "backend": "auto"}
    stores = {n: f"results/masks/{n}.h5" for n in cfg["masks"]["datasets"]}

    def params(world_size: int) -> dict:
        train_cfg = {**cfg["train"], "distributed": {"world_size": world_size, "backend": "auto"}}
        return settings_from_config(train_cfg, cfg["assets"]["train_datasets"], stores, "dsr", master_seed=0,
                                    device="cpu").params_dict()

    assert params(1) == params(4)
    assert not any("distributed" in k or "world" in k for k in params(1))


def test_term_scales_give_the_global_mean() -> None:
    """Two workers with 3 and 1 labelled samples: the scaled local means average (DDP) to the mean over all 4."""
    values = torch.tensor([1.0, 2.0, 3.0, 10.0])
    local = {"keypoint_3d": 3.0}, {"keypoint_3d": 1.0}
    means = [values[:3].mean(), values[3:].mean()]
    scales = [term_scales(n, {"keypoint_3d": 4.0}, 2)["keypoint_3d"] for n in local]
    assert float(sum(s * m for s, m in zip(scales, means, strict=True)) / 2) == pytest.approx(float(values.mean()))
    assert term_scales({"dsr_c": 0.0}, {"dsr_c": 0.0}, 2) == {"dsr_c": 1.0}
    batch = {"has_pose_3d": torch.tensor([True, False]), "has_smpl": torch.tensor([True, True])}
    got = term_normalisers(["keypoint_2d", "keypoint_3d", "smpl_pose", "dsr_mc"], batch, {"dsr_mc": 1}, "valid_mean")
    assert got == {"keypoint_3d": 1.0, "smpl_pose": 2.0, "dsr_mc": 1.0}
    assert "dsr_mc" not in term_normalisers(["dsr_mc"], batch, {"dsr_mc": 1}, "batch_mean")


def _sync_batchnorm_worker(rank: int, init: str, x: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.manual_seed(5)
    bn = GlobalBatchNorm.convert(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0]
    drop = ShardedDropout(0.5, rank, 2)
    xr = x[rank * 2:(rank + 1) * 2].clone().requires_grad_(True)
    y = drop(bn(xr).flatten(1))
    (y * torch.arange(y.shape[1])).sum().backward()
    torch.save((y.detach(), xr.grad, bn.running_mean.clone(), bn.running_var.clone()), f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def test_batchnorm_uses_the_global_batch_and_dropout_the_global_mask(tmp_path: Path) -> None:
    """GlobalBatchNorm + ShardedDropout on 2 gloo workers = BatchNorm2d + Dropout on the whole batch: outputs,
    input gradients and running statistics; per-worker statistics (SPIN's DDP) would differ."""
    import torch.multiprocessing as mp

    x = torch.randn(4, 3, 5, 5) * 2 + 1
    x[2:] += 3  # the second worker's half has other statistics
    torch.manual_seed(5)
    bn, drop = torch.nn.BatchNorm2d(3), torch.nn.Dropout(0.5)
    xa = x.clone().requires_grad_(True)
    y = drop(bn(xa).flatten(1))
    (y * torch.arange(y.shape[1])).sum().backward()
    mp.start_processes(_sync_batchnorm_worker, args=(f"file://{tmp_path / 'rendezvous'}", x, str(tmp_path)),
                       nprocs=2, start_method="spawn")
    out = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(torch.cat([out[0][0], out[1][0]]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([out[0][1], out[1][1]]), xa.grad, atol=1e-4, rtol=1e-4)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][2], bn.running_mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out[rank][3], bn.running_var, atol=1e-6, rtol=1e-6)
    whole = torch.nn.functional.batch_norm(x, None, None, training=True)[:2]
    half = torch.nn.functional.batch_norm(x[:2], None, None, training=True)  # per-worker statistics
    assert (whole - half).abs().max() > 0.5


# ------------------------------------------------------------------------------------ 2 workers vs 1
def _initial_weights(settings: TrainSettings, paths: TrainPaths) -> dict[str, torch.Tensor]:
    from pipeline.train.loop import _sources, build_model

    return build_model(settings, paths, _sources(settings, need_masks=False)[0])[0].state_dict()


def test_two_workers_train_as_one(world: tuple[TrainSettings, TrainPaths, Path], one_worker: Path,
                                  two_workers: Path) -> None:
    settings, paths, _ = world
    a, b = _weights(one_worker / "checkpoints/final.pt"), _weights(two_workers / "checkpoints/final.pt")
    assert a.keys() == b.keys()
    w0 = _initial_weights(settings, paths)
    params = [k for k in a if a[k].is_floating_point() and "running" not in k]
    d1 = torch.cat([(a[k].double() - w0[k].double()).flatten() for k in params])
    d2 = torch.cat([(b[k].double() - w0[k].double()).flatten() for k in params])
    ratio = float((d2 - d1).norm() / d1.norm())
    assert ratio <= UPDATE_RTOL, f"2-worker update differs from the 1-worker one by {ratio:.2e} (relative)"
    assert int(b["layer1.0.bn1.num_batches_tracked"]) == 4
    torch.testing.assert_close(b["layer1.0.bn1.running_var"], a["layer1.0.bn1.running_var"], atol=1e-5, rtol=1e-4)
    rows1, rows2 = _train_rows(one_worker), _train_rows(two_workers)
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == ["1", "2", "3", "4"]
    for r1, r2 in zip(rows1, rows2, strict=True):
        for key in ("total", "keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas", "camera"):
            assert float(r2[key]) == pytest.approx(float(r1[key]), rel=LOSS_RTOL, abs=1e-7), (r1["step"], key)
        # step 1 starts from the same weights: its gradient agrees to float precision; later ones after Adam noise
        rel = 1e-5 if r1["step"] == "1" else GRAD_NORM_RTOL
        assert float(r2["grad_norm"]) == pytest.approx(float(r1["grad_norm"]), rel=rel), r1["step"]
    assert float(rows1[0]["keypoint_3d"]) > 0 and float(rows1[0]["smpl_pose"]) > 0
    assert len({r["total"] for r in rows1}) == 4  # the loss moves: the runs trained
    # rank 0 alone wrote: one TensorBoard event file
    assert len(list((two_workers / "tensorboard").glob("events.*"))) == 1


@pytest.mark.slow
def test_stopped_two_worker_run_resumes_to_the_same_weights(world: tuple[TrainSettings, TrainPaths, Path],
                                                            two_workers: Path) -> None:
    """A 2-worker run stopped after 2 of 4 steps and resumed ends with the uninterrupted 2-worker run's weights.
    About a minute in ``make test`` (with its fixture): three torchrun launches of 2 processes, each importing torch
    and joining a gloo group, beside the other tests."""
    settings, paths, root = world
    out = root / "w2_stopped"
    first = launch_workers(settings, paths, out, world_size=2, backend="gloo", stop_after=2)
    assert first["steps"] == 2 and not (out / "checkpoints/final.pt").exists()
    resumed = launch_workers(settings, paths, out, world_size=2, backend="gloo")
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    a, b = _weights(two_workers / "checkpoints/final.pt"), _weights(out / "checkpoints/final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed 2-worker run differs from the uninterrupted one"
    def curve(run_dir: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in _train_rows(run_dir)]

    assert curve(out) == curve(two_workers)  # metrics.csv of the resumed run: the uninterrupted one's
    # the resume guard: other settings never resume (a new learning rate trains anew from step 0)
    changed = dataclasses.replace(settings, lr=5e-4, steps=2)
    again = launch_workers(changed, paths, out, world_size=2, backend="gloo")
    assert again["resumed_from"] == 0 and again["steps"] == 2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (benchmarks/gpu_check.sh)")
def test_two_cuda_workers_train_as_one_cuda(world: tuple[TrainSettings, TrainPaths, Path]) -> None:
    """NCCL, torch's SyncBatchNorm, one GPU per worker: the CPU test's comparison on CUDA (looser on the losses:
    cuDNN picks its own convolution algorithms per batch shape)."""
    settings, paths, root = world
    cuda = dataclasses.replace(settings, device="cuda")
    train(cuda, paths, root / "cuda1")
    launch_workers(cuda, paths, root / "cuda2", world_size=2, backend="auto")
    a, b = _weights(root / "cuda1/checkpoints/final.pt"), _weights(root / "cuda2/checkpoints/final.pt")
    w0 = _initial_weights(settings, paths)
    params = [k for k in a if a[k].is_floating_point() and "running" not in k]
    d1 = torch.cat([(a[k].double() - w0[k].double()).flatten() for k in params])
    d2 = torch.cat([(b[k].double() - w0[k].double()).flatten() for k in params])
    assert float((d2 - d1).norm() / d1.norm()) <= UPDATE_RTOL
    for r1, r2 in zip(_train_rows(root / "cuda1"), _train_rows(root / "cuda2"), strict=True):
        assert float(r2["total"]) == pytest.approx(float(r1["total"]), rel=1e-2), r1["step"]


# ------------------------------------------------------------------------------------------ the rule
def test_rule_asks_slurm_for_one_task_per_worker_only_when_distributed(tmp_path: Path) -> None:
    """Dry runs: at world_size 2 train_regressor's job carries tasks/tasks_per_gpu/mpi (the SLURM executor then
    submits --ntasks=2 --ntasks-per-gpu=1 and runs the script once, which starts the workers with srun); at the
    default 1 its resources and params are the single-process job's."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    from tests.conftest import copy_workflow, run_snakemake

    work = copy_workflow(tmp_path / "project")
    jobs = {}
    for world in (1, 2):
        out = run_snakemake(work, "-n", "results/train/sd/metrics.csv", "--config",
                            f"train={{distributed: {{world_size: {world}}}}}")
        assert out.returncode == 0, out.stderr[-2000:]
        block = (out.stdout + out.stderr).split("rule train_regressor:")[1].split("\n\n")[0]
        jobs[world] = next(line.strip() for line in block.splitlines() if line.strip().startswith("resources:"))
    assert "tasks" not in jobs[1] and "mpi" not in jobs[1]
    assert "tasks=2, tasks_per_gpu=1, mpi=srun, ddp_workers=2, ddp_backend=auto" in jobs[2]
    assert "ddp_workers" not in jobs[1]  # the script runs one process without it

    class Resources(dict):
        __getattr__ = dict.get

    job = type("Job", (), {"resources": Resources(gpu=2, tasks=2, tasks_per_gpu=1, mpi="srun", cpus_per_task=8,
                                                  mem_mb=64000, runtime=2880), "threads": 1})()
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "-p gpu",
              "workdir": "."}
    sbatch = get_submit_command(job, params)
    assert "--ntasks=2" in sbatch and "--ntasks-per-gpu=1" in sbatch and "--cpus-per-task=8" in sbatch
