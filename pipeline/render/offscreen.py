"""Offline rendering: lit RGB images (pyrender, EGL/OSMesa offscreen) and exact visible-face / label maps.

This is the rendering layer shared by the open-world image generator (``make_images``) and the scan-view
renderer of the semantic-prior stage (``render_scan_views``).

Conventions (every function here and every consumer):

* **World frame**: any right-handed metric frame (the body models use metres, y up, facing +z).
* **Camera**: :class:`Camera` is an OpenCV pinhole camera. ``x_cam = R @ x_world + t`` with camera axes
  x right, y down, z forward (metres). The camera centre is ``C = -R.T @ t``.
* **Pixels**: continuous image coordinates ``u = fx·x/z + cx``, ``v = fy·y/z + cy`` (``K = [[fx, 0, cx],
  [0, fy, cy], [0, 0, 1]]``), with pixel ``[row i, col j]`` covering ``[j, j+1) × [i, i+1)`` and its centre
  at ``(u, v) = (j + 0.5, i + 0.5)``. Rows grow downwards (y down). :func:`intrinsics` puts the principal
  point at the image centre ``(W/2, H/2)``. A pixel is "covered" by a face when its centre is.
* **pyrender / OpenGL**: the OpenGL camera looks down −z with y up, so its camera-to-world pose is
  ``[[R.T @ diag(1, -1, -1), C], [0, 0, 0, 1]]`` (:meth:`Camera.opengl_pose`). pyrender's
  ``IntrinsicsCamera(fx, fy, cx, cy)`` maps window coordinates with the same half-pixel convention as above,
  so K is passed unchanged; rows are flipped on read-back, which pyrender does.
* **Depth**: ``z`` along the optical axis in world units; 0 where nothing is hit.

Visible-face maps must be exact: with multisampling (pyrender's default framebuffer has 4 samples) the
resolve blends the colours of the faces meeting in an edge pixel into a valid-but-wrong ID. The default
``"pyrender"`` backend therefore renders flat 24-bit ID colours into a *single-sample* framebuffer (a
:class:`pyrender.Renderer` subclass that re-allocates pyrender's multisample renderbuffers with 0 samples), so
every pixel takes the ID of the nearest face at its centre. ``"pytorch3d"`` (hard rasteriser, useful on a
GPU; slow on CPU) is an alternative backend; :func:`raycast_face_ids` is an independent numpy ray caster
(Möller–Trumbore in 3D) used as the reference check.

Environment: callers must set ``PYOPENGL_PLATFORM=egl`` (or ``osmesa``) *before* anything imports pyrender
or OpenGL; this module never touches the environment and imports pyrender lazily, when the first
:class:`SceneRenderer` is made. Import ``torch._dynamo`` (or anything that pulls in triton, e.g. ``anny``)
before creating the first EGL context: triton segfaults when imported after one exists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pyrender

# ----------------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------------

#: OpenCV camera axes -> OpenGL camera axes (x right, y up, looking down −z).
CV_TO_GL: np.ndarray = np.diag([1.0, -1.0, -1.0])
#: Value of a face-ID map where no face covers the pixel centre.
NO_FACE: int = -1
#: Smallest near plane (world units) used by the automatic near/far choice.
Z_NEAR_MIN: float = 1e-3
#: Near plane = this fraction of the smallest positive vertex depth (keeps 24-bit depth precision high).
Z_NEAR_FRACTION: float = 0.5
#: Far plane = this multiple of the largest vertex depth.
Z_FAR_FACTOR: float = 1.5
#: Default ambient light (linear radiance multiplier of the vertex colour).
DEFAULT_AMBIENT: float = 0.35
#: Default key (directional) light intensity (pyrender units; ~1 for a white Lambertian surface at 3.3).
DEFAULT_KEY_INTENSITY: float = 2.5
#: Default fill light intensity.
DEFAULT_FILL_INTENSITY: float = 1.0
#: Surface roughness of the default material (0 = mirror, 1 = fully rough); metallic is always 0.
DEFAULT_ROUGHNESS: float = 0.8
#: Gamma pyrender's lit shader applies to its output; vertex colours are linearised with it before upload.
SHADER_GAMMA: float = 2.2
#: Most lights of one type pyrender supports.
MAX_LIGHTS_PER_TYPE: int = 4
#: IDs are encoded in 24-bit RGB as face index + 1 (0 = background).
MAX_ENCODABLE_FACES: int = 2**24 - 1
#: Visible-face backends of :func:`render_face_ids`.
FACE_ID_BACKENDS: tuple[str, ...] = ("pyrender", "pytorch3d", "raycast")
#: Face–pixel pairs tested per chunk by the numpy ray caster (bounds its memory to a few hundred MB).
RAYCAST_CHUNK_PAIRS: int = 2_000_000
#: Determinant threshold of the Möller–Trumbore test (rays parallel to a face miss it).
RAYCAST_DET_EPS: float = 1e-12

#: Grey used for meshes without vertex colours (sRGB uint8).
DEFAULT_VERTEX_COLOR: tuple[int, int, int] = (180, 180, 180)

FaceIdBackend = Literal["pyrender", "pytorch3d", "raycast"]


@dataclass
class MeshData:
    """A triangle mesh to render.

    Attributes:
        vertices: (N, 3) float world coordinates.
        faces: (F, 3) int vertex indices.
        vertex_colors: (N, 3|4) uint8 sRGB (alpha ignored); None = :data:`DEFAULT_VERTEX_COLOR`.
        face_labels: (F,) uint8 CIHP labels (needed by :func:`render_label_map`).
        smooth: smooth (vertex-normal) shading; False = flat faceted shading.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    face_labels: np.ndarray | None = None
    smooth: bool = True


#: A coloured mesh: ``MeshData`` or a tuple (vertices (N, 3), faces (F, 3), vertex colours (N, 3|4) uint8).
ColoredMesh = MeshData | tuple[np.ndarray, np.ndarray, np.ndarray]
#: A labelled mesh: ``MeshData`` with ``face_labels`` or a tuple (vertices, faces, face labels (F,) uint8).
LabeledMesh = MeshData | tuple[np.ndarray, np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """OpenCV pinhole camera (see the module docstring for every convention).

    Attributes:
        K: (3, 3) float64 intrinsics in pixels (no skew).
        R: (3, 3) float64 rotation world -> camera (rows are the camera x, y, z axes in world coordinates).
        t: (3,) float64 translation world -> camera, world units.
        width, height: optional image size in pixels; render functions use it when not given a size.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        R = np.asarray(self.R, dtype=np.float64)
        t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
            raise ValueError(f"Camera needs K (3,3), R (3,3), t (3,); got {K.shape}, {R.shape}, {t.shape}")
        if abs(K[0, 1]) > 1e-12 or np.any(K[2] != (0.0, 0.0, 1.0)) or K[1, 0] != 0.0:
            raise ValueError(f"Camera K must be [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew); got {K.tolist()}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError("Camera R must be a proper rotation matrix (orthonormal, det +1)")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, (3,) float64."""
        return -self.R.T @ self.t

    @property
    def centre(self) -> np.ndarray:
        """Alias of :attr:`center`."""
        return self.center

    def image_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """(width, height): the arguments when given, else the camera's own size (error when neither is)."""
        w = width if width is not None else self.width
        h = height if height is not None else self.height
        if w is None or h is None:
            raise ValueError("image size unknown: pass width and height, or build the Camera with them")
        return int(w), int(h)

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> OpenCV camera coordinates (N, 3) float64."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points.

        Args:
            points: (N, 3) world coordinates.

        Returns:
            uv: (N, 2) float64 continuous pixel coordinates (pixel [i, j] has centre (j + 0.5, i + 0.5));
                non-finite for points with z <= 0.
            z: (N,) float64 depth along the optical axis.
        """
        cam = self.world_to_camera(points)
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = cam[:, :2] / np.where(z > 0, z, np.nan)[:, None]
        uv = xy * np.diag(self.K)[:2] + self.K[:2, 2]
        return uv, z

    def opengl_pose(self) -> np.ndarray:
        """Camera-to-world pose (4, 4) float64 of the equivalent OpenGL/pyrender camera (y up, looks down −z)."""
        pose = np.eye(4)
        pose[:3, :3] = self.R.T @ CV_TO_GL
        pose[:3, 3] = self.center
        return pose

    def pixel_rays(self, width: int, height: int) -> np.ndarray:
        """Directions (H, W, 3) float64 in *camera* coordinates through the pixel centres, scaled to z = 1.

        A hit at ray parameter s lies at depth z = s; rotate to world with ``dirs @ R``.
        """
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        u = np.arange(width) + 0.5
        v = np.arange(height) + 0.5
        dirs = np.empty((height, width, 3))
        dirs[..., 0] = ((u - cx) / fx)[None, :]
        dirs[..., 1] = ((v - cy) / fy)[:, None]
        dirs[..., 2] = 1.0
        return dirs


def intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """Intrinsics (3, 3) float64 with square pixels of focal ``focal_px`` and the principal point at the image
    centre ``(width / 2, height / 2)`` (half-pixel convention of the module docstring)."""
    if focal_px <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"intrinsics needs positive focal and size; got {focal_px}, {width}x{height}")
    return np.array([[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]])


def look_at(
    eye: np.ndarray | Sequence[float],
    target: np.ndarray | Sequence[float],
    up: np.ndarray | Sequence[float] = (0.0, 1.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV extrinsics of a camera at ``eye`` looking at ``target``, with world ``up`` appearing up (−y).

    Args:
        eye, target: (3,) world coordinates; up: (3,) world direction, not parallel to ``target - eye``.

    Returns:
        R: (3, 3) float64 world -> camera rotation; t: (3,) float64 translation (``x_cam = R x + t``).
    """
    eye_a, target_a, up_a = (np.asarray(a, dtype=np.float64).reshape(3) for a in (eye, target, up))
    forward = target_a - eye_a
    norm = np.linalg.norm(forward)
    if norm < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    z = forward / norm
    x = np.cross(z, up_a)
    if np.linalg.norm(x) < 1e-9 * max(np.linalg.norm(up_a), 1e-12):
        raise ValueError(f"look_at: up {up_a.tolist()} is parallel to the viewing direction {z.tolist()}")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye_a


def ring_cameras(
    n_views: int,
    distance: float,
    elevation_deg: float,
    elevation_jitter_deg: float,
    target: np.ndarray | Sequence[float],
    focal_px: float,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    azimuth_offset_deg: float = 0.0,
    up: np.ndarray | Sequence[float] = (0.0, 1.0, 0.0),
) -> list[Camera]:
    """Cameras evenly spaced in azimuth on a ring around the vertical axis through ``target``.

    View k sits at azimuth ``azimuth_offset_deg + 360·k/n_views`` (0° = on the +z side of the target, i.e. in
    front of a body facing +z; 90° = on the +x side), at elevation ``elevation_deg + U(−jitter, +jitter)``
    above the horizontal plane, ``distance`` from ``target``, looking at ``target`` with ``up`` up.

    Args:
        n_views: number of cameras (>= 1).
        distance: eye-to-target distance, world units.
        elevation_deg, elevation_jitter_deg: mean elevation and uniform jitter half-width, degrees.
        target: (3,) world point every camera looks at.
        focal_px: focal length, pixels.
        size: image side (square) or (width, height), pixels; only used for the principal point.
        rng: the only source of randomness (one uniform draw per view).
        azimuth_offset_deg: azimuth of view 0.
        up: (3,) world vertical axis.

    Returns:
        ``n_views`` :class:`Camera` objects in azimuth order.
    """
    if n_views < 1 or distance <= 0:
        raise ValueError(f"ring_cameras needs n_views >= 1 and distance > 0; got {n_views}, {distance}")
    width, height = (size, size) if isinstance(size, (int, np.integer)) else size
    K = intrinsics(focal_px, int(width), int(height))
    up_a = np.asarray(up, dtype=np.float64)
    up_a = up_a / np.linalg.norm(up_a)
    front = np.array([0.0, 0.0, 1.0]) - up_a * up_a[2]
    if np.linalg.norm(front) < 1e-6:
        front = np.array([1.0, 0.0, 0.0]) - up_a * up_a[0]
    front /= np.linalg.norm(front)
    side = np.cross(up_a, front)
    target_a = np.asarray(target, dtype=np.float64).reshape(3)
    jitter = rng.uniform(-elevation_jitter_deg, elevation_jitter_deg, size=n_views)
    cams = []
    for k in range(n_views):
        azim = np.deg2rad(azimuth_offset_deg + 360.0 * k / n_views)
        elev = np.deg2rad(elevation_deg + jitter[k])
        direction = np.cos(elev) * (np.cos(azim) * front + np.sin(azim) * side) + np.sin(elev) * up_a
        R, t = look_at(target_a + distance * direction, target_a, up_a)
        cams.append(Camera(K, R, t, int(width), int(height)))
    return cams


# ----------------------------------------------------------------------------------------------------------
# Lights
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectionalLight:
    """Light at infinity. ``direction``: (3,) world direction the light *travels* (from light to scene);
    ``color``: (3,) linear RGB in [0, 1]; ``intensity``: pyrender units."""

    direction: tuple[float, float, float]
    intensity: float = DEFAULT_KEY_INTENSITY
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class PointLight:
    """Point light at ``position`` (3,) world; radiance falls off as ``intensity / distance²``."""

    position: tuple[float, float, float]
    intensity: float = 10.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Lighting:
    """Ambient term plus up to four directional and four point lights (pyrender's limit).

    Attributes:
        ambient: ambient radiance multiplier (scalar or linear RGB).
        lights: directional / point lights.
        direction, intensity, color: shorthand for one extra directional key light (ignored when
            ``direction`` is None), e.g. ``Lighting(direction=(0.3, -0.6, -1), intensity=3, ambient=0.35)``.
    """

    ambient: float | tuple[float, float, float] | np.ndarray = DEFAULT_AMBIENT
    lights: tuple[DirectionalLight | PointLight, ...] = field(default_factory=tuple)
    direction: tuple[float, float, float] | np.ndarray | None = None
    intensity: float = DEFAULT_KEY_INTENSITY
    color: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        lights = self.all_lights()
        n_dir = sum(isinstance(light, DirectionalLight) for light in lights)
        if n_dir > MAX_LIGHTS_PER_TYPE or len(lights) - n_dir > MAX_LIGHTS_PER_TYPE:
            raise ValueError(f"Lighting supports at most {MAX_LIGHTS_PER_TYPE} lights of each type")

    def all_lights(self) -> tuple[DirectionalLight | PointLight, ...]:
        """``lights`` plus the shorthand key light, if any."""
        if self.direction is None:
            return tuple(self.lights)
        key = DirectionalLight(tuple(np.asarray(self.direction, float)), float(self.intensity),
                               tuple(np.asarray(self.color, float)))
        return (*self.lights, key)


def default_lighting(camera: Camera) -> Lighting:
    """A camera-relative key light (from above-left of the camera) plus a weak fill from the right."""
    right, down, forward = camera.R
    key = forward + 0.6 * down - 0.5 * right  # travels forward and downwards, from the upper left
    fill = forward + 0.2 * down + 0.8 * right
    return Lighting(
        ambient=DEFAULT_AMBIENT,
        lights=(
            DirectionalLight(tuple(key / np.linalg.norm(key)), DEFAULT_KEY_INTENSITY),
            DirectionalLight(tuple(fill / np.linalg.norm(fill)), DEFAULT_FILL_INTENSITY),
        ),
    )


def random_lighting(
    rng: np.random.Generator,
    camera: Camera,
    ambient_range: tuple[float, float] = (0.2, 0.6),
    key_intensity_range: tuple[float, float] = (1.5, 4.0),
    max_extra_lights: int = 2,
    tint: float = 0.15,
) -> Lighting:
    """Random lighting with a key light in the hemisphere facing the camera's subject.

    Args:
        rng: source of randomness.
        camera: lights are sampled relative to its viewing direction.
        ambient_range: uniform range of the ambient term.
        key_intensity_range: uniform range of the key light; extra lights get 20–60 % of it.
        max_extra_lights: up to this many extra directional lights from random directions.
        tint: maximum per-channel deviation of light colours from white.
    """
    forward = camera.R[2]

    def _direction() -> tuple[float, float, float]:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        d = d + 1.2 * forward  # mostly travelling away from the camera, i.e. lighting the visible side
        return tuple(d / np.linalg.norm(d))

    def _color() -> tuple[float, float, float]:
        return tuple(np.clip(1.0 + rng.uniform(-tint, tint, size=3), 0.0, 1.0))

    key = float(rng.uniform(*key_intensity_range))
    lights: list[DirectionalLight | PointLight] = [DirectionalLight(_direction(), key, _color())]
    for _ in range(int(rng.integers(0, max_extra_lights + 1))):
        lights.append(DirectionalLight(_direction(), key * float(rng.uniform(0.2, 0.6)), _color()))
    return Lighting(ambient=float(rng.uniform(*ambient_range)), lights=tuple(lights))


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def _check_mesh(vertices: np.ndarray, faces: np.ndarray, what: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{what}: vertices must be (N, 3); got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{what}: faces must be integer (F, 3); got {f.shape} {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"{what}: face indices out of range [0, {len(v)})")
    return v, f.astype(np.int64)


def _as_colored(mesh: ColoredMesh, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(vertices float64 (N, 3), faces int64 (F, 3), colours uint8 (N, 3|4), smooth) of a ColoredMesh."""
    if isinstance(mesh, MeshData):
        v, f = _check_mesh(mesh.vertices, mesh.faces, what)
        colors = mesh.vertex_colors
        smooth = mesh.smooth
    else:
        v, f = _check_mesh(mesh[0], mesh[1], what)
        colors, smooth = mesh[2], True
    if colors is None:
        colors = np.tile(np.asarray(DEFAULT_VERTEX_COLOR, np.uint8), (len(v), 1))
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[0] != len(v) or colors.shape[1] not in (3, 4):
        raise ValueError(f"{what}: vertex colours must be ({len(v)}, 3|4) uint8; got {colors.shape}")
    return v, f, colors, smooth


def _used_vertices(n_vertices: int, f: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of the vertices referenced by faces (F, 3)."""
    used = np.zeros(n_vertices, bool)
    used[f.ravel()] = True
    return used


def _near_far(points_cam_z: np.ndarray) -> tuple[float, float] | None:
    """Automatic (znear, zfar) bracketing the positive depths; None when nothing is in front."""
    front = points_cam_z[points_cam_z > Z_NEAR_MIN]
    if front.size == 0:
        return None
    znear = max(Z_NEAR_FRACTION * float(front.min()), Z_NEAR_MIN)
    zfar = max(Z_FAR_FACTOR * float(front.max()), 2.0 * znear)
    return znear, zfar


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (N, 3) float32 (zero-area neighbourhoods get +z)."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    idx = f.ravel()
    vn = np.stack([np.bincount(idx, weights=np.repeat(fn[:, c], 3), minlength=len(v)) for c in range(3)], axis=1)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    vn = np.where(norm > 0, vn / np.where(norm > 0, norm, 1.0), np.array([0.0, 0.0, 1.0]))
    return vn.astype(np.float32)


def encode_face_ids(n_faces: int) -> np.ndarray:
    """Flat ID colours (F, 3) uint8: face k -> k + 1 in 24-bit little-endian RGB (0 is background)."""
    if n_faces > MAX_ENCODABLE_FACES:
        raise ValueError(f"at most {MAX_ENCODABLE_FACES} faces can be ID-encoded; got {n_faces}")
    ids = np.arange(1, n_faces + 1, dtype=np.uint32)
    return np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=1).astype(np.uint8)


def decode_face_ids(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_face_ids` on an image (H, W, 3) uint8 -> (H, W) int32, −1 = background."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)) - 1


def _single_sample_renderer_class() -> type:
    """A pyrender ``Renderer`` whose offscreen framebuffer has one sample per pixel (no MSAA resolve)."""
    import pyrender
    from OpenGL.GL import (
        GL_DEPTH_COMPONENT24,
        GL_RENDERBUFFER,
        GL_RGBA,
        glBindRenderbuffer,
        glRenderbufferStorageMultisample,
    )

    class SingleSampleRenderer(pyrender.Renderer):  # type: ignore[misc]
        """pyrender draws into ``_main_fb_ms`` and blits it into ``_main_fb``. Re-allocating the former's
        renderbuffers with 0 samples makes it an ordinary framebuffer: rasterisation samples the pixel centre
        only and the blit is an exact copy."""

        _single_sample_dims: tuple[int, int] | None = None

        def _configure_main_framebuffer(self) -> None:
            super()._configure_main_framebuffer()
            if self._single_sample_dims != self._main_fb_dims:
                w, h = self._main_fb_dims
                glBindRenderbuffer(GL_RENDERBUFFER, self._main_cb_ms)
                glRenderbufferStorageMultisample(GL_RENDERBUFFER, 0, GL_RGBA, w, h)
                glBindRenderbuffer(GL_RENDERBUFFER, self._main_db_ms)
                glRenderbufferStorageMultisample(GL_RENDERBUFFER, 0, GL_DEPTH_COMPONENT24, w, h)
                self._single_sample_dims = self._main_fb_dims

        def _delete_main_framebuffer(self) -> None:
            super()._delete_main_framebuffer()
            self._single_sample_dims = None

    return SingleSampleRenderer


# ----------------------------------------------------------------------------------------------------------
# The renderer
# ----------------------------------------------------------------------------------------------------------


class SceneRenderer:
    """A pyrender offscreen context for one image size, reused across renders (contexts are slow to make).

    Holds two pyrender renderers in one GL context: the stock multisampled one for lit RGB, and a
    single-sample one for exact ID maps. Use as a context manager or call :meth:`close`.

    Args:
        width, height: image size, pixels.
    """

    def __init__(self, width: int, height: int) -> None:
        platform = os.environ.get("PYOPENGL_PLATFORM")
        if platform not in ("egl", "osmesa"):
            raise RuntimeError(
                "pipeline.render.offscreen renders headless: set PYOPENGL_PLATFORM=egl (or osmesa) in the "
                f"environment before pyrender/OpenGL is first imported (currently {platform!r}); the Makefile "
                "and workflow scripts export it"
            )
        if width <= 0 or height <= 0:
            raise ValueError(f"SceneRenderer size must be positive; got {width}x{height}")
        import pyrender

        self._pr = pyrender
        self.width, self.height = int(width), int(height)
        self._osr: Any = pyrender.OffscreenRenderer(self.width, self.height)
        self._osr._platform.make_current()
        try:
            self._id_renderer: Any = _single_sample_renderer_class()(self.width, self.height)
        finally:
            self._osr._platform.make_uncurrent()

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the GL context and everything in it (idempotent)."""
        if self._osr is None:
            return
        try:
            self._osr._platform.make_current()
            self._id_renderer.delete()
        finally:
            self._osr.delete()
            self._osr = None
            self._id_renderer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, camera: Camera) -> None:
        if self._osr is None:
            raise RuntimeError("SceneRenderer is closed")
        if (camera.width is not None and camera.width != self.width) or (
                camera.height is not None and camera.height != self.height):
            raise ValueError(f"camera is {camera.width}x{camera.height}, renderer {self.width}x{self.height}")

    # -- scene building --------------------------------------------------------------------------------
    def _camera_node(self, scene: pyrender.Scene, camera: Camera, znear: float, zfar: float) -> None:
        K = camera.K
        cam = self._pr.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], znear=znear, zfar=zfar)
        scene.add(cam, pose=camera.opengl_pose())

    def _add_lights(self, scene: pyrender.Scene, lighting: Lighting) -> None:
        for light in lighting.all_lights():
            pose = np.eye(4)
            if isinstance(light, DirectionalLight):
                d = np.asarray(light.direction, dtype=np.float64)
                d /= np.linalg.norm(d)
                # pyrender lights travel along the node's −z axis: any rotation whose third column is −d.
                helper = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
                x = np.cross(helper, -d)
                x /= np.linalg.norm(x)
                pose[:3, :3] = np.stack([x, np.cross(-d, x), -d], axis=1)
                scene.add(self._pr.DirectionalLight(color=np.asarray(light.color), intensity=light.intensity),
                          pose=pose)
            else:
                pose[:3, 3] = light.position
                scene.add(self._pr.PointLight(color=np.asarray(light.color), intensity=light.intensity),
                          pose=pose)

    # -- RGB -------------------------------------------------------------------------------------------
    def render_rgb(
        self,
        meshes: Sequence[ColoredMesh],
        camera: Camera,
        lighting: Lighting | None = None,
        background: np.ndarray | None = None,
        flat: bool = False,
        roughness: float = DEFAULT_ROUGHNESS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lit, smooth-shaded, vertex-coloured render of several meshes, composited over a background.

        Args:
            meshes: (vertices (N, 3) world, faces (F, 3) int, vertex_colors (N, 3|4) uint8 sRGB) per mesh;
                alpha is ignored, faces are double-sided.
            camera: OpenCV camera.
            lighting: lights and ambient; None = :func:`default_lighting` of ``camera``.
            background: (H, W, 3) uint8 image or (3,) uint8 colour; None = black. Alpha-composited with
                the anti-aliased coverage, so it shows exactly where ``depth == 0``.
            flat: unlit rendering (the vertex colours themselves, no gamma, no lights).
            roughness: material roughness in [0, 1] (metallic is 0).

        Returns:
            rgb: (H, W, 3) uint8; depth: (H, W) float32 z along the optical axis, 0 where nothing is hit.
        """
        self._check(camera)
        H, W = self.height, self.width
        if background is None:
            bg = np.zeros((H, W, 3), dtype=np.float32)
        else:
            bg_a = np.asarray(background)
            if bg_a.shape == (3,):
                bg = np.broadcast_to(bg_a.astype(np.float32), (H, W, 3))
            elif bg_a.shape == (H, W, 3):
                bg = bg_a.astype(np.float32)
            else:
                raise ValueError(f"background must be (3,) or ({H}, {W}, 3); got {bg_a.shape}")
        lighting = lighting if lighting is not None else default_lighting(camera)
        pr = self._pr
        scene = pr.Scene(bg_color=np.zeros(4), ambient_light=np.broadcast_to(lighting.ambient, 3).astype(float))
        material = pr.MetallicRoughnessMaterial(
            metallicFactor=0.0, roughnessFactor=float(roughness), alphaMode="OPAQUE", doubleSided=True
        )
        depths = []
        for k, mesh in enumerate(meshes):
            v, f, colors, smooth = _as_colored(mesh, f"render_rgb mesh {k}")
            if len(f) == 0:
                continue
            rgb01 = colors[:, :3].astype(np.float32) / 255.0
            if not flat:
                rgb01 = rgb01**SHADER_GAMMA  # the lit shader gamma-encodes its output
            color_0 = np.concatenate([rgb01, np.ones((len(v), 1), np.float32)], axis=1)
            if smooth:
                positions, normals, indices = v, _vertex_normals(v, f), f.astype(np.uint32)
            else:  # faceted: one vertex per face corner carrying the face normal
                fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
                fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
                positions, normals = v[f].reshape(-1, 3), np.repeat(fn, 3, axis=0).astype(np.float32)
                color_0, indices = color_0[f].reshape(-1, 4), None
            prim = pr.Primitive(
                positions=positions.astype(np.float32),
                normals=normals,
                color_0=color_0,
                indices=indices,
                material=material,
                mode=pr.constants.GLTF.TRIANGLES,
            )
            scene.add(pr.Mesh([prim]))
            depths.append(camera.world_to_camera(v[_used_vertices(len(v), f)])[:, 2])
        near_far = _near_far(np.concatenate(depths)) if depths else None
        if near_far is None:
            return np.round(bg).astype(np.uint8), np.zeros((H, W), np.float32)
        self._camera_node(scene, camera, *near_far)
        if not flat:
            self._add_lights(scene, lighting)
        flags = pr.RenderFlags.RGBA | pr.RenderFlags.SKIP_CULL_FACES
        if flat:
            flags |= pr.RenderFlags.FLAT
        color, depth = self._osr.render(scene, flags=flags)
        alpha = color[..., 3:4].astype(np.float32) / 255.0
        # The multisample resolve averages (c, 1) with the (0, 0, 0, 0) clear colour: premultiplied RGB.
        out = color[..., :3].astype(np.float32) + bg * (1.0 - alpha)
        return np.clip(np.round(out), 0, 255).astype(np.uint8), np.asarray(depth, dtype=np.float32)

    # -- face IDs --------------------------------------------------------------------------------------
    def render_face_ids(self, vertices: np.ndarray, faces: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Exact visible-face map (single-sample, double-sided, nearest face at each pixel centre).

        Args:
            vertices: (N, 3) world; faces: (F, 3) int; camera: OpenCV camera.

        Returns:
            face_id: (H, W) int32, −1 where no face covers the pixel centre; depth: (H, W) float32, 0 = none.
        """
        self._check(camera)
        v, f = _check_mesh(vertices, faces, "render_face_ids")
        H, W = self.height, self.width
        near_far = _near_far(camera.world_to_camera(v[_used_vertices(len(v), f)])[:, 2]) if len(f) else None
        if near_far is None:
            return np.full((H, W), NO_FACE, np.int32), np.zeros((H, W), np.float32)
        pr = self._pr
        colors = np.repeat(encode_face_ids(len(f)), 3, axis=0)
        prim = pr.Primitive(
            positions=v[f].reshape(-1, 3).astype(np.float32),
            color_0=np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1),
            material=pr.MetallicRoughnessMaterial(alphaMode="OPAQUE", doubleSided=True),
            mode=pr.constants.GLTF.TRIANGLES,
        )
        scene = pr.Scene(bg_color=np.zeros(4), ambient_light=np.zeros(3))
        scene.add(pr.Mesh([prim]))
        self._camera_node(scene, camera, *near_far)
        flags = pr.RenderFlags.FLAT | pr.RenderFlags.SKIP_CULL_FACES | pr.RenderFlags.OFFSCREEN
        self._osr._platform.make_current()
        try:
            self._id_renderer.viewport_width, self._id_renderer.viewport_height = W, H
            color, depth = self._id_renderer.render(scene, flags)
        finally:
            self._osr._platform.make_uncurrent()
        return decode_face_ids(np.asarray(color)[..., :3]).astype(np.int32), np.asarray(depth, np.float32)


_RENDERERS: dict[tuple[int, int], SceneRenderer] = {}


def get_renderer(width: int, height: int) -> SceneRenderer:
    """The process-wide cached :class:`SceneRenderer` for this size (created on first use)."""
    key = (int(width), int(height))
    renderer = _RENDERERS.get(key)
    if renderer is None or renderer._osr is None:
        renderer = _RENDERERS[key] = SceneRenderer(*key)
    return renderer


def close_renderers() -> None:
    """Close every cached renderer (e.g. at the end of a worker)."""
    while _RENDERERS:
        _RENDERERS.popitem()[1].close()


def _renderer_for(renderer: SceneRenderer | None, camera: Camera, width: int | None,
                  height: int | None) -> SceneRenderer:
    """The given renderer (checked against an explicit size) or the cached one for the requested size."""
    if renderer is None:
        return get_renderer(*camera.image_size(width, height))
    if (width is not None and width != renderer.width) or (height is not None and height != renderer.height):
        raise ValueError(f"renderer is {renderer.width}x{renderer.height} but {width}x{height} was requested")
    return renderer


# ----------------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------------


def render_rgb(
    meshes: Sequence[ColoredMesh],
    camera: Camera,
    width: int | None = None,
    height: int | None = None,
    lighting: Lighting | None = None,
    background: np.ndarray | None = None,
    *,
    flat: bool = False,
    roughness: float = DEFAULT_ROUGHNESS,
    renderer: SceneRenderer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lit RGB render of coloured meshes over a background; see :meth:`SceneRenderer.render_rgb`.

    Args:
        width, height: image size; None = the camera's (or ``renderer``'s) size.
        renderer: a :class:`SceneRenderer` of that size; None = the cached :func:`get_renderer`.

    Returns:
        rgb: (height, width, 3) uint8; depth: (height, width) float32, 0 = background.
    """
    r = _renderer_for(renderer, camera, width, height)
    return r.render_rgb(meshes, camera, lighting, background, flat, roughness)


def _face_ids_pytorch3d(v: np.ndarray, f: np.ndarray, camera: Camera, width: int, height: int,
                        device: str) -> np.ndarray:
    """pytorch3d hard rasteriser (blur 0, 1 face per pixel, perspective-correct, no culling).

    Screen coordinates are converted to pytorch3d's NDC (+x left, +y up, the shorter side spanning [−1, 1],
    pixel centres at ``(W − 2u) / S``, ``(H − 2v) / S``), so pixel centres coincide with this module's.
    Faces with a vertex at z <= Z_NEAR_MIN are dropped (the pyrender backend clips them instead).
    """
    import torch
    from pytorch3d.renderer.mesh import rasterize_meshes
    from pytorch3d.structures import Meshes

    cam = camera.world_to_camera(v)
    keep = np.nonzero((cam[f, 2] > Z_NEAR_MIN).all(axis=1))[0]
    if keep.size == 0:
        return np.full((height, width), NO_FACE, np.int32)
    z = np.maximum(cam[:, 2], Z_NEAR_MIN)
    u = camera.K[0, 0] * cam[:, 0] / z + camera.K[0, 2]
    vv = camera.K[1, 1] * cam[:, 1] / z + camera.K[1, 2]
    s = float(min(width, height))
    ndc = np.stack([(width - 2.0 * u) / s, (height - 2.0 * vv) / s, z], axis=1)
    verts = torch.tensor(ndc, dtype=torch.float32, device=device)
    faces_t = torch.tensor(f[keep], dtype=torch.int64, device=device)
    pix_to_face, _, _, _ = rasterize_meshes(
        Meshes([verts], [faces_t]),
        image_size=(height, width),
        blur_radius=0.0,
        faces_per_pixel=1,
        bin_size=0 if device == "cpu" else None,
        perspective_correct=True,
        cull_backfaces=False,
    )
    p2f = pix_to_face[0, ..., 0].cpu().numpy()
    out = np.full((height, width), NO_FACE, np.int32)
    hit = p2f >= 0
    out[hit] = keep[p2f[hit]]
    return out


def render_face_ids(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    width: int | None = None,
    height: int | None = None,
    *,
    backend: FaceIdBackend = "pyrender",
    renderer: SceneRenderer | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Exact visible-face map: the index of the nearest face whose projection contains each pixel centre.

    Args:
        vertices: (N, 3) world; faces: (F, 3) int; camera: OpenCV camera.
        width, height: pixels; None = the camera's (or ``renderer``'s) size.
        backend: ``"pyrender"`` (default; single-sample GL z-buffer, fast on CPU via llvmpipe),
            ``"pytorch3d"`` (hard rasteriser; ``device`` selects CPU/GPU; slow on CPU) or ``"raycast"``
            (:func:`raycast_face_ids`, numpy).
        renderer: pyrender backend only; None = the cached :func:`get_renderer`.
        device: pytorch3d backend only, e.g. ``"cuda"``.

    Returns:
        face_id: (height, width) int32, −1 = no face. Faces are double-sided.
    """
    v, f = _check_mesh(vertices, faces, "render_face_ids")
    if backend == "pyrender":
        return _renderer_for(renderer, camera, width, height).render_face_ids(v, f, camera)[0]
    w, h = camera.image_size(width, height)
    if backend == "pytorch3d":
        return _face_ids_pytorch3d(v, f, camera, w, h, device)
    if backend == "raycast":
        return raycast_face_ids(v, f, camera, w, h)[0]
    raise ValueError(f"unknown face-ID backend {backend!r}; choose one of {FACE_ID_BACKENDS}")


def _concatenate(meshes: Sequence[LabeledMesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack labelled meshes: vertices (ΣN, 3), faces (ΣF, 3), face labels (ΣF,) uint8, owner (ΣF,) int32."""
    verts, faces, labels, owner = [], [], [], []
    offset = 0
    for k, mesh in enumerate(meshes):
        if isinstance(mesh, MeshData):
            v, f = _check_mesh(mesh.vertices, mesh.faces, f"mesh {k}")
            lab = mesh.face_labels
            if lab is None:
                raise ValueError(f"mesh {k}: MeshData.face_labels is required for a label map")
        else:
            v, f = _check_mesh(mesh[0], mesh[1], f"mesh {k}")
            lab = mesh[2]
        lab = np.asarray(lab)
        if lab.shape != (len(f),):
            raise ValueError(f"mesh {k}: per-face labels must be ({len(f)},); got {lab.shape}")
        verts.append(v)
        faces.append(f + offset)
        labels.append(lab.astype(np.uint8))
        owner.append(np.full(len(f), k, np.int32))
        offset += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int32)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(labels), np.concatenate(owner)


def render_label_map(
    meshes: Sequence[LabeledMesh],
    camera: Camera,
    width: int | None = None,
    height: int | None = None,
    *,
    backend: FaceIdBackend = "pyrender",
    renderer: SceneRenderer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CIHP label map of the nearest surface among several labelled meshes, and which mesh that is.

    Args:
        meshes: ``MeshData`` with ``face_labels``, or (vertices (N, 3), faces (F, 3), face_labels (F,) uint8)
            — e.g. the person, a distractor person and an occluder whose faces are all 0 (Background).
        camera, width, height, backend, renderer: as :func:`render_face_ids`.

    Returns:
        labels: (H, W) uint8, 0 where nothing is hit (or the nearest surface is labelled 0);
        mesh_index: (H, W) int32 index into ``meshes`` of the nearest surface, −1 = nothing.
    """
    v, f, labels, owner = _concatenate(meshes)
    ids = render_face_ids(v, f, camera, width, height, backend=backend, renderer=renderer)
    hit = ids >= 0
    label_map = np.zeros(ids.shape, np.uint8)
    mesh_index = np.full(ids.shape, -1, np.int32)
    label_map[hit] = labels[ids[hit]]
    mesh_index[hit] = owner[ids[hit]]
    return label_map, mesh_index


def raycast_face_ids(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    width: int | None = None,
    height: int | None = None,
    chunk_pairs: int = RAYCAST_CHUNK_PAIRS,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference visible-face map by casting one ray per pixel centre (numpy Möller–Trumbore, double-sided).

    trimesh's pure-python ``ray_triangle`` intersector needs the ``rtree`` package, which this environment
    lacks, so rays are intersected here in 3D camera space. Candidate face–pixel pairs come from each face's
    projected bounding box (+1 px margin; faces crossing z <= 0 are tested against every pixel); each pair is
    then decided by the exact 3D ray–triangle test, independent of any rasterisation rule.

    Args:
        vertices: (N, 3) world; faces: (F, 3) int; camera; width, height: pixels (None = the camera's).
        chunk_pairs: face–pixel pairs per vectorised chunk.

    Returns:
        face_id: (H, W) int32, −1 = no hit; depth: (H, W) float32 hit depth z, 0 = no hit.
    """
    v, f = _check_mesh(vertices, faces, "raycast_face_ids")
    W, H = camera.image_size(width, height)
    zbuf = np.full(H * W, np.inf)
    ids = np.full(H * W, NO_FACE, np.int64)
    if len(f) == 0:
        return ids.reshape(H, W).astype(np.int32), np.zeros((H, W), np.float32)
    cam = camera.world_to_camera(v)
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    tri = cam[f]  # (F, 3, 3)
    # Per-face constants of Möller–Trumbore with the ray origin at the camera centre (0) and direction
    # d = ((u − cx)/fx, (v − cy)/fy, 1): det = d·(e2×e1)… written as d·n_, bary u = d·a/det, v = d·q/det.
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    tvec = -v0
    pvec_n = np.cross(e2, e1)  # det = d · (e2 × e1)
    a_vec = np.cross(e2, tvec)  # u·det = tvec · (d × e2) = d · (e2 × tvec)
    qvec = np.cross(tvec, e1)  # v·det = d · qvec
    s_num = np.einsum("ij,ij->i", e2, qvec)  # t·det = e2 · qvec
    # Candidate pixel boxes from the projection (faces reaching behind the camera: the whole image).
    z = tri[..., 2]
    in_front = (z > Z_NEAR_MIN).all(axis=1)
    safe_z = np.where(in_front[:, None], z, 1.0)
    pu = np.where(in_front[:, None], fx * tri[..., 0] / safe_z + cx, 0.0)
    pv = np.where(in_front[:, None], fy * tri[..., 1] / safe_z + cy, 0.0)
    # Pixel j has its centre at j + 0.5: candidate columns floor(min u − 0.5) − 1 … ceil(max u − 0.5) + 1.
    lo_u = np.where(in_front, np.floor(pu.min(axis=1) - 0.5) - 1, 0)
    hi_u = np.where(in_front, np.ceil(pu.max(axis=1) - 0.5) + 1, W - 1)
    lo_v = np.where(in_front, np.floor(pv.min(axis=1) - 0.5) - 1, 0)
    hi_v = np.where(in_front, np.ceil(pv.max(axis=1) - 0.5) + 1, H - 1)
    lo_u, lo_v = np.clip(lo_u, 0, W - 1).astype(np.int64), np.clip(lo_v, 0, H - 1).astype(np.int64)
    hi_u, hi_v = np.clip(hi_u, -1, W - 1).astype(np.int64), np.clip(hi_v, -1, H - 1).astype(np.int64)
    nu = np.maximum(hi_u - lo_u + 1, 0)
    nv = np.maximum(hi_v - lo_v + 1, 0)
    behind = (z <= Z_NEAR_MIN).all(axis=1)
    counts = np.where(behind, 0, nu * nv)
    cand = np.nonzero(counts)[0]
    starts = np.concatenate([[0], np.cumsum(counts[cand])])
    i0 = 0
    while i0 < len(cand):
        i1 = max(int(np.searchsorted(starts, starts[i0] + chunk_pairs, side="right")) - 1, i0 + 1)
        sel = cand[i0:i1]
        c = counts[sel]
        face = np.repeat(sel, c)
        local = np.arange(int(c.sum())) - np.repeat(starts[i0:i1] - starts[i0], c)
        width_rep = np.repeat(nu[sel], c)
        px = np.repeat(lo_u[sel], c) + local % width_rep
        py = np.repeat(lo_v[sel], c) + local // width_rep
        dx = (px + 0.5 - cx) / fx
        dy = (py + 0.5 - cy) / fy
        det = dx * pvec_n[face, 0] + dy * pvec_n[face, 1] + pvec_n[face, 2]
        ok = np.abs(det) > RAYCAST_DET_EPS
        inv = 1.0 / np.where(ok, det, 1.0)
        bu = (dx * a_vec[face, 0] + dy * a_vec[face, 1] + a_vec[face, 2]) * inv
        bv = (dx * qvec[face, 0] + dy * qvec[face, 1] + qvec[face, 2]) * inv
        depth = s_num[face] * inv
        hit = ok & (bu >= 0.0) & (bv >= 0.0) & (bu + bv <= 1.0) & (depth > Z_NEAR_MIN)
        pix = (py * W + px)[hit]
        depth, face = depth[hit], face[hit]
        order = np.lexsort((face, depth, pix))
        pix, depth, face = pix[order], depth[order], face[order]
        first = np.ones(len(pix), dtype=bool)
        first[1:] = pix[1:] != pix[:-1]
        pix, depth, face = pix[first], depth[first], face[first]
        closer = depth < zbuf[pix]
        zbuf[pix[closer]] = depth[closer]
        ids[pix[closer]] = face[closer]
        i0 = i1
    depth_img = np.where(np.isfinite(zbuf), zbuf, 0.0).reshape(H, W).astype(np.float32)
    return ids.reshape(H, W).astype(np.int32), depth_img
