"""Benchmark (issue #15): choose the fine-tuning schedule (learning rate, steps) on held-out validation samples.

Works in a project where ``make demo`` has run (it needs the body models, the pretrained checkpoint, the
fine-tuning data and ``results/train/<run>/config.yaml``). Three steps, files under ``<project>/finetune_schedule``:

1. ``validation``: three validation splits drawn like the 3DPW-, MPI-INF-3DHP- and H3.6M-p1-style test splits
   (same generator, clutter and camera settings) but from the image seeds of group ``val``, so they share no
   image with any training, pretraining or test split. No test image is looked at while choosing.
2. ``run NAME --lr X --steps N``: fine-tunes the project's ``sd`` (or ``--run dsr``) settings with that schedule
   from the pretrained checkpoint, on one thread, and scores the result on the validation splits;
   ``score NAME CHECKPOINT`` scores an existing checkpoint (the pretrained start, the demo's runs).
3. ``table``: every scored schedule against the pretrained start: MPJPE per split, its change, the spread of
   the per-sample changes, and the mean over all validation samples (the figure the README's choice used).

The README's table (Results) was made with::

    .venv/bin/python benchmarks/finetune_schedule.py <project> validation
    .venv/bin/python benchmarks/finetune_schedule.py <project> score pretrained results/pretrain/model_checkpoint.pt
    .venv/bin/python benchmarks/finetune_schedule.py <project> run lr2.5e-6_250 --lr 2.5e-6 --steps 250
    .venv/bin/python benchmarks/finetune_schedule.py <project> table
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import yaml

#: Validation split -> (test split it is drawn like, samples).
SPLITS = {"3dpw": 200, "mpi_inf_3dhp": 200, "h36m_p1": 100}


def make_validation(work: Path, out: Path) -> None:
    """Generate the validation splits of :data:`SPLITS` (SPIN npz, no label maps) into ``out/<split>``."""
    from pipeline.world.images import make_image_split, split_spec

    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    images = cfg["open_world"]["images"]
    models = work / "resources" / "body_models"
    for split, count in SPLITS.items():
        spec = dataclasses.replace(split_spec(split, "test", dict(images["test"][split], count=count), "spin_npz"),
                                   group="val", labels=False)
        make_image_split(models, models / "joint_regressors.npz", out / split / f"{split}.npz", out / split / "images",
                         spec, size=images["size"], focal_range=tuple(images["focal_range"]),
                         person_height_range=tuple(images["person_height_range"]), noise=None, seed=cfg["seed"],
                         azimuth_std_deg=images["azimuth_std_deg"])


def score(work: Path, checkpoint: Path, out: Path, name: str) -> None:
    """Predict and score ``checkpoint`` on every validation split through the pipeline's own code
    (``pretrain_precision.score_test_splits``); files ``out/val_<split>.*``."""
    from pretrain_precision import score_test_splits  # benchmarks/, beside this script

    val = work / "finetune_schedule" / "val"
    splits = {"assets": {"test_datasets": {
        split: {"annotations": str(val / split / f"{split}.npz"), "images": str(val / split / "images"),
                "format": "spin_npz"} for split in SPLITS}}}
    out.mkdir(parents=True, exist_ok=True)
    for split, result in score_test_splits(work, splits, checkpoint, out / "val", name, tuple(SPLITS)):
        print(f"{name} {split}: MPJPE / PA-MPJPE / PVE {result.mpjpe_mm:.1f} / {result.pa_mpjpe_mm:.1f} / "
              f"{result.pve_mm:.1f}")


def fine_tune(work: Path, out: Path, run: str, lr: float | None, steps: int | None,
              dsr_start: int | None) -> Path:
    """The project's ``run`` settings with another schedule, fine-tuned from its pretrained checkpoint."""
    from pipeline.train.loop import train
    from pipeline.train.settings import TrainPaths, TrainSettings

    record = yaml.safe_load((work / "results" / "train" / run / "config.yaml").read_text())
    for machine_key in ("device", "threads", "git_sha"):
        record.pop(machine_key, None)
    settings = TrainSettings.from_dict(record, device="cpu", threads=1, progress=False)
    changes = {k: v for k, v in (("lr", lr), ("steps", steps), ("dsr_start_iter", dsr_start)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    models = work / "resources" / "body_models"
    paths = TrainPaths(body_models=str(models), joint_regressors=str(models / "joint_regressors.npz"),
                       prior=str(work / "results" / "prior" / "semantic_prior.npz") if settings.dsr_terms else None,
                       pretrained=str(work / "results" / "pretrain" / "model_checkpoint.pt"))
    start = time.perf_counter()
    train(settings, paths, out)
    print(f"{out.name}: {settings.steps} steps at lr {settings.lr:g}, {time.perf_counter() - start:.0f} s")
    return out / "checkpoints" / "final.pt"


def table(root: Path) -> None:
    """Every scored schedule under ``root`` against ``root/pretrained``."""
    def errors(name: str, split: str, key: str = "per_sample_mpjpe_mm") -> np.ndarray:
        with np.load(root / name / f"val_{split}.result.npz") as f:
            return f[key]

    names = sorted(p.name for p in root.iterdir() if (p / "val_h36m_p1.result.npz").exists())
    if "pretrained" not in names:
        raise SystemExit(f"{root}/pretrained has no scores: run `score pretrained results/pretrain/model_checkpoint.pt`")
    print("MPJPE mm (change vs pretrained, sd of the per-sample change) per split; mean over all samples")
    print(f"| schedule | {' | '.join(SPLITS)} | all {sum(SPLITS.values())} |")
    print("|---|" + "---:|" * (len(SPLITS) + 1))
    for name in ["pretrained"] + [n for n in names if n != "pretrained"]:
        cells = []
        for split in SPLITS:
            base, ours = errors("pretrained", split), errors(name, split)
            change = (ours - base)
            cells.append(f"{ours.mean():.1f} ({change.mean() / base.mean() * 100:+.1f} %, {change.std():.1f})")
        pooled = np.concatenate([errors(name, s) for s in SPLITS]).mean()
        print(f"| {name} | {' | '.join(cells)} | {pooled:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("project", type=Path)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validation")
    run = sub.add_parser("run")
    run.add_argument("name")
    run.add_argument("--run", default="sd", help="the project's run whose settings are fine-tuned (sd, dsr)")
    run.add_argument("--lr", type=float)
    run.add_argument("--steps", type=int)
    run.add_argument("--dsr-start", type=int, help="dsr_start_iter (DSR runs)")
    scored = sub.add_parser("score")
    scored.add_argument("name")
    scored.add_argument("checkpoint", type=Path, help="relative to the project")
    sub.add_parser("table")
    args = parser.parse_args()
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    work: Path = args.project.resolve()
    root = work / "finetune_schedule"
    if args.command == "validation":
        make_validation(work, root / "val")
    elif args.command == "table":
        table(root)
    else:
        import torch
        import torch._dynamo  # (before any EGL context, as in pretrain_precision.py)

        torch.set_num_threads(1)
        os.chdir(work)  # the run's dataset paths are relative to the project
        checkpoint = work / args.checkpoint if args.command == "score" else \
            fine_tune(work, root / args.name, args.run, args.lr, args.steps, args.dsr_start)
        score(work, checkpoint, root / args.name, args.name)


if __name__ == "__main__":
    main()
