"""End-to-end DAG on a tiny open world, then the rerun semantics of one threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import run_snakemake

# One runner and one tiny-DAG fixture for every test that needs them (tests/conftest.py).
_snakemake = run_snakemake


def test_every_stage_wrote_its_products(tiny_run: Path) -> None:
    with np.load(tiny_run / "results/prior/semantic_prior.npz") as prior:
        assert prior["face_prob"].shape[1] == 20 and prior["vertex_prob"].shape[1] == 20
        np.testing.assert_allclose(prior["vertex_prob"].sum(1), 1.0, atol=1e-5)
        provenance = json.loads(str(prior["provenance"]))
    assert provenance["n_scans"] == 2 and provenance["parser"] == "rendered"
    for path in ("results/body/body_models.png", "results/world/contact_sheet.png", "results/prior/prior_views.png",
                 "results/prior/prior_heatmaps.png", "results/prior/prior_quality.json",
                 "resources/datasets/3dpw_test/3dpw_test.npz", "logs/prior/accumulate_prior.log",
                 "results/masks/coco_eft.h5", "results/masks/coco_eft.qc.json", "results/masks/h36m.contact_sheet.png"):
        assert (tiny_run / path).stat().st_size > 0, path


def _jobs_after_editing(workdir: Path, appended_yaml: str) -> tuple[list[tuple[str, str]], str]:
    """Append to the workdir's config, list the jobs `snakemake -n` would run as (rule, wildcards), restore."""
    config = workdir / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original + appended_yaml)
    try:
        res = _snakemake(workdir, "-n", "all")
    finally:
        config.write_text(original)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    jobs: list[tuple[str, str]] = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("rule ") and line.endswith(":"):
            jobs.append((line[5:-1], ""))
        elif line.startswith("localrule ") and line.endswith(":"):
            jobs.append((line[10:-1], ""))
        elif line.startswith("wildcards:") and jobs:
            jobs[-1] = (jobs[-1][0], line.removeprefix("wildcards:").strip())
    return jobs, out[-3000:]


def _rules_rerun_after_editing(workdir: Path, appended_yaml: str) -> tuple[set[str], str]:
    jobs, out = _jobs_after_editing(workdir, appended_yaml)
    return {rule for rule, _ in jobs}, out


#: Everything downstream of the DSR run's training: its evaluation, the tables and the report.
DSR_RUN_DOWNSTREAM = {"train_regressor", "predict_test_split", "score_predictions", "evaluate_3dpw", "evaluate_h36m",
                      "evaluate_mpi_inf_3dhp", "plot_qualitative", "plot_training_curves", "summarise_validation",
                      "build_report", "all"}
#: The open world's Potential of DSR experiment (a report section) reads the masks, the prior and the DSR terms'
#: settings, but not dsr_start_iter (it applies DSR from its first step).
POTENTIAL = {"potential_of_dsr"}


def test_changing_background_prob_reruns_only_the_prior_reduction(tiny_run: Path) -> None:
    # appended under `prior:`, the tiny config's last section
    rerun, out = _rules_rerun_after_editing(tiny_run, "  background_prob: 0.05\n")
    assert rerun == {"accumulate_prior", "plot_prior", "check_prior_quality"} | DSR_RUN_DOWNSTREAM | POTENTIAL, out


def test_changing_the_60_pixel_filter_reruns_only_mask_cleaning(tiny_run: Path) -> None:
    rerun, out = _rules_rerun_after_editing(tiny_run, "masks:\n  min_label_pixels: 40\n")
    assert rerun == {"clean_masks"} | DSR_RUN_DOWNSTREAM | POTENTIAL, out


@pytest.mark.parametrize(("edit", "potential"), [({"dsr_start_iter": 1}, set()),
                                               ({"loss_weights": {"dsr_c": 0.02}}, POTENTIAL),
                                               ({"render_size": 16}, POTENTIAL)])
def test_dsr_settings_retrain_only_the_dsr_run(tiny_run: Path, edit: dict, potential: set[str]) -> None:
    config = tiny_run / "config" / "config.yaml"
    original = config.read_text()
    cfg = yaml.safe_load(original)
    cfg["train"].update(edit)
    config.write_text(yaml.safe_dump(cfg))
    try:
        jobs, out = _jobs_after_editing(tiny_run, "")
    finally:
        config.write_text(original)
    assert {rule for rule, _ in jobs} == DSR_RUN_DOWNSTREAM | potential, out
    assert [w for rule, w in jobs if rule == "train_regressor"] == ["run=dsr"], out
    assert not any("run=sd" in w for _, w in jobs), out


@pytest.mark.slow
def test_tiny_dag_with_graphonomy_parser_and_random_checkpoint(tiny_project: Path, tmp_path: Path) -> None:
    """Both parse stages switched to the graphonomy backend (random weights, one scale) complete, and so do the
    stages that read their parses: the semantic prior and every training split's mask store. On a copy of the
    tiny project of its own (the masks and prior it leaves would not be the tiny world's any more). Takes
    ≈ 40 s on 2 cores: Graphonomy's network on the CPU over every scan view and training image, ~15 jobs.
    Training and evaluation downstream of Graphonomy's parses run in tests/test_real_world.py."""
    from pipeline.parsing.graphonomy import write_random_checkpoint

    work = tmp_path / "project"
    shutil.copytree(tiny_project, work, symlinks=True)
    ckpt = work / "universal_trained.pth"
    write_random_checkpoint(ckpt, seed=0)
    config = work / "config" / "config.yaml"
    original = config.read_text()
    parser = "  parser: {backend: graphonomy, scales: [1.0], flip: true}\n"
    config.write_text(original.replace("world: open\n", f"world: open\nassets:\n  graphonomy_checkpoint: {ckpt}\n")
                      + parser + f"masks:\n{parser}")
    stores = sorted(p.relative_to(work).as_posix() for p in (work / "results/masks").glob("*.h5"))
    assert len(stores) == 4, stores  # the tiny world's four training splits
    before = {s: (work / s).stat().st_mtime_ns for s in stores}
    res = _snakemake(work, "results/prior/semantic_prior.npz", *stores)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert all((work / s).stat().st_mtime_ns != before[s] for s in stores), "a mask store was not rebuilt"
    for store in stores:
        with h5py.File(work / store, "r") as h5:
            assert h5.attrs["parser"] == "graphonomy", store
    log = (work / "logs/prior/parse_scan_views/scan_0000.log").read_text()
    assert "scan_0000" in log
    with np.load(work / "results/prior/semantic_prior.npz") as prior:
        assert json.loads(str(prior["provenance"]))["parser"] == "graphonomy"
