"""Sanity report and figure of the configured body models (any world)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.body.model import BodyModel  # noqa: E402
from pipeline.body.smpl_io import GENDERS  # noqa: E402

#: SMPL joint indices used by the T-pose check.
L_HIP, L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST = 1, 16, 17, 20, 21


def check_body_models(model_dir: str | Path, regressors: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
    """Load every gender, verify conventions (T-pose, left = +x, y up) and write a JSON summary + figure.

    Raises:
        ValueError: a model violates the SMPL conventions the pipeline relies on.
    """
    summary: dict[str, Any] = {}
    fig, axes = plt.subplots(1, 2 * len(GENDERS), figsize=(4 * len(GENDERS), 4.5))
    for i, gender in enumerate(GENDERS):
        model = BodyModel(model_dir, gender=gender, joint_regressors=regressors)
        with torch.no_grad():
            out = model()
        verts = out.vertices[0].numpy()
        joints = out.joints[0].numpy()
        height = float(verts[:, 1].max() - verts[:, 1].min())
        wrist_drop = float(max(abs(joints[L_WRIST, 1] - joints[L_SHOULDER, 1]), abs(joints[R_WRIST, 1] - joints[R_SHOULDER, 1])))
        info = {
            "file": str(model.model_path),
            "num_vertices": model.num_vertices,
            "num_faces": model.num_faces,
            "height_m": height,
            "wrist_to_shoulder_height_m": wrist_drop,
            "left_hip_x": float(joints[L_HIP, 0]),
            "left_wrist_x": float(joints[L_WRIST, 0]),
            "part_vertex_counts": np.bincount(model.vertex_part.numpy(), minlength=24).tolist(),
        }
        summary[gender] = info
        problems = []
        if not 1.2 < height < 2.3:
            problems.append(f"height {height:.2f} m is not a metric adult (model not in metres, or not y-up)")
        if joints[L_HIP, 0] <= 0 or joints[L_WRIST, 0] <= 0:
            problems.append("left hip/wrist not at x > 0 (left/right swapped or not facing +z)")
        if wrist_drop > 0.1:
            problems.append(f"zero pose is not a T-pose (wrists {wrist_drop:.2f} m off shoulder height)")
        if problems:
            raise ValueError(f"body model {model.model_path}: " + "; ".join(problems))
        colors = plt.get_cmap("tab20", 24)(model.vertex_part.numpy() % 24)
        for j, (axis, name) in enumerate(((0, "front"), (2, "side"))):
            ax = axes[2 * i + j]
            ax.scatter(verts[:, axis], verts[:, 1], c=colors, s=0.3, linewidths=0)
            ax.set_aspect("equal")
            ax.set_title(f"{gender} {name}\n{model.num_vertices} V / {model.num_faces} F", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    Path(out_json).write_text(json.dumps(summary, indent=2))
    return summary
