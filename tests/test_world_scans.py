"""Open-world garments and scans: labels, clothing outside the body, AGORA-format files read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from pipeline.body.model import BodyModel
from pipeline.io.agora_fit import read_agora_fit
from pipeline.parsing.labels import CIHP_LABELS, LABEL_ID
from pipeline.world.assets import scan_names
from pipeline.world.garments import vertex_normals
from pipeline.world.poses import POSE_STYLES, joint_limits, sample_body_pose
from pipeline.world.scans import make_person, make_scans

SKIN = {LABEL_ID[n] for n in ("Face", "LeftArm", "RightArm", "LeftLeg", "RightLeg", "Torso-skin")}


@pytest.fixture(scope="module")
def scans(open_model: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder, _ = open_model
    out = tmp_path_factory.mktemp("scans")
    summary = make_scans(folder, out, scan_names(40), seed=0)  # the default world's count and seed
    return out, summary


def test_every_foreground_label_occurs_in_default_scans(scans: tuple[Path, dict]) -> None:
    _, summary = scans
    counts = summary["label_face_counts"]
    print("face counts per label over 40 scans:", counts)
    missing = [name for name in CIHP_LABELS[1:] if counts[name] == 0]
    assert missing == []


def test_fit_files_reproduce_the_body_and_clothing_is_outside(scans: tuple[Path, dict], open_model: tuple[Path, dict]) -> None:
    out, _ = scans
    folder, _ = open_model
    models = {g: BodyModel(folder, gender=g) for g in ("male", "female")}
    fractions = []
    for name in scan_names(40)[:8]:
        fit = read_agora_fit(out / f"{name}.pkl")
        mesh = trimesh.load(out / f"{name}.obj", process=False)
        labels = np.load(out / f"{name}.labels.npy")
        assert len(labels) == len(mesh.faces) and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
        with torch.no_grad():
            body = models[fit.gender](
                betas=torch.as_tensor(fit.betas[None], dtype=torch.float32),
                body_pose=torch.as_tensor(fit.body_pose[None], dtype=torch.float32),
                global_orient=torch.as_tensor(fit.global_orient[None], dtype=torch.float32),
                transl=torch.as_tensor(fit.transl[None], dtype=torch.float32),
            ).vertices[0].numpy()
        faces = np.asarray(mesh.faces)
        normals = vertex_normals(body.astype(np.float64), faces)
        offset = ((np.asarray(mesh.vertices) - body) * normals).sum(1)
        clothed_vertices = np.unique(faces[~np.isin(labels, list(SKIN))])
        fractions.append(float((offset[clothed_vertices] >= -1e-3).mean()))
        skin_vertices = np.unique(faces[np.isin(labels, list(SKIN))])
        assert np.median(np.abs(offset[skin_vertices])) < 2e-3  # skin stays on the fitted body
    print("fraction of clothed vertices outside the fitted body per scan:", np.round(fractions, 4))
    assert min(fractions) >= 0.98


def test_person_is_deterministic_and_left_is_left(open_model: tuple[Path, dict]) -> None:
    folder, _ = open_model
    models = {g: BodyModel(folder, gender=g) for g in ("male", "female")}
    a = make_person(models, np.random.default_rng(5), pose_style="t_pose", global_orient=np.zeros(3))
    b = make_person(models, np.random.default_rng(5), pose_style="t_pose", global_orient=np.zeros(3))
    np.testing.assert_array_equal(a.scan_vertices, b.scan_vertices)
    centroid = {}
    for name in ("LeftArm", "RightArm", "LeftShoe", "RightShoe"):
        faces = a.faces[a.clothed.face_label == LABEL_ID[name]]
        if len(faces):
            centroid[name] = a.scan_vertices[faces].mean((0, 1))
    assert centroid["LeftShoe"][0] > 0 > centroid["RightShoe"][0]  # body's left is +x
    if "LeftArm" in centroid and "RightArm" in centroid:
        assert centroid["LeftArm"][0] > 0 > centroid["RightArm"][0]


def test_pose_sampler_respects_limits() -> None:
    lo, hi = joint_limits()
    rng = np.random.default_rng(0)
    for style in POSE_STYLES:
        for _ in range(20):
            pose = sample_body_pose(rng, style).reshape(23, 3)
            assert (pose >= lo - 1e-9).all() and (pose <= hi + 1e-9).all()
    with pytest.raises(ValueError, match="allowed"):
        sample_body_pose(rng, "dancing")
