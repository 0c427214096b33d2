"""Benchmark: offscreen rendering (RGB, face IDs per backend), ID agreement with ray casting, parser noise and
procedural backgrounds.

Run: PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_offscreen.py [--pytorch3d-512] [--device cuda]
Prints milliseconds per call for a ~14K-face deformed sphere at 256² and 512², one ring camera.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # a script, not a pipeline module: set before pyrender

import numpy as np
import trimesh

from pipeline.render.offscreen import (
    SceneRenderer,
    raycast_face_ids,
    render_face_ids,
    render_label_map,
    ring_cameras,
)
from pipeline.world.backgrounds import random_background
from pipeline.world.parser_noise import ParserNoise, apply_parser_noise

SIZES = (256, 512)
#: UV-sphere resolution giving ~14K faces (the order of a body mesh: SMPL 13,776, Anny 27,420).
SPHERE_COUNT = (60, 61)
#: CIHP labels of eight horizontal bands, bottom to top (shoes … hair); bands 6-7 add 1 right of x = 0.15.
BAND_LABELS = (18, 16, 9, 9, 5, 7, 13, 1)


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Milliseconds per call after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def _mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sphere = trimesh.creation.uv_sphere(radius=0.5, count=SPHERE_COUNT)
    v = np.asarray(sphere.vertices, dtype=np.float64)
    bumps = 1.0 + 0.25 * np.sin(5 * v[:, 0] / 0.5) * np.cos(4 * v[:, 1] / 0.5) + 0.15 * np.sin(7 * v[:, 2] / 0.5)
    v = v * bumps[:, None] * np.array([0.6, 1.6, 0.5])  # body-like aspect, self-occluding bumps
    colours = (np.clip(v / np.abs(v).max() * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
    return v, np.asarray(sphere.faces), colours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pytorch3d-512", action="store_true", help="also time pytorch3d at 512² (slow on CPU)")
    parser.add_argument("--device", default="cpu", help="pytorch3d device (cpu or cuda)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    verts, faces, colours = _mesh()
    # Body-like label regions: horizontal bands (hair, face, clothes, pants, shoes), split left/right.
    centroid = verts[faces].mean(axis=1)
    band = np.digitize(centroid[:, 1], np.linspace(-0.8, 0.8, 9)[1:-1])
    labels = np.array(BAND_LABELS, np.uint8)[band] + (centroid[:, 0] > 0.15) * (band >= 6)
    print(f"mesh: {len(verts)} vertices, {len(faces)} faces; pytorch3d device {args.device}")
    for size in SIZES:
        _bench_size(size, verts, faces, colours, labels, args)


def _bench_size(size: int, verts: np.ndarray, faces: np.ndarray, colours: np.ndarray, labels: np.ndarray,
                args: argparse.Namespace) -> None:
    """Time every call at one image size and print two lines."""
    cam = ring_cameras(1, 3.2, 10.0, 0.0, (0, 0, 0), 1.1 * size, size, np.random.default_rng(0),
                       azimuth_offset_deg=30.0)[0]
    start = time.perf_counter()
    renderer = SceneRenderer(size, size)
    create_ms = (time.perf_counter() - start) * 1e3
    bg = random_background(size, size, np.random.default_rng(0))
    rgb_ms = _time(lambda: renderer.render_rgb([(verts, faces, colours)], cam, background=bg), args.repeats)
    ids_ms = _time(lambda: renderer.render_face_ids(verts, faces, cam), args.repeats)
    lab_ms = _time(lambda: render_label_map([(verts, faces, labels)], cam, renderer=renderer), args.repeats)
    ray_ms = _time(lambda: raycast_face_ids(verts, faces, cam, size, size), max(1, args.repeats // 5))
    ids = renderer.render_face_ids(verts, faces, cam)[0]
    renderer.close()
    ref = raycast_face_ids(verts, faces, cam, size, size)[0]
    covered = (ids >= 0) | (ref >= 0)
    agree = float((ids[covered] == ref[covered]).mean())
    line = (f"{size}²: context {create_ms:.0f} ms | render_rgb {rgb_ms:.1f} ms | face_ids pyrender "
            f"{ids_ms:.1f} ms | label_map {lab_ms:.1f} ms | face_ids raycast {ray_ms:.1f} ms | pyrender vs "
            f"raycast {100 * agree:.3f} % of {covered.sum()} covered px")
    if size == SIZES[0] or args.pytorch3d_512 or args.device != "cpu":
        start = time.perf_counter()
        p3 = render_face_ids(verts, faces, cam, size, size, backend="pytorch3d", device=args.device)
        p3_ms = (time.perf_counter() - start) * 1e3
        line += f" | face_ids pytorch3d {p3_ms:.0f} ms ({100 * float((p3[covered] == ref[covered]).mean()):.3f} %)"
    print(line)

    label_map = render_label_map([(verts, faces, labels)], cam, size, size, backend="raycast")[0]
    rng = np.random.default_rng(0)
    noise_ms = _time(lambda: apply_parser_noise(label_map, ParserNoise(), rng), 4 * args.repeats)
    bg_ms = _time(lambda: random_background(size, size, rng), 4 * args.repeats)
    print(f"{size}²: apply_parser_noise (defaults) {noise_ms:.1f} ms | random_background {bg_ms:.1f} ms")


if __name__ == "__main__":
    main()
