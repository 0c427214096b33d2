"""Benchmark (issues #15, #21): where a training step's time goes, and what the two step speed-ups buy.

Times on one CPU thread, after warm-up, in one run:

1. Adam over the demo's HMR (ResNet-18, 13 M parameters): torch's reference (for-loop) Adam vs the fused kernel
   the loops use (:func:`pipeline.train.loop.adam`);
2. the body model, forward + backward of SPIN's 49 joints for a batch: the full mesh vs the joints-only pass
   (``BodyModel.forward(vertices=False)``: the vertices the joint regressors read);
3. the whole pretraining step at the demo's settings (64² crops, batch 16, SPIN's terms, gradient clipping, Adam)
   in fp32 and bf16: before (reference Adam, full mesh) and now (fused Adam, joints only).

Needs a body-model folder with ``joint_regressors.npz`` (the project's resources/body_models after
``snakemake --cores 2 resources/body_models/build_report.json``, or any test project's).

Run: .venv/bin/python benchmarks/bench_step_parts.py [--body-models resources/body_models] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pipeline.body.model import BodyModel
from pipeline.losses.composite import LossWeights, total_loss
from pipeline.model.hmr import HMR
from pipeline.train.loop import adam, predict_body, standard_terms

ROOT = Path(__file__).resolve().parent.parent


def per_call_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000.0


def fake_batch(batch: int, size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch with every target SPIN's terms read (values random, shapes and flags as the loader's)."""
    keypoints = torch.rand(batch, 49, 3, generator=gen) * 2 - 1
    keypoints[..., 2] = 1.0
    joints = torch.randn(batch, 24, 4, generator=gen) * 0.3
    joints[..., 3] = 1.0
    return {"img": torch.randn(batch, 3, size, size, generator=gen), "keypoints": keypoints, "joints_3d": joints,
            "pose": torch.randn(batch, 72, generator=gen) * 0.3, "betas": torch.randn(batch, 10, generator=gen),
            "has_smpl": torch.ones(batch, dtype=torch.bool), "has_pose_3d": torch.ones(batch, dtype=torch.bool)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--body-models", type=Path, default=ROOT / "resources" / "body_models")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    regressors = args.body_models / "joint_regressors.npz"
    if not regressors.is_file():
        raise SystemExit(f"{regressors}: not found; build the body model first (module docstring) or pass "
                         "--body-models")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    body = BodyModel(args.body_models, "neutral", joint_regressors=regressors)
    print(f"body model: {body.num_vertices} vertices, {body.num_joint_vertices} read by the joint regressors; "
          f"batch {args.batch}, {args.size}² crops, 1 thread, {args.repeats} repeats")
    rows: list[tuple[str, float, float]] = []

    model = HMR(backbone="resnet18")
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    reference = torch.optim.Adam(model.parameters(), lr=1e-5)
    fused = adam(model.parameters(), lr=1e-5)
    rows.append(("Adam step (13 M parameters)", per_call_ms(reference.step, args.repeats),
                 per_call_ms(fused.step, args.repeats)))

    betas = torch.randn(args.batch, 10, generator=gen).requires_grad_(True)
    pose = (torch.randn(args.batch, 69, generator=gen) * 0.3).requires_grad_(True)
    orient = torch.randn(args.batch, 3, generator=gen).requires_grad_(True)

    def body_pass(vertices: bool) -> Callable[[], None]:
        def run() -> None:
            out = body(betas=betas, body_pose=pose, global_orient=orient, vertices=vertices)
            out.joints_j49.square().sum().backward()  # type: ignore[union-attr]
        return run

    rows.append(("body forward+backward (49 joints)", per_call_ms(body_pass(True), args.repeats),
                 per_call_ms(body_pass(False), args.repeats)))

    batch = fake_batch(args.batch, args.size, gen)
    weights = LossWeights()
    for precision in ("fp32", "bf16"):
        times = []
        for new in (False, True):
            torch.manual_seed(0)
            net = HMR(backbone="resnet18").train()
            opt = adam(net.parameters(), lr=1e-5) if new else torch.optim.Adam(net.parameters(), lr=1e-5)

            def step(net: HMR = net, opt: torch.optim.Optimizer = opt, new: bool = new, precision: str = precision
                     ) -> None:
                out, posed, cam_t = predict_body(net, body, batch["img"], precision, vertices=not new)
                loss, _ = total_loss(standard_terms(out, posed, cam_t, batch), weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1000.0)
                opt.step()

            times.append(per_call_ms(step, args.repeats))
        rows.append((f"pretraining step, {precision}", *times))

    print(f"\n| {'part':<36} | before (ms) | now (ms) | now / before |")
    print(f"|{'-' * 38}|------------:|---------:|-------------:|")
    for name, before, now in rows:
        print(f"| {name:<36} | {before:11.1f} | {now:8.1f} | {now / before:12.2f} |")


if __name__ == "__main__":
    main()
