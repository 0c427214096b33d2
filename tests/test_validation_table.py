"""results/validation*.csv (rule summarise_validation): the scores settings are chosen on."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from pipeline.evaluate.validation import (
    choice_rows,
    validation_row,
    validation_section,
    write_validation,
)

COLUMNS = ["step", "phase", "total", "val_mpjpe_mm", "val_pa_mpjpe_mm", "val_pve_mm"]


def _log(path: Path, final: tuple[float, float, float], start: tuple[float, float, float] = (100.0, 50.0, 150.0)
         ) -> Path:
    rows = [{"step": 0, "phase": "val", "val_mpjpe_mm": start[0], "val_pa_mpjpe_mm": start[1], "val_pve_mm": start[2]},
            {"step": 10, "phase": "train", "total": 3.0},
            {"step": 10, "phase": "val", "val_mpjpe_mm": 99.0, "val_pa_mpjpe_mm": 49.0, "val_pve_mm": 149.0},
            {"step": 20, "phase": "train", "total": 2.0},
            {"step": 20, "phase": "val", "val_mpjpe_mm": final[0], "val_pa_mpjpe_mm": final[1],
             "val_pve_mm": final[2]}]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


FINALS = {
    "sd-s0": (90.0, 45.0, 140.0), "sd-s1": (92.0, 46.0, 141.0),
    "dsr-s0": (89.0, 44.0, 139.0), "dsr-s1": (90.0, 45.5, 139.0),
    "dsr_sigma_px-s0": (88.0, 44.0, 138.0), "dsr_sigma_px-s1": (88.4, 45.0, 138.0),
}


def test_last_validation_row_per_run_and_mean_sd_per_variant(tmp_path: Path) -> None:
    logs = {run: _log(tmp_path / run / "metrics.csv", final) for run, final in FINALS.items()}
    rows = write_validation(logs, "3dpw", tmp_path / "validation.csv", tmp_path / "by_variant.csv", world="open")
    sd0 = rows[0]
    assert (sd0["run"], sd0["variant"], sd0["repetition"], sd0["step"]) == ("sd-s0", "sd", 0, 20)
    assert (sd0["mpjpe_mm"], sd0["pa_mpjpe_mm"], sd0["pve_mm"]) == (90.0, 45.0, 140.0)
    assert (sd0["start_mpjpe_mm"], sd0["start_pve_mm"]) == (100.0, 150.0)
    with (tmp_path / "by_variant.csv").open() as f:
        by_variant = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(by_variant["sd"]["mpjpe_mm_mean"]) == pytest.approx(91.0)
    assert float(by_variant["sd"]["mpjpe_mm_std"]) == pytest.approx(math.sqrt(2.0))
    # dsr − sd per seed: −1, −2 → mean −1.5, sd 0.7071
    assert float(by_variant["dsr"]["mpjpe_mm_diff_mean"]) == pytest.approx(-1.5)
    assert float(by_variant["dsr"]["mpjpe_mm_diff_std"]) == pytest.approx(math.sqrt(0.5))
    assert by_variant["dsr"]["n_pairs"] == "2" and by_variant["sd"]["reference"] == ""


def test_the_render_blur_choice_reads_the_paired_validation_difference(tmp_path: Path) -> None:
    rows = [validation_row(run, _log(tmp_path / run / "metrics.csv", final), "3dpw") for run, final in FINALS.items()]
    (choice,) = choice_rows(rows)
    # dsr_sigma_px − dsr: −1.0, −1.6 → mean −1.3, sd 0.424, s.e. 0.3: sigma_px preferred
    assert choice["variant"] == "dsr_sigma_px" and choice["against"] == "dsr" and choice["pairs"] == 2
    assert choice["Δ MPJPE (mm)"] == "−1.30 ± 0.42"
    assert choice["validation prefers"] == "dsr_sigma_px"
    close = [dict(r, mpjpe_mm=r["mpjpe_mm"] + (1.2 if r["variant"] == "dsr_sigma_px" else 0.0)) for r in rows]
    assert choice_rows(close)[0]["validation prefers"].startswith("tie")  # −1.0+1.2, −1.6+1.2 → +0.2 ± 0.28
    worse = [dict(r, mpjpe_mm=r["mpjpe_mm"] + (3.0 if r["variant"] == "dsr_sigma_px" else 0.0)) for r in rows]
    assert choice_rows(worse)[0]["validation prefers"] == "dsr"
    assert choice_rows([r for r in rows if r["variant"] != "dsr"]) == []
    section = validation_section(rows, "3dpw")
    assert "100.0 / 50.0 / 150.0 mm (step 0)" in section.note
    per_variant = next(iter(section.tables.values()))
    assert [r["variant"] for r in per_variant] == ["sd", "dsr", "dsr_sigma_px"]
    assert per_variant[1]["Δ MPJPE (mm) vs sd"] == "−1.50 ± 0.71"


def test_a_log_without_validation_or_missing_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train run 'sd'"):
        validation_row("sd", tmp_path / "nope.csv", "3dpw")
    bare = tmp_path / "metrics.csv"
    bare.write_text("step,phase,total\n10,train,3.0\n")
    with pytest.raises(ValueError, match=r"metrics.csv has no validation rows.*retrain run 'sd'"):
        validation_row("sd", bare, "3dpw")
