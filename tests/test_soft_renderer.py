"""Differentiable semantic renderer (pipeline.render.soft) and the SPIN camera (pipeline.render.camera).

Small scenes only: the ``dense`` backend is the oracle for ``pairs``; analytic values for single faces; pytorch3d
as an independent cross-check. Throughput lives in benchmarks/bench_render.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.render.camera import (
    CROP_SIZE,
    FOCAL_LENGTH,
    normalized_to_pixels,
    perspective_projection,
    pixels_to_normalized,
    scale_focal_length,
    weak_perspective_to_translation,
)
from pipeline.render.soft import (
    BACKENDS,
    BACKGROUND_EPS,
    DEFAULT_FAR,
    DEFAULT_NEAR,
    count_pairs,
    coverage_radius_sq,
    render_semantics,
)

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------------------------------------


def triangle_soup(
    seed: int, batch: int, num_faces: int, dtype: torch.dtype = F64, well_shaped: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Independent random triangles in front of the camera, overlapping in depth.

    Returns vertices (B, 3F, 3) metres, faces (F, 3), textures (B, 3, F), cam_t (B, 3). With ``well_shaped``
    every triangle is a rotated, scaled near-equilateral one (pytorch3d's backward is inexact on slivers).
    """
    gen = torch.Generator().manual_seed(seed)
    centres = (torch.rand(batch, num_faces, 1, 3, generator=gen, dtype=dtype) - 0.5) * torch.tensor(
        [1.4, 1.4, 1.2], dtype=dtype
    )
    if well_shaped:
        angle = torch.rand(batch, num_faces, 1, generator=gen, dtype=dtype) * 2 * math.pi
        corner = angle + torch.tensor([0.0, 2.1, 4.2], dtype=dtype)
        size = 0.1 + 0.25 * torch.rand(batch, num_faces, 1, generator=gen, dtype=dtype)
        tilt = 0.3 * torch.randn(batch, num_faces, 3, generator=gen, dtype=dtype)
        offsets = torch.stack([size * corner.cos(), size * corner.sin(), tilt * size], dim=-1)
    else:
        offsets = 0.35 * torch.randn(batch, num_faces, 3, 3, generator=gen, dtype=dtype)
    vertices = (centres + offsets).reshape(batch, 3 * num_faces, 3)
    faces = torch.arange(3 * num_faces).reshape(num_faces, 3)
    textures = torch.rand(batch, 3, num_faces, generator=gen, dtype=dtype)
    cam_t = torch.zeros(batch, 3, dtype=dtype)
    cam_t[:, 2] = 3.0 + torch.rand(batch, generator=gen, dtype=dtype)
    return vertices, faces, textures, cam_t


def fronto_parallel_triangle(
    centre_ndc: tuple[float, float], half_size_ndc: float, depth: float, ndc_focal: float, facing_camera: bool
) -> torch.Tensor:
    """(1, 3, 3) camera-frame vertices of a triangle at constant ``depth`` projecting to (x0−h, y0+h),
    (x0+h, y0+h), (x0, y0−h) in NDC (``ndc = ndc_focal · X / Z``, ``ndc_focal = 2·focal/S``).

    With y down, that order runs counter-clockwise on screen: the right-hand normal faces the camera.
    """
    x0, y0 = centre_ndc
    h = half_size_ndc
    corners = [(x0 - h, y0 + h), (x0 + h, y0 + h), (x0, y0 - h)]
    if not facing_camera:
        corners = corners[::-1]
    return torch.tensor([[[u * depth / ndc_focal, v * depth / ndc_focal, depth] for u, v in corners]], dtype=F64)


render = render_semantics


def rendered_with_grads(
    backend: str,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    textures: torch.Tensor,
    cam_t: torch.Tensor,
    focal: float,
    size: int,
    **kwargs: object,
) -> dict[str, torch.Tensor]:
    """Images, silhouettes and gradients of a fixed random linear loss w.r.t. vertices, textures, cam_t."""
    verts = vertices.clone().requires_grad_(True)
    tex = textures.clone().requires_grad_(True)
    cam = cam_t.clone().requires_grad_(True)
    images, silhouette = render_semantics(verts, faces, tex, cam, focal, size, backend=backend, **kwargs)
    gen = torch.Generator().manual_seed(123)
    w_img = torch.randn(images.shape, generator=gen, dtype=images.dtype)
    w_sil = torch.randn(silhouette.shape, generator=gen, dtype=images.dtype)
    ((images * w_img).sum() + (silhouette * w_sil).sum()).backward()
    return {
        "images": images.detach(),
        "silhouette": silhouette.detach(),
        "grad_vertices": verts.grad,
        "grad_textures": tex.grad,
        "grad_cam": cam.grad,
    }


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rel: float = 0.0) -> None:
    """|actual − expected| ≤ atol + rel · max|expected| everywhere."""
    bound = atol + rel * float(expected.abs().max())
    err = float((actual - expected).abs().max())
    assert err <= bound, f"max abs error {err:.3g} > {bound:.3g}"


# ----------------------------------------------------------------------------------------------------------
# camera
# ----------------------------------------------------------------------------------------------------------


def test_weak_perspective_translation_matches_spin() -> None:
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.2, 0.0, 0.2]], dtype=F64)
    t = weak_perspective_to_translation(cam)
    expected_tz = 2 * FOCAL_LENGTH / (CROP_SIZE * cam[:, 0] + 1e-9)
    assert torch.allclose(t[:, :2], cam[:, 1:])
    assert torch.allclose(t[:, 2], expected_tz)
    assert t[0, 2].item() == pytest.approx(49.603, abs=1e-3)  # 2·5000/(224·0.9)


def test_point_lands_at_weak_perspective_pixel() -> None:
    """At the body origin's depth, the perspective camera reproduces the weak-perspective projection."""
    cam = torch.tensor([[0.8, 0.1, -0.2]], dtype=F64)
    point = torch.tensor([[[0.3, -0.4, 0.0]]], dtype=F64)
    pixels = perspective_projection(point, weak_perspective_to_translation(cam))
    expected_norm = cam[0, 0] * (point[0, 0, :2] + cam[0, 1:])
    assert torch.allclose(pixels_to_normalized(pixels)[0, 0], expected_norm, atol=1e-9)
    assert torch.allclose(pixels[0, 0], (expected_norm + 1) * CROP_SIZE / 2, atol=1e-6)
    assert torch.allclose(normalized_to_pixels(pixels_to_normalized(pixels)), pixels)
    assert scale_focal_length(5000.0, 224, 56) == pytest.approx(1250.0)


def test_rendered_point_appears_at_its_pixel() -> None:
    """Rendering and keypoint projection agree: a tiny face around a projected point covers that pixel."""
    cam = weak_perspective_to_translation(torch.tensor([[0.9, 0.05, 0.1]], dtype=F64))
    point = torch.tensor([[0.2, -0.35, 0.0]], dtype=F64)
    px, py = perspective_projection(point[None], cam)[0, 0].tolist()
    metres_per_pixel = cam[0, 2].item() / FOCAL_LENGTH
    offsets = torch.tensor([[-4.0, 4.0, 0.0], [4.0, 4.0, 0.0], [0.0, -4.0, 0.0]], dtype=F64) * metres_per_pixel
    vertices = (point + offsets)[None]
    _, silhouette = render(vertices, torch.tensor([[0, 1, 2]]), torch.ones(1, 1, 1, dtype=F64), cam)
    assert silhouette[0, int(py), int(px)] > 0.99
    rows, cols = torch.nonzero(silhouette[0] > 0.5, as_tuple=True)
    # the triangle spans ±4 px around the point: every covered pixel is within 4.5 px of it (row = y down)
    assert (rows.double() + 0.5 - py).abs().max() < 4.5
    assert (cols.double() + 0.5 - px).abs().max() < 4.5
    assert len(rows) > 20


# ----------------------------------------------------------------------------------------------------------
# pairs vs the dense oracle
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sigma", "gamma", "double_sided", "shared_texture"),
    [(1e-5, 1e-1, True, True), (1e-4, 1e-2, False, False), (1e-3, 1e-1, True, False)],
)
def test_pairs_matches_dense(sigma: float, gamma: float, double_sided: bool, shared_texture: bool) -> None:
    size = 64
    vertices, faces, textures, cam_t = triangle_soup(seed=1, batch=2, num_faces=40)
    # a face crossing the near plane (culled) and a zero-area face
    vertices[0, 0, 2] = -cam_t[0, 2] + 0.5
    vertices[1, 4] = vertices[1, 3]
    if shared_texture:
        textures = textures[:1]
    focal = 0.7 * size
    kwargs = {"sigma": sigma, "gamma": gamma, "double_sided": double_sided}
    pairs = rendered_with_grads("pairs", vertices, faces, textures, cam_t, focal, size, **kwargs)
    dense = rendered_with_grads("dense", vertices, faces, textures, cam_t, focal, size, **kwargs)
    assert dense["silhouette"].max() > 0.99 and (dense["silhouette"] < 1e-6).float().mean() > 0.05
    assert_close(pairs["images"], dense["images"], atol=1e-10)
    assert_close(pairs["silhouette"], dense["silhouette"], atol=1e-10)
    for key in ("grad_vertices", "grad_textures", "grad_cam"):
        assert_close(pairs[key], dense[key], atol=1e-8, rel=1e-9)


def test_pairs_matches_dense_float32_to_1e5() -> None:
    vertices, faces, textures, cam_t = triangle_soup(seed=2, batch=2, num_faces=30, dtype=torch.float32)
    args = (vertices, faces, textures, cam_t, 40.0, 64)
    images_p, sil_p = render(*args, backend="pairs")
    images_d, sil_d = render(*args, backend="dense")
    assert images_p.dtype == torch.float32
    assert_close(images_p, images_d, atol=1e-5)
    assert_close(sil_p, sil_d, atol=1e-5)


def test_pairs_chunking_does_not_change_the_result() -> None:
    vertices, faces, textures, cam_t = triangle_soup(seed=3, batch=2, num_faces=30)
    args = (vertices, faces, textures, cam_t, 30.0, 48)
    images, silhouette = render(*args)
    images_c, silhouette_c = render(*args, max_pairs_per_chunk=1)  # one chunk per S² candidates
    assert torch.equal(images, images_c) and torch.equal(silhouette, silhouette_c)
    work = count_pairs(vertices, faces, cam_t, 30.0, 48)
    assert work["candidates"] >= work["pairs"] >= work["inside"] > 0


def test_pairs_gradcheck() -> None:
    vertices, faces, textures, cam_t = triangle_soup(seed=4, batch=1, num_faces=3)
    vertices.requires_grad_(True)
    textures.requires_grad_(True)
    cam_t.requires_grad_(True)

    def fn(v: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return render_semantics(v, faces, t, c, 6.0, 10, sigma=2e-2, gamma=5e-2, double_sided=True)

    assert torch.autograd.gradcheck(fn, (vertices, textures, cam_t), eps=1e-6, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# pytorch3d cross-check
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("double_sided", [True, False])
def test_pytorch3d_matches_dense(double_sided: bool) -> None:
    pytest.importorskip("pytorch3d")
    num_faces = 16
    vertices, faces, textures, cam_t = triangle_soup(
        seed=5, batch=2, num_faces=num_faces, dtype=torch.float32, well_shaped=True
    )
    kwargs = {"sigma": 1e-4, "double_sided": double_sided}
    args = (vertices, faces, textures, cam_t, 24.0, 32)
    p3d = rendered_with_grads("pytorch3d", *args, faces_per_pixel=num_faces, **kwargs)
    dense = rendered_with_grads("dense", *args, **kwargs)
    assert_close(p3d["images"], dense["images"], atol=3e-5)
    assert_close(p3d["silhouette"], dense["silhouette"], atol=3e-5)
    for key in ("grad_vertices", "grad_textures", "grad_cam"):
        assert_close(p3d[key], dense[key], atol=1e-4, rel=1e-4)


# ----------------------------------------------------------------------------------------------------------
# semantics on hand-built scenes
# ----------------------------------------------------------------------------------------------------------


SIZE = 32
FOCAL = 16.0  # NDC = 2·f·X/(S·Z) = X/Z: one metre at one metre depth spans the half-image


def single_face(facing_camera: bool = True, depth: float = 4.0) -> torch.Tensor:
    """The NDC triangle (−0.5, 0.5), (0.5, 0.5), (0, −0.5) at ``depth``, for ``FOCAL`` and ``SIZE``."""
    return fronto_parallel_triangle((0.0, 0.0), 0.5, depth, 2 * FOCAL / SIZE, facing_camera)


def test_coverage_and_colour_inside_match_softras_formula() -> None:
    depth, gamma, colour = 4.0, 0.1, 0.7
    vertices = single_face(depth=depth)
    images, silhouette = render(
        vertices, torch.tensor([[0, 1, 2]]), torch.full((1, 1, 1), colour, dtype=F64),
        torch.zeros(1, 3, dtype=F64), FOCAL, SIZE, gamma=gamma,
    )
    centre = SIZE // 2
    z_norm = (DEFAULT_FAR - depth) / (DEFAULT_FAR - DEFAULT_NEAR)
    expected = colour * math.exp(z_norm / gamma) / (math.exp(BACKGROUND_EPS / gamma) + math.exp(z_norm / gamma))
    assert silhouette[0, centre, centre].item() == pytest.approx(1.0, abs=1e-12)
    assert images[0, 0, centre, centre].item() == pytest.approx(expected, abs=1e-12)
    # far outside: background 0
    assert silhouette[0, 0, 0].item() == 0.0 and images[0, 0, 0, 0].item() == 0.0


def test_coverage_outside_an_edge_is_sigmoid_of_squared_distance() -> None:
    """Bottom edge of the triangle at NDC y = +0.5 (y down); in the centre column, rows from NDC y ≈ 0.3 down
    are closer to it than to the slanted edges, so d is the vertical distance to y = 0.5."""
    sigma = 5e-3
    vertices = single_face()
    _, silhouette = render(
        vertices, torch.tensor([[0, 1, 2]]), torch.ones(1, 1, 1, dtype=F64), torch.zeros(1, 3, dtype=F64),
        FOCAL, SIZE, sigma=sigma,
    )
    col = SIZE // 2
    for row in range(21, SIZE):
        v = (2 * row + 1) / SIZE - 1
        d2 = (v - 0.5) ** 2
        inside = v < 0.5
        expected = 1 / (1 + math.exp(-d2 / sigma)) if inside else 1 / (1 + math.exp(d2 / sigma))
        if not inside and d2 >= coverage_radius_sq(sigma):
            expected = 0.0
        assert silhouette[0, row, col].item() == pytest.approx(expected, abs=1e-9), row


def test_front_face_hides_back_face_as_gamma_decreases() -> None:
    front = single_face(depth=2.0)
    back = single_face(depth=3.0)
    vertices = torch.cat([front, back], dim=1)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    textures = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=F64)  # channel 0 = front, 1 = back
    c = SIZE // 2
    shares = []
    for gamma in (1e-1, 1e-2, 1e-3, 1e-4):
        images, _ = render(vertices, faces, textures, torch.zeros(1, 3, dtype=F64), FOCAL, SIZE, gamma=gamma)
        front_w, back_w = images[0, 0, c, c].item(), images[0, 1, c, c].item()
        expected_ratio = math.exp(((DEFAULT_FAR - 3.0) - (DEFAULT_FAR - 2.0)) / (DEFAULT_FAR - DEFAULT_NEAR) / gamma)
        assert back_w / front_w == pytest.approx(expected_ratio, rel=1e-9)
        shares.append(back_w)
    assert shares == sorted(shares, reverse=True)
    assert shares[0] > 0.4 and shares[-1] < 1e-30  # DSR's γ = 0.1: nearly an average; γ = 1e-4: opaque


def test_double_sided_controls_back_facing_colour() -> None:
    c = SIZE // 2
    faces = torch.tensor([[0, 1, 2]])
    textures = torch.ones(1, 1, 1, dtype=F64)
    cam = torch.zeros(1, 3, dtype=F64)
    for facing in (True, False):
        vertices = single_face(facing_camera=facing)
        # the winding really is physical: right-hand normal vs the direction to the camera
        v0, v1, v2 = vertices[0]
        assert (torch.linalg.cross(v1 - v0, v2 - v0) @ -v0 > 0).item() is facing
        img_two, sil_two = render(vertices, faces, textures, cam, FOCAL, SIZE, double_sided=True)
        img_one, sil_one = render(vertices, faces, textures, cam, FOCAL, SIZE, double_sided=False)
        assert img_two[0, 0, c, c] > 0.99
        assert bool(img_one[0, 0, c, c] > 0.99) is facing
        if not facing:
            assert img_one.abs().max() == 0.0
        # SoftRas semantics: culling only removes colour, the silhouette keeps every face
        assert torch.equal(sil_one, sil_two)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_view_returns_zeros(backend: str) -> None:
    if backend == "pytorch3d":
        pytest.importorskip("pytorch3d")
    vertices, faces, textures, cam_t = triangle_soup(seed=6, batch=3, num_faces=5, dtype=torch.float32)
    cam_t[0, 2] = -5.0  # behind the camera
    cam_t[1, 0] = 50.0  # far to the side
    cam_t[2, 2] = 0.2  # straddling the near plane
    verts = vertices.clone().requires_grad_(True)
    images, silhouette = render_semantics(verts, faces, textures, cam_t, 24.0, 24, backend=backend)
    (images.sum() + silhouette.sum()).backward()
    assert images.shape == (3, 3, 24, 24) and silhouette.shape == (3, 24, 24)
    assert images.abs().max() == 0.0 and silhouette.abs().max() == 0.0
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().max() == 0.0


def test_no_nan_over_random_poses_with_degenerate_faces() -> None:
    """200 random rotations and weak-perspective cameras (incl. s ≤ 0 and huge s) of a closed mesh with
    collapsed poles, a collapsed edge and zero-area faces: images and gradients stay finite."""
    n_lat, n_lon = 10, 12
    theta = torch.linspace(0, math.pi, n_lat, dtype=torch.float32)
    phi = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=torch.float32)[:-1]
    tt, pp = torch.meshgrid(theta, phi, indexing="ij")
    sphere = torch.stack([tt.sin() * pp.cos(), tt.cos(), tt.sin() * pp.sin()], -1).reshape(-1, 3)
    sphere = sphere * torch.tensor([0.3, 0.8, 0.2])
    quads = [(i * n_lon + j, i * n_lon + (j + 1) % n_lon) for i in range(n_lat - 1) for j in range(n_lon)]
    faces = torch.tensor(
        [[a, a + n_lon, b] for a, b in quads] + [[b, a + n_lon, b + n_lon] for a, b in quads] + [[0, 0, 0], [1, 1, 2]]
    )
    gen = torch.Generator().manual_seed(7)
    size = 32
    for _ in range(10):
        batch = 20
        rot = torch.linalg.qr(torch.randn(batch, 3, 3, generator=gen)).Q
        vertices = torch.einsum("bij,vj->bvi", rot, sphere)
        vertices[:, 20] = vertices[:, 21]
        cam = torch.stack(
            [torch.rand(batch, generator=gen) * 3 - 0.5, 0.5 * torch.randn(batch, generator=gen),
             0.5 * torch.randn(batch, generator=gen)], dim=1,
        )
        cam[:3, 0] = torch.tensor([0.0, 1e-7, 60.0])
        verts = vertices.requires_grad_(True)
        scale = cam.clone().requires_grad_(True)
        textures = torch.rand(1, 2, faces.shape[0], generator=gen)
        images, silhouette = render_semantics(
            verts, faces, textures, weak_perspective_to_translation(scale), scale_focal_length(5000, 224, size), size
        )
        (images.square().sum() + silhouette.sum()).backward()
        for tensor in (images, silhouette, verts.grad, scale.grad):
            assert torch.isfinite(tensor).all()
        assert images.min() >= 0 and images.max() <= 1 and silhouette.max() <= 1


def test_invalid_arguments_raise_clear_errors() -> None:
    vertices, faces, textures, cam_t = triangle_soup(seed=8, batch=1, num_faces=2)
    with pytest.raises(ValueError, match="pairs, dense, pytorch3d"):
        render(vertices, faces, textures, cam_t, backend="softras")
    with pytest.raises(ValueError, match="face_textures"):
        render(vertices, faces, textures[:, :, :1], cam_t)
    with pytest.raises(ValueError, match="cam_t"):
        render(vertices, faces, textures, cam_t[:, :2])
    with pytest.raises(ValueError, match="faces index"):
        render(vertices, faces + 100, textures, cam_t)
