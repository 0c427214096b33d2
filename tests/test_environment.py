"""The pinned stack works: pytorch3d's compiled extension imports and pyrender renders headless."""

from __future__ import annotations

import numpy as np


def test_pytorch3d_compiled_extension() -> None:
    import torch
    from pytorch3d import _C  # noqa: F401  # fails when torch and pytorch3d builds disagree
    from pytorch3d.ops import knn_points

    pts = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    dists = knn_points(pts, pts, K=2).dists[0, :, 1]
    np.testing.assert_allclose(dists.numpy(), [1.0, 1.0, 4.0])


def test_pyrender_headless_frame() -> None:
    import pyrender
    import trimesh

    scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[1.0, 1.0, 1.0])
    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    scene.add(pyrender.Mesh.from_trimesh(box, smooth=False))
    pose = np.eye(4)
    pose[2, 3] = 3.0
    scene.add(pyrender.PerspectiveCamera(yfov=np.pi / 3.0), pose=pose)
    renderer = pyrender.OffscreenRenderer(64, 64)
    try:
        color, depth = renderer.render(scene, flags=pyrender.RenderFlags.FLAT)
    finally:
        renderer.delete()
    covered = depth > 0
    # The cube's front face (half-width 0.5 at 2.5 m) against a half-height of 2.5·tan(30°) fills
    # (0.5 / 1.443)² ≈ 12.0 % of the frame.
    assert abs(covered.mean() - (0.5 / (2.5 * np.tan(np.pi / 6))) ** 2) < 0.01
    assert color[32, 32, 0] > 200 and color[32, 32, 1] < 30
    assert abs(depth[32, 32] - 2.5) < 1e-3
