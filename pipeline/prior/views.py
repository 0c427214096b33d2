"""Multi-view rendering of clothed scans with the visible faces of their fitted bodies (stage 3).

For each scan: V cameras on a ring around the fitted body (elevation jitter), a lit colour render of the
scan, and the visible-face map of the *fitted body alone* (the body is inside the clothing, so its visible
faces are those facing the camera; the label at those pixels comes from the scan's parse). Output npz:
``rgb`` uint8 (V, H, W, 3), ``face_id`` int32 (V, H, W) (−1 = none), ``K`` (V, 3, 3), ``R`` (V, 3, 3),
``t`` (V, 3), ``visibility_agreement`` (fraction of covered pixels of view 0 where the face map agrees with
ray casting, edge ties between adjacent faces counted as agreement) and ``visibility_agreement_raw``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image

from pipeline.body.model import BodyModel
from pipeline.io.agora_fit import read_agora_fit
from pipeline.render.offscreen import Camera, SceneRenderer, raycast_face_ids, render_face_ids, ring_cameras

log = logging.getLogger(__name__)

BACKGROUND_GREY = 128  # uniform background: the parser sees the scan on a neutral backdrop
#: Minimum agreement of the face-ID pass with ray casting (DESIGN §4, stage 3).
MIN_VISIBILITY_AGREEMENT = 0.995


@dataclass(frozen=True)
class ViewSettings:
    """Ring of cameras around each scan (config ``prior.views``)."""

    count: int = 10
    image_size: int = 512
    distance_m: float = 3.0
    elevation_deg: float = 10.0
    elevation_jitter_deg: float = 10.0
    fill: float = 0.85  # the body's height as a fraction of the image side

    @classmethod
    def from_config(cls, cfg: dict) -> "ViewSettings":
        return cls(**cfg)


def fitted_body(fit_path: str | Path, body_model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) and faces (F, 3) of the SMPL fit of a scan, in the scan's frame."""
    fit = read_agora_fit(fit_path)
    gender = fit.gender if fit.gender in ("male", "female") else "neutral"
    model = BodyModel(body_model_dir, gender=gender)
    with torch.no_grad():
        out = model(
            betas=torch.as_tensor(fit.betas[None], dtype=torch.float32),
            body_pose=torch.as_tensor(fit.body_pose[None], dtype=torch.float32),
            global_orient=torch.as_tensor(fit.global_orient[None], dtype=torch.float32),
            transl=torch.as_tensor(fit.transl[None], dtype=torch.float32),
        )
    return out.vertices[0].numpy().astype(np.float64), model.faces.numpy()


def scan_cameras(body_vertices: np.ndarray, settings: ViewSettings, rng: np.random.Generator) -> list[Camera]:
    """Ring cameras looking at the body's centre, with a focal length that fits the body in the frame."""
    lo, hi = body_vertices.min(0), body_vertices.max(0)
    height = max(hi[1] - lo[1], 1e-3)
    focal = settings.fill * settings.image_size * settings.distance_m / (height * 1.1)
    return ring_cameras(settings.count, settings.distance_m, settings.elevation_deg, settings.elevation_jitter_deg,
                        (lo + hi) / 2, focal, settings.image_size, rng)


def scan_unit_scale(scan_vertices: np.ndarray, body_vertices: np.ndarray, path: str | Path) -> float:
    """1.0 for scans in metres, 0.01 for vendor OBJs in centimetres (detected by height against the fit)."""
    scan_h = float(np.ptp(scan_vertices[:, 1]))
    body_h = float(np.ptp(body_vertices[:, 1]))
    if 50.0 < scan_h / body_h < 200.0:
        log.info("%s: scan is %.0f units tall against a %.2f m fit: reading it in centimetres", path, scan_h, body_h)
        return 0.01
    if not 0.5 < scan_h / body_h < 2.0:
        raise ValueError(f"{path}: scan height {scan_h:.3g} does not match its SMPL fit ({body_h:.2f} m) in metres or "
                         "centimetres; check that the .pkl fit belongs to this scan and is in the scan's frame")
    return 1.0


def render_scan_views(
    scan_obj: str | Path,
    fit_pkl: str | Path,
    body_model_dir: str | Path,
    out_npz: str | Path,
    out_png: str | Path | None,
    settings: ViewSettings,
    seed: int,
) -> dict[str, float]:
    """Render one scan from ``settings.count`` views with its fitted body's visible faces; write the npz."""
    mesh = trimesh.load(scan_obj, process=False)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3] if mesh.visual.kind == "vertex" else None
    if colors is None:
        raise ValueError(f"{scan_obj}: the scan has no vertex colours (textured scans: bake the texture to vertex "
                         "colours first, e.g. trimesh's visual.to_color())")
    body_v, body_f = fitted_body(fit_pkl, body_model_dir)
    scan_v = np.asarray(mesh.vertices, dtype=np.float64) * scan_unit_scale(np.asarray(mesh.vertices), body_v, scan_obj)
    rng = np.random.default_rng(seed)
    cams = scan_cameras(body_v, settings, rng)
    size = settings.image_size
    background = np.full((size, size, 3), BACKGROUND_GREY, np.uint8)
    rgb = np.zeros((len(cams), size, size, 3), np.uint8)
    face_id = np.zeros((len(cams), size, size), np.int32)
    with SceneRenderer(size, size) as renderer:
        for k, cam in enumerate(cams):
            rgb[k], _ = renderer.render_rgb([(scan_v, np.asarray(mesh.faces), colors)], cam,
                                            background=background)
            face_id[k] = render_face_ids(body_v, body_f, cam, size, size, renderer=renderer)
    ray_ids, _ = raycast_face_ids(body_v, body_f, cams[0], size, size)
    raw, agreement = visibility_agreement(face_id[0], ray_ids, body_f)
    if agreement < MIN_VISIBILITY_AGREEMENT:
        raise RuntimeError(f"{scan_obj}: visible-face map agrees with ray casting on only {agreement:.4f} of "
                           f"covered pixels (< {MIN_VISIBILITY_AGREEMENT}); the ID pass is multisampled or broken")
    out_npz = Path(out_npz)
    tmp = out_npz.with_name(f".{out_npz.stem}.tmp.npz")
    np.savez_compressed(tmp, rgb=rgb, face_id=face_id, K=np.stack([c.K for c in cams]), R=np.stack([c.R for c in cams]),
                        t=np.stack([c.t for c in cams]), visibility_agreement=agreement,
                        visibility_agreement_raw=raw)
    tmp.replace(out_npz)
    if out_png is not None:
        _strip(rgb, face_id, Path(out_png))
    return {"views": len(cams), "visibility_agreement": agreement, "visibility_agreement_raw": raw,
            "visible_faces": int(len(np.unique(face_id[face_id >= 0])))}


def visibility_agreement(face_id: np.ndarray, ray_ids: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Agreement of a face-ID map with ray casting over covered pixels: (raw, modulo edge ties).

    A pixel centre on the edge shared by two faces belongs to both; rasteriser and ray caster may pick either.
    Such ties (the two faces share a vertex) are not visibility errors, unlike multisampling artefacts, which
    blend IDs across silhouettes into unrelated faces or background.
    """
    covered = (face_id >= 0) | (ray_ids >= 0)
    if not covered.any():
        return 1.0, 1.0
    a, b = face_id[covered], ray_ids[covered]
    same = a == b
    both = (~same) & (a >= 0) & (b >= 0)
    tie = np.zeros_like(same)
    fa, fb = faces[a[both]], faces[b[both]]
    tie[both] = (fa[:, :, None] == fb[:, None, :]).any(axis=(1, 2))
    return float(same.mean()), float((same | tie).mean())


def _strip(rgb: np.ndarray, face_id: np.ndarray, path: Path, tile: int = 128) -> None:
    """PNG strip: the views on top, their visible body faces (pseudo-coloured) below."""
    rng = np.random.default_rng(0)
    lut = rng.integers(40, 255, (int(face_id.max()) + 2, 3)).astype(np.uint8)
    lut[-1] = 0
    top = [np.asarray(Image.fromarray(v).resize((tile, tile))) for v in rgb]
    bottom = [np.asarray(Image.fromarray(lut[f]).resize((tile, tile), Image.NEAREST)) for f in face_id]
    Image.fromarray(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)).save(path)
