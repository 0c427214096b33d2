"""The soft renderer on the open body model: no NaN/inf over 1,000 random poses, degenerate faces included."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.body.model import BodyModel
from pipeline.render.camera import scale_focal_length, weak_perspective_to_translation
from pipeline.render.soft import render_semantics
from pipeline.world.poses import sample_body_pose, sample_global_orient

N_POSES = 1000
BATCH = 50
SIZE = 32  # small crops keep 1,000 poses cheap; the pair logic is the same at 224


def test_no_nan_over_random_body_poses(open_model) -> None:
    folder, _ = open_model
    model = BodyModel(folder)
    faces = model.faces.clone()
    faces[:200, 1] = faces[:200, 0]  # 200 zero-area faces
    rng = np.random.default_rng(0)
    textures = torch.rand(1, 3, len(faces), dtype=torch.float32)
    focal = scale_focal_length(5000.0, 224, SIZE)
    checked = 0
    for _ in range(N_POSES // BATCH):
        pose = np.stack([sample_body_pose(rng, "random", activity=1.0) for _ in range(BATCH)])
        orient = np.stack([sample_global_orient(rng, max_tilt=np.pi) for _ in range(BATCH)])
        with torch.no_grad():
            verts = model(body_pose=torch.as_tensor(pose, dtype=torch.float32),
                          global_orient=torch.as_tensor(orient, dtype=torch.float32)).vertices
        verts = verts.requires_grad_(True)
        cam = torch.as_tensor(np.c_[rng.uniform(0.05, 1.5, BATCH), rng.uniform(-1, 1, (BATCH, 2))], dtype=torch.float32)
        images, sil = render_semantics(verts, faces, textures, weak_perspective_to_translation(cam), focal=focal,
                                       image_size=SIZE)
        (images.sum() + sil.sum()).backward()
        assert torch.isfinite(images).all() and torch.isfinite(sil).all()
        assert torch.isfinite(verts.grad).all()
        checked += BATCH
    assert checked == N_POSES
