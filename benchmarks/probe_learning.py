"""Probe: can the regressor learn? Overfit a fixed batch, per-term gradient sizes (issue #15).

Uses the default open world (build its training splits first, e.g. ``snakemake --cores 2
resources/datasets/h36m_train/h36m_train.npz``). A fixed batch of ``--n`` H36M-style training crops (SMPL and
3D joints for every sample) is trained for ``--steps`` steps (:func:`pipeline.train.probe.fit_fixed_batch`:
dropout off, BatchNorm in training mode), without augmentation or (``--augment``) with a fresh SPIN
augmentation of the same samples at every step; training-set MPJPE / PA-MPJPE every ``--every`` steps. At the
first step it prints the size of each loss term's gradient (after its weight and SPIN's ×60) at the head
(``decpose``) and at the first backbone layer (``conv1``).

Run: .venv/bin/python benchmarks/probe_learning.py [--n 32] [--steps 300] [--lr 1e-4] [--augment]
     [--aug-settings '{flip_prob: 0}'] [--weights '{smpl_pose: 10}'] [--pretrained results/pretrain/model_checkpoint.pt]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch._dynamo  # noqa: F401  (before any EGL context)
import numpy as np
import torch
import yaml

from pipeline.body.model import BodyModel
from pipeline.config import validate_config
from pipeline.losses.composite import LossWeights
from pipeline.train.augment import sample_augmentation
from pipeline.train.data import SampleSource
from pipeline.train.loop import build_model
from pipeline.train.probe import fit_fixed_batch
from pipeline.train.settings import AugmentSettings, TrainPaths, settings_from_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--aug-settings", type=str, default="{}",
                    help="AugmentSettings overrides as YAML, e.g. '{rot_prob: 0, scale_factor: 0}'")
    ap.add_argument("--weights", type=str, default="{}", help="loss-weight overrides as YAML, e.g. '{smpl_pose: 10}'")
    ap.add_argument("--pretrained", type=str, default=None, help="start from this checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate_config(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    for entry in cfg["assets"]["train_datasets"].values():
        entry["annotations"], entry["images"] = str(ROOT / entry["annotations"]), str(ROOT / entry["images"])
    settings = settings_from_config(cfg["train"], cfg["assets"]["train_datasets"], {}, "sd", master_seed=0,
                                    device="cpu", threads=args.threads, progress=False)
    settings = dataclasses.replace(settings, loss_weights={**settings.loss_weights, **yaml.safe_load(args.weights)})
    paths = TrainPaths(body_models=str(ROOT / "resources/body_models"),
                       joint_regressors=str(ROOT / "resources/body_models/joint_regressors.npz"),
                       pretrained=args.pretrained)
    sources = [SampleSource(s, settings.image_size, settings.render_size) for s in settings.datasets]
    src = next(s for s in sources if s.spec.name == "h36m")
    index = src.train_index[: args.n]
    rng = np.random.default_rng(0)
    aug = AugmentSettings(**yaml.safe_load(args.aug_settings))

    def collate(augs: list) -> dict[str, torch.Tensor]:
        return torch.utils.data.default_collate([src.item(int(i), *a) for i, a in zip(index, augs)])

    clean = collate([()] * len(index))
    draw = (lambda step: collate([(sample_augmentation(rng, aug),) for _ in index])) if args.augment else None
    torch.manual_seed(0)
    model, loaded = build_model(settings, paths, sources)
    body = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors)
    weights = LossWeights.from_dict(settings.loss_weights)

    def gradients(terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            w = weights.scale * getattr(weights, name)
            if w == 0 or not value.requires_grad:
                continue
            grads = torch.autograd.grad(w * value, [model.decpose.weight, model.conv1.weight], retain_graph=True,
                                        allow_unused=True)
            head, conv = (0.0 if g is None else float(g.norm()) for g in grads)
            print(f"  {name:12s} x{w:<6g} value {float(value.detach()):.4f}  |grad decpose| {head:.3e}  "
                  f"|grad conv1| {conv:.3e}")

    print(f"{args.n} samples, {'augmented' if args.augment else 'no augmentation'}, lr {args.lr:g}, init {loaded}")
    t0 = time.perf_counter()
    history = fit_fixed_batch(model, body, clean, steps=args.steps, lr=args.lr, weights=weights, every=args.every,
                              draw=draw, on_first_step=gradients)
    for h in history:
        print(f"step {h['step']:4d}: train-batch MPJPE {h['mpjpe_mm']:6.1f} mm, PA-MPJPE {h['pa_mpjpe_mm']:6.1f} mm")
    print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
