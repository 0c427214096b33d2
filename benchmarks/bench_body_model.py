"""Benchmark: build_open_body_model end to end, and BodyModel.forward vs smplx.SMPL at batch 64.

Run: .venv/bin/python benchmarks/bench_body_model.py   (prints seconds / milliseconds and the ratio)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import smplx
import torch

from pipeline.body.anny_build import build_open_body_model
from pipeline.body.model import BodyModel

BATCH = 64
REPEATS = 10


def _time(fn, repeats: int = REPEATS) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = build_open_body_model(Path(tmp), n_shape_samples=400, seed=0, progress=False)
        build_s = time.perf_counter() - start
        ours = BodyModel(tmp, gender="neutral")
        ref = smplx.SMPL(model_path=tmp, gender="neutral", batch_size=BATCH)
        gen = torch.Generator().manual_seed(0)
        betas = torch.randn(BATCH, 10, generator=gen)
        pose = torch.randn(BATCH, 69, generator=gen) * 0.3
        orient = torch.randn(BATCH, 3, generator=gen) * 0.3
        with torch.no_grad():
            t_ours = _time(lambda: ours(betas=betas, body_pose=pose, global_orient=orient))
            t_ref = _time(lambda: ref(betas=betas, body_pose=pose, global_orient=orient))
    print(f"build_open_body_model (400 phenotypes x 3 genders): {build_s:.1f} s "
          f"({report['num_vertices']} vertices, {report['num_faces']} faces)")
    print(f"BodyModel.forward batch {BATCH}: {1e3 * t_ours:.1f} ms; smplx.SMPL: {1e3 * t_ref:.1f} ms; "
          f"ratio {t_ours / t_ref:.2f}")


if __name__ == "__main__":
    main()
