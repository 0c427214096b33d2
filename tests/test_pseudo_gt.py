"""Pseudo ground truth with realistic error (pipeline.world.pseudo_gt, issue #17): noise statistics, exact
labels at level 0, the truth-file contract, the error CSV, and that training never reads truth files."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.body.joints import H36M_TO_J14, SMPL_PARENTS
from pipeline.io.spin_npz import (
    PersonDataset,
    empty_arrays,
    read_spin_npz,
    write_spin_npz,
)
from pipeline.world.pseudo_gt import (
    PseudoGtNoise,
    TruthFileError,
    bone_directions,
    bone_frames,
    global_rotations,
    perturb_labels,
    read_truth,
    truth_path,
    write_truth,
)
from pipeline.world.pseudo_gt_error import ERROR_COLUMNS, write_error_csv
from tests.conftest import copy_workflow, snakemake_command

PARENTS = np.array(SMPL_PARENTS)
N_STAT = 3000


def _random_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.4, (n, 72))
    betas = rng.normal(0, 1, (n, 10))
    rest = np.cumsum(rng.normal(0, 0.1, (24, 3)), axis=0)  # any non-degenerate skeleton
    return pose, betas, rest


def test_bone_noise_statistics_match_config() -> None:
    """Per-bone rotations have std joint_std_deg x (1, depth_factor, twist_factor) along (swing, depth,
    twist), zero mean, no global change; betas are shrunk exactly."""
    pose, betas, rest = _random_inputs(N_STAT)
    noise = PseudoGtNoise(betas_shrink=0.3, joint_std_deg=2.0, depth_factor=3.0, twist_factor=5.0)
    new_pose, new_betas = perturb_labels(pose, betas, rest, PARENTS, noise, np.random.default_rng(1))
    np.testing.assert_allclose(new_betas, 0.7 * betas, rtol=0, atol=1e-12)
    glob, new_glob = global_rotations(pose, PARENTS), global_rotations(new_pose, PARENTS)
    np.testing.assert_allclose(new_glob[:, 0], glob[:, 0], atol=1e-9)  # no global noise configured
    delta = Rotation.from_matrix((new_glob[:, 1:] @ np.swapaxes(glob[:, 1:], -1, -2)).reshape(-1, 3, 3))
    delta = delta.as_rotvec().reshape(N_STAT, 23, 3)
    frames = bone_frames(glob, bone_directions(rest, PARENTS))[:, 1:]
    comp = np.degrees(np.einsum("nja,njca->njc", delta, frames)).reshape(-1, 3)
    np.testing.assert_allclose(comp.std(0), [2.0, 6.0, 10.0], rtol=0.03)
    np.testing.assert_allclose(comp.mean(0), 0.0, atol=0.15)
    # the depth axis is across the viewing ray, the swing one has the ray in its plane
    depth_axis = frames[..., 1, :]
    np.testing.assert_allclose(depth_axis[..., 2], 0.0, atol=1e-9)


def test_global_orientation_noise_turns_the_whole_body() -> None:
    pose, betas, rest = _random_inputs(N_STAT, seed=2)
    noise = PseudoGtNoise(global_orient_std_deg=4.0)
    new_pose, new_betas = perturb_labels(pose, betas, rest, PARENTS, noise, np.random.default_rng(3))
    np.testing.assert_array_equal(new_betas, betas)
    glob, new_glob = global_rotations(pose, PARENTS), global_rotations(new_pose, PARENTS)
    turn = new_glob @ np.swapaxes(glob, -1, -2)  # the same rotation for every joint
    np.testing.assert_allclose(turn, np.broadcast_to(turn[:, :1], turn.shape), atol=1e-9)
    np.testing.assert_allclose(new_pose[:, 3:], pose[:, 3:] + 0, atol=1e-9)  # local joint rotations kept
    std = np.degrees(Rotation.from_matrix(turn[:, 0]).as_rotvec()).std(0)
    np.testing.assert_allclose(std, 4.0, rtol=0.05)


def test_level_scales_and_zero_gives_exact_labels() -> None:
    pose, betas, rest = _random_inputs(50)
    noise = PseudoGtNoise(level=0.0, betas_shrink=0.5, betas_std=0.3, joint_std_deg=4, global_orient_std_deg=3)
    assert noise.exact
    new_pose, new_betas = perturb_labels(pose, betas, rest, PARENTS, noise, np.random.default_rng(0))
    np.testing.assert_array_equal(new_pose, pose)
    np.testing.assert_array_equal(new_betas, betas)
    half = PseudoGtNoise(level=0.5, betas_shrink=0.5)
    np.testing.assert_allclose(perturb_labels(pose, betas, rest, PARENTS, half, np.random.default_rng(0))[1],
                               0.75 * betas)
    with pytest.raises(ValueError, match="joint_std_deg"):
        PseudoGtNoise(joint_std_deg=-1.0)


def test_read_truth_names_the_file(tmp_path: Path) -> None:
    path = truth_path(tmp_path / "COCO2014-All-ver01.json")
    assert path.name == "COCO2014-All-ver01.truth.npz"
    with pytest.raises(TruthFileError, match=re.escape(str(path)) + ".*not found"):
        read_truth(path)
    path.write_bytes(b"garbage")
    with pytest.raises(TruthFileError, match=re.escape(str(path)) + ".*not a readable npz"):
        read_truth(path)
    np.savez(path, imgname=np.array(["a.jpg"]), pose=np.zeros((1, 72)))
    with pytest.raises(TruthFileError, match="lacks keys"):
        read_truth(path)


@pytest.fixture(scope="module")
def splits(open_model: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A noisy COCO-EFT split, the same split with exact labels, and an exact 3DPW-style training split
    (4 images each, 32 px)."""
    from pipeline.world.images import make_image_split, split_spec
    from pipeline.world.parser_noise import ParserNoise

    folder, _ = open_model
    root = tmp_path_factory.mktemp("pseudo_gt")
    settings = {"count": 4, "distractor_prob": 0.0, "occluder_prob": 0.0}
    noisy = PseudoGtNoise(betas_shrink=0.5, betas_std=0.2, joint_std_deg=3.5, depth_factor=3.0, twist_factor=4.0,
                          global_orient_std_deg=3.0)
    out = {}
    for name, split, fmt, ann, pg in (("noisy", "coco_eft", "eft_json", "COCO2014-All-ver01.json", noisy),
                                      ("exact", "coco_eft", "eft_json", "COCO2014-All-ver01.json", None),
                                      ("3dpw", "3dpw", "spin_npz", "3dpw_train.npz", noisy)):
        annotations = root / name / ann
        spec = split_spec(split, "train", settings, fmt)
        make_image_split(folder, folder / "joint_regressors.npz", annotations, root / name / "images", spec,
                         size=32, focal_range=(1.0, 1.8), person_height_range=(0.55, 0.85),
                         noise=ParserNoise.from_config({"level": 0.0}), seed=5, azimuth_std_deg=45.0,
                         pseudo_gt=pg if name != "3dpw" else None, progress=False)
        out[name] = annotations
    return out


def test_truth_file_contract(splits: dict[str, Path]) -> None:
    from pipeline.io.eft_json import read_eft_json

    noisy, exact = read_eft_json(splits["noisy"]), read_eft_json(splits["exact"])
    truth = read_truth(truth_path(splits["noisy"]))
    assert truth_path(splits["noisy"]).name == "COCO2014-All-ver01.truth.npz"
    assert set(truth) == {"imgname", "pose", "betas", "pseudo_gt_noisy"}  # no gender in an EFT split
    assert truth["pseudo_gt_noisy"] and not read_truth(truth_path(splits["exact"]))["pseudo_gt_noisy"]
    assert truth["pose"].dtype == np.float32 and truth["betas"].dtype == np.float32
    np.testing.assert_array_equal(truth["imgname"], noisy.imgname)
    # the truth is what the world generated: the exact labels of the same split, same images
    np.testing.assert_allclose(truth["pose"], exact.pose, atol=1e-5)
    np.testing.assert_allclose(truth["betas"], exact.shape, atol=1e-5)
    assert (splits["noisy"].parent / "images" / noisy.imgname[0]).read_bytes() == \
        (splits["exact"].parent / "images" / exact.imgname[0]).read_bytes()
    np.testing.assert_array_equal(noisy.part, exact.part)  # keypoints stay true
    assert np.abs(noisy.pose - exact.pose).max() > 0.05  # ... the SMPL labels do not
    np.testing.assert_allclose(noisy.shape, 0.5 * exact.shape, atol=1.0)
    # a gendered split: its gender codes and gendered betas, exact labels
    data = read_spin_npz(splits["3dpw"])
    truth = read_truth(truth_path(splits["3dpw"]))
    assert set(truth) == {"imgname", "pose", "betas", "gender", "pseudo_gt_noisy"}
    assert not truth["pseudo_gt_noisy"]
    np.testing.assert_array_equal(truth["gender"], data.gender)
    np.testing.assert_array_equal(truth["imgname"], data.imgname)
    np.testing.assert_allclose(truth["pose"], data.pose, atol=1e-6)
    np.testing.assert_allclose(truth["betas"], data.shape, atol=1e-6)


def test_error_csv_for_a_known_perturbation(open_model: tuple[Path, dict], tmp_path: Path) -> None:
    """Labels = truth turned 30 degrees about the camera axis, betas + e_1: PA-MPJPE 0, MPJPE and PVE as
    computed by hand from the true body, betas_l2 = 1."""
    from pipeline.body.model import BodyModel

    folder, _ = open_model
    regs = folder / "joint_regressors.npz"
    rng = np.random.default_rng(0)
    n = 3
    pose = rng.normal(0, 0.3, (n, 72))
    betas = rng.normal(0, 1, (n, 10))
    turn = Rotation.from_rotvec([0.0, 0.0, np.deg2rad(30)])
    label_pose = pose.copy()
    label_pose[:, :3] = (turn * Rotation.from_rotvec(pose[:, :3])).as_rotvec()
    arrays = empty_arrays(n)
    arrays["pose"], arrays["shape"] = label_pose, betas
    annotations = tmp_path / "split.npz"
    write_spin_npz(annotations, PersonDataset(imgname=np.array([f"{i}.jpg" for i in range(n)]),
                                              center=np.zeros((n, 2)), scale=np.ones(n), **arrays),
                   keys=("pose", "shape"))
    write_truth(truth_path(annotations), [f"{i}.jpg" for i in range(n)], pose, betas, None, True)
    write_error_csv({"rot": (annotations, "spin_npz")}, folder, regs, tmp_path / "err.csv")
    # betas only (pose exact): the body changes, betas_l2 = 1
    arrays["pose"], arrays["shape"] = pose, betas + np.eye(10)[0]
    write_spin_npz(tmp_path / "b.npz", PersonDataset(imgname=np.array([f"{i}.jpg" for i in range(n)]),
                                                     center=np.zeros((n, 2)), scale=np.ones(n), **arrays),
                   keys=("pose", "shape"))
    write_truth(truth_path(tmp_path / "b.npz"), [f"{i}.jpg" for i in range(n)], pose, betas, None, True)
    write_error_csv({"rot": (annotations, "spin_npz"), "betas": (tmp_path / "b.npz", "spin_npz")}, folder, regs,
                    tmp_path / "err.csv")
    with (tmp_path / "err.csv").open() as fh:
        rows = {r["split"]: r for r in csv.DictReader(fh)}
    assert list(rows["rot"]) == list(ERROR_COLUMNS)

    model = BodyModel(folder, gender="neutral", joint_regressors=regs)
    with torch.no_grad():
        p = torch.as_tensor(pose.astype(np.float32))
        out = model(betas=torch.as_tensor(betas.astype(np.float32)), body_pose=p[:, 3:], global_orient=p[:, :3])
    v, root = out.vertices.double().numpy(), out.joints[:, :1].double().numpy()
    h36m = out.joints_h36m.double().numpy()
    j14 = h36m[:, list(H36M_TO_J14)] - h36m[:, :1]
    r = turn.as_matrix()
    mpjpe = np.linalg.norm(j14 @ r.T - j14, axis=-1).mean() * 1000
    pve = np.linalg.norm((v - root) @ r.T + root - v, axis=-1).mean() * 1000
    assert mpjpe > 20  # a real perturbation
    assert float(rows["rot"]["mpjpe_mm"]) == pytest.approx(mpjpe, abs=0.05)
    assert float(rows["rot"]["pve_mm"]) == pytest.approx(pve, abs=0.05)
    assert float(rows["rot"]["pa_mpjpe_mm"]) == pytest.approx(0.0, abs=0.05)
    assert float(rows["rot"]["betas_l2"]) == 0.0 and int(rows["rot"]["n"]) == n
    assert float(rows["betas"]["betas_l2"]) == pytest.approx(1.0, abs=1e-4)
    assert float(rows["betas"]["pve_mm"]) > 1.0


def test_training_never_reads_truth_files(tmp_path: Path) -> None:
    """The dry-run DAG of a fine-tuning run: the world writes truth files, no training job reads one."""
    project = copy_workflow(tmp_path / "project")
    res = subprocess.run(snakemake_command(project, "-n", "results/train/dsr/checkpoints/final.pt"), cwd=project,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout)
    train = [j for j in jobs if re.match(r"(?:local)?rule (train_regressor|pretrain_regressor):", j)]
    world = [j for j in jobs if re.match(r"(?:local)?rule make_images_train_coco_eft:", j)]
    assert train and world, res.stdout[-3000:]
    assert "COCO2014-All-ver01.truth.npz" in world[0]
    for job in train:
        inputs = next(line for line in job.splitlines() if line.strip().startswith("input:"))
        assert "COCO2014-All-ver01.json" in inputs or "pretrain" in job
        assert ".truth.npz" not in inputs


def test_unknown_pseudo_gt_split_fails_at_dag_build(tmp_path: Path) -> None:
    project = copy_workflow(tmp_path / "project")
    res = subprocess.run(snakemake_command(project, "-n", "results/world/pseudo_gt_error.csv", "--config",
                                           'open_world={"pseudo_gt": {"splits": ["coco_eft", "lsp"]}}'),
                         cwd=project, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode != 0
    assert "open_world.pseudo_gt.splits names ['lsp']" in res.stdout + res.stderr
