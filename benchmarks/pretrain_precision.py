"""Benchmark (issue #15): the open world's pretraining run in fp32 or under bf16 autocast, then scored.

Trains the ``pretrain_regressor`` run's settings (config/config.yaml ``open_world.pretrain``) with the precision
and step count given, on one thread, into ``<project>/pretrain_precision/<name>``; prints the wall time, the
held-out validation rows (the figures to choose by) and then the 3DPW-style and MPI-INF-3DHP-style test scores.
The project must hold the pretraining shards, the body models and the two test splits, e.g.:

    snakemake --cores 2 resources/datasets/pretrain/shard_{0,1}/pretrain_{0,1}.npz \\
        resources/datasets/mpi_inf_3dhp_valid/mpi_inf_3dhp_valid.npz resources/datasets/3dpw_test/3dpw_test.npz

Run (README, Pretraining; the table there ran fp32 2000 and bf16 2000 side by side, then bf16 2560):

    .venv/bin/python benchmarks/pretrain_precision.py <project> bf16_2560 --precision bf16 --steps 2560
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch._dynamo  # (imported before any EGL context)
import yaml

from pipeline.config import validate_config
from pipeline.evaluate.predict import predict_checkpoint, score_split
from pipeline.evaluate.protocols import EvalResult
from pipeline.train.loop import train
from pipeline.train.pretrain import pretrain_settings
from pipeline.train.settings import TrainPaths, TrainSettings

ROOT = Path(__file__).resolve().parent.parent


def pretraining_run(work: Path) -> tuple[dict, TrainSettings]:
    """The validated config of project ``work`` and its ``pretrain_regressor`` run's settings (its shards, one
    thread, no progress bar), as the rule builds them."""
    cfg = validate_config(yaml.safe_load((work / "config" / "config.yaml").read_text()),
                          str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    pre = cfg["open_world"]["pretrain"]
    shard_root = work / "resources" / "datasets" / "pretrain"
    shards = [(str(shard_root / f"shard_{k}" / f"pretrain_{k}.npz"), str(shard_root / f"shard_{k}" / "images"))
              for k in range(pre["images"]["shards"])]
    return cfg, pretrain_settings(pre, cfg["train"], shards, master_seed=cfg["seed"], threads=1, progress=False)


def score_test_splits(work: Path, cfg: dict, checkpoint: Path, prefix: Path, run: str,
                      splits: tuple[str, ...]) -> Iterator[tuple[str, EvalResult]]:
    """Predict and score ``checkpoint`` on the project's test ``splits`` through the pipeline's own
    ``predict_checkpoint`` / ``score_split``; files ``<prefix>_<split>.*``; yields (split, result)."""
    models = work / "resources" / "body_models"
    regressors = models / "joint_regressors.npz"
    for split in splits:
        spec = cfg["assets"]["test_datasets"][split]
        ann, images, stem = work / spec["annotations"], work / spec["images"], f"{prefix}_{split}"
        predict_checkpoint(checkpoint, ann, spec["format"], images, models, regressors, f"{stem}.predictions.npz",
                           split=split, run=run, progress=False)
        yield split, score_split(f"{stem}.predictions.npz", ann, spec["format"], models, regressors, f"{stem}.json",
                                 f"{stem}.result.npz", split=split, run=run, world="open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("name")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=None, help="default: open_world.pretrain.steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work: Path = args.project.resolve()
    cfg, settings = pretraining_run(work)
    settings = dataclasses.replace(settings, precision=args.precision, steps=args.steps or settings.steps)
    models = work / "resources" / "body_models"
    regressors = models / "joint_regressors.npz"
    out = work / "pretrain_precision" / args.name
    start = time.perf_counter()
    train(settings, TrainPaths(body_models=str(models), joint_regressors=str(regressors)), out)
    print(f"{args.name}: {settings.steps} steps in {args.precision}, {time.perf_counter() - start:.0f} s")
    with (out / "checkpoints" / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row["phase"] == "val":
                print(f"  held-out step {row['step']}: MPJPE / PA-MPJPE / PVE {float(row['val_mpjpe_mm']):.1f} / "
                      f"{float(row['val_pa_mpjpe_mm']):.1f} / {float(row['val_pve_mm']):.1f}")
    for split, result in score_test_splits(work, cfg, out / "checkpoints" / "final.pt", out / "eval", args.name,
                                           ("3dpw", "mpi_inf_3dhp")):
        print(f"  test {split}: MPJPE / PA-MPJPE / PVE {result.mpjpe_mm:.1f} / {result.pa_mpjpe_mm:.1f} / "
              f"{result.pve_mm:.1f}")

if __name__ == "__main__":
    main()
