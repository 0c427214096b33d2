"""Evaluation metrics, protocols and reports on hand-computed cases and a tiny SMPL-format body model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.body.model import BodyModel
from pipeline.evaluate import metrics
from pipeline.evaluate.protocols import (
    H36M_TO_J14,
    H36M_TO_J17,
    J14_NAMES,
    J17_NAMES,
    J24_TO_J14,
    J24_TO_J17,
    EvalResult,
    evaluate_3dpw,
    evaluate_h36m,
    evaluate_mpi_inf_3dhp,
)
from pipeline.evaluate.report import (
    EVAL_COLUMNS,
    build_html_report,
    load_result,
    per_joint_csv_path,
    per_joint_rows,
    result_row,
    save_result,
    write_eval_csv,
    write_per_joint_csv,
)
from tests.conftest import make_tiny_smpl

NUM_VERTS = 60
GENDER_SEEDS = {"neutral": 0, "male": 1, "female": 2}
GENDER_FILES = {"neutral": "SMPL_NEUTRAL.npz", "male": "SMPL_MALE.npz", "female": "SMPL_FEMALE.npz"}
# SPIN constants.py, typed out again here so that the module's constants are checked, not just reused.
SPIN_H36M_TO_J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
SPIN_J24_TO_J17 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) proper rotations from QR of Gaussian matrices."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1.0
    return q


def spin_similarity_loop(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Straightforward per-sample oracle: SPIN's compute_similarity_transform on (J, 3) sets, looped."""
    out = np.empty_like(s1)
    for b in range(s1.shape[0]):
        a, c = s1[b].T, s2[b].T
        mu1, mu2 = a.mean(1, keepdims=True), c.mean(1, keepdims=True)
        x1, x2 = a - mu1, c - mu2
        var1 = np.sum(x1**2)
        k = x1 @ x2.T
        u, _, vh = np.linalg.svd(k)
        v = vh.T
        z = np.eye(3)
        z[-1, -1] *= np.sign(np.linalg.det(u @ v.T))
        rot = v @ z @ u.T
        scale = np.trace(rot @ k) / var1
        t = mu2 - scale * rot @ mu1
        out[b] = (scale * rot @ a + t).T
    return out


# ------------------------------------------------------------------------------------------------ metrics


def test_identical_inputs_give_zero() -> None:
    x = np.random.default_rng(0).normal(size=(4, 14, 3))
    assert np.all(metrics.mpjpe(x, x) == 0.0)
    assert np.allclose(metrics.pa_mpjpe(x, x), 0.0, atol=1e-12)
    assert np.all(metrics.pve(x, x) == 0.0)


def test_mpjpe_of_known_offset() -> None:
    gt = np.random.default_rng(1).normal(size=(3, 14, 3))
    offset = np.array([0.006, 0.008, 0.0])  # |offset| = 10 mm
    np.testing.assert_allclose(metrics.mpjpe(gt + offset, gt), 0.010, atol=1e-12)
    err = metrics.per_joint_errors(gt + offset, gt)
    assert err.shape == (3, 14)
    np.testing.assert_allclose(err, 0.010, atol=1e-12)
    # torch in, torch out
    t = metrics.mpjpe(torch.as_tensor(gt + offset), torch.as_tensor(gt))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), 0.010, atol=1e-12)


def test_hand_computed_three_joints() -> None:
    """pred on the x axis, gt lifts the third joint by h: MPJPE = h/3; PA aligns centroids -> 4h/9."""
    h = 0.09
    pred = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0.0, 0, 0]]])
    gt = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0.0, h, 0]]])
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), [h / 3], atol=1e-12)
    tf = metrics.similarity_procrustes(pred, gt)
    np.testing.assert_allclose(tf.scale, [1.0], atol=1e-12)
    np.testing.assert_allclose(tf.translation, [[0.0, h / 3, 0.0]], atol=1e-12)
    np.testing.assert_allclose(metrics.pa_per_joint_errors(pred, gt), [[h / 3, h / 3, 2 * h / 3]], atol=1e-12)
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), [4 * h / 9], atol=1e-12)


def test_procrustes_recovers_similarity_transform() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 14, 3)) * 0.3
    rot = random_rotations(5, rng)
    scale = rng.uniform(0.5, 2.0, size=5)
    trans = rng.normal(size=(5, 3))
    y = scale[:, None, None] * np.einsum("bij,bnj->bni", rot, x) + trans[:, None, :]
    tf = metrics.similarity_procrustes(x, y)
    np.testing.assert_allclose(tf.scale, scale, atol=1e-10)
    np.testing.assert_allclose(tf.rotation, rot, atol=1e-10)
    np.testing.assert_allclose(tf.translation, trans, atol=1e-10)
    np.testing.assert_allclose(tf.aligned, y, atol=1e-10)
    assert np.all(metrics.pa_mpjpe(x, y) < 1e-10)


def test_procrustes_matches_per_sample_loop_and_torch() -> None:
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(8, 17, 3)) * 0.3
    gt = pred + rng.normal(size=(8, 17, 3)) * 0.05  # unrelated noise: a genuinely imperfect fit
    expected = spin_similarity_loop(pred, gt)
    np.testing.assert_allclose(metrics.similarity_procrustes(pred, gt).aligned, expected, atol=1e-12)
    aligned64 = metrics.similarity_procrustes(torch.as_tensor(pred), torch.as_tensor(gt)).aligned
    np.testing.assert_allclose(aligned64.numpy(), expected, atol=1e-10)
    pa32 = metrics.pa_mpjpe(torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(gt, dtype=torch.float32))
    np.testing.assert_allclose(pa32.numpy(), metrics.pa_mpjpe(pred, gt), atol=1e-6)


def test_pa_mpjpe_invariant_to_similarity_of_prediction() -> None:
    rng = np.random.default_rng(4)
    pred = rng.normal(size=(6, 14, 3)) * 0.3
    gt = pred + rng.normal(size=(6, 14, 3)) * 0.03
    moved = 1.7 * np.einsum("bij,bnj->bni", random_rotations(6, rng), pred) + rng.normal(size=(6, 1, 3))
    np.testing.assert_allclose(metrics.pa_mpjpe(moved, gt), metrics.pa_mpjpe(pred, gt), atol=1e-10)
    assert np.all(metrics.mpjpe(moved, gt) > metrics.pa_mpjpe(moved, gt))


def test_reflection_is_not_undone() -> None:
    """A mirrored prediction is best fitted by a reflection; the det fix keeps R a proper rotation."""
    rng = np.random.default_rng(5)
    gt = rng.normal(size=(3, 14, 3)) * 0.3
    mirrored = gt * np.array([1.0, 1.0, -1.0])
    tf = metrics.similarity_procrustes(mirrored, gt)
    np.testing.assert_allclose(np.linalg.det(tf.rotation), 1.0, atol=1e-10)
    np.testing.assert_allclose(tf.aligned, spin_similarity_loop(mirrored, gt), atol=1e-12)
    assert np.all(metrics.pa_mpjpe(mirrored, gt) > 0.02)  # a reflection would have given 0


def test_pve_of_shifted_mesh_is_shift_length() -> None:
    verts = np.random.default_rng(6).normal(size=(2, NUM_VERTS, 3))
    shift = np.array([0.0, 0.012, 0.016])  # 20 mm
    np.testing.assert_allclose(metrics.pve(verts + shift, verts), [0.02, 0.02], atol=1e-12)


def test_metrics_reject_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same shape"):
        metrics.mpjpe(np.zeros((2, 14, 3)), np.zeros((2, 17, 3)))
    with pytest.raises(TypeError):
        metrics.mpjpe(np.zeros((2, 14, 3)), torch.zeros(2, 14, 3))


# ------------------------------------------------------------------------------------------------ 3DPW


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BodyModel]:
    """Tiny neutral/male/female models (different geometry each) with H36M and SPIN joint regressors."""
    folder = tmp_path_factory.mktemp("tiny_body")
    for gender, seed in GENDER_SEEDS.items():
        np.savez(folder / GENDER_FILES[gender], **make_tiny_smpl(NUM_VERTS, seed=seed))
    rng = np.random.default_rng(7)
    h36m = rng.random((17, NUM_VERTS)) ** 4
    extra = rng.random((9, NUM_VERTS)) ** 4
    picks = np.eye(NUM_VERTS)[rng.choice(NUM_VERTS, 11, replace=False)]
    np.savez(folder / "joint_regressors.npz", h36m=h36m / h36m.sum(1, keepdims=True),
             extra=extra / extra.sum(1, keepdims=True), vertex_joints=picks)
    return {g: BodyModel(folder, gender=g, joint_regressors=folder / "joint_regressors.npz") for g in GENDER_SEEDS}


@pytest.fixture(scope="module")
def gt_3dpw(tiny_models: dict[str, BodyModel]) -> dict[str, np.ndarray]:
    """7 samples of GT pose/betas/gender and their GT vertices, computed one sample at a time."""
    rng = np.random.default_rng(8)
    n = 7
    pose = rng.normal(size=(n, 72)) * 0.3
    betas = rng.normal(size=(n, 10))
    gender = np.array(["m", "f", "f", "m", "f", "m", "m"])
    verts = np.empty((n, NUM_VERTS, 3))
    neutral = np.empty((n, NUM_VERTS, 3))
    for i in range(n):
        p = torch.as_tensor(pose[i : i + 1], dtype=torch.float32)
        b = torch.as_tensor(betas[i : i + 1], dtype=torch.float32)
        for name, target in (("male" if gender[i] == "m" else "female", verts), ("neutral", neutral)):
            with torch.no_grad():
                target[i] = tiny_models[name](betas=b, body_pose=p[:, 3:], global_orient=p[:, :3]).vertices[0].numpy()
    return {"pose": pose, "betas": betas, "gender": gender, "verts": verts, "neutral": neutral}


def _eval_3dpw(pred: np.ndarray, gt: dict[str, np.ndarray], models: dict[str, BodyModel]) -> EvalResult:
    return evaluate_3dpw(pred, gt["pose"], gt["betas"], gt["gender"], models, batch_size=3)


def test_3dpw_ground_truth_as_prediction_gives_zero(tiny_models: dict, gt_3dpw: dict) -> None:
    res = _eval_3dpw(gt_3dpw["verts"], gt_3dpw, tiny_models)
    assert res.dataset == "3dpw" and res.n == 7 and res.joint_names == J14_NAMES
    assert res.mpjpe_mm < 1e-3 and res.pa_mpjpe_mm < 1e-3 and res.pve_mm < 1e-3
    assert res.per_sample_pve_mm.shape == (7,) and res.per_joint_mpjpe_mm.shape == (14,)


def test_3dpw_known_perturbations(tiny_models: dict, gt_3dpw: dict) -> None:
    gt_v = gt_3dpw["verts"]
    # a rigid shift: removed by the pelvis alignment, fully counted by PVE (no alignment)
    shifted = _eval_3dpw(gt_v + np.array([0.0, 0.012, 0.016]), gt_3dpw, tiny_models)
    assert shifted.mpjpe_mm < 1e-3 and shifted.pa_mpjpe_mm < 1e-3
    np.testing.assert_allclose(shifted.per_sample_pve_mm, 20.0, atol=1e-3)
    # scaling about the origin by (1 + eps): MPJPE = eps * mean |pelvis-relative joint|, PA-MPJPE = 0
    eps = 0.05
    scaled = _eval_3dpw(gt_v * (1.0 + eps), gt_3dpw, tiny_models)
    reg = tiny_models["male"].h36m_regressor.double().numpy()
    joints = np.einsum("jv,bvc->bjc", reg, gt_v)
    rel = joints[:, SPIN_H36M_TO_J14] - joints[:, [0]]
    np.testing.assert_allclose(scaled.mpjpe_mm, 1000 * eps * np.linalg.norm(rel, axis=-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(scaled.per_joint_mpjpe_mm, 1000 * eps * np.linalg.norm(rel, axis=-1).mean(0), rtol=1e-5)
    assert scaled.pa_mpjpe_mm < 1e-3
    np.testing.assert_allclose(scaled.pve_mm, 1000 * eps * np.linalg.norm(gt_v, axis=-1).mean(), rtol=1e-5)


def test_3dpw_uses_the_gendered_ground_truth(tiny_models: dict, gt_3dpw: dict) -> None:
    res = _eval_3dpw(gt_3dpw["neutral"], gt_3dpw, tiny_models)  # neutral body for the GT parameters
    assert res.pve_mm > 1.0 and res.mpjpe_mm > 1.0
    swapped = dict(gt_3dpw, gender=np.where(gt_3dpw["gender"] == "m", "f", "m"))
    res = _eval_3dpw(gt_3dpw["verts"], swapped, tiny_models)
    assert np.all(res.per_sample_pve_mm > 1.0)
    spin_codes = dict(gt_3dpw, gender=(gt_3dpw["gender"] == "f").astype(int))  # SPIN: 0 male, 1 female
    assert _eval_3dpw(gt_3dpw["verts"], spin_codes, tiny_models).pve_mm < 1e-3


def test_3dpw_rejects_bad_inputs(tiny_models: dict, gt_3dpw: dict) -> None:
    with pytest.raises(ValueError, match="gender codes"):
        _eval_3dpw(gt_3dpw["verts"], dict(gt_3dpw, gender=np.array(["m", "", "f", "m", "f", "m", "m"])), tiny_models)
    with pytest.raises(ValueError, match="vertices"):
        _eval_3dpw(gt_3dpw["verts"][:, :-1], gt_3dpw, tiny_models)
    with pytest.raises(ValueError, match="lacks"):
        evaluate_3dpw(gt_3dpw["verts"], gt_3dpw["pose"], gt_3dpw["betas"], gt_3dpw["gender"],
                      {"male": tiny_models["male"]})


# ------------------------------------------------------------------------------------------------ H36M / MPI


def _h36m_case(n: int = 4, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Root-centred S (N, 24, 4) and H36M-17 predictions equal to it up to a per-sample translation."""
    rng = np.random.default_rng(seed)
    s = np.concatenate([rng.normal(size=(n, 24, 3)) * 0.3, np.ones((n, 24, 1))], axis=-1)
    s[:, 14, :3] = 0.0  # SPIN's S is centred on the pelvis
    offset = rng.normal(size=(n, 1, 3))
    pred = rng.normal(size=(n, 17, 3))
    pred[:, H36M_TO_J17] = s[:, J24_TO_J17, :3]
    return s, pred + offset


def test_constants_match_spin() -> None:
    assert list(H36M_TO_J14) == SPIN_H36M_TO_J14
    assert list(J24_TO_J17) == SPIN_J24_TO_J17 and list(J24_TO_J14) == SPIN_J24_TO_J17[:14]
    assert J14_NAMES[0] == "Right Ankle" and J14_NAMES[13] == "Head (H36M)" and J17_NAMES[14] == "Pelvis (MPII)"


def test_h36m_protocol() -> None:
    s, pred = _h36m_case()
    res = evaluate_h36m(pred, s, protocol=2)
    assert res.dataset == "h36m-p2" and res.n == 4
    assert res.mpjpe_mm < 1e-9 and res.pa_mpjpe_mm < 1e-9 and np.isnan(res.pve_mm)
    moved = pred.copy()
    moved[:, 1:] += np.array([0.0, 0.0, 0.010])  # every joint but the pelvis 10 mm forward
    res = evaluate_h36m(moved, s, protocol=1)
    np.testing.assert_allclose(res.mpjpe_mm, 10.0, atol=1e-9)
    ankle = pred.copy()
    ankle[:, 6] += np.array([0.010, 0.0, 0.0])  # H36M row 6 = right ankle, J14 joint 0
    res = evaluate_h36m(ankle, s, protocol=1)
    np.testing.assert_allclose(res.per_joint_mpjpe_mm, [10.0] + [0.0] * 13, atol=1e-9)
    np.testing.assert_allclose(res.mpjpe_mm, 10.0 / 14, atol=1e-9)
    assert res.grouped_joint_errors(aligned=False)["ankle"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_h36m(pred, s, protocol=3)


def test_mpi_inf_3dhp_protocol() -> None:
    s, pred = _h36m_case(seed=10)
    res = evaluate_mpi_inf_3dhp(torch.as_tensor(pred), torch.as_tensor(s))
    assert res.dataset == "mpi-inf-3dhp" and res.joint_names == J17_NAMES
    assert res.mpjpe_mm < 1e-9 and res.pa_mpjpe_mm < 1e-9
    moved = pred.copy()
    moved[:, 1:] += np.array([0.0, 0.010, 0.0])  # the pelvis (J17 joint 14) stays: 16 of 17 joints off by 10 mm
    res = evaluate_mpi_inf_3dhp(moved, s)
    np.testing.assert_allclose(res.mpjpe_mm, 10.0 * 16 / 17, atol=1e-9)
    assert res.per_joint_mpjpe_mm[14] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="predictions"):
        evaluate_mpi_inf_3dhp(pred[:3], s)


# ------------------------------------------------------------------------------------------------ reports


def _two_results() -> tuple[EvalResult, EvalResult]:
    s, pred = _h36m_case(seed=11)
    noisy = pred + np.random.default_rng(12).normal(size=pred.shape) * 0.02
    return evaluate_h36m(noisy, s, protocol=1), evaluate_h36m(noisy * 1.1, s, protocol=1)


def test_eval_and_per_joint_csv(tmp_path: Path) -> None:
    a, b = _two_results()
    rows = [result_row(a, "sd", "open", git_sha="abc123"), result_row(b, "dsr", "open", git_sha="abc123", seed=1)]
    out = write_eval_csv(rows, tmp_path / "results" / "eval_h36m.csv")
    with open(out) as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames[:7]) == EVAL_COLUMNS and reader.fieldnames[7:] == ["git_sha", "seed"]
        back = list(reader)
    assert back[0]["run"] == "sd" and back[0]["seed"] == "" and back[1]["seed"] == "1"
    assert int(back[0]["n"]) == a.n
    assert float(back[0]["mpjpe_mm"]) == a.mpjpe_mm and float(back[1]["pa_mpjpe_mm"]) == b.pa_mpjpe_mm
    assert np.isnan(float(back[0]["pve_mm"]))
    pj = write_per_joint_csv(per_joint_rows(a, "sd", "open") + per_joint_rows(b, "dsr", "open"), per_joint_csv_path(out))
    assert pj.name == "eval_h36m_per_joint.csv"
    with open(pj) as fh:
        pj_rows = list(csv.DictReader(fh))
    assert len(pj_rows) == 28 and pj_rows[0]["joint"] == "Right Ankle"
    assert float(pj_rows[0]["mpjpe_mm"]) == a.per_joint_mpjpe_mm[0]
    with pytest.raises(ValueError, match="duplicate"):
        write_eval_csv(rows + rows[:1], tmp_path / "dup.csv")
    with pytest.raises(ValueError, match="lacks columns"):
        write_eval_csv([{"run": "x"}], tmp_path / "bad.csv")
    assert not (tmp_path / "dup.csv").exists() and not list((tmp_path / "results").glob(".*tmp"))


def test_save_and_load_result(tmp_path: Path) -> None:
    a, _ = _two_results()
    back = load_result(save_result(a, tmp_path / "r.npz"))
    assert back.dataset == a.dataset and back.n == a.n and back.joint_names == a.joint_names
    assert back.mpjpe_mm == a.mpjpe_mm and back.pa_mpjpe_mm == a.pa_mpjpe_mm and np.isnan(back.pve_mm)
    np.testing.assert_array_equal(back.per_sample_pa_mpjpe_mm, a.per_sample_pa_mpjpe_mm)


def test_html_report(tmp_path: Path) -> None:
    a, b = _two_results()
    eval_csv = write_eval_csv([result_row(a, "sd", "open"), result_row(b, "dsr", "open")], tmp_path / "eval_h36m.csv")
    write_per_joint_csv(per_joint_rows(a, "sd", "open") + per_joint_rows(b, "dsr", "open"), per_joint_csv_path(eval_csv))
    log = tmp_path / "train_log.csv"
    log.write_text("step,loss,pa_mpjpe_mm\n0,2.0,90\n10,1.5,80\n20,1.2,75\n")
    png = tmp_path / "overlay_000.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(png)
    out = build_html_report(
        [eval_csv], {"training curves <sd>": log, "overlay": png}, tmp_path / "report" / "report.html",
        title="DSR evaluation", image_grids={"test images": [png]}, provenance={"git": "abc123"},
    )
    html = out.read_text()
    assert "<title>DSR evaluation</title>" in html and "h36m-p1" in html and "abc123" in html
    assert f"{a.mpjpe_mm:.1f}" in html and f"{b.pa_mpjpe_mm:.1f}" in html
    assert "training curves &lt;sd&gt;" in html  # captions are escaped
    assert html.count("data:image/png;base64,") == 4  # per-joint chart, curves, figure, grid image
    assert not list(out.parent.glob(".*tmp"))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        build_html_report([eval_csv], {"x": tmp_path / "missing.png"}, tmp_path / "r2.html", title="t")
    assert not (tmp_path / "r2.html").exists()


def test_report_cells_shorten_commits_and_format_millimetres() -> None:
    from pipeline.evaluate.report import _format_cell

    assert _format_cell("git_sha", "dfe71150503aa3ad0519bb8ebfe8d9c1ade64a28-dirty") == ("dfe71150503a-dirty", False)
    assert _format_cell("git_sha", "abc123") == ("abc123", False)
    assert _format_cell("mpjpe_mm", 290.81463) == ("290.8", True)
    assert _format_cell("pve_mm", float("nan")) == ("—", True)


@pytest.mark.parametrize("batch_size", [3, 4, 7])
def test_3dpw_gender_runs_of_three_in_a_chunk(tiny_models: dict, gt_3dpw: dict, batch_size: int) -> None:
    """Issue #18: a chunk with exactly 3 samples of one gender poses a (3, 3) axis-angle global orientation,
    once misread as a rotation matrix (RuntimeError). Genders m,m,m,f,f,f,m: every chunk size gives runs of 3."""
    gt = {**gt_3dpw, "gender": np.array(["m", "m", "m", "f", "f", "f", "m"])}
    verts = np.empty_like(gt["verts"])
    for i, g in enumerate(gt["gender"]):
        p = torch.as_tensor(gt["pose"][i : i + 1], dtype=torch.float32)
        b = torch.as_tensor(gt["betas"][i : i + 1], dtype=torch.float32)
        with torch.no_grad():
            verts[i] = tiny_models["male" if g == "m" else "female"](
                betas=b, body_pose=p[:, 3:], global_orient=p[:, :3]).vertices[0].numpy()
    res = evaluate_3dpw(verts, gt["pose"], gt["betas"], gt["gender"], tiny_models, batch_size=batch_size)
    assert res.n == 7 and res.mpjpe_mm < 1e-3 and res.pve_mm < 1e-3
