"""Evaluation tables assembled from the per-(test split, run) scores.

Each scored (split, run) is one JSON file (:func:`pipeline.evaluate.predict.result_json`): its eval-CSV row,
its per-joint rows and its joint-group rows. The tables here only gather them, so retraining one run rescores
that run alone and the tables are rebuilt in milliseconds.

* :func:`write_eval_tables`: ``results/eval_<name>.csv`` + ``_per_joint.csv`` + ``_joint_groups.csv`` (one row
  per run), and each one's ``_by_variant`` sibling (:func:`by_variant_csv_path`, :func:`seed_rows`): per variant,
  mean and sample standard deviation over its seeds, and the paired difference ``variant − sd`` per seed.
* :func:`ablation_rows` / :func:`write_ablation`: the paper's Table 1 as mean ± standard deviation over the
  repetitions (seeds) of every variant, with the same paired difference, plus the per-run table.
* :func:`mask_qc_rows`: one summary row per mask store for the report.

Seeds. A run ``{variant}-s{k}`` is repetition ``k`` of its variant (``{variant}`` alone is repetition 0); runs of
two variants with the same ``k`` share the training seed, hence initial weights and data order
(:func:`pipeline.train.runs.parse_run`). So each variant is compared with :data:`PAIRED_REFERENCE` (``sd``)
seed by seed: the differences ``variant(k) − sd(k)`` over the repetitions both have, summarised as mean, sample
standard deviation and the number of pairs. Negative = lower error than ``sd``.

Every table shows the trained runs beside the baselines they must beat (DESIGN §8), first and in this order:
``mean-params`` (:data:`MEAN_PARAMS_RUN`, the regressor's initial output: the mean-parameter buffers of the
checkpoint the runs start from) and ``pretrained`` (:data:`PRETRAINED_RUN`, that checkpoint itself, when
``assets.pretrained_checkpoint`` is set).
"""

from __future__ import annotations

import json
import math
import re
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
    "reference", "n_pairs", *(f"{m}_diff_{s}" for m in ABLATION_METRICS for s in ("mean", "std")),
)


#: The variant every other variant is compared with seed by seed (``variant − reference``).
PAIRED_REFERENCE: str = "sd"
#: Suffix of a table's per-variant sibling: ``eval_3dpw.csv`` → ``eval_3dpw_by_variant.csv``.
BY_VARIANT_SUFFIX: str = "_by_variant"
#: Metrics aggregated over seeds in each table kind (the key of :func:`write_eval_tables`' result).
SEED_METRICS: dict[str, tuple[str, ...]] = {
    "eval": ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"),
    "per_joint": ("mpjpe_mm", "pa_mpjpe_mm"),
    "groups": ("mpjpe_mm", "pa_mpjpe_mm"),
}
#: Columns besides ``run``/``dataset`` that identify a row of each table kind (a joint, a joint group).
SEED_KEYS: dict[str, tuple[str, ...]] = {"eval": (), "per_joint": ("joint",), "groups": ("group",)}
#: ``{variant}`` or ``{variant}-s{k}`` (the variant itself is checked by :func:`pipeline.train.runs.parse_run`).
_RUN_NAME = re.compile(r"^(?P<variant>.+?)(-s(?P<rep>[0-9]+))?$")


def split_run(run: str) -> tuple[str, int]:
    """``(variant, repetition)`` of a run name: ``"dsr-s2"`` → ``("dsr", 2)``, ``"dsr"`` → ``("dsr", 0)``; a
    baseline (:data:`BASELINE_RUNS`) is its own variant, repetition 0."""
    if run in BASELINE_RUNS:
        return run, 0
    m = _RUN_NAME.match(run)
    if m is None:  # only the empty string
        raise ValueError(f"run name {run!r} must look like '<variant>' or '<variant>-s<k>' (e.g. dsr, dsr-s1)")
    return m.group("variant"), int(m.group("rep") or 0)


def by_variant_csv_path(table_csv: str | Path) -> Path:
    """The per-variant sibling of a per-run table: ``results/eval_3dpw.csv`` → ``results/eval_3dpw_by_variant.csv``,
    ``eval_3dpw_per_joint.csv`` → ``eval_3dpw_per_joint_by_variant.csv``."""
    table_csv = Path(table_csv)
    return table_csv.with_name(f"{table_csv.stem}{BY_VARIANT_SUFFIX}{table_csv.suffix}")


def seed_groups(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ()
                ) -> dict[tuple[str, ...], dict[int, Mapping[str, Any]]]:
    """Rows grouped by ``(dataset, *keys, variant)`` (in order of first appearance), each group by repetition.

    Raises:
        ValueError: two runs that are the same repetition of one variant (``sd`` and ``sd-s0`` train with the
            same seed): the message names both.
    """
    groups: dict[tuple[str, ...], dict[int, Mapping[str, Any]]] = {}
    for row in rows:
        variant, rep = split_run(str(row["run"]))
        group = groups.setdefault((str(row["dataset"]), *(str(row[k]) for k in keys), variant), {})
        if rep in group:
            raise ValueError(f"runs {group[rep]['run']!r} and {row['run']!r} are both repetition {rep} of variant "
                             f"{variant!r} (the same training seed); list only one of them in train.runs")
        group[rep] = row
    return groups


def paired_differences(runs: Mapping[int, Mapping[str, Any]], reference: Mapping[int, Mapping[str, Any]],
                       metric: str) -> np.ndarray:
    """Per-seed differences ``runs[k][metric] − reference[k][metric]`` over the repetitions ``k`` both have
    (ascending ``k``); float64, mm for the error metrics."""
    common = sorted(set(runs) & set(reference))
    return np.array([float(runs[k][metric]) - float(reference[k][metric]) for k in common], dtype=np.float64)


def _paired_columns(runs: Mapping[int, Mapping[str, Any]], reference: Mapping[int, Mapping[str, Any]] | None,
                    reference_name: str, metrics: Sequence[str]) -> dict[str, Any]:
    """``reference, n_pairs, {metric}_diff_mean, {metric}_diff_std``: empty reference, 0 pairs and NaN when the
    row is not compared (a baseline, the reference itself, or a variant without common repetitions)."""
    pairs = sorted(set(runs) & set(reference)) if reference is not None else []
    out: dict[str, Any] = {"reference": reference_name if pairs else "", "n_pairs": len(pairs)}
    for metric in metrics:
        diffs = paired_differences(runs, reference, metric) if reference is not None and pairs else []
        out[f"{metric}_diff_mean"], out[f"{metric}_diff_std"] = _mean_std(list(diffs))
    return out


def seed_rows(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], keys: Sequence[str] = (),
              reference: str = PAIRED_REFERENCE) -> list[dict[str, Any]]:
    """Per-variant rows of a per-run table: mean ± sample std over seeds and the paired difference vs ``reference``.

    Args:
        rows: per-run rows (``run``, ``dataset``, ``world``, ``keys``, ``metrics``; ``n`` when present), e.g. an
            eval CSV's. Baselines (:data:`BASELINE_RUNS`) form one-run groups and are never paired.
        metrics: metric columns to aggregate (mm).
        keys: further identifying columns (``joint`` of a per-joint table).
        reference: the variant each other variant is differenced against, repetition by repetition.

    Returns:
        One row per ``(dataset, *keys, variant)``, ordered by dataset, then baselines, then variants in order of
        first appearance, then keys: ``variant, dataset, *keys, world, [n,] n_seeds, runs``, ``{m}_mean``,
        ``{m}_std`` (ddof 1: NaN with one seed), then ``reference, n_pairs, {m}_diff_mean, {m}_diff_std``.
    """
    groups = seed_groups(baselines_first(rows), keys)
    datasets = list(dict.fromkeys(g[0] for g in groups))
    variants = list(dict.fromkeys(g[-1] for g in groups))
    ordered = sorted(groups, key=lambda g: (datasets.index(g[0]), variants.index(g[-1])))
    out = []
    for group in ordered:
        dataset, *key_values, variant = group
        by_rep = groups[group]
        runs = [by_rep[k] for k in sorted(by_rep)]
        entry: dict[str, Any] = {"variant": variant, "dataset": dataset, **dict(zip(keys, key_values)),
                                 "world": runs[0].get("world")}
        if all("n" in r for r in runs):
            ns = sorted({int(r["n"]) for r in runs})
            entry["n"] = ns[0] if len(ns) == 1 else "/".join(map(str, ns))
        entry["n_seeds"] = len(runs)
        entry["runs"] = " ".join(str(r["run"]) for r in runs)
        for metric in metrics:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std([float(r[metric]) for r in runs])
        compared = variant not in BASELINE_RUNS and variant != reference
        ref = groups.get((dataset, *key_values, reference)) if compared else None
        entry.update(_paired_columns(by_rep, ref, reference, metrics))
        out.append(entry)
    return out


def seed_columns(metrics: Sequence[str], keys: Sequence[str] = (), with_n: bool = True) -> tuple[str, ...]:
    """Columns of a ``_by_variant`` table (:func:`seed_rows`), in order; ``n`` (samples) only ``with_n``."""
    return ("variant", "dataset", *keys, "world", *(("n",) if with_n else ()), "n_seeds", "runs",
            *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
            "reference", "n_pairs", *(f"{m}_diff_{s}" for m in metrics for s in ("mean", "std")))


def write_seed_table(rows: Sequence[Mapping[str, Any]], kind: str, path: str | Path,
                     reference: str = PAIRED_REFERENCE) -> Path:
    """Write the ``_by_variant`` table (:func:`seed_rows`) of per-run rows of ``kind`` (a :data:`SEED_METRICS`
    key: ``eval``, ``per_joint`` or ``groups``)."""
    if kind not in SEED_METRICS:
        raise ValueError(f"unknown table kind {kind!r}; allowed: {', '.join(SEED_METRICS)}")
    metrics, keys = SEED_METRICS[kind], SEED_KEYS[kind]
    table = seed_rows(rows, metrics, keys, reference)
    with_n = bool(table) and "n" in table[0]
    return write_table_csv(table, path, seed_columns(metrics, keys, with_n), ("variant", "dataset", *keys))


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


def write_eval_tables(score_paths: Sequence[str | Path], eval_csv: str | Path,
                      reference: str = PAIRED_REFERENCE) -> dict[str, Path]:
    """Gather scores into the eval CSV and its per-joint and joint-group siblings, and each one's per-variant
    table over seeds (:func:`by_variant_csv_path`, :func:`seed_rows`).

    Rows are ordered by :func:`baselines_first` (``mean-params``, ``pretrained``, then the runs as given).

    Returns:
        ``{'eval': path, 'per_joint': path, 'groups': path}`` plus the same keys suffixed ``_by_variant``.
    """
    scores = read_scores(score_paths)
    eval_csv = Path(eval_csv)
    rows = {
        "eval": baselines_first([s["row"] for s in scores]),
        "per_joint": baselines_first([r for s in scores for r in s["per_joint"]]),
        "groups": baselines_first([r for s in scores for r in s["groups"]]),
    }
    paths = {
        "eval": write_eval_csv(rows["eval"], eval_csv),
        "per_joint": write_per_joint_csv(rows["per_joint"], per_joint_csv_path(eval_csv)),
        "groups": write_joint_groups_csv(rows["groups"], joint_groups_csv_path(eval_csv)),
    }
    for kind, path in list(paths.items()):
        paths[f"{kind}_by_variant"] = write_seed_table(rows[kind], kind, by_variant_csv_path(path), reference)
    return paths


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value or when any value is NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def ablation_rows(run_rows: Sequence[Mapping[str, Any]], variants: Mapping[str, Sequence[str]],
                  reference: str = PAIRED_REFERENCE) -> list[dict[str, Any]]:
    """Table 1: one row per variant (in ``variants`` order), metrics as mean and std over its runs, and the
    paired difference ``variant − reference`` over the repetitions both have.

    Args:
        run_rows: eval-CSV rows (``run`` named ``{variant}`` or ``{variant}-s{k}``, or a baseline of
            :data:`BASELINE_RUNS`) of one dataset.
        variants: variant -> DSR terms (config ``train.variants``), which also fixes the row order.
        reference: the variant every other one is differenced against, seed by seed.

    Returns:
        Rows with :data:`ABLATION_COLUMNS`: the baselines first (one repetition each, empty ``dsr_terms``),
        then the variants; the std is the sample standard deviation (NaN with one run); ``n_pairs`` = 0 and
        empty ``reference`` for the baselines, the reference itself and a variant without common repetitions.
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
        ref_rows = by_variant.get(reference) if terms is not None and variant != reference else None
        entry.update(_paired_columns(_by_repetition(rows), None if ref_rows is None else _by_repetition(ref_rows),
                                     reference, ABLATION_METRICS))
        out.append(entry)
    return out


def _by_repetition(rows: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The runs of one variant and dataset keyed by repetition (:func:`seed_groups`)."""
    groups = seed_groups(rows)
    if len(groups) != 1:
        raise ValueError(f"expected the runs of one variant and dataset, got groups {sorted(groups)}")
    return next(iter(groups.values()))


def write_ablation(score_paths: Sequence[str | Path], variants: Mapping[str, Sequence[str]],
                   out_csv: str | Path, runs_csv: str | Path) -> list[dict[str, Any]]:
    """Write ``results/ablation.csv`` (baselines, then mean ± std per variant and the paired difference vs
    :data:`PAIRED_REFERENCE`) and the per-run table beside it."""
    rows = baselines_first([s["row"] for s in read_scores(score_paths)])
    write_eval_csv(rows, runs_csv)
    table = ablation_rows(rows, variants)
    write_table_csv(table, out_csv, ABLATION_COLUMNS, ("variant", "dataset"))
    return table


def format_mean_std(mean: float, std: float, decimals: int = 1, signed: bool = False) -> str:
    """``"51.7 ± 0.4"`` (``"51.7"`` when the std is NaN, ``"—"`` when the mean is); ``signed``: ``"−1.2 ± 0.4"``,
    ``"+0.3"`` (a difference, with a true minus sign)."""
    if math.isnan(mean):
        return "—"
    text = f"{mean:+.{decimals}f}".replace("-", "−") if signed else f"{mean:.{decimals}f}"
    if math.isnan(std):
        return text
    return f"{text} ± {std:.{decimals}f}"


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
