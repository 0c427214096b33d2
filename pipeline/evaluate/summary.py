"""The pipeline's HTML report (rule build_report → ``results/report.html``): every stage's figures in one page.

Sections: evaluation tables (``results/eval_*.csv``) and per-joint charts, the ablation (when built), mask QC
summaries, then figures — semantic prior, mask contact sheets, training curves, qualitative overlays — all
embedded (the file is self-contained). Built on :func:`pipeline.evaluate.report.build_html_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluate.report import BASELINE_RUNS, build_html_report
from pipeline.evaluate.tables import ABLATION_METRICS, format_mean_std, mask_qc_rows

REPORT_TITLE: str = "Differentiable Semantic Rendering — pipeline report"
#: Column titles of the ablation section.
ABLATION_TITLES: dict[str, str] = {"mpjpe_mm": "MPJPE (mm)", "pa_mpjpe_mm": "PA-MPJPE (mm)", "pve_mm": "PVE (mm)"}


def ablation_display_rows(ablation_csv: str | Path) -> list[dict[str, Any]]:
    """Rows of ``results/ablation.csv`` with each metric as one ``mean ± std`` cell."""
    frame = pd.read_csv(ablation_csv, keep_default_na=False, na_values=["nan", "NaN", ""])
    rows = []
    for rec in frame.to_dict("records"):
        row = {k: rec[k] for k in ("variant", "dsr_terms", "dataset", "repetitions", "n")}
        for metric in ABLATION_METRICS:
            row[ABLATION_TITLES[metric]] = format_mean_std(float(rec[f"{metric}_mean"]), float(rec[f"{metric}_std"]))
        rows.append(row)
    return rows


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
        tables["Ablation (paper Table 1): mean ± std over repetitions"] = ablation_display_rows(ablation_csv)
    if mask_qc:
        tables["Pseudo-GT mask QC (fraction of samples keeping each DSR-MC label)"] = mask_qc_rows(mask_qc)
    return build_html_report(eval_csvs, figures, out_html, title=title, provenance=provenance, tables=tables)
