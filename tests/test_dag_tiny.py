"""End-to-end DAG on a tiny open world, then the rerun semantics of one threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


def _rules_rerun_after_editing(workdir: Path, appended_yaml: str) -> tuple[set[str], str]:
    """Append to the workdir's config, list the rules `snakemake -n` would run, restore the config."""
    config = workdir / "config" / "config.yaml"
    original = config.read_text()
    config.write_text(original + appended_yaml)
    try:
        res = _snakemake(workdir, "-n", "--quiet", "rules", "all")
    finally:
        config.write_text(original)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    return {line.split()[0] for line in out.splitlines() if line.strip() and line.split()[0] in RULES}, out[-3000:]


def test_changing_background_prob_reruns_only_the_prior_reduction(tiny_run: Path) -> None:
    # appended under `prior:`, the tiny config's last section
    rerun, out = _rules_rerun_after_editing(tiny_run, "  background_prob: 0.05\n")
    assert rerun == {"accumulate_prior", "plot_prior", "check_prior_quality", "all"}, out


def test_changing_the_60_pixel_filter_reruns_only_mask_cleaning(tiny_run: Path) -> None:
    rerun, out = _rules_rerun_after_editing(tiny_run, "masks:\n  min_label_pixels: 40\n")
    assert rerun == {"clean_masks", "all"}, out


RULES = {"parse_images", "clean_masks", "build_body_model", "check_body_model", "make_scans", "plot_world", "render_scan_views", "parse_scan_views",
         "accumulate_prior", "plot_prior", "check_prior_quality", "all"} | {
    f"make_images_{g}_{s}" for g, names in (("train", ("coco_eft", "h36m", "mpi_inf_3dhp", "3dpw")),
                                            ("test", ("3dpw", "h36m_p1", "h36m_p2", "mpi_inf_3dhp"))) for s in names}


def test_tiny_dag_with_graphonomy_parser_and_random_checkpoint(tiny_run: Path) -> None:
    """Both parse stages switched to the graphonomy backend (random weights, one scale) complete."""
    from pipeline.parsing.graphonomy import write_random_checkpoint

    ckpt = tiny_run / "universal_trained.pth"
    write_random_checkpoint(ckpt, seed=0)
    config = tiny_run / "config" / "config.yaml"
    original = config.read_text()
    parser = "  parser: {backend: graphonomy, scales: [1.0], flip: true}\n"
    config.write_text(original.replace("world: open\n", f"world: open\nassets:\n  graphonomy_checkpoint: {ckpt}\n")
                      + parser + f"masks:\n{parser}")
    try:
        res = _snakemake(tiny_run, "all")
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        log = (tiny_run / "logs/prior/parse_scan_views/scan_0000.log").read_text()
        assert "scan_0000" in log
        with np.load(tiny_run / "results/prior/semantic_prior.npz") as prior:
            assert json.loads(str(prior["provenance"]))["parser"] == "graphonomy"
    finally:
        config.write_text(original)
