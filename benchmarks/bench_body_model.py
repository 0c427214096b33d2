"""Benchmark: build_open_body_model end to end, and the body-model forward pass at batch 64.

Run: .venv/bin/python benchmarks/bench_body_model.py [--samples 400] [--threads 2]
Prints the build's seconds (with its phases), then milliseconds per forward pass (random betas and poses,
no gradients) of ``smplx.SMPL`` on the written file and of the ``BodyModel`` facade on the same file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import smplx
import torch

from pipeline.body.anny_build import build_open_body_model
from pipeline.body.model import BodyModel

BATCH = 64
REPEATS = 20
#: The default config's open_world.body_model.n_shape_samples.
DEFAULT_SAMPLES = 400


def _ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Milliseconds per call after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="phenotypes per gender")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (CI has 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = build_open_body_model(Path(tmp), n_shape_samples=args.samples, seed=0, progress=False)
        build_s = time.perf_counter() - start
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items() if k != "total")
        print(f"build_open_body_model, {args.samples} phenotypes x 3 genders, {args.threads} threads: "
              f"{build_s:.1f} s ({phases}); {report['num_vertices']} vertices, {report['num_faces']} faces")
        print("explained shape variance (10 betas): "
              + ", ".join(f"{g} {100 * v:.3f} %" for g, v in report["explained_variance"].items()))
        print("regressor fit errors (mm): "
              + ", ".join(f"{k} {v:.2f}" for k, v in report["joint_regressor_error_mm"].items()))

        with contextlib.redirect_stdout(io.StringIO()):  # smplx warns about 10-beta models
            ref = smplx.SMPL(model_path=tmp, gender="neutral", batch_size=BATCH)
        facade = BodyModel(tmp, gender="neutral")
        gen = torch.Generator().manual_seed(0)
        betas = torch.randn(BATCH, 10, generator=gen)
        body_pose = 0.3 * torch.randn(BATCH, 69, generator=gen)
        orient = 0.3 * torch.randn(BATCH, 3, generator=gen)
        with torch.no_grad():
            t_ref = _ms(lambda: ref(betas=betas, body_pose=body_pose, global_orient=orient))
            t_facade = _ms(lambda: facade(betas=betas, body_pose=body_pose, global_orient=orient))
    print(f"forward, batch {BATCH}: smplx.SMPL {t_ref:.1f} ms; BodyModel {t_facade:.1f} ms "
          f"(ratio {t_facade / t_ref:.2f})")


if __name__ == "__main__":
    main()
