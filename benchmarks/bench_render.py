"""Benchmark: the differentiable semantic renderer (pipeline.render.soft) on body-sized meshes.

For B = 8 crops of 224² with C = 5 channels (DSR: 1 DSR-MC + 4 DSR-C images) it prints, per mesh and backend,
forward and backward seconds (best of ``--repeats``), the face–pixel pairs the ``pairs`` backend forms, peak
memory (CPU: growth of the process's peak RSS during the call, measured in a fresh process per backend; CUDA:
``max_memory_allocated``) and the output difference to ``pairs`` on the same inputs. ``dense`` is run only
where its (B, F, S²) tensors fit (``--dense-max-elements``), otherwise reported as skipped; a small scene
(2 × 64², ~1.4K faces) compares all three backends directly.

Training regime: the DSR training stage renders B = 16 crops of 64² (demo) with C = 5 channels on the open body
model posed by ``BodyModel`` (zero pose, standing; SPIN camera s = 0.9, t = (0, 0.2): the body covers rows 17–63,
its feet leave the crop); at 64 px most of its 27.4K faces are sub-pixel, so the cost is per face rather than per
pixel. It is timed on one thread (forward + backward, best of
``--repeats``) with the face–pixel pairs per face.

Meshes: a synthetic body (a union of six ellipsoids, 13,800 faces, filling ~40 % of the crop) and, when
present, the open body model ``resources/body_models/SMPL_NEUTRAL.npz`` (27.4K faces, T-pose); ``--mesh PATH``
adds an SMPL-format ``.npz``/``.pkl``-as-npz (``v_template``, ``f``) or an ``.obj``.

Run: .venv/bin/python benchmarks/bench_render.py [--skip-pytorch3d] [--device cuda] [--threads 2]
     .venv/bin/python benchmarks/bench_render.py --synthetic-only --batch 64 --size 224 --device cuda
         (the synthetic body alone at one batch and size: what benchmarks/gpu_check.sh runs)
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.render.camera import (
    CROP_SIZE,
    FOCAL_LENGTH,
    scale_focal_length,
    weak_perspective_to_translation,
)
from pipeline.render.soft import (
    DEFAULT_FACES_PER_PIXEL,
    count_pairs,
    faces_per_pixel_map,
    render_semantics,
)

ROOT = Path(__file__).resolve().parent.parent
OPEN_BODY = ROOT / "resources" / "body_models" / "SMPL_NEUTRAL.npz"
BATCH = 8
CHANNELS = 5
#: Training regime (DSR demo): batch, crop size, SPIN camera scale and translation offsets, threads.
TRAIN_BATCH, TRAIN_SIZE, TRAIN_SCALE, TRAIN_THREADS = 16, 64, 0.9, 1
TRAIN_CAM_XY = (0.0, 0.2)
#: Weak-perspective scale of the benchmark crops (SPIN predictions on 224 crops are typically 0.7–1.2).
CAMERA_SCALE = 1.05
#: Largest B·F·S² the dense backend is allowed to attempt (it keeps ~30 such float tensors for autograd).
DENSE_MAX_ELEMENTS = 60_000_000
#: Ellipsoids of the synthetic body: centre and radii (metres, camera orientation: x right, y down, z forward)
#: and a rotation about the viewing axis (degrees).
SYNTHETIC_PARTS: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((0.0, -0.08, 0.0), (0.40, 0.42, 0.20), 0.0),  # torso
    ((0.0, -0.64, 0.0), (0.17, 0.17, 0.16), 0.0),  # head
    ((-0.52, -0.18, 0.0), (0.34, 0.16, 0.12), -30.0),  # arms
    ((0.52, -0.18, 0.0), (0.34, 0.16, 0.12), 30.0),
    ((-0.2, 0.56, 0.0), (0.2, 0.44, 0.15), 0.0),  # legs
    ((0.2, 0.56, 0.0), (0.2, 0.44, 0.15), 0.0),
)
#: Rings and segments of each ellipsoid: 2·rings·segments = 2,300 faces per part, 13,800 in all.
ELLIPSOID_RINGS, ELLIPSOID_SEGMENTS = 25, 46


def ellipsoid(
    centre: tuple[float, float, float], radii: tuple[float, float, float], roll_deg: float, rings: int, segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV ellipsoid with outward right-hand normals: (rings·segments + 2, 3) vertices, (2·rings·segments, 3)
    faces."""
    theta = np.linspace(0.0, np.pi, rings + 2)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    ring_points = np.stack([np.sin(tt) * np.cos(pp), np.cos(tt), np.sin(tt) * np.sin(pp)], -1).reshape(-1, 3)
    points = np.concatenate([[[0.0, 1.0, 0.0]], ring_points, [[0.0, -1.0, 0.0]]])
    top, bottom = 0, len(points) - 1

    def ring_vertex(i: int, j: int) -> int:
        return 1 + i * segments + j % segments

    faces = []
    for j in range(segments):
        faces.append([top, ring_vertex(0, j + 1), ring_vertex(0, j)])
        faces.append([bottom, ring_vertex(rings - 1, j), ring_vertex(rings - 1, j + 1)])
        for i in range(rings - 1):
            a, b = ring_vertex(i, j), ring_vertex(i, j + 1)
            c, d = ring_vertex(i + 1, j), ring_vertex(i + 1, j + 1)
            faces += [[a, b, c], [b, d, c]]
    roll = np.deg2rad(roll_deg)
    rot = np.array([[np.cos(roll), -np.sin(roll), 0.0], [np.sin(roll), np.cos(roll), 0.0], [0.0, 0.0, 1.0]])
    vertices = (points * np.asarray(radii)) @ rot.T + np.asarray(centre)
    faces_arr = np.asarray(faces, dtype=np.int64)
    # make the winding outward (right-hand normal away from the centre)
    v0, v1, v2 = (vertices[faces_arr[:, k]] for k in range(3))
    outward = np.einsum("ij,ij->i", np.cross(v1 - v0, v2 - v0), v0 - np.asarray(centre)) > 0
    faces_arr[~outward] = faces_arr[~outward][:, ::-1]
    return vertices, faces_arr


def synthetic_body() -> tuple[np.ndarray, np.ndarray]:
    """Union of ``SYNTHETIC_PARTS``, centred: 6,912 vertices, 13,800 faces, camera orientation, metres."""
    vertices, faces, offset = [], [], 0
    for centre, radii, roll in SYNTHETIC_PARTS:
        v, f = ellipsoid(centre, radii, roll, ELLIPSOID_RINGS, ELLIPSOID_SEGMENTS)
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    points = np.concatenate(vertices)
    return points - 0.5 * (points.min(0) + points.max(0)), np.concatenate(faces)


def load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-format npz (``v_template`` y up, facing +z) turned to the camera orientation, or an ``.obj`` as is."""
    if path.suffix == ".obj":
        import trimesh

        mesh = trimesh.load(path, process=False, force="mesh")
        return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)
    data = np.load(path, allow_pickle=True)
    vertices = np.asarray(data["v_template"], dtype=np.float64)
    vertices = vertices - vertices.mean(0)
    # SMPL model frame (y up, facing +z) -> camera orientation (y down, facing the camera at −z): 180° about x
    return vertices * np.array([1.0, -1.0, -1.0]), np.asarray(data["f"], dtype=np.int64)


@dataclass
class Scene:
    """One benchmark batch: vertices (B, V, 3), faces (F, 3), textures (1, C, F), cam_t (B, 3)."""

    vertices: torch.Tensor
    faces: torch.Tensor
    textures: torch.Tensor
    cam_t: torch.Tensor
    focal: float
    size: int


def make_scene(mesh: tuple[np.ndarray, np.ndarray], batch: int, size: int, device: str, seed: int = 0) -> Scene:
    """The mesh under small random yaw/pitch and SPIN-like cameras (s ≈ 0.9, small tx/ty)."""
    gen = torch.Generator().manual_seed(seed)
    vertices = torch.as_tensor(mesh[0], dtype=torch.float32)
    faces = torch.as_tensor(mesh[1], dtype=torch.long)
    yaw = (torch.rand(batch, generator=gen) - 0.5) * math.radians(60)
    pitch = (torch.rand(batch, generator=gen) - 0.5) * math.radians(20)
    zeros, ones = torch.zeros(batch), torch.ones(batch)
    rot_y = torch.stack([yaw.cos(), zeros, yaw.sin(), zeros, ones, zeros, -yaw.sin(), zeros, yaw.cos()], 1)
    rot_x = torch.stack([ones, zeros, zeros, zeros, pitch.cos(), -pitch.sin(), zeros, pitch.sin(), pitch.cos()], 1)
    rot = rot_x.reshape(batch, 3, 3) @ rot_y.reshape(batch, 3, 3)
    posed = torch.einsum("bij,vj->bvi", rot, vertices)
    cam = torch.stack(
        [CAMERA_SCALE + 0.05 * torch.randn(batch, generator=gen), 0.03 * torch.randn(batch, generator=gen),
         0.03 * torch.randn(batch, generator=gen)], dim=1,
    )
    textures = torch.rand(1, CHANNELS, faces.shape[0], generator=gen)
    return Scene(
        vertices=posed.to(device), faces=faces.to(device), textures=textures.to(device),
        cam_t=weak_perspective_to_translation(cam).to(device),
        focal=scale_focal_length(FOCAL_LENGTH, CROP_SIZE, size), size=size,
    )


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(task: dict) -> dict:
    """Worker: time one backend on one scene; returns seconds, memory and the outputs (CPU numpy)."""
    torch.set_num_threads(task["threads"])
    device = task["device"]
    mesh = (np.asarray(task["vertices"]), np.asarray(task["faces"]))
    scene = make_scene(mesh, task["batch"], task["size"], device)
    kwargs = {"backend": task["backend"]}
    if task["backend"] == "pytorch3d":
        kwargs["faces_per_pixel"] = task["faces_per_pixel"]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    forward_s, backward_s, images, silhouette = [], [], None, None
    rss_before = _current_rss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_cuda = torch.cuda.memory_allocated() if device == "cuda" else 0
    for _ in range(task["warmup"] + task["repeats"]):
        verts = scene.vertices.clone().requires_grad_(True)
        sync()
        start = time.perf_counter()
        images, silhouette = render_semantics(
            verts, scene.faces, scene.textures, scene.cam_t, scene.focal, scene.size, **kwargs
        )
        sync()
        middle = time.perf_counter()
        (images.square().sum() + silhouette.sum()).backward()
        sync()
        end = time.perf_counter()
        forward_s.append(middle - start)
        backward_s.append(end - middle)
    forward_s, backward_s = forward_s[task["warmup"]:], backward_s[task["warmup"]:]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base_cuda
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    totals = [f + b for f, b in zip(forward_s, backward_s)]
    best = int(np.argmin(totals))
    return {
        "forward_s": forward_s[best], "backward_s": backward_s[best], "total_s": totals[best],
        "peak_bytes": max(peak, 0),
        "images": images.detach().float().cpu().numpy(), "silhouette": silhouette.detach().float().cpu().numpy(),
    }


def run_isolated(task: dict) -> dict:
    """Run :func:`measure` in a fresh process so that peak-RSS figures belong to one backend.

    A worker that cannot start or dies raises (``BrokenProcessPool``) instead of leaving the caller waiting, as a
    ``multiprocessing.Pool`` would. Call it from a script file: a spawned worker re-imports ``__main__``, which a
    program read from standard input (``python -``) does not have.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(measure, task).result()


def bench_mesh(name: str, mesh: tuple[np.ndarray, np.ndarray], args: argparse.Namespace, batch: int, size: int) -> None:
    device = args.device
    scene = make_scene(mesh, batch, size, "cpu")
    work = count_pairs(scene.vertices, scene.faces, scene.cam_t, scene.focal, size)
    with torch.no_grad():
        _, sil = render_semantics(scene.vertices, scene.faces, scene.textures, scene.cam_t, scene.focal, size)
    fill = float((sil > 0.5).float().mean())
    print(f"\n== {name}: {len(mesh[1])} faces, B={batch}, {size}x{size}, C={CHANNELS}, device={device}, "
          f"threads={args.threads}; crop fill {100 * fill:.0f} %; pairs: {work['candidates']:,} candidates, "
          f"{work['pairs']:,} rendered ({work['inside']:,} inside), "
          f"{work['pairs'] / max(1, int((sil > 0.5).sum())):.1f} per covered pixel, "
          f"up to {work['max_per_pixel']} faces on one pixel")
    touching = faces_per_pixel_map(scene.vertices, scene.faces, scene.cam_t, scene.focal, size).numpy()
    backends = ["pairs", "dense"] + ([] if args.skip_pytorch3d else ["pytorch3d"])
    reference = None
    for backend in backends:
        if backend == "dense" and batch * len(mesh[1]) * size * size > args.dense_max_elements:
            gib = batch * len(mesh[1]) * size * size * 4 * 30 / 2**30
            print(f"  {backend:9s} skipped: (B, F, S²) = {batch * len(mesh[1]) * size * size:,} elements "
                  f"(~{gib:,.0f} GiB for autograd)")
            continue
        slow = backend != "pairs" and device == "cpu"
        task = {
            "backend": backend, "device": device, "threads": args.threads, "batch": batch, "size": size,
            "vertices": mesh[0].tolist(), "faces": mesh[1].tolist(), "faces_per_pixel": args.faces_per_pixel,
            "repeats": 1 if slow else args.repeats, "warmup": 0 if slow else 1,
        }
        result = run_isolated(task)
        diff = ""
        if reference is None:
            reference = result
        else:
            img_err = np.abs(result["images"] - reference["images"]).max()
            sil_err = np.abs(result["silhouette"] - reference["silhouette"]).max()
            diff = f"; max |Δ| vs pairs: images {img_err:.2e}, silhouette {sil_err:.2e}"
            if backend == "pytorch3d":
                # where no more than K faces touch a pixel pytorch3d sees them all and must agree
                fits = touching <= args.faces_per_pixel
                img_fit = np.abs(result["images"] - reference["images"]).max(axis=1)[fits].max()
                sil_fit = np.abs(result["silhouette"] - reference["silhouette"])[fits].max()
                over = 100 * (touching > args.faces_per_pixel).sum() / max(1, (touching > 0).sum())
                diff += (f"; on the {100 - over:.1f} % of touched pixels with ≤ K faces: images {img_fit:.2e}, "
                         f"silhouette {sil_fit:.2e}")
        extra = f" (K={args.faces_per_pixel})" if backend == "pytorch3d" else ""
        print(f"  {backend:9s}{extra:7s} forward {result['forward_s']:8.3f} s  backward {result['backward_s']:8.3f} s  "
              f"total {result['total_s']:8.3f} s  peak {result['peak_bytes'] / 2**20:8.0f} MiB{diff}")


def measure_training(task: dict) -> dict:
    """Worker: forward + backward seconds of the default backend in the training regime (see module docstring)."""
    from pipeline.body.model import BodyModel

    torch.set_num_threads(task["threads"])
    batch, size = task["batch"], task["size"]
    model = BodyModel(ROOT / "resources" / "body_models", "neutral")
    orient = torch.diag(torch.tensor([1.0, -1.0, -1.0])).expand(batch, 1, 3, 3)  # model frame -> camera frame
    with torch.no_grad():
        vertices = model(body_pose=torch.eye(3).expand(batch, 23, 3, 3), global_orient=orient, pose2rot=False).vertices
    faces = model.faces
    gen = torch.Generator().manual_seed(0)
    textures = torch.rand(batch, CHANNELS, faces.shape[0], generator=gen)
    depth = 2 * FOCAL_LENGTH / (CROP_SIZE * TRAIN_SCALE)
    cam_t = torch.tensor([*TRAIN_CAM_XY, depth]).expand(batch, 3).contiguous()
    focal = scale_focal_length(FOCAL_LENGTH, CROP_SIZE, size)
    work = count_pairs(vertices, faces, cam_t, focal, size)
    forward_s, backward_s = [], []
    for _ in range(1 + task["repeats"]):
        verts = vertices.clone().requires_grad_(True)
        start = time.perf_counter()
        images, silhouette = render_semantics(verts, faces, textures, cam_t, focal, size)
        middle = time.perf_counter()
        (images.square().sum() + silhouette.sum()).backward()
        forward_s.append(middle - start)
        backward_s.append(time.perf_counter() - middle)
    totals = [f + b for f, b in zip(forward_s[1:], backward_s[1:])]
    best = 1 + int(np.argmin(totals))
    return {
        "forward_s": forward_s[best], "backward_s": backward_s[best], "faces": batch * faces.shape[0],
        "fill": float((silhouette > 0.5).float().mean()), **work,
    }


def bench_training(args: argparse.Namespace) -> None:
    """The training regime (B = 16, 64², C = 5, open body model, one thread) on the CPU."""
    task = {"threads": TRAIN_THREADS, "batch": TRAIN_BATCH, "size": TRAIN_SIZE, "repeats": args.repeats}
    with mp.get_context("spawn").Pool(1) as pool:
        r = pool.apply(measure_training, (task,))
    print(f"\n== training regime: open body model (BodyModel, zero pose), B={TRAIN_BATCH}, {TRAIN_SIZE}x{TRAIN_SIZE}, "
          f"C={CHANNELS}, device=cpu, threads={TRAIN_THREADS}; crop fill {100 * r['fill']:.0f} %; pairs: "
          f"{r['candidates']:,} candidates, {r['pairs']:,} rendered, {r['pairs'] / r['faces']:.2f} per face")
    print(f"  pairs     forward {r['forward_s']:8.3f} s  backward {r['backward_s']:8.3f} s  "
          f"total {r['forward_s'] + r['backward_s']:8.3f} s  (best of {args.repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, action="append", default=[], help="extra mesh (.npz SMPL format or .obj)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--faces-per-pixel", type=int, default=DEFAULT_FACES_PER_PIXEL)
    parser.add_argument("--dense-max-elements", type=int, default=DENSE_MAX_ELEMENTS)
    parser.add_argument("--skip-pytorch3d", action="store_true", help="skip pytorch3d (minutes on CPU)")
    parser.add_argument("--synthetic-only", action="store_true",
                        help="only the synthetic body at --batch and --size (no small scene, no training regime)")
    parser.add_argument("--batch", type=int, default=BATCH, help="crops per call with --synthetic-only")
    parser.add_argument("--size", type=int, default=CROP_SIZE, help="crop side in pixels with --synthetic-only")
    args = parser.parse_args()
    if args.synthetic_only:
        bench_mesh(f"synthetic body, batch {args.batch}", synthetic_body(), args, args.batch, args.size)
        return

    meshes = {"synthetic body": synthetic_body()}
    if OPEN_BODY.exists():
        meshes["open body model (T-pose)"] = load_mesh(OPEN_BODY)
    for path in args.mesh:
        meshes[str(path)] = load_mesh(path)

    small_vertices, small_faces = synthetic_body()
    keep = np.arange(0, len(small_faces), 10)  # every 10th face: a 1.4K-face soup of the same body
    bench_mesh("small scene (every 10th face of the synthetic body)", (small_vertices, small_faces[keep]), args, 2, 64)
    for name, mesh in meshes.items():
        bench_mesh(name, mesh, args, BATCH, CROP_SIZE)
    if OPEN_BODY.exists():
        bench_training(args)
    if args.device == "cuda":
        for name, mesh in meshes.items():
            bench_mesh(f"{name}, batch 64", mesh, argparse.Namespace(**{**vars(args), "skip_pytorch3d": True}), 64,
                       CROP_SIZE)


if __name__ == "__main__":
    main()
