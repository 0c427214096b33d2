"""Plan: the real-data pipeline at the paper's scale, from counted FLOPs and measured per-item costs (issue #20).

Prints one table (jobs, compute, CPU and GPU hours per stage, as ``profiles/slurm`` would submit them) and the
first bottleneck. Nothing here trains or parses: the network FLOPs are *counted* on PyTorch's meta device
(``torch.utils.flop_counter``: the Graphonomy Universal network on a 512² image + mirror, the HMR ResNet-50
training step at batch 64, 224², forward + backward), the CPU rates are *measured* on this project's 2-core
machines (options below, with where each was measured), and the GPU rates are either measured by
``benchmarks/gpu_check.sh`` on your GPU (pass them with ``--gpu-parse-s``, ``--gpu-step-s``) or, until then,
an *assumed* sustained throughput (``--gpu-tflops``), printed as such.

Counts (defaults): 2,500 AGORA scans × 10 views at 512² (paper supp. mat.; AGORA has 4,240); the training images
of the paper's mix, one parse per unique image (upper bounds: the annotation counts; COCO-EFT's 79,051 people
share fewer images); every image at 4 scales + flip, single scale above 1080 px (MPI-INF-3DHP's 2048² and
3DPW's 1920×1080 frames); 100K steps per run; runs = Table 1 variants × seeds + Table 2's sd/dsr × seeds.

Run: .venv/bin/python benchmarks/scale_plan.py [--scans 2500] [--sd-runs 6] [--dsr-runs 24] [--gpu-tflops 30]
         [--gpu-parse-s S_PER_512_PAIR] [--gpu-step-s S_PER_STEP]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model.hmr import HMR
from pipeline.parsing.graphonomy import GraphonomyUniversal
from pipeline.parsing.infer import select_scales

# Training images of the paper's mix: (annotated people or frames, image width, height). Sizes are the
# datasets' own: COCO 640×480 (typical), H3.6M 1000×1000, MPI-INF-3DHP 2048×2048, 3DPW 1920×1080.
DATASETS = {
    "coco_eft": (79_051, 640, 480),
    "h36m": (312_188, 1000, 1000),
    "mpi_inf_3dhp": (96_507, 2048, 2048),
    "3dpw": (22_735, 1920, 1080),
}
REFERENCE_SIDE = 512


def count_flops(fn) -> float:
    """FLOPs (multiply-adds counted as 2) of one call of ``fn`` on meta tensors."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def graphonomy_pair_flops(side: int = REFERENCE_SIDE) -> float:
    """One Graphonomy Universal forward of a side² image and its mirror (batch 2, the parser's flip)."""
    with torch.device("meta"):
        model = GraphonomyUniversal().eval()
        image = torch.zeros(2, 3, side, side)
    with torch.no_grad():
        return count_flops(lambda: model(image))


def hmr_step_flops(batch: int = 64, size: int = 224) -> float:
    """One HMR ResNet-50 training step (3 regression iterations), forward + backward."""
    model = HMR("resnet50").train().to("meta")
    images = torch.zeros(batch, 3, size, size, device="meta")

    def step() -> None:
        out = model(images)
        sum(o.sum() for o in out if isinstance(o, torch.Tensor)).backward()

    return count_flops(step)


def parse_cost_factor(width: int, height: int) -> float:
    """Pixels the parser processes for one image (all its scales, :func:`select_scales`), in units of one 512²
    image (+ mirror)."""
    return sum(s * s for s in select_scales(height, width)) * width * height / REFERENCE_SIDE**2


#: Command-line options: flag, type, default, help.
OPTIONS: tuple[tuple[str, type, float | int | None, str], ...] = (
    ("--scans", int, 2500, "AGORA-size scan set"),
    ("--views", int, 10, "views per scan"),
    ("--scans-per-group", int, 20, "profiles/slurm group-components"),
    ("--num-shards", int, 64, "masks.num_shards"),
    ("--steps", int, 100_000, "training steps per run"),
    ("--sd-runs", int, 6, "SD runs: Table 1's C-EFT and Table 2's SD, 3 seeds each"),
    ("--dsr-runs", int, 24, "DSR runs: Table 1's 7 DSR rows + Table 2's, 3 seeds"),
    ("--test-splits", int, 4, "3dpw, h36m p1/p2, mpi_inf_3dhp"),
    ("--dsr-step-ratio", float, 1.15, "step(SD+DSR)/step(SD) (issue #20 target)"),
    ("--cpu-parse-s", float, 19.4, "s per 512² image+mirror, 2 CPU threads (reference study)"),
    ("--cpu-render-s", float, 6.9, "s per scan (10 views, 512², 1 thread; make study, 2026-12)"),
    ("--gpu-tflops", float, 30.0, "ASSUMED sustained TFLOP/s of one GPU"),
    ("--gpu-parse-s", float, None, "measured s per 512² image+mirror on GPU"),
    ("--gpu-step-s", float, None, "measured s per SD step (paper settings)"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kind, default, text in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=text)
    args = parser.parse_args()

    start = time.perf_counter()
    pair = graphonomy_pair_flops()
    step = hmr_step_flops()
    print(f"counted on the meta device in {time.perf_counter() - start:.0f} s:")
    print(f"  Graphonomy Universal, 512² image + mirror: {pair / 1e9:.0f} GFLOP")
    print(
        f"  HMR ResNet-50 training step, batch 64, 224², forward + backward: {step / 1e12:.2f} TFLOP"
    )
    gpu = args.gpu_tflops * 1e12
    gpu_parse_s = args.gpu_parse_s if args.gpu_parse_s is not None else pair / gpu
    gpu_step_s = args.gpu_step_s if args.gpu_step_s is not None else step / gpu
    source = (
        "measured"
        if args.gpu_parse_s is not None and args.gpu_step_s is not None
        else "ASSUMED"
    )
    print(
        f"GPU rates ({source}): {gpu_parse_s:.3f} s per 512² pair, {gpu_step_s:.3f} s per SD step"
        + (
            ""
            if source == "measured"
            else f" (at {args.gpu_tflops:.0f} sustained TFLOP/s)"
        )
    )
    print(
        f"CPU rates (measured): {args.cpu_parse_s} s per 512² pair on 2 threads, {args.cpu_render_s} s per scan"
    )

    rows = []  # stage, items, jobs, PFLOP, CPU core-hours, GPU hours
    views = args.scans * args.views
    view_units = views * parse_cost_factor(REFERENCE_SIDE, REFERENCE_SIDE)
    groups = math.ceil(args.scans / args.scans_per_group)
    render_h = args.scans * args.cpu_render_s / 3600
    rows.append(
        (
            "render_scan_views (CPU, 10 views 512²)",
            f"{args.scans:,} scans",
            groups,
            0.0,
            render_h,
            0.0,
        )
    )

    def parse_row(stage: str, items: str, jobs: int, units: float) -> tuple:
        """A parsing stage of ``units`` 512² image pairs: PFLOP, CPU core-hours (2 threads), GPU hours."""
        return (stage, items, jobs, units * pair / 1e15, units * args.cpu_parse_s * 2 / 3600,
                units * gpu_parse_s / 3600)

    rows.append(parse_row("parse_scan_views (4 scales + flip)", f"{views:,} views", groups, view_units))
    for name, (count, width, height) in DATASETS.items():
        rows.append(parse_row(f"parse_images {name} ({width}×{height})", f"{count:,} images", args.num_shards,
                              count * parse_cost_factor(width, height)))
    runs = args.sd_runs + args.dsr_runs
    sd_steps = args.steps * (
        args.sd_runs + args.dsr_step_ratio * args.dsr_runs
    )  # in SD-step units
    rows.append(
        (
            f"train_regressor ({args.steps // 1000}K steps each)",
            f"{args.sd_runs} SD + {args.dsr_runs} DSR runs",
            runs,
            sd_steps * step / 1e15,
            float("nan"),
            sd_steps * gpu_step_s / 3600,
        )
    )

    print()
    print(
        "| stage | items | SLURM jobs | PFLOP | CPU core-h (measured rates) | GPU-h |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for stage, items, jobs, pflop, cpu_h, gpu_h in rows:
        cpu = "—" if math.isnan(cpu_h) else f"{cpu_h:,.0f}"
        print(f"| {stage} | {items} | {jobs} | {pflop:,.1f} | {cpu} | {gpu_h:,.1f} |")
    # render and parse of a scan group share one group job; clean_masks once per dataset; predict + score per run
    # and test split.
    total_jobs = (
        groups
        + (args.num_shards + 1) * len(DATASETS)
        + runs
        + runs * args.test_splits * 2
    )
    print(
        f"\nabout {total_jobs:,} SLURM jobs (render+parse groups, parse shards + clean_masks, training, predict + score)"
    )
    worst = max(rows, key=lambda r: r[5])
    print(
        f"largest GPU stage: {worst[0]} ({worst[5]:,.1f} GPU-h of {sum(r[5] for r in rows):,.1f})"
    )


if __name__ == "__main__":
    main()
