"""Evaluation outputs: one-row-per-run CSVs, per-joint CSVs and a self-contained static HTML report.

* ``results/eval_<dataset>.csv``: one row per evaluated run, columns :data:`EVAL_COLUMNS` first (``run,
  dataset, world, n, mpjpe_mm, pa_mpjpe_mm, pve_mm``) then any provenance columns (git SHA, checkpoint,
  seed, ...) in order of first appearance.
* ``results/eval_<dataset>_per_joint.csv`` (:func:`per_joint_csv_path`): long format, one row per run and
  joint, columns :data:`PER_JOINT_COLUMNS`.
* :func:`build_html_report`: one HTML file with every image embedded as base64 (no external files), a
  results table across datasets and runs, optional sections (:class:`ReportSection`: a note, tables and
  figures, e.g. the seeds and their spread, :func:`seed_spread_figure`), per-joint bar charts, figures
  (PNG/JPEG/SVG files, or training curves drawn from CSV/TSV logs) and optional image grids of predictions.

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so a crash never
leaves a half-written CSV or report. Matplotlib is used through :class:`matplotlib.figure.Figure` only, so
importing this module selects no backend. Matplotlib, pandas and jinja2 are imported by the functions that draw,
read tables or render HTML: the scoring jobs (:func:`save_result`) import this module without them (≈ 0.7 s of
CPU per job).
"""

from __future__ import annotations

import base64
import csv
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.evaluate.names import BASELINE_RUNS, MEAN_PARAMS_RUN, PRETRAINED_RUN
from pipeline.evaluate.sections import ReportSection
from pipeline.runtime import atomic_path

if TYPE_CHECKING:  # torch and the body model: the tables and the report only read stored results
    import pandas as pd
    from matplotlib.figure import Figure

    from pipeline.evaluate.protocols import EvalResult

#: What each baseline is, for the report.
BASELINE_DESCRIPTIONS: dict[str, str] = {
    MEAN_PARAMS_RUN: "the regressor's initial output: the mean pose, shape and camera held in the buffers of the "
                     "checkpoint every run starts from, the same for every image",
    PRETRAINED_RUN: "the checkpoint every run starts from (assets.pretrained_checkpoint), evaluated as it is",
}
#: Leading columns of every ``eval_*.csv`` (provenance columns follow).
EVAL_COLUMNS: tuple[str, ...] = ("run", "dataset", "world", "n", "mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
#: Columns of every per-joint CSV.
PER_JOINT_COLUMNS: tuple[str, ...] = ("run", "dataset", "world", "joint", "mpjpe_mm", "pa_mpjpe_mm")
#: Suffix appended to an eval CSV's stem for its per-joint sibling.
PER_JOINT_SUFFIX: str = "_per_joint"
#: Columns of every joint-group CSV (the paper's per-joint table: left and right averaged).
JOINT_GROUP_COLUMNS: tuple[str, ...] = ("run", "dataset", "world", "group", "mpjpe_mm", "pa_mpjpe_mm")
#: Suffix appended to an eval CSV's stem for its joint-group sibling.
JOINT_GROUP_SUFFIX: str = "_joint_groups"
JOINT_GROUP_KEY: tuple[str, ...] = ("run", "dataset", "group")
#: Columns that identify a row; duplicates are an error.
EVAL_KEY: tuple[str, ...] = ("run", "dataset")
PER_JOINT_KEY: tuple[str, ...] = ("run", "dataset", "joint")
#: Metric columns shown with :data:`MM_DECIMALS` decimals in the report.
MM_COLUMNS: tuple[str, ...] = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
MM_DECIMALS: int = 1
#: Other columns shown in millimetres with :data:`MM_DECIMALS` decimals (ablation means and stds).
MM_SUFFIXES: tuple[str, ...] = ("_mm", "_mm_mean", "_mm_std")
#: Human-readable headers of the report's results table.
COLUMN_TITLES: dict[str, str] = {
    "mpjpe_mm": "MPJPE (mm)",
    "pa_mpjpe_mm": "PA-MPJPE (mm)",
    "pve_mm": "PVE (mm)",
}
#: Image types embedded as they are, by suffix.
IMAGE_MIME: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
}
#: Tables drawn as training curves, by suffix, with their separator.
CURVE_TABLES: dict[str, str] = {".csv": ",", ".tsv": "\t"}
#: Candidate x-axis columns of a training log, in order of preference.
CURVE_X_COLUMNS: tuple[str, ...] = ("step", "iteration", "iter", "global_step", "epoch")
FIGURE_DPI: int = 110
CURVE_PANEL_SIZE_IN: tuple[float, float] = (3.6, 2.6)
CURVE_MAX_COLUMNS: int = 3
#: Columns of a training log holding held-out validation metrics (drawn first, with their step-0 line).
VALIDATION_PREFIX: str = "val_"
VALIDATION_COLOR: str = "tab:red"
START_LINE_COLOR: str = "0.4"
BAR_FIGURE_HEIGHT_IN: float = 3.2
BAR_WIDTH_PER_JOINT_IN: float = 0.55
#: Width of one thumbnail of an image grid, CSS pixels.
GRID_THUMB_PX: int = 220
#: Seed-spread figure (:func:`seed_spread_figure`): panel size, dot colour and jitter, error-bar colour.
SPREAD_PANEL_SIZE_IN: tuple[float, float] = (3.4, 2.8)
SEED_DOT_COLOR: str = "tab:blue"
SEED_DOT_JITTER: float = 0.08
SPREAD_BAR_COLOR: str = "black"
#: The error bar sits this far right of its variant's dots (x units: one variant = 1).
SPREAD_BAR_OFFSET: float = 0.25
DIFF_DOT_COLOR: str = "tab:green"
BASELINE_LINE_COLORS: tuple[str, ...] = ("0.5", "tab:orange")
#: A ``mean ± sd`` cell (signed with a true minus for a difference), right-aligned in the report's tables.
_MEAN_SD_TEXT = re.compile(r"^[+−]?[0-9]+(\.[0-9]+)?( ± [0-9]+(\.[0-9]+)?)?$")
#: Placeholder for a missing number in the report.
MISSING: str = "—"
#: Characters of a commit shown in the report tables.
GIT_SHA_CHARS: int = 12

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.baseline td { background: #f6f6ea; font-style: italic; }
figure { margin: 1.5em 0; }
figcaption { font-size: 0.9em; color: #555; }
img.plot { max-width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax({{ thumb_px }}px, 1fr)); gap: 0.5em; }
.grid figure { margin: 0; }
.grid img { width: 100%; }
dl.prov { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.85em; }
dl.prov dt { font-weight: bold; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if provenance %}
<dl class="prov">{% for key, value in provenance %}<dt>{{ key }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
{% endif %}
<h2>Results</h2>
{% if results %}
<p>Errors in millimetres. MPJPE after pelvis alignment; PA-MPJPE after a per-sample similarity Procrustes
alignment; PVE without alignment (3DPW only).</p>
{% if baselines %}<p>Baselines (shaded rows) every trained run is judged against:</p>
<ul>{% for name, text in baselines %}<li><code>{{ name }}</code>: {{ text }}.</li>{% endfor %}</ul>
{% endif %}
<table id="results">
<thead><tr>{% for h in results.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in results.rows %}<tr{% if row.baseline %} class="baseline"{% endif %}>{% for cell, numeric in row.cells %}<td{% if numeric %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<p>Sources: {% for src in results.sources %}<code>{{ src }}</code>{% if not loop.last %}, {% endif %}{% endfor %}</p>
{% else %}
<p>No evaluation results.</p>
{% endif %}
{% for sec in sections %}
<h2>{{ sec.title }}</h2>
{% if sec.note %}<p>{{ sec.note }}</p>{% endif %}
{% for tab in sec.tables %}
<h3>{{ tab.title }}</h3>
<table>
<thead><tr>{% for h in tab.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in tab.rows %}<tr>{% for cell, numeric in row %}<td{% if numeric %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}
{% for fig in sec.figures %}
<figure><img class="plot" alt="{{ fig.caption }}" src="{{ fig.src }}"><figcaption>{{ fig.caption }}</figcaption></figure>
{% endfor %}
{% endfor %}
{% for tab in tables %}
<h2>{{ tab.title }}</h2>
<table>
<thead><tr>{% for h in tab.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in tab.rows %}<tr>{% for cell, numeric in row %}<td{% if numeric %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}
{% if per_joint %}
<h2>Per-joint errors</h2>
{% for fig in per_joint %}
<figure><img class="plot" alt="{{ fig.caption }}" src="{{ fig.src }}"><figcaption>{{ fig.caption }}</figcaption></figure>
{% endfor %}
{% endif %}
{% if figures %}
<h2>Figures</h2>
{% for fig in figures %}
<figure><img class="plot" alt="{{ fig.caption }}" src="{{ fig.src }}"><figcaption>{{ fig.caption }}</figcaption></figure>
{% endfor %}
{% endif %}
{% if grids %}
<h2>Predictions</h2>
{% for grid in grids %}
<h3>{{ grid.title }}</h3>
<div class="grid">{% for img in grid.images %}
<figure><img alt="{{ img.caption }}" src="{{ img.src }}"><figcaption>{{ img.caption }}</figcaption></figure>{% endfor %}
</div>
{% endfor %}
{% endif %}
</body>
</html>
"""


# --------------------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling + ``os.replace``), creating the folder."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def _cell(value: Any) -> str:
    """CSV text of one value: floats with full precision (``repr``), ``nan`` for NaN, ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _write_rows(
    rows: Sequence[Mapping[str, Any]], path: str | Path, required: Sequence[str], key: Sequence[str]
) -> Path:
    columns = list(required)
    seen: set[tuple[str, ...]] = set()
    for i, row in enumerate(rows):
        missing = [c for c in required if c not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks columns {missing} (required: {list(required)})")
        ident = tuple(_cell(row[c]) for c in key)
        if ident in seen:
            raise ValueError(f"{path}: duplicate row for {dict(zip(key, ident))}; each must appear once")
        seen.add(ident)
        columns.extend(c for c in row if c not in columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def write_eval_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write one row per (run, dataset): :data:`EVAL_COLUMNS` first, then extra (provenance) columns.

    Args:
        rows: mappings with at least :data:`EVAL_COLUMNS` (errors in mm, ``n`` an int); other keys become
            extra columns in order of first appearance (empty where a row lacks them).
        path: output CSV, e.g. ``results/eval_3dpw.csv``.

    Returns:
        ``path``. Raises ``ValueError`` on a row lacking a column or a duplicate (run, dataset).
    """
    return _write_rows(rows, path, EVAL_COLUMNS, EVAL_KEY)


def per_joint_csv_path(eval_csv: str | Path) -> Path:
    """The per-joint sibling of an eval CSV: ``results/eval_3dpw.csv`` → ``results/eval_3dpw_per_joint.csv``."""
    eval_csv = Path(eval_csv)
    return eval_csv.with_name(f"{eval_csv.stem}{PER_JOINT_SUFFIX}{eval_csv.suffix}")


def write_per_joint_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write per-joint errors, one row per (run, dataset, joint), columns :data:`PER_JOINT_COLUMNS` first.

    Args:
        rows: e.g. from :func:`per_joint_rows`; errors in mm.
        path: output CSV, normally :func:`per_joint_csv_path` of the eval CSV.
    """
    return _write_rows(rows, path, PER_JOINT_COLUMNS, PER_JOINT_KEY)


def joint_groups_csv_path(eval_csv: str | Path) -> Path:
    """The joint-group sibling of an eval CSV: ``results/eval_3dpw.csv`` → ``results/eval_3dpw_joint_groups.csv``."""
    eval_csv = Path(eval_csv)
    return eval_csv.with_name(f"{eval_csv.stem}{JOINT_GROUP_SUFFIX}{eval_csv.suffix}")


def write_joint_groups_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write per-joint-group errors (ankle, knee, hip, wrist, elbow, ...; mm), columns :data:`JOINT_GROUP_COLUMNS`."""
    return _write_rows(rows, path, JOINT_GROUP_COLUMNS, JOINT_GROUP_KEY)


def write_table_csv(rows: Sequence[Mapping[str, Any]], path: str | Path, required: Sequence[str],
                    key: Sequence[str]) -> Path:
    """Write any table atomically: ``required`` columns first, a duplicate ``key`` is an error."""
    return _write_rows(rows, path, required, key)


def result_row(result: EvalResult, run: str, world: str, **provenance: Any) -> dict[str, Any]:
    """One eval-CSV row for ``result``: run, dataset, world, n, the three errors (mm), then ``provenance``."""
    summary = result.summary()
    row: dict[str, Any] = {"run": run, "dataset": summary["dataset"], "world": world}
    row.update({k: summary[k] for k in ("n", "mpjpe_mm", "pa_mpjpe_mm", "pve_mm")})
    clash = sorted(set(provenance) & set(EVAL_COLUMNS))
    if clash:
        raise ValueError(f"provenance keys {clash} clash with the eval columns {list(EVAL_COLUMNS)}")
    row.update(provenance)
    return row


def per_joint_rows(result: EvalResult, run: str, world: str) -> list[dict[str, Any]]:
    """Per-joint CSV rows of ``result`` (mean MPJPE and PA-MPJPE of each joint over samples, mm)."""
    return [
        {"run": run, "dataset": result.dataset, "world": world, "joint": name,
         "mpjpe_mm": float(result.per_joint_mpjpe_mm[j]), "pa_mpjpe_mm": float(result.per_joint_pa_mpjpe_mm[j])}
        for j, name in enumerate(result.joint_names)
    ]


def save_result(result: EvalResult, path: str | Path) -> Path:
    """Store a full :class:`EvalResult` (per-sample and per-joint arrays included) as an npz, atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        dataset=np.array(result.dataset),
        n=np.array(result.n),
        scalars=np.array([result.mpjpe_mm, result.pa_mpjpe_mm, result.pve_mm]),
        joint_names=np.array(result.joint_names),
        per_joint_mpjpe_mm=result.per_joint_mpjpe_mm,
        per_joint_pa_mpjpe_mm=result.per_joint_pa_mpjpe_mm,
        per_sample_mpjpe_mm=result.per_sample_mpjpe_mm,
        per_sample_pa_mpjpe_mm=result.per_sample_pa_mpjpe_mm,
        per_sample_pve_mm=result.per_sample_pve_mm,
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_result(path: str | Path) -> EvalResult:
    """Read an :class:`EvalResult` written by :func:`save_result`."""
    from pipeline.evaluate.protocols import EvalResult

    with np.load(path, allow_pickle=False) as z:
        mpjpe_mm, pa_mpjpe_mm, pve_mm = (float(x) for x in z["scalars"])
        return EvalResult(
            dataset=str(z["dataset"]),
            n=int(z["n"]),
            mpjpe_mm=mpjpe_mm,
            pa_mpjpe_mm=pa_mpjpe_mm,
            pve_mm=pve_mm,
            joint_names=tuple(str(s) for s in z["joint_names"]),
            per_joint_mpjpe_mm=z["per_joint_mpjpe_mm"],
            per_joint_pa_mpjpe_mm=z["per_joint_pa_mpjpe_mm"],
            per_sample_mpjpe_mm=z["per_sample_mpjpe_mm"],
            per_sample_pa_mpjpe_mm=z["per_sample_pa_mpjpe_mm"],
            per_sample_pve_mm=z["per_sample_pve_mm"],
        )


# --------------------------------------------------------------------------------------------- figures


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return buf.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def plot_per_joint(per_joint: pd.DataFrame, dataset: str) -> bytes:
    """Grouped bar chart (PNG bytes) of MPJPE and PA-MPJPE per joint, one bar colour per run.

    Args:
        per_joint: rows of one dataset with :data:`PER_JOINT_COLUMNS`.
        dataset: shown in the title.
    """
    from matplotlib.figure import Figure
    joints = list(dict.fromkeys(per_joint["joint"]))
    runs = list(dict.fromkeys(per_joint["run"]))
    width = max(6.0, BAR_WIDTH_PER_JOINT_IN * len(joints))
    fig = Figure(figsize=(width, 2 * BAR_FIGURE_HEIGHT_IN))
    axes = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(joints))
    bar = 0.8 / max(len(runs), 1)
    for ax, column in zip(axes, ("mpjpe_mm", "pa_mpjpe_mm")):
        for k, run in enumerate(runs):
            sub = per_joint[per_joint["run"] == run].set_index("joint")[column]
            ax.bar(x - 0.4 + (k + 0.5) * bar, sub.reindex(joints).to_numpy(dtype=float), bar, label=str(run))
        ax.set_ylabel(COLUMN_TITLES[column])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(f"{dataset}: per-joint error")
    axes[0].legend(fontsize="small", ncols=min(len(runs), 4))
    axes[1].set_xticks(x, joints, rotation=45, ha="right", fontsize="small")
    return _figure_png(fig)


def seed_spread_figure(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    diffs: Mapping[str, Mapping[str, Sequence[float]]],
    dataset: str,
    reference: str,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> Figure:
    """Seeds and their spread: per variant and metric, each seed as a dot and mean ± sample sd as an error bar
    (top row); per variant, the paired differences ``variant(k) − reference(k)`` the same way (bottom row).

    A variant with one seed (one pair) shows its dot without an error bar; the tick labels say ``n``.

    Args:
        values: variant → metric → per-seed values (mm), variants in display order; metrics whose values are
            all NaN (PVE outside 3DPW) get no panel.
        diffs: variant → metric → per-pair differences vs ``reference`` (mm); variants without pairs left out.
        dataset: shown in the title.
        reference: the variant the differences are taken against.
        baselines: name → metric → value, drawn as dashed horizontal lines (e.g. ``pretrained``).
    """
    from matplotlib.figure import Figure
    metrics = [m for m in COLUMN_TITLES
               if any(np.isfinite(np.asarray(v.get(m, []), dtype=float)).any() for v in values.values())]
    if not metrics:
        raise ValueError(f"{dataset}: no finite metric values to draw (metrics: {list(COLUMN_TITLES)})")
    fig = Figure(figsize=(SPREAD_PANEL_SIZE_IN[0] * len(metrics), SPREAD_PANEL_SIZE_IN[1] * 2),
                 layout="constrained")
    axes = fig.subplots(2, len(metrics), squeeze=False)
    rows = ((values, "", SEED_DOT_COLOR), (diffs, f" − {reference}", DIFF_DOT_COLOR))
    for top_or_bottom, (data, suffix, color) in enumerate(rows):
        for ax, metric in zip(axes[top_or_bottom], metrics):
            labels = []
            for x, (variant, per_metric) in enumerate(data.items()):
                y = np.asarray(per_metric.get(metric, []), dtype=float)
                y = y[np.isfinite(y)]
                labels.append(f"{variant}{suffix}\nn={y.size}")
                offsets = (np.arange(y.size) - (y.size - 1) / 2) * SEED_DOT_JITTER
                ax.plot(x + offsets, y, "o", ms=4, color=color, alpha=0.7, zorder=3)
                if y.size >= 2:
                    ax.errorbar([x + SPREAD_BAR_OFFSET], [y.mean()], yerr=[y.std(ddof=1)], fmt="_", ms=14, capsize=5,
                                color=SPREAD_BAR_COLOR, zorder=4)
            ax.set_xticks(np.arange(len(labels)), labels, fontsize="x-small")
            ax.set_xlim(-0.6, max(len(labels), 1) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            if top_or_bottom == 0:
                ax.set_title(COLUMN_TITLES[metric], fontsize="small")
                drawn = False
                for (name, base), line in zip((baselines or {}).items(), BASELINE_LINE_COLORS):
                    value = float(base.get(metric, math.nan))
                    if math.isfinite(value):
                        ax.axhline(value, ls="--", lw=1.0, color=line, label=f"{name}: {value:.1f}")
                        drawn = True
                if drawn:
                    ax.legend(fontsize="x-small")
            else:
                ax.axhline(0.0, lw=1.0, color=START_LINE_COLOR)
                ax.set_title(f"{COLUMN_TITLES[metric]}: variant − {reference}", fontsize="small")
                if not data:
                    ax.text(0.5, 0.5, f"no variant shares a seed with {reference}", ha="center", va="center",
                            transform=ax.transAxes, fontsize="small")
    fig.suptitle(f"{dataset}: seeds (dots), mean ± sample sd (bars, n ≥ 2); below: paired differences per seed")
    return fig


def plot_seed_spread(*args: Any, **kwargs: Any) -> bytes:
    """PNG bytes of :func:`seed_spread_figure` (same arguments)."""
    return _figure_png(seed_spread_figure(*args, **kwargs))


def _curve_series(frame: pd.DataFrame, x_name: str | None) -> list[str]:
    """Numeric columns with at least one value to draw (a protocol without PVE leaves ``val_pve_mm`` empty):
    validation metrics first (:data:`VALIDATION_PREFIX`), then the others."""
    import pandas as pd
    numeric = [c for c in frame.columns if c != x_name and pd.api.types.is_numeric_dtype(frame[c])
               and frame[c].notna().any()]
    val = [c for c in numeric if c.startswith(VALIDATION_PREFIX)]
    return [*val, *(c for c in numeric if c not in val)]


def plot_training_curves(table: str | Path, title: str | None = None) -> bytes:
    """Training curves (PNG bytes) from a CSV/TSV log: one panel per numeric column against the step.

    The x axis is the first of :data:`CURVE_X_COLUMNS` present (else the row number). Validation columns
    (``val_*``, e.g. ``val_mpjpe_mm``, ``val_pa_mpjpe_mm`` of a run's ``metrics.csv``) come first, drawn with
    markers, a dashed line at their step-0 value (the initialisation the run must beat) and the first → last
    value in the panel title.

    Args:
        table: the log.
        title: figure title (default: none).
    """
    import pandas as pd
    from matplotlib.figure import Figure
    table = Path(table)
    frame = pd.read_csv(table, sep=CURVE_TABLES[table.suffix.lower()])
    x_name = next((c for c in CURVE_X_COLUMNS if c in frame.columns), None)
    x = frame[x_name].to_numpy(dtype=float) if x_name else np.arange(len(frame), dtype=float)
    series = _curve_series(frame, x_name)
    if not series:
        raise ValueError(f"{table}: no numeric columns to plot as training curves (columns: {list(frame.columns)})")
    ncols = min(CURVE_MAX_COLUMNS, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(CURVE_PANEL_SIZE_IN[0] * ncols, CURVE_PANEL_SIZE_IN[1] * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, series):
        y = frame[name].to_numpy(dtype=float)
        ok = np.isfinite(y)
        if name.startswith(VALIDATION_PREFIX):
            ax.plot(x[ok], y[ok], lw=1.6, marker="o", ms=3, color=VALIDATION_COLOR, label="validation")
            start = ok & (x == 0)
            if start.any():
                y0 = float(y[start][0])
                ax.axhline(y0, ls="--", lw=1.0, color=START_LINE_COLOR, label=f"step 0: {y0:.4g}")
                ax.legend(fontsize="x-small")
            label = name
            if ok.any():
                label = f"{name}: {y[ok][0]:.4g} → {y[ok][-1]:.4g}"
            ax.set_title(label, fontsize="small", fontweight="bold")
        else:
            ax.plot(x[ok], y[ok], lw=1.2)
            ax.set_title(name, fontsize="small")
        ax.set_xlabel(x_name or "row", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _figure_png(fig)


def _embed_figure(path: Path | bytes) -> str:
    """Data URI of an image file, of training curves drawn from a CSV/TSV log, or of PNG bytes."""
    if isinstance(path, bytes):
        return _data_uri(path, IMAGE_MIME[".png"])
    if not path.is_file():
        raise FileNotFoundError(f"report figure {path} does not exist; build it first or drop it from the report")
    suffix = path.suffix.lower()
    if suffix in IMAGE_MIME:
        return _data_uri(path.read_bytes(), IMAGE_MIME[suffix])
    if suffix in CURVE_TABLES:
        return _data_uri(plot_training_curves(path), IMAGE_MIME[".png"])
    raise ValueError(
        f"report figure {path}: unsupported type {suffix!r}; allowed: {sorted([*IMAGE_MIME, *CURVE_TABLES])}"
    )


# --------------------------------------------------------------------------------------------- report


def _format_cell(column: str, value: Any) -> tuple[str, bool]:
    """Display text of one results-table cell and whether it is numeric (right-aligned; also a
    ``"100.0 ± 4.0"`` / ``"−8.5"`` text of :func:`pipeline.evaluate.tables.format_mean_std`)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING, column in MM_COLUMNS
    if isinstance(value, str) and _MEAN_SD_TEXT.match(value):
        return value, True
    if column in MM_COLUMNS or (column.endswith(MM_SUFFIXES) and isinstance(value, (int, float, np.number))):
        return f"{float(value):.{MM_DECIMALS}f}", True
    if isinstance(value, (int, np.integer)):
        return str(int(value)), True
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}", True
    if column == "git_sha" and len(str(value)) > GIT_SHA_CHARS:  # the CSV keeps the full commit
        sha, _, dirty = str(value).partition("-")
        return sha[:GIT_SHA_CHARS] + (f"-{dirty}" if dirty else ""), False
    return str(value), False


def _read_eval_csvs(eval_csvs: Sequence[str | Path]) -> pd.DataFrame:
    import pandas as pd
    frames = []
    for path in eval_csvs:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation table {path} does not exist; run its evaluate_* rule first")
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""])
        missing = [c for c in EVAL_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"evaluation table {path} lacks columns {missing}; write it with write_eval_csv")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    combined = pd.concat(frames, ignore_index=True, sort=False)
    extra = [c for c in combined.columns if c not in EVAL_COLUMNS]
    return combined[[*EVAL_COLUMNS, *extra]]


def _table_view(title: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Template view of one extra table: columns in order of first appearance, cells via :func:`_format_cell`."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return {
        "title": title,
        "header": [COLUMN_TITLES.get(c, c) for c in columns],
        "rows": [[_format_cell(c, row.get(c)) for c in columns] for row in rows],
    }


def build_html_report(
    eval_csvs: Sequence[str | Path],
    figures: Mapping[str, str | Path],
    out_path: str | Path,
    title: str,
    image_grids: Mapping[str, Sequence[str | Path]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write a self-contained static HTML report (every image inlined as base64).

    Args:
        eval_csvs: ``eval_*.csv`` files (:func:`write_eval_csv`); they form one results table, and each one's
            per-joint sibling (:func:`per_joint_csv_path`), when present, gives a bar chart per dataset.
        figures: caption → file. PNG/JPEG/SVG/GIF files are embedded as they are; a CSV/TSV log is drawn as
            training curves (:func:`plot_training_curves`).
        out_path: the HTML file to write.
        title: page title.
        image_grids: optional grid title → image files (e.g. predicted meshes over test images), shown as
            thumbnails captioned with the file name.
        provenance: optional key → value list shown under the title (git SHA, config, seed).
        tables: optional section title → rows (mappings; columns in order of first appearance), shown after
            the results table (e.g. the ablation, mask QC). Columns ending in ``_mm`` get 1 decimal.
        sections: :class:`ReportSection` s shown between the results table and ``tables`` (e.g. the seeds and
            their spread).

    Returns:
        ``out_path``. Raises ``FileNotFoundError`` naming any missing input.
    """
    import jinja2
    import pandas as pd
    table = _read_eval_csvs(eval_csvs)
    results = None
    baselines: list[tuple[str, str]] = []
    if len(table):
        rows = [
            {"cells": [_format_cell(c, None if pd.isna(v) else v) for c, v in zip(table.columns, record)],
             "baseline": str(record[0]) in BASELINE_RUNS}
            for record in table.itertuples(index=False, name=None)
        ]
        present = set(table["run"].astype(str))
        baselines = [(name, BASELINE_DESCRIPTIONS[name]) for name in BASELINE_RUNS if name in present]
        results = {
            "header": [COLUMN_TITLES.get(c, c) for c in table.columns],
            "rows": rows,
            "sources": [Path(p).name for p in eval_csvs],
        }

    per_joint = []
    for path in eval_csvs:
        pj_path = per_joint_csv_path(path)
        if not pj_path.is_file():
            continue
        pj = pd.read_csv(pj_path, keep_default_na=False, na_values=["nan", "NaN", ""])
        for dataset, sub in pj.groupby("dataset", sort=False):
            per_joint.append({
                "caption": f"{dataset}: MPJPE and PA-MPJPE per joint ({pj_path.name})",
                "src": _data_uri(plot_per_joint(sub, str(dataset)), IMAGE_MIME[".png"]),
            })

    figs = [{"caption": caption, "src": _embed_figure(Path(p))} for caption, p in figures.items()]

    grids = []
    for grid_title, paths in (image_grids or {}).items():
        images = []
        for p in paths:
            p = Path(p)
            if not p.is_file():
                raise FileNotFoundError(f"report image {p} (grid {grid_title!r}) does not exist")
            mime = IMAGE_MIME.get(p.suffix.lower())
            if mime is None:
                raise ValueError(f"report image {p}: unsupported type {p.suffix!r}; allowed: {sorted(IMAGE_MIME)}")
            images.append({"caption": p.name, "src": _data_uri(p.read_bytes(), mime)})
        grids.append({"title": grid_title, "images": images})

    extra_tables = [_table_view(tab_title, tab_rows) for tab_title, tab_rows in (tables or {}).items()]
    section_views = [
        {"title": sec.title, "note": sec.note,
         "tables": [_table_view(t, r) for t, r in sec.tables.items()],
         "figures": [{"caption": c, "src": _embed_figure(f if isinstance(f, bytes) else Path(f))}
                     for c, f in sec.figures.items()]}
        for sec in sections
    ]

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(_TEMPLATE).render(
        title=title,
        provenance=[(str(k), str(v)) for k, v in (provenance or {}).items()],
        results=results,
        baselines=baselines,
        per_joint=per_joint,
        figures=figs,
        grids=grids,
        tables=extra_tables,
        sections=section_views,
        thumb_px=GRID_THUMB_PX,
    )
    return atomic_write_bytes(out_path, html.encode("utf-8"))

