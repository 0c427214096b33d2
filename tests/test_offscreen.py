"""Offscreen rendering: camera conventions, exact visible-face maps (vs ray casting), label maps, RGB."""

from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # before anything imports pyrender / OpenGL

from collections.abc import Iterator

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from pipeline.render.offscreen import (
    Camera,
    Lighting,
    MeshData,
    SceneRenderer,
    intrinsics,
    look_at,
    raycast_face_ids,
    render_face_ids,
    render_label_map,
    render_rgb,
    ring_cameras,
)
from pipeline.world.backgrounds import random_background

SIZE = 128
FOCAL = 220.0
MIN_AGREEMENT = 0.995


@pytest.fixture(scope="module")
def renderer() -> Iterator[SceneRenderer]:
    r = SceneRenderer(SIZE, SIZE)
    yield r
    r.close()


def _scene_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Two interpenetrating spheres and a torus threaded around them (self-occlusion everywhere)."""
    a = trimesh.creation.icosphere(subdivisions=3, radius=0.45)
    b = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    torus = trimesh.creation.torus(major_radius=0.55, minor_radius=0.12, major_sections=48, minor_sections=16)
    torus.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 3, [1.0, 0.2, 0.0]))
    parts = [(a.vertices, a.faces), (b.vertices + [0.3, 0.15, 0.25], b.faces), (torus.vertices, torus.faces)]
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _cameras(n: int = 3, seed: int = 0) -> list[Camera]:
    return ring_cameras(n, 3.0, 15.0, 10.0, (0.0, 0.0, 0.0), FOCAL, SIZE, np.random.default_rng(seed),
                        azimuth_offset_deg=20.0)


def test_raycaster_depth_matches_analytic_plane() -> None:
    """The reference ray caster itself: a tilted plane's hit depths equal the analytic ray–plane depths."""
    verts = np.array([[-2.0, -2.0, 0.0], [2.0, -2.0, 0.5], [2.0, 2.0, 0.5], [-2.0, 2.0, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    R, t = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    cam = Camera(intrinsics(FOCAL, 64, 48), R, t)
    ids, depth = raycast_face_ids(verts, faces, cam, 64, 48)
    assert (ids >= 0).all()
    # Plane z_world = (x_world + 2) / 8; camera at z=3 looking down −z with x_cam = x_world, z_cam = 3 − z_world.
    d = cam.pixel_rays(64, 48)  # camera coordinates, z = 1
    x_world = d[..., 0] * depth  # x_cam = x_world here
    np.testing.assert_allclose(3.0 - depth, (x_world + 2.0) / 8.0, atol=1e-5)


def test_face_ids_agree_with_raycasting(renderer: SceneRenderer) -> None:
    verts, faces = _scene_mesh()
    for cam in _cameras():
        ids = render_face_ids(verts, faces, cam, SIZE, SIZE, renderer=renderer)
        ref, _ = raycast_face_ids(verts, faces, cam, SIZE, SIZE)
        covered = (ids >= 0) | (ref >= 0)
        assert covered.sum() > 0.15 * SIZE * SIZE
        agreement = float((ids[covered] == ref[covered]).mean())
        assert agreement >= MIN_AGREEMENT, agreement
        assert ids.dtype == np.int32 and ids.min() >= -1 and ids.max() < len(faces)


def test_pytorch3d_backend_agrees_with_raycasting() -> None:
    verts, faces = _scene_mesh()
    cam = _cameras(1)[0]
    ids = render_face_ids(verts, faces, cam, SIZE, SIZE, backend="pytorch3d")
    ref, _ = raycast_face_ids(verts, faces, cam, SIZE, SIZE)
    covered = (ids >= 0) | (ref >= 0)
    assert float((ids[covered] == ref[covered]).mean()) >= MIN_AGREEMENT


def test_projected_face_centroid_lands_on_that_face(renderer: SceneRenderer) -> None:
    """Coarse sphere (big faces): each front face's centroid, projected with K, R, t, falls on a pixel whose
    visible face is that face."""
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.8)
    verts, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    R, t = look_at((0.4, 0.5, 3.0), (0.0, 0.0, 0.0))
    cam = Camera(intrinsics(FOCAL, SIZE, SIZE), R, t, SIZE, SIZE)
    ids = render_face_ids(verts, faces, cam, renderer=renderer)
    centroids = verts[faces].mean(axis=1)
    normals = np.asarray(sphere.face_normals)
    to_camera = cam.center - centroids
    facing = np.einsum("ij,ij->i", normals, to_camera) > 0.3 * np.linalg.norm(to_camera, axis=1)
    uv, z = cam.project(centroids[facing])
    assert facing.sum() >= 15 and (z > 0).all()
    cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    np.testing.assert_array_equal(ids[rows, cols], np.nonzero(facing)[0])


def test_label_map_picks_the_nearer_mesh(renderer: SceneRenderer) -> None:
    near = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    far = trimesh.creation.box(extents=(1.6, 1.6, 0.2))
    R, t = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    cam = Camera(intrinsics(FOCAL, SIZE, SIZE), R, t, SIZE, SIZE)
    near_mesh = (near.vertices + [0.2, 0.0, 0.5], np.asarray(near.faces), np.full(len(near.faces), 5, np.uint8))
    far_mesh = (far.vertices - [0.0, 0.0, 0.5], np.asarray(far.faces), np.full(len(far.faces), 9, np.uint8))
    for order in ([near_mesh, far_mesh], [far_mesh, near_mesh]):
        labels, owner = render_label_map(order, cam, renderer=renderer)
        near_alone, _ = render_label_map([near_mesh], cam, renderer=renderer)
        far_alone, _ = render_label_map([far_mesh], cam, renderer=renderer)
        overlap = (near_alone > 0) & (far_alone > 0)
        assert overlap.sum() > 500
        assert (labels[near_alone > 0] == 5).all()  # the sphere is in front wherever it projects
        assert (labels[(far_alone > 0) & (near_alone == 0)] == 9).all()
        assert (labels[(far_alone == 0) & (near_alone == 0)] == 0).all()
        near_index = next(i for i, m in enumerate(order) if m is near_mesh)
        assert (owner[near_alone > 0] == near_index).all()
        assert (owner[labels == 0] == -1).all()
    # MeshData works the same as tuples.
    md = [MeshData(m[0], m[1], face_labels=m[2]) for m in (near_mesh, far_mesh)]
    np.testing.assert_array_equal(render_label_map(md, cam, renderer=renderer)[0], labels)


def test_ring_cameras_look_at_target() -> None:
    target = np.array([0.1, 0.9, -0.2])
    cams = ring_cameras(8, 2.5, 10.0, 5.0, target, 300.0, (160, 120), np.random.default_rng(3))
    again = ring_cameras(8, 2.5, 10.0, 5.0, target, 300.0, (160, 120), np.random.default_rng(3))
    azimuths = []
    for cam, twin in zip(cams, again):
        np.testing.assert_allclose(cam.R, twin.R)  # deterministic by rng
        uv, z = cam.project(target[None])
        np.testing.assert_allclose(uv[0], [80.0, 60.0], atol=1e-9)  # target at the principal point
        assert z[0] == pytest.approx(2.5)
        np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
        offset = cam.center - target
        elevation = np.degrees(np.arcsin(offset[1] / np.linalg.norm(offset)))
        assert 5.0 - 1e-9 <= elevation <= 15.0 + 1e-9
        azimuths.append(np.degrees(np.arctan2(offset[0], offset[2])))
        up_uv, _ = cam.project(target[None] + [0.0, 0.1, 0.0])
        assert up_uv[0, 1] < 60.0  # world up is image up (v decreases)
    assert azimuths[0] == pytest.approx(0.0, abs=1e-9)  # view 0 in front (+z)
    np.testing.assert_allclose(np.diff(np.unwrap(np.radians(azimuths))), np.radians(45.0), atol=1e-9)


def test_rgb_render_colours_covered_pixels_and_composites_background(renderer: SceneRenderer) -> None:
    verts, faces = _scene_mesh()
    cam = _cameras(1)[0]
    colour = np.array([200, 40, 90], np.uint8)
    colours = np.tile(colour, (len(verts), 1))
    background = random_background(SIZE, SIZE, np.random.default_rng(0))
    np.testing.assert_array_equal(background, random_background(SIZE, SIZE, np.random.default_rng(0)))
    assert background.shape == (SIZE, SIZE, 3) and background.dtype == np.uint8
    assert background.reshape(-1, 3).std(axis=0).max() > 2.0  # textured, not a flat colour
    ids = render_face_ids(verts, faces, cam, SIZE, SIZE, renderer=renderer)
    inside = ndimage.binary_erosion(ids >= 0, iterations=1)
    outside = ~ndimage.binary_dilation(ids >= 0, iterations=1)

    rgb, depth = render_rgb([(verts, faces, colours)], cam, SIZE, SIZE, background=background, flat=True,
                            renderer=renderer)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    assert (rgb[inside] == colour).all()
    assert (rgb[outside] == background[outside]).all()
    assert (depth[outside] == 0).all() and (depth[inside] > 0).all()
    assert float(((depth > 0) == (ids >= 0)).mean()) > 0.99

    # Ambient-only lighting of 1 reproduces the sRGB colour through pyrender's gamma.
    rgb_amb, _ = render_rgb([(verts, faces, colours)], cam, SIZE, SIZE, Lighting(ambient=1.0), background,
                            renderer=renderer)
    assert np.abs(rgb_amb[inside].astype(int) - colour).max() <= 3
    # Default lighting shades the surface: colours vary but keep their hue ordering (R > B > G).
    lit, _ = render_rgb([(verts, faces, colours)], cam, SIZE, SIZE, background=background, renderer=renderer)
    px = lit[inside].astype(int)
    assert px.std(axis=0).max() > 5
    assert (px[:, 0] >= px[:, 2]).mean() > 0.99 and (px[:, 2] >= px[:, 1]).mean() > 0.99
    assert (lit[outside] == background[outside]).all()


def test_size_mismatch_is_a_clear_error(renderer: SceneRenderer) -> None:
    verts, faces = _scene_mesh()
    cam = ring_cameras(1, 3.0, 0.0, 0.0, (0, 0, 0), FOCAL, 64, np.random.default_rng(0))[0]
    with pytest.raises(ValueError, match="renderer"):
        renderer.render_face_ids(verts, faces, cam)
    with pytest.raises(ValueError, match="backend"):
        render_face_ids(verts, faces, cam, backend="nope")  # type: ignore[arg-type]
