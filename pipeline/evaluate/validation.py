"""Validation scores of the trained runs (rule summarise_validation → ``results/validation*.csv``).

Settings are chosen on held-out *training* samples, never on a test split. Every run validates on the same held-out
samples of ``train.validation.dataset`` (:func:`pipeline.train.loop.train`: ``phase == val`` rows of its
``metrics.csv``, scored by the test protocols' own functions). This module gathers the last validation row of each
run (``results/validation.csv``), aggregates the seeds of each variant like the eval tables (mean ± sample sd, the
paired difference to ``sd`` seed by seed: ``results/validation_by_variant.csv``) and writes the report section,
with the comparisons a setting is chosen on (e.g. the render blur: ``dsr_sigma_px`` against ``dsr``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluate.report import write_table_csv
from pipeline.evaluate.sections import ReportSection
from pipeline.evaluate.tables import (
    PAIRED_REFERENCE,
    format_mean_std,
    paired_differences,
    seed_columns,
    seed_groups,
    seed_rows,
    split_run,
)

#: Metrics of a validation row (columns of ``metrics.csv`` without their ``val_`` prefix), mm.
VALIDATION_METRICS: tuple[str, ...] = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
#: Columns of ``results/validation.csv``.
VALIDATION_COLUMNS: tuple[str, ...] = ("run", "variant", "repetition", "dataset", "world", "step", *VALIDATION_METRICS,
                                       *(f"start_{m}" for m in VALIDATION_METRICS))
#: Choices read on the validation scores: (variant, the variant it is compared with, what the choice is).
CHOICES: tuple[tuple[str, str, str], ...] = (
    ("dsr_sigma_px", "dsr", ("render blur: the paper's 0.354 px at any render size (dsr_sigma_px) or "
                             "sigma = 1e-5 in NDC units² (dsr)")),
)
TITLES: dict[str, str] = {"mpjpe_mm": "MPJPE (mm)", "pa_mpjpe_mm": "PA-MPJPE (mm)", "pve_mm": "PVE (mm)"}


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def validation_row(run: str, metrics_csv: str | Path, dataset: str, world: str | None = None) -> dict[str, Any]:
    """The last ``phase == val`` row of a run's ``metrics.csv`` and its step-0 row (the start), as one row of
    :data:`VALIDATION_COLUMNS`.

    Raises:
        FileNotFoundError / ValueError: a missing file, or one without validation rows (the message names it).
    """
    path = Path(metrics_csv)
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist; train run {run!r} first (rule train_regressor)")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("phase") == "val"]
    if not rows:
        raise ValueError(f"training log {path} has no validation rows (phase == val); set train.validation.dataset "
                         f"and retrain run {run!r}")
    rows.sort(key=lambda r: int(float(r["step"])))
    first, last = rows[0], rows[-1]
    variant, rep = split_run(run)
    out: dict[str, Any] = {"run": run, "variant": variant, "repetition": rep, "dataset": dataset, "world": world,
                           "step": int(float(last["step"]))}
    for metric in VALIDATION_METRICS:
        out[metric] = _float(last.get(f"val_{metric}"))
    for metric in VALIDATION_METRICS:
        out[f"start_{metric}"] = _float(first.get(f"val_{metric}")) if int(float(first["step"])) == 0 else math.nan
    return out


def choice_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per :data:`CHOICES` entry whose two variants both have runs: the paired difference ``variant(k) −
    other(k)`` over the seeds both have, mean ± sample sd, and which one the validation MPJPE prefers (``tie``
    when the mean difference is within one standard error of the pairs, or with a single pair)."""
    groups = {g[-1]: reps for g, reps in seed_groups(rows).items()}
    out = []
    for variant, other, what in CHOICES:
        if variant not in groups or other not in groups:
            continue
        entry: dict[str, Any] = {"choice": what, "variant": variant, "against": other}
        diffs = {m: paired_differences(groups[variant], groups[other], m) for m in VALIDATION_METRICS}
        n = len(diffs["mpjpe_mm"])
        if not n:
            continue
        entry["pairs"] = n
        for metric in VALIDATION_METRICS:
            d = diffs[metric]
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            entry[f"Δ {TITLES[metric]}"] = format_mean_std(float(d.mean()), sd, decimals=2, signed=True)
        d = diffs["mpjpe_mm"]
        se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
        entry["validation prefers"] = (variant if d.mean() < -se else other if d.mean() > se else
                                       f"tie (|Δ| ≤ 1 s.e. = {se:.2f} mm)" if math.isfinite(se) else "tie (1 pair)")
        out.append(entry)
    return out


def validation_section(rows: Sequence[Mapping[str, Any]], dataset: str) -> ReportSection:
    """The report's section: per variant mean ± sd over seeds and Δ to ``sd`` on the validation samples, and the
    choices made on them (:func:`choice_rows`)."""
    table = []
    for rec in seed_rows(rows, VALIDATION_METRICS):
        row: dict[str, Any] = {"variant": rec["variant"], "n_seeds": rec["n_seeds"], "runs": rec["runs"]}
        for metric in VALIDATION_METRICS:
            row[TITLES[metric]] = format_mean_std(rec[f"{metric}_mean"], rec[f"{metric}_std"])
        for metric in VALIDATION_METRICS:
            if rec["n_pairs"]:
                row[f"Δ {TITLES[metric]} vs {PAIRED_REFERENCE}"] = format_mean_std(
                    rec[f"{metric}_diff_mean"], rec[f"{metric}_diff_std"], decimals=2, signed=True)
        table.append(row)
    starts = {tuple(round(float(r[f"start_{m}"]), 1) for m in VALIDATION_METRICS) for r in rows}
    start = ""
    if len(starts) == 1 and not any(math.isnan(v) for v in next(iter(starts))):
        start = " Every run starts at MPJPE / PA-MPJPE / PVE {:.1f} / {:.1f} / {:.1f} mm (step 0).".format(
            *next(iter(starts)))
    tables = {"Per variant: last validation step, mean ± sample sd over seeds": table}
    choices = choice_rows(rows)
    if choices:
        tables["Settings chosen here (paired differences over seeds; negative: lower error)"] = choices
    note = (f"Held-out training samples of {dataset} (never a test split), scored by the test protocol at the last "
            f"validation step of each run (results/validation.csv, results/validation_by_variant.csv).{start}")
    return ReportSection(title="Validation: the scores settings are chosen on", note=note, tables=tables)


def write_validation(metrics: Mapping[str, str | Path], dataset: str, table_csv: str | Path,
                     by_variant_csv: str | Path, world: str | None = None) -> list[dict[str, Any]]:
    """Write ``results/validation.csv`` (one row per run, :data:`VALIDATION_COLUMNS`) and its per-variant sibling
    (:func:`pipeline.evaluate.tables.seed_rows`); return the per-run rows."""
    rows = [validation_row(run, path, dataset, world) for run, path in metrics.items()]
    write_table_csv(rows, table_csv, VALIDATION_COLUMNS, ("run",))
    write_table_csv(seed_rows(rows, VALIDATION_METRICS), by_variant_csv, seed_columns(VALIDATION_METRICS,
                                                                                     with_n=False), ("variant",))
    return rows
