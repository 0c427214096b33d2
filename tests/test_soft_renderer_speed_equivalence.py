"""The ``pairs`` backend's fast paths against the ``dense`` oracle in the training regime.

At DSR's training size most body faces are sub-pixel: the ``pairs`` backend drops the faces whose blur-expanded box
holds no pixel centre, differentiates the kept pairs by hand straight to the projected vertices and runs that
backward in chunks. These tests pin all three to the oracle (float64) on the open body model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pipeline.body.model import BodyModel
from pipeline.render.camera import scale_focal_length
from pipeline.render.soft import count_pairs, render_semantics

F64 = torch.float64
CHANNELS = 5


def body_scene(
    folder: Path, batch: int, size: int, face_step: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The open body, standing and slightly posed, under the training camera (SPIN s = 0.9, t = (0, 0.2)), float64.

    Returns vertices (B, V, 3), faces (every ``face_step``-th face), textures (B, C, F), cam_t (B, 3), focal.
    """
    model = BodyModel(folder)
    gen = torch.Generator().manual_seed(0)
    orient = torch.tensor([[math.pi, 0.0, 0.0]]).expand(batch, 3)  # diag(1, -1, -1): upright, facing the camera
    with torch.no_grad():
        vertices = model(body_pose=0.2 * torch.randn(batch, 69, generator=gen), global_orient=orient).vertices
    faces = model.faces[::face_step]
    textures = torch.rand(batch, CHANNELS, faces.shape[0], generator=gen, dtype=F64)
    cam_t = torch.tensor([0.0, 0.2, 2 * 5000 / (224 * 0.9)], dtype=F64).repeat(batch, 1)
    cam_t[:, :2] += 0.05 * torch.randn(batch, 2, generator=gen, dtype=F64)
    return vertices.to(F64), faces, textures, cam_t, scale_focal_length(5000.0, 224, size)


def rendered_with_grads(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    textures: torch.Tensor,
    cam_t: torch.Tensor,
    focal: float,
    size: int,
    **kwargs: object,
) -> dict[str, torch.Tensor]:
    vertices, textures, cam_t = (x.clone().requires_grad_(True) for x in (vertices, textures, cam_t))
    images, silhouette = render_semantics(vertices, faces, textures, cam_t, focal, size, **kwargs)
    gen = torch.Generator().manual_seed(1)
    loss = (images * torch.rand(images.shape, generator=gen, dtype=F64)).sum() + (
        silhouette * torch.rand(silhouette.shape, generator=gen, dtype=F64)
    ).sum()
    loss.backward()
    return {"images": images.detach(), "silhouette": silhouette.detach(), "grad_vertices": vertices.grad,
            "grad_textures": textures.grad, "grad_cam": cam_t.grad}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rel: float = 0.0) -> None:
    err = (actual - expected).abs()
    bound = atol + rel * expected.abs()
    assert bool((err <= bound).all()), f"max |Δ| {err.max().item():.3e} (atol {atol}, rel {rel})"


def test_pairs_matches_dense_on_a_subpixel_body(open_model: tuple[Path, dict]) -> None:
    folder, _ = open_model
    size = 32
    vertices, faces, textures, cam_t, focal = body_scene(folder, batch=2, size=size, face_step=20)
    work = count_pairs(vertices, faces, cam_t, focal, size)
    assert 0 < work["pairs"] < 2 * 2 * faces.shape[0]  # the training regime: ~1 pair per face
    pairs = rendered_with_grads(vertices, faces, textures, cam_t, focal, size)
    dense = rendered_with_grads(vertices, faces, textures, cam_t, focal, size, backend="dense")
    assert dense["silhouette"].max() > 0.99
    assert_close(pairs["images"], dense["images"], atol=1e-10)
    assert_close(pairs["silhouette"], dense["silhouette"], atol=1e-10)
    for key in ("grad_vertices", "grad_textures", "grad_cam"):
        assert dense[key].abs().max() > 0
        assert_close(pairs[key], dense[key], atol=1e-8, rel=1e-9)


def test_chunked_backward_matches_one_pass(open_model: tuple[Path, dict]) -> None:
    folder, _ = open_model
    size = 32
    vertices, faces, textures, cam_t, focal = body_scene(folder, batch=2, size=size, face_step=1)
    assert count_pairs(vertices, faces, cam_t, focal, size)["pairs"] > 4 * size * size  # several backward runs
    one_pass = rendered_with_grads(vertices, faces, textures, cam_t, focal, size, max_pairs_per_chunk=10**9)
    chunked = rendered_with_grads(vertices, faces, textures, cam_t, focal, size, max_pairs_per_chunk=1)
    assert torch.equal(one_pass["images"], chunked["images"])
    assert torch.equal(one_pass["silhouette"], chunked["silhouette"])
    for key in ("grad_vertices", "grad_textures", "grad_cam"):
        assert_close(chunked[key], one_pass[key], atol=1e-12, rel=1e-12)
