"""Benchmark: training-step time SD vs SD+DSR (DSR-MC + DSR-C) and data-loader throughput vs the step.

Uses the default open world (run ``snakemake --cores 2 all`` first so resources/ and results/masks exist), or the
project folder given with ``--root`` (benchmarks/gpu_check.sh builds a tiny one).
CPU at demo settings (config/config.yaml ``train``), one thread, measured after warm-up in one run; on a CUDA
device also at paper settings (ResNet-50, 224² crops and renders, batch 64).

Targets (issue #8): step(SD+DSR) / step(SD) ≤ 1.3 on CPU at demo settings, ≤ 1.15 on GPU at paper settings;
the loader must deliver more samples/s than the step consumes.

Run: .venv/bin/python benchmarks/bench_train.py [--steps 10] [--precision bf16]

``--workers 2`` instead times whole training runs (:func:`pipeline.train.loop.train`, data loading included) with
one process and with 2 DDP workers (gloo, CPU; pipeline.train.distributed) at the demo's model and batch
(ResNet-18, 64² crops, global batch 16, SD) on the generated toy world of tests/test_ddp.py, so it needs no
project outputs. Both use all the cores: 1 worker × 2 threads vs 2 workers × 1 thread on 2 cores.
Expected ratio t(2 workers) / t(1 worker × 2 threads) on 2 idle cores: about 2, not 1. Half the batch costs a
worker more than half the work: on one thread ResNet-18 at 64² takes 125 ms forward + backward at batch 8 and
192 ms at batch 16 (58 ms do not shrink with the batch: the weight gradients, per-layer overheads), while two
threads in one process share all of it. On top come 40 BatchNorm synchronisations per step (one all-gather per
layer forward and one backward, each ≈ 0.3 ms plus the wait for the slower worker) and the gradient all-reduce
(11.7M floats, ≈ 30–50 ms over loopback). Measured idle (2-core machine, 40 steps): 141–143 ms/step with 1
worker × 2 threads, 223–226 with 1 × 1 thread, 310–318 with 2 workers: ratio 2.18–2.26 (1.37–1.43 against one
thread). DDP pays off with one GPU per worker, not on a 2-core CPU.

Run: .venv/bin/python benchmarks/bench_train.py --workers 2 [--steps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # (imported before any EGL context)
import yaml

from pipeline.body.model import BodyModel
from pipeline.config import validate_config
from pipeline.losses.composite import LossWeights, total_loss
from pipeline.train.data import MixedDataset, SampleSource
from pipeline.train.loop import (
    PriorTextures,
    adam,
    build_model,
    dsr_terms,
    predict_body,
    standard_terms,
)
from pipeline.train.settings import TrainPaths, TrainSettings, settings_from_config

ROOT = Path(__file__).resolve().parent.parent


def _settings(run: str, device: str, root: Path = ROOT, **overrides: object) -> tuple[TrainSettings, TrainPaths]:
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    validate_config(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    stores = {n: str(root / f"results/masks/{n}.h5") for n in cfg["masks"]["datasets"]}
    for entry in cfg["assets"]["train_datasets"].values():
        entry["annotations"], entry["images"] = str(root / entry["annotations"]), str(root / entry["images"])
    s = settings_from_config(cfg["train"], cfg["assets"]["train_datasets"], stores, run, master_seed=0,
                             device=device, threads=1, progress=False)
    paths = TrainPaths(body_models=str(root / "resources/body_models"),
                       joint_regressors=str(root / "resources/body_models/joint_regressors.npz"),
                       prior=str(root / "results/prior/semantic_prior.npz"))
    return dataclasses.replace(s, dsr_start_iter=0, **overrides), paths


def _batches(settings: TrainSettings, n: int) -> tuple[list[dict[str, torch.Tensor]], float]:
    """n collated batches and the loader's samples/s (one process, like num_workers: 0)."""
    sources = [SampleSource(s, settings.image_size, settings.render_size) for s in settings.datasets]
    mixed = MixedDataset(sources, settings.ratios, settings.batch_size, settings.seed, settings.augment)
    start = time.perf_counter()
    out = [torch.utils.data.default_collate([mixed[k * settings.batch_size + p] for p in range(settings.batch_size)])
           for k in range(n)]
    return out, n * settings.batch_size / (time.perf_counter() - start)


def _step_time(settings: TrainSettings, paths: TrainPaths, batches: list[dict[str, torch.Tensor]]) -> float:
    device = torch.device(settings.device)
    sources = [SampleSource(s, settings.image_size, settings.render_size) for s in settings.datasets]
    model, _ = build_model(settings, paths, sources)
    model.to(device).train()
    body = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors).to(device)
    prior = (PriorTextures(paths.prior, body.num_faces, sources[0].mapping.matrix(), device)
             if settings.dsr_terms else None)
    opt = adam(model.parameters(), lr=settings.lr)
    weights = LossWeights.from_dict(settings.loss_weights)
    times = []
    for k, raw in enumerate(batches):
        batch = {key: v.to(device) for key, v in raw.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out, posed, cam_t = predict_body(model, body, batch["img"], settings.precision, vertices=prior is not None)
        terms = standard_terms(out, posed, cam_t, batch)
        if prior is not None:
            terms.update(dsr_terms(settings, prior, posed.vertices, body.faces, cam_t, batch)[0])
        loss, _ = total_loss(terms, weights, k, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))  # first steps warm up allocators and caches


def compare(label: str, device: str, steps: int, root: Path = ROOT, **overrides: object) -> None:
    sd, paths = _settings("sd", device, root, **overrides)
    dsr, _ = _settings("dsr", device, root, **overrides)
    batches, loader_rate = _batches(dsr, steps)
    t_sd = _step_time(sd, paths, batches)
    t_dsr = _step_time(dsr, paths, batches)
    print(f"[{label}] {dsr.precision}, batch {dsr.batch_size}, {dsr.backbone}, crop {dsr.image_size}², render {dsr.render_size}²: "
          f"step SD {t_sd * 1000:.0f} ms, SD+DSR {t_dsr * 1000:.0f} ms, ratio {t_dsr / t_sd:.2f}; "
          f"step consumes {dsr.batch_size / t_dsr:.1f} samples/s, loader (1 process) delivers {loader_rate:.1f} "
          f"samples/s (ratio {loader_rate / (dsr.batch_size / t_dsr):.2f})")


def compare_workers(world_size: int, steps: int) -> None:
    """Samples/s of a whole SD run (data loading, steps, checkpoints) with 1 process vs ``world_size`` workers."""
    import os
    import sys
    import tempfile

    from pipeline.train.distributed import launch_workers
    from pipeline.train.loop import train

    sys.path.insert(0, str(ROOT))  # the toy world generator of the tests
    from tests.test_ddp import _world

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        settings, paths = _world(Path(tmp) / "inputs")
        settings = dataclasses.replace(settings, steps=steps, image_size=64, batch_size=16, log_every=steps,
                                       checkpoint_every=steps, lr=3e-5, threads=cores)
        one = train(settings, paths, Path(tmp) / "w1")
        single = train(dataclasses.replace(settings, threads=1), paths, Path(tmp) / "w1t1")
        many = launch_workers(settings, paths, Path(tmp) / f"w{world_size}", world_size=world_size, backend="gloo")
    t1, t1s, tw = (settings.batch_size / r["samples_per_s"] for r in (one, single, many))
    print(f"[cpu, {cores} cores] {settings.backbone}, crop {settings.image_size}², global batch {settings.batch_size}, "
          f"{steps} steps: 1 worker × {cores} threads {t1 * 1000:.0f} ms/step, 1 worker × 1 thread "
          f"{t1s * 1000:.0f} ms/step, {world_size} workers × {max(1, cores // world_size)} thread(s) "
          f"{tw * 1000:.0f} ms/step; ratio {world_size} workers / 1 worker: {tw / t1:.2f} (vs 1 thread: {tw / t1s:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0, help="compare 1 process with this many DDP workers")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="project folder whose config, resources/ and results/ to use (default: this one)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="the regressor's forward pass (train.precision); bf16 = bfloat16 autocast")
    parser.add_argument("--paper-device", choices=["cuda", "cpu", "none"],
                        default="cuda" if torch.cuda.is_available() else "none",
                        help="where to time the paper settings (default: cuda when present); cpu checks the code "
                             "path at a small --paper-batch")
    parser.add_argument("--paper-batch", type=int, default=64, help="batch of the paper settings (paper: 64)")
    args = parser.parse_args()
    if args.workers > 1:
        compare_workers(args.workers, args.steps)
        return
    torch.set_num_threads(1)
    compare("cpu, demo settings, 1 thread", "cpu", args.steps, args.root, precision=args.precision)
    if args.paper_device != "none":
        compare(f"{args.paper_device}, paper settings", args.paper_device, args.steps, args.root,
                backbone="resnet50", image_size=224, render_size=224, batch_size=args.paper_batch,
                precision=args.precision)
    else:
        print("paper settings not timed (--paper-device none; the default without a CUDA device)")


if __name__ == "__main__":
    main()
