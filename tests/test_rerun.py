"""Rerun semantics: a tuned threshold or an edited `pipeline/` module reruns exactly the dependent jobs.

One small DAG (body model, 2 scans → semantic prior, one training set → masks) runs once in a copy of the
workflow sources, so that a test may edit a module there without touching the repository; each test
then changes one thing, asks `snakemake -n` which rules would run, and restores the file (content and
mtime). The background-probability and 60-px-filter cases live in test_dag_tiny.py; the training
thresholds (loss weights, dsr_start_iter) in the training tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CONFIG = """\
world: open
seed: 0
device: cpu
open_world:
  body_model:
    n_shape_samples: 40
  scans:
    count: 2
  images:
    size: 96
    train:
      h36m: {count: 3}
prior:
  views:
    count: 3
    image_size: 160
masks:
  datasets: [h36m]
"""
TARGETS = ("results/prior/prior_views.png", "results/masks/h36m.h5")
PRIOR_DOWNSTREAM = {"accumulate_prior", "plot_prior"}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(workflow copy, workdir) after one complete run of TARGETS."""
    base = tmp_path_factory.mktemp("rerun")
    src, work = base / "workflow_copy", base / "work"
    src.mkdir()
    shutil.copy2(ROOT / "Snakefile", src / "Snakefile")
    for name in ("workflow", "pipeline", "config", "profiles", "envs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "config").mkdir(parents=True)
    (work / "config" / "config.yaml").write_text(CONFIG)
    res = _snakemake(src, work, *TARGETS)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return src, work


def _snakemake(src: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(src / "Snakefile"), "--directory", str(work), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYOPENGL_PLATFORM": "egl"})


def _would_run(src: Path, work: Path) -> set[str]:
    """Rule names in the job-stats table of `snakemake -n` for TARGETS."""
    res = _snakemake(src, work, "-n", "--quiet", "rules", "--", *TARGETS)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1) for m in re.finditer(r"^([a-z_0-9]+)\s+\d+\s*$", table, re.MULTILINE)}


@contextmanager
def _edited(path: Path, new_text: str) -> Iterator[None]:
    """Temporarily replace a file's text; restore text and mtime after (so no later test sees a change)."""
    old, stat = path.read_text(), path.stat()
    path.write_text(new_text)
    try:
        yield
    finally:
        path.write_text(old)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_nothing_reruns_after_a_complete_run(done_run: tuple[Path, Path]) -> None:
    assert _would_run(*done_run) == set()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Views per scan: every per-scan render and parse job, then the reduction and its figure.
        ("  views:\n    count: 3\n", "  views:\n    count: 4\n",
         {"render_scan_views", "parse_scan_views"} | PRIOR_DOWNSTREAM),
        # The scan parser's test-time scales: parsing and downstream, not rendering.
        ("prior:\n", "prior:\n  parser: {scales: [1.0]}\n", {"parse_scan_views"} | PRIOR_DOWNSTREAM),
        # The image parser's scales: only the masks stage.
        ("masks:\n", "masks:\n  parser: {scales: [1.0]}\n", {"parse_images", "clean_masks"}),
        # Cleaning margin around the keypoint box: only mask cleaning.
        ("masks:\n", "masks:\n  keypoint_margin_px: 10\n", {"clean_masks"}),
        # DSR-C class mapping (paper Table I → the official code's 8 classes): only mask cleaning.
        ("masks:\n", "masks:\n  mapping: official8\n", {"clean_masks"}),
    ],
    ids=["prior.views.count", "prior.parser.scales", "masks.parser.scales", "masks.keypoint_margin_px",
         "masks.mapping"],
)
def test_threshold_change_reruns_exactly_its_rules(done_run: tuple[Path, Path], old: str, new: str,
                                                   expected: set[str]) -> None:
    src, work = done_run
    config = work / "config" / "config.yaml"
    assert old in CONFIG
    with _edited(config, CONFIG.replace(old, new, 1)):
        assert _would_run(src, work) == expected


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("masks/clean.py", {"clean_masks"}),
        ("prior/accumulate.py", {"parse_scan_views"} | PRIOR_DOWNSTREAM),
        ("prior/figures.py", {"plot_prior"}),
        ("body/anny_build.py", {"build_body_model", "make_scans", "render_scan_views", "parse_scan_views",
                                "make_images_train_h36m", "parse_images", "clean_masks"} | PRIOR_DOWNSTREAM),
    ],
)
def test_editing_a_pipeline_module_reruns_its_stage(done_run: tuple[Path, Path], module: str,
                                                    expected: set[str]) -> None:
    src, work = done_run
    path = src / "pipeline" / module
    with _edited(path, path.read_text() + "\n# an edit\n"):
        assert _would_run(src, work) == expected


def test_nothing_reruns_once_the_edits_are_undone(done_run: tuple[Path, Path]) -> None:
    """The edits above left no trace (text and mtime restored), so none of their answers leaked."""
    assert _would_run(*done_run) == set()
