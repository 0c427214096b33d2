"""Benchmark: Graphonomy Universal parser (random weights) — seconds per image and peak memory.

Run: .venv/bin/python benchmarks/bench_graphonomy.py [--sizes 256 512] [--threads 2] [--device all|cpu|cuda]

For each square input size and device it prints, per configuration:

- ``1 scale``: one network forward of the image alone (scale 1.0, no flip);
- ``1 scale + flip (batched)``: image and mirror as one batch of 2 (the parser's mode on CUDA);
- ``1 scale, 2 separate passes``: image and mirror as two batch-1 forwards (then the ratio batched / separate);
- ``1 scale + flip (parser)`` and ``4 scales + flip (parser)``: :meth:`GraphonomyParser.parse` end to end
  (preprocessing, TTA fusion, argmax; its default flip mode: two passes on CPU, one batch on CUDA),
  scales (1.0) and (0.5, 0.75, 1.0, 1.5).

Every configuration runs in a fresh Python process, so peak memory is its own: on CPU the process's peak RSS
(``base GB`` = RSS with torch imported and the model built, before the run), on CUDA
``torch.cuda.max_memory_allocated``. Each configuration is timed after one warm-up call of the same shape.
Anchor (reference study, original code, CPU 2 threads): 19.4 s and 1.3 GB for a 512^2 image+flip pair.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from pipeline.parsing.graphonomy import GraphonomyUniversal
from pipeline.parsing.infer import DEFAULT_SCALES, GraphonomyParser, preprocess

DEFAULT_SIZES: tuple[int, ...] = (256, 512)
DEFAULT_THREADS = 2
CONFIGURATIONS: tuple[str, ...] = (
    "1 scale",
    "1 scale + flip (batched)",
    "1 scale, 2 separate passes",
    "1 scale + flip (parser)",
    "4 scales + flip (parser)",
)
#: Timed repetitions after one warm-up call.
CPU_REPEATS = 1
CUDA_REPEATS = 5
GB = 1e9


def _rss_bytes(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _workload(configuration: str, size: int, device: torch.device) -> Callable[[], object]:
    """Build the random model and return the call to time for one configuration."""
    torch.manual_seed(0)
    model = GraphonomyUniversal().eval().to(device)
    image = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    x = preprocess(image).to(device)
    pair = torch.cat([x, x.flip(-1)])

    def forward(*batches: torch.Tensor) -> None:
        with torch.inference_mode():
            for batch in batches:
                model(batch)

    if configuration == "1 scale":
        return lambda: forward(x)
    if configuration == "1 scale + flip (batched)":
        return lambda: forward(pair)
    if configuration == "1 scale, 2 separate passes":
        return lambda: forward(pair[:1], pair[1:])
    if configuration == "1 scale + flip (parser)":
        return lambda: GraphonomyParser(model, device=device, scales=(1.0,)).parse(image)
    if configuration == "4 scales + flip (parser)":
        return lambda: GraphonomyParser(model, device=device, scales=DEFAULT_SCALES).parse(image)
    raise ValueError(f"unknown configuration {configuration!r}; allowed: {list(CONFIGURATIONS)}")


def run_worker(configuration: str, size: int, device_name: str, threads: int) -> dict[str, float]:
    """Time one configuration in this process; returns seconds, peak and baseline memory in GB."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    work = _workload(configuration, size, device)
    cuda = device.type == "cuda"
    repeats = CUDA_REPEATS if cuda else CPU_REPEATS
    base = _rss_bytes("VmRSS")
    work()  # warm-up: allocator and oneDNN / cuDNN kernel selection for these shapes
    if cuda:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated(device) if cuda else _rss_bytes("VmHWM")
    return {"seconds": seconds, "peak_gb": peak / GB, "base_gb": base / GB}


def bench_device(device_name: str, sizes: tuple[int, ...], threads: int) -> None:
    """Print the table for one device, one subprocess per (size, configuration)."""
    label = torch.cuda.get_device_name(0) if device_name == "cuda" else f"cpu, {threads} threads"
    kind = "cuda max allocated" if device_name == "cuda" else "process peak RSS"
    print(f"\n== {label} (memory: {kind})")
    print(f"{'size':>5}  {'configuration':<28} {'s/image':>9} {'peak GB':>8} {'base GB':>8}")
    for size in sizes:
        seconds: dict[str, float] = {}
        for configuration in CONFIGURATIONS:
            command = [
                sys.executable,
                __file__,
                "--worker",
                configuration,
                "--sizes",
                str(size),
                "--device",
                device_name,
                "--threads",
                str(threads),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"benchmark worker failed for {configuration!r} at {size}px:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seconds[configuration] = result["seconds"]
            print(
                f"{size:>5}  {configuration:<28} {result['seconds']:>9.3f} {result['peak_gb']:>8.2f}"
                f" {result['base_gb']:>8.2f}",
                flush=True,
            )
        ratio = seconds["1 scale + flip (batched)"] / seconds["1 scale, 2 separate passes"]
        print(f"{size:>5}  {'ratio batched / separate':<28} {ratio:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES))
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CPU threads (default: %(default)s)")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    parser.add_argument("--worker", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        device = "cuda" if args.device == "cuda" else "cpu"
        print(json.dumps(run_worker(args.worker, args.sizes[0], device, args.threads)))
        return
    devices = ["cpu"] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append("cuda")
        else:
            print("CUDA not available: GPU figures skipped")
    for device in devices:
        bench_device(device, tuple(args.sizes), args.threads)


if __name__ == "__main__":
    main()
