"""The pipeline's HTML report (rule build_report → ``results/report.html``): every stage's figures in one page.

Sections: evaluation tables (``results/eval_*.csv``), the seeds and their spread (:func:`seed_section`: mean ±
sample sd per variant, the paired difference to ``sd`` seed by seed, a figure with error bars), per-joint charts,
the ablation (when built), mask QC summaries, then figures — semantic prior, mask contact sheets, training
curves, qualitative overlays — all embedded (the file is self-contained). Built on :func:`pipeline.evaluate.report.build_html_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluate.report import (
    BASELINE_RUNS,
    EVAL_COLUMNS,
    PRETRAINED_RUN,
    ReportSection,
    build_html_report,
    plot_seed_spread,
)
from pipeline.evaluate.sections import read_section_file
from pipeline.evaluate.tables import (
    ABLATION_METRICS,
    PAIRED_REFERENCE,
    SEED_METRICS,
    format_mean_std,
    mask_qc_rows,
    paired_differences,
    seed_groups,
    seed_rows,
)

REPORT_TITLE: str = "Differentiable Semantic Rendering — pipeline report"
#: Column titles of the ablation section.
ABLATION_TITLES: dict[str, str] = {"mpjpe_mm": "MPJPE (mm)", "pa_mpjpe_mm": "PA-MPJPE (mm)", "pve_mm": "PVE (mm)"}


#: Decimals of a paired difference in the report (differences between variants are often well under 1 mm).
DIFF_DECIMALS: int = 2
#: The section on seeds (:func:`seed_section`).
SEED_SECTION_TITLE: str = "Seeds and spread: mean ± sample sd over seeds, paired difference to sd"
SEED_SECTION_NOTE: str = (
    "A run <variant>-s<k> is repetition k of its variant (<variant> alone is k = 0); runs with the same k share "
    "the training seed (initial weights, data order), so each variant is compared with {reference} seed by seed: "
    "Δ = variant(k) − {reference}(k), mean ± sample sd over the n pairs (negative: lower error than {reference}). "
    "With one seed there is no spread (n = 1, no ± and no error bar). Tables: results/eval_*_by_variant.csv."
)


def _diff_cells(rec: Mapping[str, Any], metrics: Sequence[str], reference: str) -> dict[str, str]:
    """``Δ <metric> vs <reference>`` cells (``"−1.2 ± 0.4"``, ``""`` when not compared) and ``pairs``."""
    pairs = int(rec.get("n_pairs") or 0)
    cells = {f"Δ {ABLATION_TITLES[m]} vs {reference}":
             format_mean_std(float(rec[f"{m}_diff_mean"]), float(rec[f"{m}_diff_std"]), DIFF_DECIMALS, signed=True)
             if pairs else ""
             for m in metrics}
    cells["pairs"] = str(pairs) if pairs else ""
    return cells


def ablation_display_rows(ablation_csv: str | Path) -> list[dict[str, Any]]:
    """Rows of ``results/ablation.csv`` with each metric as one ``mean ± std`` cell and, where the table has
    them, the paired differences to its reference (``Δ ... vs sd``, ``pairs``)."""
    frame = pd.read_csv(ablation_csv, keep_default_na=False, na_values=["nan", "NaN", ""])
    rows = []
    references = [str(r) for r in frame.get("reference", pd.Series(dtype=str)).dropna() if str(r)]
    reference = references[0] if references else PAIRED_REFERENCE
    for rec in frame.to_dict("records"):
        row = {k: rec[k] for k in ("variant", "dsr_terms", "dataset", "repetitions", "n")}
        for metric in ABLATION_METRICS:
            row[ABLATION_TITLES[metric]] = format_mean_std(float(rec[f"{metric}_mean"]), float(rec[f"{metric}_std"]))
        if "n_pairs" in rec:
            row.update(_diff_cells(rec, ABLATION_METRICS, reference))
        rows.append(row)
    return rows


def _eval_run_rows(eval_csvs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Per-run rows of the eval CSVs (run names as text, NaN for a missing metric)."""
    rows = []
    for path in eval_csvs:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation table {path} does not exist; run its evaluate_* rule first")
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""], dtype={"run": str})
        missing = [c for c in EVAL_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"evaluation table {path} lacks columns {missing}; write it with write_eval_csv")
        rows.extend(frame[list(EVAL_COLUMNS)].to_dict("records"))
    return rows


def seed_display_rows(seed_table: Sequence[Mapping[str, Any]], reference: str = PAIRED_REFERENCE
                      ) -> list[dict[str, Any]]:
    """Rows of :func:`pipeline.evaluate.tables.seed_rows` (eval metrics) for the report: ``mean ± sd`` cells
    (the mean alone with one seed), ``n_seeds``, the paired ``Δ ... vs sd`` cells and their ``pairs``."""
    metrics = SEED_METRICS["eval"]
    out = []
    for rec in seed_table:
        row: dict[str, Any] = {"variant": rec["variant"], "dataset": rec["dataset"], "n_seeds": rec["n_seeds"],
                               "runs": rec["runs"]}
        for metric in metrics:
            row[ABLATION_TITLES[metric]] = format_mean_std(float(rec[f"{metric}_mean"]), float(rec[f"{metric}_std"]))
        row.update(_diff_cells(rec, metrics, reference))
        out.append(row)
    return out


def seed_section(eval_csvs: Sequence[str | Path], reference: str = PAIRED_REFERENCE) -> ReportSection | None:
    """The report's section on seeds: per variant mean ± sample sd over its seeds and the paired difference to
    ``reference`` (table), and per dataset a figure (:func:`pipeline.evaluate.report.seed_spread_figure`).
    None without any trained run."""
    rows = _eval_run_rows(eval_csvs)
    trained = [r for r in rows if str(r["run"]) not in BASELINE_RUNS]
    if not trained:
        return None
    metrics = SEED_METRICS["eval"]
    groups = seed_groups(rows)
    figures: dict[str, bytes] = {}
    for dataset in dict.fromkeys(str(r["dataset"]) for r in trained):
        mine = {g[-1]: reps for g, reps in groups.items() if g[0] == dataset}
        ref = mine.get(reference)
        values = {v: {m: [float(reps[k][m]) for k in sorted(reps)] for m in metrics}
                  for v, reps in mine.items() if v not in BASELINE_RUNS}
        diffs = {v: {m: list(paired_differences(reps, ref, m)) for m in metrics}
                 for v, reps in mine.items()
                 if ref is not None and v not in BASELINE_RUNS and v != reference and set(reps) & set(ref)}
        baselines = {PRETRAINED_RUN: {m: float(mine[PRETRAINED_RUN][0][m]) for m in metrics}} \
            if PRETRAINED_RUN in mine else None
        caption = (f"{dataset}: every seed (dots) and mean ± sample sd (error bars, n ≥ 2 seeds) per variant; "
                   f"below, the paired differences variant(k) − {reference}(k) per seed k, mean ± sample sd")
        figures[caption] = plot_seed_spread(values, diffs, dataset, reference, baselines)
    return ReportSection(
        title=SEED_SECTION_TITLE,
        note=SEED_SECTION_NOTE.format(reference=reference),
        tables={"Per variant (baselines first)": seed_display_rows(seed_rows(rows, metrics, reference=reference),
                                                                   reference)},
        figures=figures,
    )


def write_pipeline_report(
    out_html: str | Path,
    *,
    eval_csvs: Sequence[str | Path],
    prior_figures: Sequence[str | Path] = (),
    mask_sheets: Mapping[str, str | Path] | None = None,
    mask_qc: Mapping[str, str | Path] | None = None,
    training_curves: Mapping[str, str | Path] | None = None,
    pretraining_curves: str | Path | None = None,
    qualitative: Mapping[str, str | Path] | None = None,
    ablation_csv: str | Path | None = None,
    section_files: Sequence[str | Path] = (),
    provenance: Mapping[str, Any] | None = None,
    title: str = REPORT_TITLE,
) -> Path:
    """Write the report.

    Args:
        out_html: output file.
        eval_csvs: the evaluation tables (their per-joint siblings are drawn too).
        prior_figures: PNGs of the semantic prior (``prior_views.png``, ``prior_heatmaps.png``).
        mask_sheets: dataset → mask contact sheet PNG.
        mask_qc: dataset → ``{dataset}.qc.json``, summarised as a table.
        training_curves: run → curves PNG or the run's ``metrics.csv`` (drawn).
        pretraining_curves: curves PNG (or ``metrics.csv``) of rule pretrain_regressor, shown before the runs'.
        qualitative: run → qualitative figure PNG (baselines first, as in the tables).
        ablation_csv: ``results/ablation.csv`` when it should appear.
        section_files: report sections written by other rules (:func:`write_section_file`), shown in order after
            the seed section.
        provenance: key → value shown under the title.
        title: page title.
    """
    figures: dict[str, str | Path] = {}
    for path in prior_figures:
        figures[f"Semantic prior: {Path(path).stem.replace('_', ' ')}"] = path
    for name, path in (mask_sheets or {}).items():
        figures[f"Pseudo-GT masks of {name}: image | parse | DSR-C classes | DSR-MC mask"] = path
    if pretraining_curves is not None:
        figures["Training curves of pretraining (the checkpoint every run starts from; validation on held-out "
                "pretraining samples, dashed: step 0)"] = pretraining_curves
    for run, path in (training_curves or {}).items():
        figures[f"Training curves of run {run} (validation on held-out training samples, dashed: step 0)"] = path
    for run, path in (qualitative or {}).items():
        what = f"baseline {run}" if run in BASELINE_RUNS else f"Run {run}"
        figures[f"{what}: input | predicted mesh over the image | side view | ground truth from the side "
                "(where the split has it); the same samples for every run"] = path
    tables: dict[str, list[dict[str, Any]]] = {}
    if ablation_csv is not None:
        ablation_title = ("Ablation (paper Table 1): mean ± std over repetitions, paired difference to "
                          f"{PAIRED_REFERENCE}")
        tables[ablation_title] = ablation_display_rows(ablation_csv)
    if mask_qc:
        tables["Pseudo-GT mask QC (fraction of samples keeping each DSR-MC label)"] = mask_qc_rows(mask_qc)
    seeds = seed_section(eval_csvs)
    sections = [seeds] if seeds is not None else []
    sections += [read_section_file(path) for path in section_files]
    return build_html_report(eval_csvs, figures, out_html, title=title, provenance=provenance, tables=tables,
                             sections=sections)
