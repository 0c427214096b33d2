"""Figures of the semantic prior: argmax labels from four sides, and per-label probability heat maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.body.model import BodyModel  # noqa: E402
from pipeline.parsing.labels import CIHP_LABELS, PALETTE  # noqa: E402
from pipeline.render.offscreen import Camera, Lighting, SceneRenderer, intrinsics, look_at  # noqa: E402
from pipeline.world.poses import a_pose  # noqa: E402

SIDES = {"front": 0.0, "left": np.pi / 2, "back": np.pi, "right": -np.pi / 2}


def _cameras(vertices: np.ndarray, size: int) -> dict[str, Camera]:
    lo, hi = vertices.min(0), vertices.max(0)
    centre, height = (lo + hi) / 2, hi[1] - lo[1]
    cams = {}
    for name, azim in SIDES.items():
        eye = centre + 3.0 * np.array([np.sin(azim), 0.0, np.cos(azim)])
        R, t = look_at(eye, centre)
        cams[name] = Camera(intrinsics(0.9 * size * 3.0 / (1.1 * height), size, size), R, t, size, size)
    return cams


def _body(body_model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    model = BodyModel(body_model_dir, gender="neutral")
    with torch.no_grad():
        v = model(body_pose=torch.as_tensor(a_pose(1.1)[None], dtype=torch.float32)).vertices[0].numpy()
    return v.astype(np.float64), model.faces.numpy()


def plot_prior(vertex_prob: np.ndarray, body_model_dir: str | Path, views_png: str | Path, heatmap_png: str | Path,
               size: int = 256) -> None:
    """``views_png``: argmax-label body from front/left/back/right; ``heatmap_png``: P(label) per label."""
    v, f = _body(body_model_dir)
    cams = _cameras(v, size)
    light = Lighting(ambient=0.6)
    white = np.full((size, size, 3), 255, np.uint8)
    with SceneRenderer(size, size) as r:
        argmax_rgb = PALETTE[vertex_prob.argmax(1)]
        tiles = [r.render_rgb([(v, f, argmax_rgb)], cams[s], light, white)[0] for s in SIDES]
        fig, axes = plt.subplots(1, 5, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.5]})
        for ax, tile, name in zip(axes, tiles, SIDES):
            ax.imshow(tile)
            ax.set_title(name)
            ax.axis("off")
        present = np.unique(vertex_prob.argmax(1))
        axes[4].axis("off")
        for k, lab in enumerate(present):
            axes[4].add_patch(plt.Rectangle((0, 1 - (k + 1) * 0.05), 0.15, 0.04, color=PALETTE[lab] / 255))
            axes[4].text(0.2, 1 - (k + 1) * 0.05 + 0.005, CIHP_LABELS[lab], fontsize=8)
        fig.suptitle("semantic prior: most likely label per vertex")
        fig.tight_layout()
        fig.savefig(views_png, dpi=100)
        plt.close(fig)
        cmap = plt.get_cmap("viridis")
        fig, axes = plt.subplots(4, 10, figsize=(20, 9))
        for k in range(1, len(CIHP_LABELS)):
            col = np.clip(cmap(vertex_prob[:, k] / max(vertex_prob[:, k].max(), 1e-6))[:, :3] * 255, 0, 255).astype(np.uint8)
            for j, side in enumerate(("front", "back")):
                ax = axes[2 * ((k - 1) // 10) + j, (k - 1) % 10]
                ax.imshow(r.render_rgb([(v, f, col)], cams[side], light, white)[0])
                ax.set_title(f"{CIHP_LABELS[k]} ({side})\nmax {vertex_prob[:, k].max():.2f}", fontsize=7)
        for ax in axes.ravel():
            ax.axis("off")
        fig.suptitle("P(label | vertex), each label scaled to its maximum")
        fig.tight_layout()
        fig.savefig(heatmap_png, dpi=80)
        plt.close(fig)
