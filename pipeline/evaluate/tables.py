"""Evaluation tables assembled from the per-(test split, run) scores.

Each scored (split, run) is one JSON file (:func:`pipeline.evaluate.predict.result_json`): its eval-CSV row,
its per-joint rows and its joint-group rows. The tables here only gather them, so retraining one run rescores
that run alone and the tables are rebuilt in milliseconds.

* :func:`write_eval_tables`: ``results/eval_<name>.csv`` + ``_per_joint.csv`` + ``_joint_groups.csv``.
* :func:`ablation_rows` / :func:`write_ablation`: the paper's Table 1 as mean ± standard deviation over the
  repetitions (seeds) of every variant, plus the per-run table.
* :func:`mask_qc_rows`: one summary row per mask store for the report.

Every table shows the trained runs beside the baselines they must beat (DESIGN §8), first and in this order:
``mean-params`` (:data:`MEAN_PARAMS_RUN`, the regressor's initial output: the mean-parameter buffers of the
checkpoint the runs start from) and ``pretrained`` (:data:`PRETRAINED_RUN`, that checkpoint itself, when
``assets.pretrained_checkpoint`` is set).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.report import (
    BASELINE_RUNS,
    EVAL_COLUMNS,
    MEAN_PARAMS_RUN,
    PRETRAINED_RUN,
    joint_groups_csv_path,
    per_joint_csv_path,
    write_eval_csv,
    write_joint_groups_csv,
    write_per_joint_csv,
    write_table_csv,
)
from pipeline.train.runs import parse_run

#: Metric columns averaged over repetitions in the ablation table.
ABLATION_METRICS: tuple[str, ...] = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
#: Leading columns of ``results/ablation.csv``.
ABLATION_COLUMNS: tuple[str, ...] = (
    "variant", "dsr_terms", "dataset", "world", "repetitions", "runs", "n",
    *(f"{m}_{s}" for m in ABLATION_METRICS for s in ("mean", "std")),
)


def read_scores(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read score JSON files (:func:`pipeline.evaluate.predict.result_json`), raising on a missing one."""
    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"score {path} does not exist; run rule score_predictions for it")
        out.append(json.loads(path.read_text()))
    return out


def baselines_first(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows grouped by dataset (in order of first appearance), baselines first within each dataset
    (:data:`BASELINE_RUNS` order), every other row keeping its order."""
    datasets: dict[str, int] = {}
    for row in rows:
        datasets.setdefault(str(row.get("dataset")), len(datasets))

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
        index, row = item
        run = str(row.get("run"))
        rank = BASELINE_RUNS.index(run) if run in BASELINE_RUNS else len(BASELINE_RUNS)
        return datasets[str(row.get("dataset"))], rank, index

    return [row for _, row in sorted(enumerate(rows), key=key)]


def write_eval_tables(score_paths: Sequence[str | Path], eval_csv: str | Path) -> dict[str, Path]:
    """Gather scores into the eval CSV and its per-joint and joint-group siblings.

    Rows are ordered by :func:`baselines_first` (``mean-params``, ``pretrained``, then the runs as given).

    Returns:
        ``{'eval': path, 'per_joint': path, 'groups': path}``.
    """
    scores = read_scores(score_paths)
    eval_csv = Path(eval_csv)
    return {
        "eval": write_eval_csv(baselines_first([s["row"] for s in scores]), eval_csv),
        "per_joint": write_per_joint_csv(baselines_first([r for s in scores for r in s["per_joint"]]),
                                         per_joint_csv_path(eval_csv)),
        "groups": write_joint_groups_csv(baselines_first([r for s in scores for r in s["groups"]]),
                                         joint_groups_csv_path(eval_csv)),
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value or when any value is NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def ablation_rows(run_rows: Sequence[Mapping[str, Any]], variants: Mapping[str, Sequence[str]]
                  ) -> list[dict[str, Any]]:
    """Table 1: one row per variant (in ``variants`` order), metrics as mean and std over its runs.

    Args:
        run_rows: eval-CSV rows (``run`` named ``{variant}`` or ``{variant}-s{k}``, or a baseline of
            :data:`BASELINE_RUNS`) of one dataset.
        variants: variant -> DSR terms (config ``train.variants``), which also fixes the row order.

    Returns:
        Rows with :data:`ABLATION_COLUMNS`: the baselines first (one repetition each, empty ``dsr_terms``),
        then the variants; the std is the sample standard deviation (NaN with one run).
    """
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for row in run_rows:
        run = str(row["run"])
        by_variant.setdefault(run if run in BASELINE_RUNS else parse_run(run, variants).variant, []).append(row)
    out = []
    groups: list[tuple[str, Sequence[str] | None]] = [(b, None) for b in BASELINE_RUNS]
    for variant, terms in [*groups, *variants.items()]:
        rows = by_variant.get(variant)
        if not rows:
            continue
        datasets = sorted({str(r["dataset"]) for r in rows})
        if len(datasets) != 1:
            raise ValueError(f"ablation variant {variant!r}: rows of several datasets {datasets}; pass one dataset")
        ns = sorted({int(r["n"]) for r in rows})
        entry: dict[str, Any] = {
            "variant": variant,
            "dsr_terms": "" if terms is None else "+".join(terms) if terms else "none",
            "dataset": datasets[0],
            "world": rows[0]["world"],
            "repetitions": len(rows),
            "runs": " ".join(str(r["run"]) for r in rows),
            "n": ns[0] if len(ns) == 1 else "/".join(map(str, ns)),
        }
        for metric in ABLATION_METRICS:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std([float(r[metric]) for r in rows])
        out.append(entry)
    return out


def write_ablation(score_paths: Sequence[str | Path], variants: Mapping[str, Sequence[str]],
                   out_csv: str | Path, runs_csv: str | Path) -> list[dict[str, Any]]:
    """Write ``results/ablation.csv`` (baselines, then mean ± std per variant) and the per-run table beside it."""
    rows = baselines_first([s["row"] for s in read_scores(score_paths)])
    write_eval_csv(rows, runs_csv)
    table = ablation_rows(rows, variants)
    write_table_csv(table, out_csv, ABLATION_COLUMNS, ("variant", "dataset"))
    return table


def format_mean_std(mean: float, std: float, decimals: int = 1) -> str:
    """``"51.7 ± 0.4"`` (``"51.7"`` when the std is NaN, ``"—"`` when the mean is)."""
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def mask_qc_rows(qc_paths: Mapping[str, str | Path]) -> list[dict[str, Any]]:
    """One summary row per mask store: samples, valid fraction and each MC label's kept fraction.

    Args:
        qc_paths: dataset name -> ``results/masks/{dataset}.qc.json`` (rule clean_masks).
    """
    rows = []
    for name, path in qc_paths.items():
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mask QC {path} does not exist; run rule clean_masks for {name}")
        qc = json.loads(path.read_text())
        row: dict[str, Any] = {"dataset": name, "samples": qc.get("samples"), "valid_fraction": qc.get("valid_fraction")}
        for label, stats in (qc.get("mc") or {}).items():
            row[f"{label} kept"] = stats.get("kept_fraction")
        rows.append(row)
    return rows


__all__ = [
    "ABLATION_COLUMNS",
    "BASELINE_RUNS",
    "EVAL_COLUMNS",
    "MEAN_PARAMS_RUN",
    "PRETRAINED_RUN",
    "ablation_rows",
    "baselines_first",
    "format_mean_std",
    "mask_qc_rows",
    "read_scores",
    "write_ablation",
    "write_eval_tables",
]
