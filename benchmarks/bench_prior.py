"""Benchmark: semantic-prior accumulation (views/s on one core, ratio to a plain np.bincount over the same
pixels) and scan-view rendering (views/s at 512²).

Run: PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_prior.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import torch._dynamo  # noqa: E402,F401  # before any EGL context (see tests/conftest.py)
import numpy as np  # noqa: E402

from pipeline.body.anny_build import build_open_body_model  # noqa: E402
from pipeline.prior.accumulate import count_visible_labels  # noqa: E402
from pipeline.prior.views import ViewSettings, render_scan_views  # noqa: E402
from pipeline.world.assets import scan_names  # noqa: E402
from pipeline.world.scans import make_scans  # noqa: E402

SIZE = 512
N_VIEWS = 10


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_open_body_model(root / "bm", n_shape_samples=60, seed=0, progress=False)
        make_scans(root / "bm", root / "scans", scan_names(2), seed=0)
        start = time.perf_counter()
        render_scan_views(root / "scans/scan_0000.obj", root / "scans/scan_0000.pkl", root / "bm", root / "v.npz", None,
                          ViewSettings(count=N_VIEWS, image_size=SIZE), seed=0)
        render_s = time.perf_counter() - start
        with np.load(root / "v.npz") as npz:
            face_id = npz["face_id"]
    num_faces = int(face_id.max()) + 1
    labels = np.random.default_rng(0).integers(0, 20, face_id.shape, dtype=np.uint8)
    reps = 5
    start = time.perf_counter()
    for _ in range(reps):
        count_visible_labels(face_id, labels, num_faces)
    ours = (time.perf_counter() - start) / reps
    flat = np.random.default_rng(1).integers(0, num_faces * 20, int((face_id >= 0).sum()))
    start = time.perf_counter()
    for _ in range(reps):
        np.bincount(flat, minlength=num_faces * 20)
    plain = (time.perf_counter() - start) / reps
    print(f"render_scan_views: {N_VIEWS / render_s:.1f} views/s at {SIZE}² (incl. mesh load, fit, ray-cast check)")
    print(f"accumulation: {N_VIEWS / ours:.0f} views/s at {SIZE}² on one core; plain np.bincount over the same "
          f"{(face_id >= 0).sum()} pixels: {N_VIEWS / plain:.0f} views/s (ratio {plain / ours:.2f})")


if __name__ == "__main__":
    main()
