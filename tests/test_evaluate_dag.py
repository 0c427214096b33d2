"""Evaluation rules on the tiny open world: every table and the report are written with the baselines
(mean-params, pretrained) first, the mean-params row scores exactly the start checkpoint's mean-parameter
buffers, retraining one run re-evaluates only that run, a figure setting reruns only the figures, a
configured pretrained checkpoint becomes its own row, and the pretraining curves join the report when the
runs start from rule pretrain_regressor's checkpoint."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import run_snakemake

EVAL_TARGETS = ("results/eval_3dpw.csv", "results/eval_h36m.csv", "results/eval_mpi_inf_3dhp.csv",
                "results/report.html")
RUNS = ("sd", "dsr")  # train.runs of tests/config_tiny.yaml (schema default)
#: The checkpoint rule pretrain_regressor writes (open world) and its metrics.
PRETRAIN_CHECKPOINT = "results/pretrain/model_checkpoint.pt"
PRETRAIN_METRICS = "results/pretrain/metrics.csv"
_JOB_LINE = re.compile(r"^([a-z_0-9]+)\s+(\d+)$")


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path) -> Path:
    """The tiny DAG with every evaluation target built (a no-op when `all` already built them)."""
    res = run_snakemake(tiny_run, *EVAL_TARGETS)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return tiny_run


def _jobs(workdir: Path, targets: tuple[str, ...] = EVAL_TARGETS) -> dict[str, int]:
    """Rule -> job count that `snakemake -n` would run for ``targets``."""
    res = run_snakemake(workdir, "-n", *targets, "--quiet", "rules")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    jobs: dict[str, int] = {}
    for line in out.splitlines():
        m = _JOB_LINE.match(line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _start_checkpoint(workdir: Path) -> str:
    """The checkpoint the runs start from, as the workflow resolved it (the mean-params row's provenance):
    assets.pretrained_checkpoint when set, else the first run's final.pt."""
    rows = [r for r in _rows(workdir / "results/eval_3dpw.csv") if r["run"] == "mean-params"]
    assert len(rows) == 1, rows
    return rows[0]["checkpoint"]


def _eval_runs(workdir: Path) -> list[str]:
    """Row order of every table: the baselines, then train.runs."""
    pretrained = _start_checkpoint(workdir) != f"results/train/{RUNS[0]}/checkpoints/final.pt"
    return ["mean-params", *(["pretrained"] if pretrained else []), *RUNS]


def _mean_params_result(workdir: Path, checkpoint: str | Path, split: str = "3dpw"):
    """Score the checkpoint's init_pose/init_shape/init_cam buffers on a split, without the workflow."""
    import torch
    import yaml

    from pipeline.config import validate_config
    from pipeline.evaluate.predict import Predictions, evaluate_predictions, load_body_models, pose_neutral
    from pipeline.masks.parse_images import read_dataset
    from pipeline.model.geometry import rot6d_to_rotmat

    cfg = validate_config(yaml.safe_load((workdir / "config/config.yaml").read_text()))
    test = cfg["assets"]["test_datasets"][split]
    data = read_dataset(workdir / test["annotations"], test["format"])
    models = load_body_models(workdir / "resources/body_models", workdir / "resources/body_models/joint_regressors.npz")
    state = torch.load(workdir / checkpoint, map_location="cpu", weights_only=True)["model"]
    n = len(data)
    rot = rot6d_to_rotmat(state["init_pose"].reshape(1, 24, 6)).expand(n, -1, -1, -1)
    betas = state["init_shape"].expand(n, -1)
    verts, joints = pose_neutral(models["neutral"], rot, betas)
    pred = Predictions(imgname=data.imgname, rotmat=rot.numpy(), betas=betas.numpy(),
                       cam=state["init_cam"].expand(n, -1).numpy(), vertices=verts.numpy(), joints_h36m=joints.numpy())
    return evaluate_predictions(pred, data, split, models), state


def test_tables_and_report_are_written(evaluated: Path) -> None:
    runs = _eval_runs(evaluated)
    expected = {"eval_3dpw.csv": ["3dpw"], "eval_h36m.csv": ["h36m-p1", "h36m-p2"],
                "eval_mpi_inf_3dhp.csv": ["mpi-inf-3dhp"]}
    for name, datasets in expected.items():
        rows = _rows(evaluated / "results" / name)
        # baselines first, in this order, within every dataset
        assert [(r["run"], r["dataset"]) for r in rows] == [(run, d) for d in datasets for run in runs], name
        for r in rows:
            assert r["world"] == "open" and int(r["n"]) == 3 and r["backbone"] == "resnet18"
            assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for k in ("mpjpe_mm", "pa_mpjpe_mm"))
            assert math.isfinite(float(r["pve_mm"])) == (r["dataset"] == "3dpw")
            assert r["checkpoint_sha256"] and r["git_sha"]  # provenance columns kept
            assert int(r["n_iter"]) == (0 if r["run"] == "mean-params" else 3)
        for sibling in ("_joint_groups.csv", "_per_joint.csv"):
            back = _rows(evaluated / "results" / name.replace(".csv", sibling))
            assert list(dict.fromkeys((g["run"], g["dataset"]) for g in back)) == [(run, d) for d in datasets
                                                                                  for run in runs], sibling
        groups = _rows(evaluated / "results" / name.replace(".csv", "_joint_groups.csv"))
        assert {g["group"] for g in groups} >= {"ankle", "knee", "hip", "wrist", "elbow", "head"}
    html = (evaluated / "results/report.html").read_text()
    for text in ("h36m-p2", "mpi-inf-3dhp", "Training curves of run dsr", "Run sd: input", "Semantic prior",
                 "Pseudo-GT masks of coco_eft", "Pseudo-GT mask QC", "baseline mean-params: input",
                 '<tr class="baseline"><td>mean-params</td>', "<code>mean-params</code>"):
        assert text in html, text
    for run in runs:
        figure = evaluated / f"results/eval/qualitative/3dpw/{run}.png"
        assert figure.stat().st_size > 1000, run


def test_mean_params_row_scores_the_start_checkpoints_buffers(evaluated: Path) -> None:
    """Same numbers as the start checkpoint's buffers scored outside the workflow, every image predicted alike."""
    start = _start_checkpoint(evaluated)
    result, state = _mean_params_result(evaluated, start)
    row = {r["run"]: r for r in _rows(evaluated / "results/eval_3dpw.csv")}["mean-params"]
    assert row["checkpoint"] == start and int(row["n"]) == result.n
    for key, value in (("mpjpe_mm", result.mpjpe_mm), ("pa_mpjpe_mm", result.pa_mpjpe_mm), ("pve_mm", result.pve_mm)):
        assert float(row[key]) == pytest.approx(value, rel=1e-5, abs=1e-4), key
    import numpy as np

    with np.load(evaluated / "results/eval/3dpw/mean-params.predictions.npz") as z:
        np.testing.assert_array_equal(z["betas"], np.broadcast_to(state["init_shape"].numpy(), z["betas"].shape))
        np.testing.assert_array_equal(z["cam"], np.broadcast_to(state["init_cam"].numpy(), z["cam"].shape))
    # and it is not what the trained run predicts
    sd = {r["run"]: r for r in _rows(evaluated / "results/eval_3dpw.csv")}["sd"]
    assert float(sd["mpjpe_mm"]) != pytest.approx(float(row["mpjpe_mm"]), abs=1e-3)


def test_retraining_one_run_reevaluates_only_that_run(evaluated: Path) -> None:
    # dsr: the first run (sd) also provides the mean-params buffers when no pretrained checkpoint is set
    ckpt = evaluated / "results/train/dsr/checkpoints/final.pt"
    stat = ckpt.stat()
    newer = time.time() + 60.0  # as if sd had just been retrained
    os.utime(ckpt, (newer, newer))
    try:
        jobs = _jobs(evaluated)
    finally:
        os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs == {"predict_test_split": 4, "score_predictions": 4, "evaluate_3dpw": 1, "evaluate_h36m": 1,
                    "evaluate_mpi_inf_3dhp": 1, "plot_qualitative": 1, "build_report": 1}, jobs
    assert _jobs(evaluated) == {}  # restored: nothing to do


def test_changing_the_figure_count_reruns_only_the_figures(evaluated: Path) -> None:
    config = evaluated / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original + "evaluate:\n  qualitative:\n    count: 2\n")
    try:
        jobs = _jobs(evaluated)
    finally:
        config.write_text(original)
    assert jobs == {"plot_qualitative": len(_eval_runs(evaluated)), "build_report": 1}, jobs


@pytest.mark.slow
def test_pretrained_checkpoint_is_evaluated_as_its_own_row(evaluated: Path, tmp_path: Path) -> None:
    """The sd checkpoint given as assets.pretrained_checkpoint scores exactly like run sd did, and mean-params
    then takes its buffers. (The same key also initialises training, so the trained runs would retrain from it.)
    Takes ≈ 1 min on 2 cores: two real runs (the new rows, then back to the configured start) of ~10 jobs in all,
    each a process of its own that loads torch and the body models."""
    pretrained = tmp_path / "model_checkpoint.pt"
    shutil.copy(evaluated / "results/train/sd/checkpoints/final.pt", pretrained)
    config = evaluated / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("world: open\n", f"world: open\nassets:\n  pretrained_checkpoint: {pretrained}\n"))
    try:
        jobs = _jobs(evaluated, ("results/eval_3dpw.csv",))
        res = run_snakemake(evaluated, "results/eval/3dpw/pretrained.json", "results/eval/3dpw/mean-params.json")
    finally:
        config.write_text(original)
    # mean-params, pretrained, sd and dsr: the baselines follow the new start checkpoint, the runs retrain
    assert jobs == {"train_regressor": 2, "predict_test_split": 4, "score_predictions": 4, "evaluate_3dpw": 1}, jobs
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    row = json.loads((evaluated / "results/eval/3dpw/pretrained.json").read_text())["row"]
    sd = {r["run"]: r for r in _rows(evaluated / "results/eval_3dpw.csv")}["sd"]
    assert row["run"] == "pretrained" and row["checkpoint"] == str(pretrained)
    assert row["checkpoint_sha256"] == sd["checkpoint_sha256"]
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"):
        assert row[key] == pytest.approx(float(sd[key]), abs=1e-9)
    mean_row = json.loads((evaluated / "results/eval/3dpw/mean-params.json").read_text())["row"]
    assert mean_row["checkpoint"] == str(pretrained) and mean_row["n_iter"] == 0
    result, _ = _mean_params_result(evaluated, pretrained)
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"):
        assert mean_row[key] == pytest.approx(getattr(result, key), rel=1e-5, abs=1e-4), key
    # back to the configured start: Snakemake sees mean-params' changed input and redoes only its jobs
    jobs = _jobs(evaluated)
    assert jobs == {"predict_test_split": 1, "score_predictions": 1, "evaluate_3dpw": 1, "plot_qualitative": 1,
                    "build_report": 1}, jobs
    restored = run_snakemake(evaluated, *EVAL_TARGETS)
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-4000:]
    assert _jobs(evaluated) == {}


def test_pretraining_curves_join_the_report_when_the_runs_start_from_them(evaluated: Path) -> None:
    """Decided by the path: assets.pretrained_checkpoint == results/pretrain/model_checkpoint.pt adds
    results/eval/curves/pretrain.png (from results/pretrain/metrics.csv) to the report; any other start does not."""
    if _start_checkpoint(evaluated) == PRETRAIN_CHECKPOINT:  # the tiny open world pretrains: already in the report
        html = (evaluated / "results/report.html").read_text()
        assert "Training curves of pretraining" in html
        assert (evaluated / "results/eval/curves/pretrain.png").stat().st_size > 1000
        return
    assert "Training curves of pretraining" not in (evaluated / "results/report.html").read_text()
    # stand-ins for rule pretrain_regressor's outputs (not part of this world's DAG)
    made = [evaluated / PRETRAIN_CHECKPOINT, evaluated / PRETRAIN_METRICS]
    folder = made[0].parent
    assert not folder.exists(), folder
    folder.mkdir(parents=True)
    shutil.copy(evaluated / "results/train/sd/checkpoints/final.pt", made[0])
    shutil.copy(evaluated / "results/train/sd/metrics.csv", made[1])
    config = evaluated / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("world: open\n", f"world: open\nassets:\n  pretrained_checkpoint: {PRETRAIN_CHECKPOINT}\n"))
    try:
        jobs = _jobs(evaluated, ("results/report.html",))
        res = run_snakemake(evaluated, "results/eval/curves/pretrain.png")
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        assert jobs.get("plot_pretraining_curves") == 1 and jobs.get("build_report") == 1, jobs
        assert "plot_training_curves" not in jobs or jobs["plot_training_curves"] == len(RUNS), jobs
        png = evaluated / "results/eval/curves/pretrain.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
    finally:
        config.write_text(original)
        shutil.rmtree(folder, ignore_errors=True)
        (evaluated / "results/eval/curves/pretrain.png").unlink(missing_ok=True)
    assert "plot_pretraining_curves" not in _jobs(evaluated, ("results/report.html",))


def test_ablation_target_trains_and_evaluates_every_repetition(evaluated: Path) -> None:
    config = evaluated / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original + "evaluate:\n  ablation: {variants: [sd, dsr_c, dsr], repetitions: 2}\n")
    try:
        jobs = _jobs(evaluated, ("results/ablation.csv",))
        config.write_text(original + "evaluate:\n  ablation: {variants: [sd, dsr_typo]}\n")
        bad = run_snakemake(evaluated, "-n", "results/ablation.csv")
    finally:
        config.write_text(original)
    assert jobs == {"train_regressor": 6, "predict_test_split": 6, "score_predictions": 6, "evaluate_ablation": 1}
    assert bad.returncode != 0 and "unknown variant 'dsr_typo'" in bad.stdout + bad.stderr
