"""The "Potential of DSR" experiment (pipeline/world/potential.py, rule potential_of_dsr)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.evaluate.sections import read_section_file
from pipeline.render.camera import CROP_SIZE, FOCAL_LENGTH, scale_focal_length
from pipeline.render.soft import render_semantics
from pipeline.train.settings import SourceSpec
from pipeline.world.potential import (
    ARMS,
    COLUMNS,
    JOINT_COLUMNS,
    PotentialSettings,
    choose_batch,
    part_ious,
    report_rows,
)

RENDER = 32


class _OneTexture:
    """Stands in for PriorTextures: every face has DSR-MC prior 1."""

    def __init__(self, num_faces: int) -> None:
        self.num_faces = num_faces

    def textures(self, terms: tuple[str, ...], valid_mc: torch.Tensor) -> tuple[torch.Tensor, dict[str, slice]]:
        return torch.ones(valid_mc.shape[0], 1, self.num_faces), {"mc": slice(0, 1)}


def _square(shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 0.6 m square facing the camera 30 m away (two triangles), shifted right by ``shift`` metres."""
    v = torch.tensor([[[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]]]) + shift * torch.tensor(
        [1.0, 0.0, 0.0])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return v, faces, torch.tensor([[0.0, 0.0, 30.0]])


def _settings(render_size: int = RENDER):  # type: ignore[no-untyped-def]
    s = PotentialSettings(dataset="x", annotations="a", images="i", fmt="spin_npz", render_size=render_size,
                          image_size=64)
    return s.train_settings("sd_dsr_exact", SourceSpec(name="x", annotations="a", images="i", fmt="spin_npz"))


def _own_mask(vertices: torch.Tensor, faces: torch.Tensor, cam_t: torch.Tensor) -> dict[str, torch.Tensor]:
    ts = _settings()
    images, _ = render_semantics(vertices, faces, torch.ones(1, 1, 2), cam_t,
                                 focal=scale_focal_length(FOCAL_LENGTH, CROP_SIZE, RENDER), image_size=RENDER,
                                 sigma=float(ts.renderer["sigma"]), gamma=float(ts.renderer["gamma"]))
    mask = (images[:, 0] > 0.5).float()
    return {"mask_mc": mask, "mask_c": mask.long(), "mask_known": torch.ones_like(mask, dtype=torch.bool),
            "valid_mc": torch.ones(1, 5, dtype=torch.bool), "has_masks": torch.ones(1, dtype=torch.bool)}


def test_part_iou_is_one_for_a_body_against_its_own_render_and_drops_when_it_moves() -> None:
    vertices, faces, cam_t = _square()
    exact = _own_mask(vertices, faces, cam_t)
    assert 20 < exact["mask_mc"].sum() < RENDER * RENDER  # the square covers part of the image
    iou, soft, person, has_mc = part_ious(_OneTexture(2), vertices, faces, cam_t, exact, _settings())  # type: ignore[arg-type]
    assert has_mc.tolist() == [True]
    assert iou.item() == pytest.approx(1.0)
    assert person.item() == pytest.approx(1.0)
    assert 0.8 < soft.item() <= 1.0
    moved, _, _ = _square(shift=0.2)
    iou_moved, _, person_moved, _ = part_ious(_OneTexture(2), moved, faces, cam_t, exact, _settings())  # type: ignore[arg-type]
    assert 0.2 < iou_moved.item() < 0.8 and 0.2 < person_moved.item() < 0.8


def test_fixed_batch_is_seeded_distinct_and_capped_by_the_split() -> None:
    a, b = choose_batch(500, 64, seed=0), choose_batch(500, 64, seed=0)
    assert len(a) == 64 and len(set(a.tolist())) == 64 and (a == b).all() and (np.diff(a) > 0).all()
    assert not (choose_batch(500, 64, seed=1) == a).all()
    assert choose_batch(3, 64, seed=0).tolist() == [0, 1, 2]


def test_arms_drop_the_parameter_terms_and_unknown_options_are_named() -> None:
    s = PotentialSettings(dataset="x", annotations="a", images="i", fmt="spin_npz", loss_weights={"smpl_pose": 10.0})
    spec = SourceSpec(name="x", annotations="a", images="i", fmt="spin_npz")
    assert s.train_settings("sd", spec).dsr_terms == ()
    ts = s.train_settings("sd_dsr_parser", spec)
    assert ts.dsr_terms == ("dsr_mc", "dsr_c") and ts.dsr_start_iter == 0
    assert ts.loss_weights["smpl_pose"] == 0.0 and ts.loss_weights["smpl_betas"] == 0.0
    with pytest.raises(ValueError, match="potential.joints_3d"):
        PotentialSettings(dataset="x", annotations="a", images="i", fmt="spin_npz", joints_3d="gt")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_rule_writes_table_joint_groups_figure_and_report_section(tiny_project: Path) -> None:
    """The rule in the tiny project's DAG (tests/config_tiny.yaml: 3 coco_eft samples, 3 steps): arms equal at step
    0, moved after, sane values; its section is in the report."""
    work = tiny_project
    out = work / "results" / "potential"
    rows = _rows(out / "potential_of_dsr.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["arm"], int(r["step"])) for r in rows] == [(a, s) for a in ARMS for s in (0, 3)]
    assert {int(r["n"]) for r in rows} == {3}  # the tiny split has 3 samples: all of them
    first = [r for r in rows if r["step"] == "0"]
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "iou_mc", "iou_person"):
        assert len({r[key] for r in first}) == 1, key  # one pretrained model: every arm starts equal
    for r in rows:
        assert 0 < float(r["pa_mpjpe_mm"]) <= float(r["mpjpe_mm"]) < 2000 and 0 < float(r["pve_mm"]) < 2000
        if r["iou_mc"] != "nan":
            assert 0.0 <= float(r["iou_mc"]) <= 1.0
    last = {r["arm"]: r for r in rows if r["step"] == "3"}
    assert last["sd"]["pve_mm"] != first[0]["pve_mm"]  # training moved the body
    assert all(math.isfinite(float(r["loss"])) and float(r["seconds"]) > 0 for r in last.values())
    joints = _rows(out / "potential_of_dsr_joints.csv")
    assert list(joints[0]) == list(JOINT_COLUMNS)
    assert {"ankle", "knee", "wrist", "elbow", "hip"} <= {j["group"] for j in joints}
    fig = np.asarray(Image.open(out / "fig4.png"))
    assert fig.shape[1] > 4 * 48 and fig.shape[0] > 2 * 48  # 4 panels per sample, 2 samples
    table = report_rows(out / "potential_of_dsr.csv")
    assert [r["arm"] for r in table] == list(ARMS) and table[0]["steps"] == 3
    assert table[0]["pve_start_mm"] == pytest.approx(float(first[0]["pve_mm"]), rel=1e-5)
    section = read_section_file(out / "potential_of_dsr.section.json")
    assert section.title.startswith("Potential of DSR")
    per_arm, per_group = section.tables.values()
    assert [r["arm"] for r in per_arm] == [r["arm"] for r in per_group] == list(ARMS)
    start, end = float(first[0]["pve_mm"]), table[0]["pve_mm"]
    assert per_arm[0]["PVE (mm)"] == f"{start:.1f} → {end:.1f}" and per_arm[0]["n"] == 3
    assert per_group[0]["knee_mm"] == pytest.approx(
        float(next(j["mpjpe_mm"] for j in joints if (j["arm"], j["step"], j["group"]) == ("sd", "3", "knee"))))
    assert [Path(f).name for f in section.figures.values()] == ["fig4.png"]
    html = (work / "results" / "report.html").read_text()
    assert section.title in html and "sd_dsr_exact" in html and "Pseudo ground truth vs truth" in html


def test_truth_comes_from_the_truth_file_and_mismatches_are_named(tmp_path: Path) -> None:
    from pipeline.world.potential import read_truth
    from pipeline.world.pseudo_gt import write_truth

    names = np.array(["a.jpg", "b.jpg"])
    pose, betas = np.zeros((2, 72)), np.zeros((2, 10))
    true_pose = np.full((2, 72), 0.1)
    path = write_truth(tmp_path / "x.truth.npz", names, true_pose, betas + 1, None, noisy=True)
    truth = read_truth(path, "x.json", names, pose, betas)
    assert np.allclose(truth["pose"], 0.1) and np.allclose(truth["betas"], 1) and truth["gender"] is None
    assert truth["noisy"] is True
    labels = read_truth(None, "x.json", names, pose, betas)
    assert np.allclose(labels["pose"], 0) and labels["noisy"] is False
    with pytest.raises(ValueError, match="does not match x.json"):
        read_truth(path, "x.json", names[::-1], pose, betas)
    neutral = write_truth(tmp_path / "n.truth.npz", names, true_pose, betas, np.array(["n", "n"]), noisy=False)
    assert read_truth(neutral, "x.json", names, pose, betas)["gender"] is None
    mixed = write_truth(tmp_path / "m.truth.npz", names, true_pose, betas, np.array(["n", "f"]), noisy=False)
    with pytest.raises(ValueError, match="mixes neutral"):
        read_truth(mixed, "x.json", names, pose, betas)
