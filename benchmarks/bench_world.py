"""Benchmark: open-world generation throughput (scans/s, images/s) at default sizes on this machine.

Run: PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_world.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import torch._dynamo  # noqa: E402,F401  # before any EGL context (see tests/conftest.py)

from pipeline.body.anny_build import build_open_body_model  # noqa: E402
from pipeline.world.assets import scan_names  # noqa: E402
from pipeline.world.images import make_image_split, split_spec  # noqa: E402
from pipeline.world.parser_noise import ParserNoise  # noqa: E402
from pipeline.world.scans import make_scans  # noqa: E402

N_SCANS = 40
N_IMAGES = 100


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_open_body_model(root / "bm", n_shape_samples=120, seed=0, progress=False)
        start = time.perf_counter()
        make_scans(root / "bm", root / "scans", scan_names(N_SCANS), seed=0)
        scans_s = time.perf_counter() - start
        spec = split_spec("coco_eft", "train", {"count": N_IMAGES, "distractor_prob": 0.4, "occluder_prob": 0.3}, "eft_json")
        start = time.perf_counter()
        make_image_split(root / "bm", root / "bm" / "joint_regressors.npz", root / "coco" / "a.json", root / "coco" / "images",
                         spec, size=256, focal_range=(1.0, 1.8), person_height_range=(0.55, 0.85), noise=ParserNoise(),
                         seed=0, progress=False)
        images_s = time.perf_counter() - start
    print(f"scans: {N_SCANS / scans_s:.1f} scans/s ({scans_s:.1f} s for {N_SCANS})")
    print(f"images (256², 40 % distractors, 30 % occluders, parser noise): {N_IMAGES / images_s:.1f} images/s, one process")


if __name__ == "__main__":
    main()
