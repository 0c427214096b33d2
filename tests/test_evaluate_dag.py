"""Evaluation rules on the tiny open world: every table and the report are written, retraining one run
re-evaluates only that run, a figure setting reruns only the figures, and a configured pretrained checkpoint
becomes its own row."""

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


def test_tables_and_report_are_written(evaluated: Path) -> None:
    expected = {"eval_3dpw.csv": {"3dpw"}, "eval_h36m.csv": {"h36m-p1", "h36m-p2"},
                "eval_mpi_inf_3dhp.csv": {"mpi-inf-3dhp"}}
    for name, datasets in expected.items():
        rows = _rows(evaluated / "results" / name)
        assert {(r["run"], r["dataset"]) for r in rows} == {(run, d) for run in RUNS for d in datasets}, name
        for r in rows:
            assert r["world"] == "open" and int(r["n"]) == 3 and r["backbone"] == "resnet18"
            assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for k in ("mpjpe_mm", "pa_mpjpe_mm"))
            assert math.isfinite(float(r["pve_mm"])) == (r["dataset"] == "3dpw")
        groups = _rows(evaluated / "results" / name.replace(".csv", "_joint_groups.csv"))
        assert {g["group"] for g in groups} >= {"ankle", "knee", "hip", "wrist", "elbow", "head"}
    html = (evaluated / "results/report.html").read_text()
    for text in ("h36m-p2", "mpi-inf-3dhp", "Training curves of run dsr", "Run sd: input", "Semantic prior",
                 "Pseudo-GT masks of coco_eft", "Pseudo-GT mask QC"):
        assert text in html, text
    assert (evaluated / "results/eval/qualitative/3dpw/dsr.png").stat().st_size > 1000


def test_retraining_one_run_reevaluates_only_that_run(evaluated: Path) -> None:
    ckpt = evaluated / "results/train/sd/checkpoints/final.pt"
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
    assert jobs == {"plot_qualitative": 2, "build_report": 1}, jobs


def test_pretrained_checkpoint_is_evaluated_as_its_own_row(evaluated: Path, tmp_path: Path) -> None:
    """The sd checkpoint given as assets.pretrained_checkpoint scores exactly like run sd did. (The same key
    also initialises training, so the trained runs would retrain from it.)"""
    pretrained = tmp_path / "model_checkpoint.pt"
    shutil.copy(evaluated / "results/train/sd/checkpoints/final.pt", pretrained)
    config = evaluated / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("world: open\n", f"world: open\nassets:\n  pretrained_checkpoint: {pretrained}\n"))
    try:
        jobs = _jobs(evaluated, ("results/eval_3dpw.csv",))
        res = run_snakemake(evaluated, "results/eval/3dpw/pretrained.json")
    finally:
        config.write_text(original)
    assert jobs == {"train_regressor": 2, "predict_test_split": 3, "score_predictions": 3, "evaluate_3dpw": 1}, jobs
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    row = json.loads((evaluated / "results/eval/3dpw/pretrained.json").read_text())["row"]
    sd = {r["run"]: r for r in _rows(evaluated / "results/eval_3dpw.csv")}["sd"]
    assert row["run"] == "pretrained" and row["checkpoint"] == str(pretrained)
    assert row["checkpoint_sha256"] == sd["checkpoint_sha256"]
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"):
        assert row[key] == pytest.approx(float(sd[key]), abs=1e-9)
    assert _jobs(evaluated) == {}  # the configured tables are untouched


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
