"""Contact sheet of the open world for a person to look at: scans (RGB | labels) and images (RGB | label map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from pipeline.io.eft_json import read_eft_json
from pipeline.io.spin_npz import read_spin_npz
from pipeline.parsing.labels import colorize
from pipeline.render.offscreen import Camera, MeshData, SceneRenderer, intrinsics, look_at, render_label_map
from pipeline.world.layout import label_root

TILE = 160


def _scan_tiles(scan_dir: Path, names: list[str], renderer: SceneRenderer) -> list[np.ndarray]:
    tiles = []
    for name in names:
        mesh = trimesh.load(scan_dir / f"{name}.obj", process=False)
        labels = np.load(scan_dir / f"{name}.labels.npy")
        v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        centre = (v.min(0) + v.max(0)) / 2
        height = np.ptp(v[:, 1])
        R, t = look_at(centre + np.array([0.0, 0.05 * height, 1.3 * height]), centre)
        cam = Camera(intrinsics(0.9 * TILE, TILE, TILE), R, t, TILE, TILE)
        rgb, _ = renderer.render_rgb([MeshData(v, f, np.asarray(mesh.visual.vertex_colors))], cam,
                                     background=np.full((TILE, TILE, 3), 255, np.uint8))
        lab, _ = render_label_map([(v, f, labels)], cam, renderer=renderer)
        tiles.append(np.concatenate([rgb, colorize(lab)], 1))
    return tiles


def _image_tiles(annotations: Path, image_root: Path, fmt: str, count: int) -> list[np.ndarray]:
    data = read_eft_json(annotations) if fmt == "eft_json" else read_spin_npz(annotations)
    tiles = []
    for name in data.imgname[:count]:
        img = Image.open(image_root / name).convert("RGB").resize((TILE, TILE))
        lab = Image.open(label_root(image_root) / Path(name).with_suffix(".png")).convert("RGB").resize((TILE, TILE), Image.NEAREST)
        tiles.append(np.concatenate([np.asarray(img), np.asarray(lab)], 1))
    return tiles


def _grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    blank = np.zeros_like(tiles[0])
    rows = [tiles[i : i + cols] + [blank] * (cols - len(tiles[i : i + cols])) for i in range(0, len(tiles), cols)]
    return np.concatenate([np.concatenate(r, 1) for r in rows], 0)


def world_contact_sheet(scan_dir: str | Path, scan_names: list[str], annotations: str | Path, image_root: str | Path,
                        fmt: str, out_png: str | Path, n: int = 16) -> None:
    """16 scans (RGB | per-face labels) above 16 images of one split (RGB | parser-like label map)."""
    with SceneRenderer(TILE, TILE) as renderer:
        scans = _scan_tiles(Path(scan_dir), scan_names[:n], renderer)
    images = _image_tiles(Path(annotations), Path(image_root), fmt, n)
    sheet = np.concatenate([_grid(scans, 4), np.full((8, 4 * 2 * TILE, 3), 255, np.uint8), _grid(images, 4)], 0)
    Image.fromarray(sheet).save(out_png)
