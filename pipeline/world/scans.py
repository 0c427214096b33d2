"""Open-world clothed scans in AGORA's format: ``{scan}.obj`` (coloured mesh), ``{scan}.pkl`` (SMPL fit of
the body underneath) and ``{scan}.labels.npy`` (per-face ground-truth CIHP label).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from pipeline.body.model import BodyModel
from pipeline.io.agora_fit import AgoraFit, write_agora_fit
from pipeline.parsing.labels import CIHP_LABELS, NUM_LABELS
from pipeline.runtime import stage_seed
from pipeline.world.garments import ClothedBody, Outfit, dress_body, sample_outfit
from pipeline.world.poses import POSE_STYLES, sample_body_pose, sample_global_orient

log = logging.getLogger(__name__)

#: Share of each pose style among generated scans.
POSE_STYLE_PROBS = {"random": 0.55, "a_pose": 0.15, "t_pose": 0.1, "walking": 0.2}
GENDER_CODES = {"male": "male", "female": "female"}


@dataclass
class Person:
    """One generated, dressed, posed person (model frame, metres)."""

    gender: str
    betas: np.ndarray  # (10,)
    body_pose: np.ndarray  # (69,) axis-angle
    global_orient: np.ndarray  # (3,)
    transl: np.ndarray  # (3,)
    outfit: Outfit
    clothed: ClothedBody
    body_vertices: np.ndarray  # (V, 3) posed body
    scan_vertices: np.ndarray  # (V, 3) posed clothed surface
    faces: np.ndarray  # (F, 3)


def sample_shape(rng: np.random.Generator, max_abs: float = 2.5) -> np.ndarray:
    """Betas ~ N(0, 1) clipped to ±max_abs (adult variation of the open model's unit-variance space)."""
    return np.clip(rng.standard_normal(10), -max_abs, max_abs)


def make_person(
    models: dict[str, BodyModel],
    rng: np.random.Generator,
    *,
    gender: str | None = None,
    pose_style: str | None = None,
    global_orient: np.ndarray | None = None,
    transl: np.ndarray | None = None,
    accessory_prob: float = 0.25,
) -> Person:
    """Sample shape, pose and outfit, dress the rest body and pose body and clothing together."""
    gender = gender or str(rng.choice(["male", "female"]))
    style = pose_style or str(rng.choice(list(POSE_STYLE_PROBS), p=list(POSE_STYLE_PROBS.values())))
    if style not in POSE_STYLES:
        raise ValueError(f"unknown pose style {style!r}; allowed: {list(POSE_STYLES)}")
    model = models[gender]
    betas = sample_shape(rng)
    body_pose = sample_body_pose(rng, style)
    orient = sample_global_orient(rng) if global_orient is None else np.asarray(global_orient, dtype=np.float64)
    trans = np.zeros(3) if transl is None else np.asarray(transl, dtype=np.float64)
    outfit = sample_outfit(rng, accessory_prob=accessory_prob)
    tb = torch.as_tensor(betas[None], dtype=torch.float32)
    with torch.no_grad():
        rest_v, rest_j = model.rest_body(tb)
        clothed = dress_body(rest_v[0].numpy().astype(np.float64), model.faces.numpy(), model.vertex_part.numpy(),
                             rest_j[0].numpy().astype(np.float64), outfit, rng)
        args = dict(betas=tb, body_pose=torch.as_tensor(body_pose[None], dtype=torch.float32),
                    global_orient=torch.as_tensor(orient[None], dtype=torch.float32),
                    transl=torch.as_tensor(trans[None], dtype=torch.float32))
        body = model(**args).vertices[0].numpy()
        scan = model.pose_points(torch.as_tensor(clothed.rest_vertices[None], dtype=torch.float32),
                                 model.skinning_weights, **args)[0].numpy()
    return Person(gender=gender, betas=betas, body_pose=body_pose, global_orient=orient, transl=trans,
                  outfit=outfit, clothed=clothed, body_vertices=body, scan_vertices=scan,
                  faces=model.faces.numpy())


def write_scan(person: Person, out_dir: Path, name: str) -> None:
    """Write ``{name}.obj`` (with vertex colours), ``{name}.pkl`` (AGORA SMPL fit), ``{name}.labels.npy``."""
    mesh = trimesh.Trimesh(person.scan_vertices, person.faces, vertex_colors=person.clothed.vertex_colors,
                           process=False)
    obj = out_dir / f"{name}.obj"
    tmp = out_dir / f".{name}.tmp.obj"
    tmp.write_text(trimesh.exchange.obj.export_obj(mesh, include_color=True, include_normals=False,
                                                   include_texture=False))
    tmp.replace(obj)
    write_agora_fit(out_dir / f"{name}.pkl", AgoraFit(betas=person.betas, global_orient=person.global_orient,
                                                     body_pose=person.body_pose, transl=person.transl,
                                                     gender=GENDER_CODES[person.gender]))
    np.save(out_dir / f"{name}.labels.npy", person.clothed.face_label)


def make_scans(
    body_model_dir: str | Path,
    out_dir: str | Path,
    names: list[str],
    *,
    seed: int,
    accessory_prob: float = 0.25,
    summary_path: str | Path | None = None,
) -> dict[str, object]:
    """Generate the named scans; each scan's randomness depends only on the seed and its name.

    Returns:
        summary: per-label face counts over all scans, outfits and pose styles.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {g: BodyModel(body_model_dir, gender=g) for g in ("male", "female")}
    label_faces = np.zeros(NUM_LABELS, dtype=np.int64)
    outfits: dict[str, dict[str, object]] = {}
    for name in tqdm(names, desc="make_scans", unit="scan"):
        rng = np.random.default_rng(stage_seed(seed, "scan", name))
        person = make_person(models, rng, accessory_prob=accessory_prob)
        write_scan(person, out_dir, name)
        label_faces += np.bincount(person.clothed.face_label, minlength=NUM_LABELS)
        outfits[name] = {"gender": person.gender, "upper": person.outfit.upper, "lower": person.outfit.lower,
                         "hair": person.outfit.hair}
    summary: dict[str, object] = {
        "n_scans": len(names),
        "label_face_counts": {CIHP_LABELS[i]: int(c) for i, c in enumerate(label_faces)},
        "outfits": outfits,
    }
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(summary, indent=2))
    log.info("wrote %d scans to %s", len(names), out_dir)
    return summary
