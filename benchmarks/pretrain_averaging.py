"""Benchmark (issue #15): do averaged weights or recomputed BatchNorm statistics make a better pretrained start?

Trains the project's ``pretrain_regressor`` run (config/config.yaml ``open_world.pretrain``, the precision it
resolves to, one thread) through the training loop itself, with an exponential moving average (EMA) of the weights
and BatchNorm buffers updated after every optimiser step, into ``<project>/pretrain_averaging/ema_<decay>``.
Then it scores three networks on the held-out pretraining samples (the figures to choose by) and on the test
splits:

- ``raw``: the final weights, what the rule writes (the same numbers as the project's own pretraining run);
- ``ema``: the EMA weights;
- ``precise_bn``: the final weights with every BatchNorm layer's statistics recomputed as the plain mean over
  ``--bn-batches`` training batches (augmented as in training, no gradient) instead of the running average.

The project must hold the pretraining shards, the body models and the test splits (a finished ``make demo``).

Run: .venv/bin/python benchmarks/pretrain_averaging.py <project> --decay 0.99 [--bn-batches 200]

Measured at ecc9506 on the demo's project (README Results): raw 117.0 / 56.7 / 165.3 mm held-out; EMA 0.99
116.6 / 56.5 / 165.3; EMA 0.998 121.6 / 58.1 / 171.0; precise BN 116.9 / 56.6 / 165.3.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch._dynamo  # (imported before any EGL context)
from pretrain_precision import (  # benchmarks/, beside this script
    pretraining_run,
    score_test_splits,
)
from torch.utils.data import DataLoader

from pipeline.body.model import BodyModel
from pipeline.model.hmr import HMR
from pipeline.runtime import resolve_precision
from pipeline.train import loop
from pipeline.train.data import MixedDataset, StepRange, to_tensors
from pipeline.train.settings import TrainPaths, TrainSettings

TEST_SPLITS = ("3dpw", "mpi_inf_3dhp", "h36m_p1", "h36m_p2")


class EmaTracker:
    """Wraps the loop's optimiser factory: every ``step()`` of the optimiser it builds is followed by
    ``ema = decay · ema + (1 − decay) · weights`` over the model's floating-point state (BatchNorm buffers
    included; integer buffers are copied)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.model: torch.nn.Module | None = None
        self.ema: torch.nn.Module | None = None

    def build_model(self, settings: TrainSettings, paths: TrainPaths, sources: list) -> tuple[HMR, str]:
        model, loaded = _BUILD_MODEL(settings, paths, sources)
        self.model = model
        return model, loaded

    def adam(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
        optimizer = _ADAM(params, lr, weight_decay)
        if self.model is None:
            raise RuntimeError("the optimiser was built before the model")
        self.ema = copy.deepcopy(self.model)
        step = optimizer.step

        def step_and_average(*args: object, **kwargs: object) -> object:
            result = step(*args, **kwargs)
            self.update()
            return result

        optimizer.step = step_and_average  # type: ignore[method-assign]
        return optimizer

    @torch.no_grad()
    def update(self) -> None:
        assert self.model is not None and self.ema is not None
        for avg, now in zip(self.ema.state_dict().values(), self.model.state_dict().values(), strict=True):
            if avg.is_floating_point():
                avg.lerp_(now, 1.0 - self.decay)
            else:
                avg.copy_(now)


_BUILD_MODEL, _ADAM = loop.build_model, loop.adam


@torch.no_grad()
def precise_bn(model: HMR, settings: TrainSettings, sources: list, batches: int, precision: str) -> HMR:
    """A copy of ``model`` whose BatchNorm statistics are the mean over ``batches`` augmented training batches."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    mixed = MixedDataset(sources, settings.ratios, settings.batch_size, settings.seed + 7, settings.augment)
    model.train()
    for raw in DataLoader(mixed, batch_size=settings.batch_size, sampler=StepRange(0, batches, settings.batch_size)):
        images = to_tensors(raw, torch.device("cpu"))["img"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(images)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--decay", type=float, default=0.99)
    parser.add_argument("--bn-batches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=None, help="default: open_world.pretrain.steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work: Path = args.project.resolve()
    cfg, settings = pretraining_run(work)
    precision = resolve_precision(settings.precision, "cpu")
    settings = dataclasses.replace(settings, precision=precision, steps=args.steps or settings.steps)
    models = work / "resources" / "body_models"
    regressors = models / "joint_regressors.npz"
    out = work / "pretrain_averaging" / f"ema_{args.decay}"

    tracker = EmaTracker(args.decay)
    loop.build_model, loop.adam = tracker.build_model, tracker.adam
    try:
        start = time.perf_counter()
        loop.train(settings, TrainPaths(body_models=str(models), joint_regressors=str(regressors)), out)
    finally:
        loop.build_model, loop.adam = _BUILD_MODEL, _ADAM
    print(f"{settings.steps} steps in {precision} with EMA {args.decay}: {time.perf_counter() - start:.0f} s")

    state = torch.load(out / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    final = HMR(backbone=settings.backbone, n_iter=settings.n_iter, num_betas=settings.num_betas)
    final.load_state_dict(state["model"])
    sources, val_source, val_index = loop._sources(settings, need_masks=False)
    body = BodyModel(models, "neutral", joint_regressors=regressors)
    gt_models = {g: BodyModel(models, g, joint_regressors=regressors) for g in ("male", "female", "neutral")}
    assert tracker.ema is not None and val_source is not None
    candidates = {"raw": final, f"ema_{args.decay}": tracker.ema,
                  f"precise_bn_{args.bn_batches}": precise_bn(final, settings, sources, args.bn_batches, precision)}
    for name, model in candidates.items():
        held = loop.validate(model, body, val_source, val_index, settings.batch_size, torch.device("cpu"), gt_models)
        parts = [(f"{name}: held-out {held['val_mpjpe_mm']:.1f} / {held['val_pa_mpjpe_mm']:.1f} / "
                 f"{held['val_pve_mm']:.1f}")]
        path = out / f"{name}.pt"
        torch.save({**state, "model": model.state_dict()}, path)
        for split, result in score_test_splits(work, cfg, path, out / name, name, TEST_SPLITS):
            parts.append(f"{split} {result.mpjpe_mm:.1f} / {result.pa_mpjpe_mm:.1f}" +
                         (f" / {result.pve_mm:.1f}" if split == "3dpw" else ""))
        print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
