"""Sections of ``results/report.html`` and their JSON files (light: no plotting, no pandas).

A rule that only some DAGs hold (e.g. an open-world experiment) writes its section with :func:`write_section_file`;
rule build_report reads the registered files (:func:`read_section_file`) and shows them after the results table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.runtime import atomic_path


@dataclass(frozen=True)
class ReportSection:
    """One section of the report, shown after the results table (:func:`build_html_report`).

    title: heading; note: a paragraph under it; tables: table title → rows (mappings; columns in order of first
    appearance, formatted like :func:`build_html_report`'s ``tables``); figures: caption → image file, CSV/TSV
    log (drawn as training curves) or PNG bytes.
    """

    title: str
    note: str = ""
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    figures: Mapping[str, str | Path | bytes] = field(default_factory=dict)


def write_section_file(path: str | Path, section: ReportSection) -> Path:
    """Write a report section as JSON, for rule build_report to show (its ``sections`` input): a rule that is
    not part of every DAG (e.g. an open-world experiment) adds itself to the report this way. Figures must be
    file paths, relative to the working directory."""
    figures = {}
    for caption, fig in section.figures.items():
        if isinstance(fig, bytes):
            raise TypeError(f"report section {section.title!r}: figure {caption!r} must be a file path, not bytes")
        figures[caption] = str(fig)
    tables = {title: [dict(r) for r in rows] for title, rows in section.tables.items()}
    payload = {"title": section.title, "note": section.note, "tables": tables, "figures": figures}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=1, allow_nan=True))
    return path


def read_section_file(path: str | Path) -> ReportSection:
    """A :class:`ReportSection` written by :func:`write_section_file`; the error names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report section {path} does not exist; build it with the rule that writes it")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"report section {path} is not valid JSON ({exc}); delete it and rebuild it") from exc
    missing = {"title", "note", "tables", "figures"} - set(d) if isinstance(d, dict) else {"title"}
    if missing:
        raise ValueError(f"report section {path} lacks {sorted(missing)}; delete it and rebuild it")
    return ReportSection(title=str(d["title"]), note=str(d["note"]), tables=d["tables"],
                         figures={caption: Path(fig) for caption, fig in d["figures"].items()})
