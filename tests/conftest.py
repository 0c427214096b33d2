"""Shared test fixtures. Tests run headless: pyrender uses EGL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# anny imports roma -> torch._dynamo -> triton, which segfaults when imported after an EGL context exists;
# importing it first (as any real stage process does, one library per process) keeps the test session safe.
import torch._dynamo  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def make_tiny_smpl(num_verts: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """A small SMPL-format model (24 joints, random geometry) for format and facade tests."""
    rng = np.random.default_rng(seed)
    parents = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(24)]).astype(np.int64)
    verts = rng.normal(size=(num_verts, 3)) * 0.3
    weights = rng.random((num_verts, 24)) ** 8
    weights /= weights.sum(1, keepdims=True)
    jreg = rng.random((24, num_verts))
    jreg /= jreg.sum(1, keepdims=True)
    faces = np.stack([np.arange(num_verts - 2), np.arange(1, num_verts - 1), np.arange(2, num_verts)], 1)
    return {
        "v_template": verts,
        "shapedirs": rng.normal(size=(num_verts, 3, 10)) * 0.01,
        "posedirs": np.zeros((num_verts, 3, 207)),
        "J_regressor": jreg,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces.astype(np.int64),
    }


@pytest.fixture
def tiny_smpl() -> dict[str, np.ndarray]:
    return make_tiny_smpl()


@pytest.fixture(scope="session")
def open_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The open body model, built once per session (≈10 s): (folder, build report)."""
    from pipeline.body.anny_build import build_open_body_model

    out = tmp_path_factory.mktemp("body_models")
    report = build_open_body_model(out, n_shape_samples=120, seed=0, progress=False)
    return out, report


SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: What a project holds of this repository to run the workflow from its own folder, as a clone does.
WORKFLOW_SOURCES: tuple[str, ...] = ("Snakefile", "workflow", "pipeline", "envs", "profiles", "config")


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow sources into ``dest`` (modification times kept, no bytecode): a project folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` (its own config/config.yaml) on 2 cores: the folder's own copy of the
    workflow when it holds one (a project, see :func:`copy_workflow`), else this repository's."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").is_file() else ROOT / "Snakefile"
    cmd = [str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYOPENGL_PLATFORM": "egl"})


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG (default target) on tests/config_tiny.yaml, run once per session in a project folder (a copy
    of the workflow with that config, run from its root as a clone is). Never modified: copy it to change
    anything (``shutil.copytree(..., symlinks=True)`` keeps it done, tests/test_rerun.py)."""
    work = copy_workflow(tmp_path_factory.mktemp("tiny_project"))
    shutil.copy(ROOT / "tests" / "config_tiny.yaml", work / "config" / "config.yaml")
    res = run_snakemake(work, "all")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return work


@pytest.fixture(scope="session")
def tiny_run(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished tiny project that tests share and may change (restoring what they change)."""
    work = tmp_path_factory.mktemp("dag") / "project"
    shutil.copytree(tiny_project, work, symlinks=True)
    return work
