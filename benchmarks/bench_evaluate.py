"""Benchmark: evaluation throughput on CPU (samples/s) for prediction + metrics, at the demo settings and at the
paper's, and the projected time of a 3DPW-size test split (35,515 frames, SPIN's ``3dpw_test.npz``).

Prediction = JPEG decode + SPIN crop + network + neutral body model (:func:`predict_split`); metrics = the
3DPW protocol (gendered ground-truth bodies, H36M-regressor joints, MPJPE / PA-MPJPE / PVE;
:func:`evaluate_predictions`), the most expensive of the four protocols.

* demo: ResNet-18, 128-px crops, 256-px images (config.yaml defaults of the open world);
* paper: ResNet-50, 224-px crops, 1920×1080 frames (3DPW's size).

Run: PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_evaluate.py [--threads 2] [--n 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.body.model import BodyModel
from pipeline.evaluate.predict import evaluate_predictions, predict_split
from pipeline.io.spin_npz import PersonDataset, empty_arrays
from pipeline.model.hmr import HMR

ROOT = Path(__file__).resolve().parent.parent
#: Frames of SPIN's 3dpw_test.npz (the DSR / SPIN 3DPW test protocol).
THREEDPW_TEST_FRAMES = 35_515
SETTINGS = {
    "demo": {"backbone": "resnet18", "image_size": 128, "frame": (256, 256)},
    "paper": {"backbone": "resnet50", "image_size": 224, "frame": (1080, 1920)},
}
BATCH_SIZE = 32


def body_models(tmp: Path) -> tuple[dict[str, BodyModel], str]:
    """The built open body model (resources/) or, when absent, a freshly built small one."""
    folder = ROOT / "resources" / "body_models"
    if not (folder / "joint_regressors.npz").is_file():
        from pipeline.body.anny_build import build_open_body_model

        folder = tmp / "body_models"
        build_open_body_model(folder, n_shape_samples=40, seed=0, progress=False)
    reg = folder / "joint_regressors.npz"
    return {g: BodyModel(folder, gender=g, joint_regressors=reg) for g in ("neutral", "male", "female")}, str(folder)


def make_split(root: Path, n: int, frame: tuple[int, int], rng: np.random.Generator) -> PersonDataset:
    """n JPEG frames (smooth colour ramps with noise, JPEG quality 92) and 3DPW-style annotations."""
    h, w = frame
    yy, xx = np.mgrid[0:h, 0:w]
    names = []
    for i in range(n):
        base = (np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 40 + 4 * i % 200)], -1)
                + rng.normal(0, 8, (h, w, 3)))
        names.append(f"frame_{i:05d}.jpg")
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(root / names[-1], quality=92)
    arrays = empty_arrays(n)
    arrays["pose"] = rng.normal(0, 0.2, (n, 72))
    arrays["shape"] = rng.normal(0, 1, (n, 10))
    arrays["gender"] = np.where(rng.random(n) < 0.5, "m", "f")
    data = PersonDataset(imgname=np.array(names), center=np.tile([w / 2, h / 2], (n, 1)),
                         scale=np.full(n, 0.8 * h / 200), **arrays)
    for key in ("pose", "shape", "gender"):
        data.present[key] = True
    return data


def run(name: str, n: int, models: dict[str, BodyModel], tmp: Path) -> dict[str, float]:
    cfg = SETTINGS[name]
    root = tmp / name
    root.mkdir()
    data = make_split(root, n, cfg["frame"], np.random.default_rng(0))
    torch.manual_seed(0)
    model = HMR(backbone=cfg["backbone"]).eval()
    warm = data.subset(np.arange(2))
    predict_split(model, models["neutral"], warm, root, image_size=cfg["image_size"], batch_size=2, progress=False)
    start = time.perf_counter()
    pred = predict_split(model, models["neutral"], data, root, image_size=cfg["image_size"], batch_size=BATCH_SIZE,
                         progress=False)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate_predictions(pred, data, "3dpw", models)
    metrics_s = time.perf_counter() - start
    assert np.isfinite([result.mpjpe_mm, result.pa_mpjpe_mm, result.pve_mm]).all()
    return {"predict": n / predict_s, "metrics": n / metrics_s, "total": n / (predict_s + metrics_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (rule predict_test_split: 2)")
    parser.add_argument("--n", type=int, default=48, help="frames per setting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models, folder = body_models(tmp)
        print(f"body model {folder}: {models['neutral'].num_vertices} vertices; {args.threads} CPU threads, "
              f"batch {BATCH_SIZE}, {args.n} frames per setting")
        for name, cfg in SETTINGS.items():
            r = run(name, args.n, models, tmp)
            hours = THREEDPW_TEST_FRAMES / r["total"] / 3600
            print(f"{name:5s} ({cfg['backbone']}, {cfg['image_size']}-px crops, {cfg['frame'][1]}x{cfg['frame'][0]} "
                  f"frames): predict {r['predict']:.1f} samples/s, 3DPW metrics {r['metrics']:.0f} samples/s, "
                  f"total {r['total']:.1f} samples/s -> 3DPW test ({THREEDPW_TEST_FRAMES} frames) in {hours:.2f} h")


if __name__ == "__main__":
    main()
