"""Seeds and their spread (issue #17): per-variant mean ± sample sd over seeds, the paired difference
``variant(k) − sd(k)`` over the repetitions both variants have, in the eval tables' ``_by_variant`` siblings,
``results/ablation.csv`` and the report (table cells and a figure with error bars). Hand-computed values."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from pipeline.evaluate.report import seed_spread_figure
from pipeline.evaluate.summary import seed_section, write_pipeline_report
from pipeline.evaluate.tables import (
    ablation_rows,
    by_variant_csv_path,
    format_mean_std,
    seed_rows,
    split_run,
    write_ablation,
    write_eval_tables,
)
from tests.conftest import copy_workflow

METRICS = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
#: run -> MPJPE; PA-MPJPE = MPJPE / 2 and PVE = 2 MPJPE (so their statistics scale by 1/2 and 2).
RUNS: dict[str, float] = {
    "mean-params": 340.0, "pretrained": 120.0,
    "sd-s0": 100.0, "sd-s1": 104.0, "sd-s2": 96.0,
    "dsr-s0": 90.0, "dsr-s1": 97.0, "dsr-s3": 80.0,  # s3 has no sd partner: 2 pairs (s0, s1)
    "dsr_c-s2": 99.0,  # one seed, one pair (s2)
}


def _row(run: str, mpjpe: float, dataset: str = "3dpw", pve: bool = True) -> dict[str, Any]:
    return {"run": run, "dataset": dataset, "world": "open", "n": 5, "mpjpe_mm": mpjpe, "pa_mpjpe_mm": mpjpe / 2,
            "pve_mm": 2 * mpjpe if pve else math.nan, "git_sha": "abc"}


def _rows(runs: dict[str, float] = RUNS, **kw: Any) -> list[dict[str, Any]]:
    return [_row(r, m, **kw) for r, m in runs.items()]


def _score(tmp: Path, row: dict[str, Any]) -> Path:
    run, dataset = row["run"], row["dataset"]
    per_joint = [{"run": run, "dataset": dataset, "world": "open", "joint": j, "mpjpe_mm": row["mpjpe_mm"] + d,
                  "pa_mpjpe_mm": row["pa_mpjpe_mm"]} for j, d in (("Right Ankle", 1.0), ("Left Ankle", 3.0))]
    groups = [{"run": run, "dataset": dataset, "world": "open", "group": "ankle", "mpjpe_mm": row["mpjpe_mm"] + 2,
               "pa_mpjpe_mm": row["pa_mpjpe_mm"]}]
    path = tmp / f"{dataset}_{run}.json"
    path.write_text(json.dumps({"row": row, "per_joint": per_joint, "groups": groups}))
    return path


def test_split_run() -> None:
    assert split_run("dsr-s2") == ("dsr", 2) and split_run("dsr") == ("dsr", 0)
    assert split_run("dsr_mc_distm-s10") == ("dsr_mc_distm", 10) and split_run("mean-params") == ("mean-params", 0)


def test_seed_rows_mean_sd_and_paired_differences() -> None:
    rows = seed_rows(_rows(), METRICS)
    by = {r["variant"]: r for r in rows}
    assert [r["variant"] for r in rows] == ["mean-params", "pretrained", "sd", "dsr", "dsr_c"]
    sd, dsr, dsr_c = by["sd"], by["dsr"], by["dsr_c"]
    # sd: 100, 104, 96 -> mean 100, sample sd 4
    assert sd["n_seeds"] == 3 and sd["runs"] == "sd-s0 sd-s1 sd-s2" and sd["n"] == 5
    assert sd["mpjpe_mm_mean"] == pytest.approx(100.0) and sd["mpjpe_mm_std"] == pytest.approx(4.0)
    assert sd["pa_mpjpe_mm_std"] == pytest.approx(2.0) and sd["pve_mm_mean"] == pytest.approx(200.0)
    # the reference and the baselines are not paired
    for name in ("sd", "mean-params", "pretrained"):
        assert by[name]["n_pairs"] == 0 and by[name]["reference"] == "" and math.isnan(by[name]["mpjpe_mm_diff_mean"])
    assert by["pretrained"]["n_seeds"] == 1 and math.isnan(by["pretrained"]["mpjpe_mm_std"])
    # dsr: 90, 97, 80 -> mean 89, sd sqrt(((1)^2 + 8^2 + 9^2) / 2) = sqrt(73)
    assert dsr["mpjpe_mm_mean"] == pytest.approx(89.0) and dsr["mpjpe_mm_std"] == pytest.approx(math.sqrt(73.0))
    # pairs s0, s1 only: 90 - 100 = -10, 97 - 104 = -7 -> mean -8.5, sd 3 / sqrt(2)
    assert dsr["reference"] == "sd" and dsr["n_pairs"] == 2
    assert dsr["mpjpe_mm_diff_mean"] == pytest.approx(-8.5)
    assert dsr["mpjpe_mm_diff_std"] == pytest.approx(3.0 / math.sqrt(2.0))
    assert dsr["pa_mpjpe_mm_diff_mean"] == pytest.approx(-4.25) and dsr["pve_mm_diff_std"] == pytest.approx(6 / 2 ** 0.5)
    # dsr_c-s2 pairs with sd-s2: 99 - 96 = +3, one pair -> no spread
    assert dsr_c["n_pairs"] == 1 and dsr_c["mpjpe_mm_diff_mean"] == pytest.approx(3.0)
    assert math.isnan(dsr_c["mpjpe_mm_diff_std"]) and math.isnan(dsr_c["mpjpe_mm_std"])
    # another reference
    other = {r["variant"]: r for r in seed_rows(_rows(), METRICS, reference="dsr")}
    assert other["sd"]["n_pairs"] == 2 and other["sd"]["mpjpe_mm_diff_mean"] == pytest.approx(8.5)
    assert other["dsr"]["n_pairs"] == 0


def test_single_run_per_variant_and_a_missing_metric() -> None:
    """Runs without a seed suffix are repetition 0: sd and dsr pair once; no spread anywhere (NaN sd)."""
    rows = seed_rows(_rows({"sd": 100.0, "dsr": 91.5}, pve=False), METRICS)
    sd, dsr = rows
    assert sd["n_seeds"] == dsr["n_seeds"] == 1 and math.isnan(sd["mpjpe_mm_std"])
    assert dsr["n_pairs"] == 1 and dsr["mpjpe_mm_diff_mean"] == pytest.approx(-8.5)
    assert math.isnan(dsr["mpjpe_mm_diff_std"]) and math.isnan(dsr["pve_mm_diff_mean"])  # no PVE (H36M)
    with pytest.raises(ValueError, match="'sd' and 'sd-s0' are both repetition 0"):
        seed_rows(_rows({"sd": 1.0, "sd-s0": 2.0}), METRICS)


def test_eval_tables_write_by_variant_siblings(tmp_path: Path) -> None:
    scores = [_score(tmp_path, row) for row in _rows()]
    scores += [_score(tmp_path, row) for row in _rows({"sd-s0": 80.0, "dsr-s0": 78.0}, dataset="h36m-p1", pve=False)]
    paths = write_eval_tables(scores, tmp_path / "eval_3dpw.csv")
    assert paths["eval_by_variant"] == by_variant_csv_path(paths["eval"]) == tmp_path / "eval_3dpw_by_variant.csv"
    assert paths["per_joint_by_variant"] == tmp_path / "eval_3dpw_per_joint_by_variant.csv"
    # the per-run table keeps one row per run
    assert list(pd.read_csv(paths["eval"])["run"]) == [*RUNS, "sd-s0", "dsr-s0"]
    table = pd.read_csv(paths["eval_by_variant"])
    assert list(table.columns[:7]) == ["variant", "dataset", "world", "n", "n_seeds", "runs", "mpjpe_mm_mean"]
    assert list(zip(table["variant"], table["dataset"])) == [
        ("mean-params", "3dpw"), ("pretrained", "3dpw"), ("sd", "3dpw"), ("dsr", "3dpw"), ("dsr_c", "3dpw"),
        ("sd", "h36m-p1"), ("dsr", "h36m-p1")]
    dsr = table.set_index(["variant", "dataset"]).loc[("dsr", "3dpw")]
    assert dsr["mpjpe_mm_diff_mean"] == pytest.approx(-8.5) and dsr["n_pairs"] == 2 and dsr["reference"] == "sd"
    h36m = table.set_index(["variant", "dataset"]).loc[("dsr", "h36m-p1")]
    assert h36m["mpjpe_mm_diff_mean"] == pytest.approx(-2.0) and math.isnan(h36m["pve_mm_diff_mean"])
    # per joint: Left Ankle = MPJPE + 3 per run -> the same paired difference, sd mean 103
    joints = pd.read_csv(paths["per_joint_by_variant"]).set_index(["variant", "dataset", "joint"])
    assert joints.loc[("sd", "3dpw", "Left Ankle"), "mpjpe_mm_mean"] == pytest.approx(103.0)
    assert joints.loc[("dsr", "3dpw", "Left Ankle"), "mpjpe_mm_diff_mean"] == pytest.approx(-8.5)
    assert "n" not in joints.columns and joints.loc[("sd", "3dpw", "Left Ankle"), "n_seeds"] == 3
    groups = pd.read_csv(paths["groups_by_variant"]).set_index(["variant", "dataset", "group"])
    assert groups.loc[("sd", "3dpw", "ankle"), "mpjpe_mm_std"] == pytest.approx(4.0)


def test_ablation_has_the_paired_difference() -> None:
    variants = {"sd": [], "dsr_c": ["dsr_c"], "dsr": ["dsr_mc", "dsr_c"]}
    table = {r["variant"]: r for r in ablation_rows(_rows(), variants)}
    assert table["dsr"]["n_pairs"] == 2 and table["dsr"]["mpjpe_mm_diff_mean"] == pytest.approx(-8.5)
    assert table["dsr"]["mpjpe_mm_diff_std"] == pytest.approx(3.0 / math.sqrt(2.0))
    assert table["dsr_c"]["n_pairs"] == 1 and table["dsr_c"]["pve_mm_diff_mean"] == pytest.approx(6.0)
    assert table["sd"]["n_pairs"] == 0 and table["pretrained"]["reference"] == ""
    without_sd = [r for r in _rows() if not r["run"].startswith(("sd", "dsr_c"))]
    no_ref = {r["variant"]: r for r in ablation_rows(without_sd, {"dsr": ["dsr_mc", "dsr_c"]})}
    assert no_ref["dsr"]["n_pairs"] == 0 and math.isnan(no_ref["dsr"]["mpjpe_mm_diff_mean"])


def test_format_signed_difference() -> None:
    assert format_mean_std(-8.5, 3 / 2 ** 0.5, signed=True) == "−8.5 ± 2.1"
    assert format_mean_std(3.0, math.nan, signed=True) == "+3.0" and format_mean_std(math.nan, 1.0) == "—"


def _errorbars(ax: Any) -> int:
    return sum(isinstance(c, ErrorbarContainer) for c in ax.containers)


def test_seed_spread_figure_draws_error_bars_only_with_two_seeds() -> None:
    values = {"sd": {"mpjpe_mm": [100.0, 104.0, 96.0], "pa_mpjpe_mm": [50.0, 52.0, 48.0], "pve_mm": [math.nan] * 3},
              "dsr_c": {"mpjpe_mm": [99.0], "pa_mpjpe_mm": [49.5], "pve_mm": [math.nan]}}
    diffs = {"dsr_c": {"mpjpe_mm": [3.0], "pa_mpjpe_mm": [1.5], "pve_mm": [math.nan]}}
    fig = seed_spread_figure(values, diffs, "h36m-p1", "sd", {"pretrained": {"mpjpe_mm": 120.0}})
    axes = np.asarray(fig.axes).reshape(2, -1)
    assert axes.shape == (2, 2)  # no PVE panel: all NaN
    assert [_errorbars(ax) for ax in axes[0]] == [1, 1]  # sd (3 seeds) only, not dsr_c (1 seed)
    assert [_errorbars(ax) for ax in axes[1]] == [0, 0]  # one pair: no spread
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == ["sd\nn=3", "dsr_c\nn=1"]
    assert axes[0, 0].lines[0].get_ydata().tolist() == [100.0, 104.0, 96.0]  # the seeds as dots
    diffs["dsr_c"]["mpjpe_mm"] = [3.0, 1.0]
    assert _errorbars(np.asarray(seed_spread_figure(values, diffs, "x", "sd").axes).reshape(2, -1)[1, 0]) == 1


def _seed_table_html(html: str) -> str:
    """The body of the seed section's table."""
    section = html[html.index("<h2>Seeds and spread"):]
    return section[section.index("<tbody>"):section.index("</table>")]


def test_report_shows_mean_sd_cells_and_the_spread_figure(tmp_path: Path) -> None:
    scores = [_score(tmp_path, row) for row in _rows()]
    eval_csv = write_eval_tables(scores, tmp_path / "eval_3dpw.csv")["eval"]
    write_ablation(scores, {"sd": [], "dsr_c": ["dsr_c"], "dsr": ["dsr_mc", "dsr_c"]}, tmp_path / "ablation.csv",
                   tmp_path / "ablation_runs.csv")
    html = write_pipeline_report(tmp_path / "report.html", eval_csvs=[eval_csv],
                                 ablation_csv=tmp_path / "ablation.csv").read_text()
    ablation = html[html.index("<h2>Ablation"):]
    ablation = ablation[:ablation.index("</table>")]
    assert "<th>Δ MPJPE (mm) vs sd</th>" in ablation
    assert re.search(r"<td>dsr</td>.*<td class=\"num\">−8.50 ± 2.12</td>.*<td class=\"num\">2</td></tr>", ablation)
    table = _seed_table_html(html)
    cells = {m.group(1): m.group(2) for m in re.finditer(r"<tr><td>([a-z_-]+)</td><td>3dpw</td>(.*?)</tr>", table)}
    assert list(cells) == ["mean-params", "pretrained", "sd", "dsr", "dsr_c"]
    num = '<td class="num">'
    assert f"{num}100.0 ± 4.0</td>" in cells["sd"] and f"{num}3</td>" in cells["sd"]
    assert f"{num}89.0 ± 8.5</td>" in cells["dsr"]  # sqrt(73) = 8.54
    assert f"{num}−8.50 ± 2.12</td>" in cells["dsr"] and f"{num}+3.00</td>" in cells["dsr_c"]
    figure = html[html.index("<h2>Seeds and spread"):html.index("<h2>Per-joint errors")]
    assert figure.count("data:image/png;base64,") == 1 and "error bars" in figure


def test_report_with_one_run_per_variant(tmp_path: Path) -> None:
    eval_csv = write_eval_tables([_score(tmp_path, row) for row in _rows({"mean-params": 340.0, "sd": 100.0,
                                                                           "dsr": 90.0})], tmp_path / "eval_3dpw.csv")
    html = write_pipeline_report(tmp_path / "report.html", eval_csvs=[eval_csv["eval"]]).read_text()
    table = _seed_table_html(html)
    assert "±" not in table and '<td class="num">100.0</td>' in table and '<td class="num">−10.00</td>' in table
    assert "n = 1" in html  # the note says so
    # baselines alone: no section
    only = write_eval_tables([_score(tmp_path, _row("mean-params", 340.0))], tmp_path / "eval_b.csv")["eval"]
    assert seed_section([only]) is None


@pytest.mark.slow
def test_seeded_train_runs_flow_through_the_dag(tmp_path: Path) -> None:
    """``--config 'train={runs: [...]}'`` merges into ``train``: seeded runs are trained and scored, the eval rule
    writes the ``_by_variant`` siblings; one repetition listed twice (``sd`` and ``sd-s0``) fails at DAG build."""
    clone = copy_workflow(tmp_path / "clone")
    snakemake = Path(sys.executable).parent / "snakemake"

    def dry(runs: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(snakemake), "-n", "results/eval_3dpw.csv", "--config", f"train={{runs: {runs}}}"],
                              cwd=clone, capture_output=True, text=True, timeout=300, check=False)

    res = dry("[sd-s0, sd-s1, dsr-s0, dsr-s1]")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    evaluate = out[out.index("rule evaluate_3dpw:"):]
    evaluate = evaluate[:evaluate.index("jobid:")]
    for run in ("sd-s0", "sd-s1", "dsr-s0", "dsr-s1"):
        assert f"results/eval/3dpw/{run}.json" in evaluate
    assert "results/eval/3dpw/sd.json" not in evaluate
    assert "results/eval_3dpw_by_variant.csv" in evaluate and "results/eval_3dpw_joint_groups_by_variant.csv" in evaluate
    assert len(re.findall(r"^rule train_regressor:", out, flags=re.MULTILINE)) == 4
    bad = dry("[sd, sd-s0, dsr]")
    assert bad.returncode != 0 and "'sd' and 'sd-s0' are both repetition 0 of variant 'sd'" in bad.stdout + bad.stderr
