"""The Snakemake workflow builds its DAG, lints clean and is formatted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_workflow

BIN = Path(sys.executable).parent
#: Packages the DAG build must not import (issue #21: torch, torchvision, torch._dynamo and matplotlib cost ~5 s
#: CPU per Snakemake start-up, and tests and SLURM start Snakemake dozens of times).
DAG_BUILD_FORBIDDEN: tuple[str, ...] = ("torch", "torchvision", "matplotlib")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflow with its default config, as a fresh clone holds it: Snakemake writes its .snakemake/ folder
    there (even for a dry run or --lint), not into this checkout, and tests on several workers do not meet."""
    return copy_workflow(tmp_path_factory.mktemp("clone"))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_dry_run_builds_dag(clone: Path) -> None:
    res = _run("snakemake", "-n", "--forceall", "--quiet", "rules", cwd=clone)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "build_body_model" in res.stdout + res.stderr
    assert "check_body_model" in res.stdout + res.stderr
    assert "make_scans" in res.stdout + res.stderr
    # the open world makes its own pretrained start (issue #15): the default DAG pretrains before fine-tuning
    assert "make_pretrain_images" in res.stdout + res.stderr
    assert "pretrain_regressor" in res.stdout + res.stderr


def test_lint_clean(clone: Path) -> None:
    res = _run("snakemake", "--lint", cwd=clone)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_dag_build_imports_neither_torch_nor_matplotlib() -> None:
    """Every ``pipeline`` import of the Snakefile and the rule files (those inside input functions included),
    run in a fresh interpreter, leaves the packages of :data:`DAG_BUILD_FORBIDDEN` unimported."""
    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    imports = [line.strip() for path in sources for line in path.read_text().splitlines()
               if re.match(r"\s*(from|import) pipeline\b", line)]
    assert len(imports) >= 10 and not any(line.endswith("(") for line in imports), imports
    code = "\n".join([*imports, "import sys", f"print(sorted(set({DAG_BUILD_FORBIDDEN!r}) & set(sys.modules)))"])
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "[]", imports


def test_snakefmt_clean(clone: Path) -> None:
    res = _run("snakefmt", "--check", "Snakefile", "workflow/rules", cwd=clone)
    assert res.returncode == 0, res.stderr[-3000:]


def test_misspelt_config_key_fails_at_dag_build(clone: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("open_world:\n  body_model:\n    n_shape_sample: 3\n")
    res = _run("snakemake", "-n", "--configfile", str(bad), cwd=clone)
    assert res.returncode != 0
    assert "open_world.body_model.n_shape_sample" in res.stdout + res.stderr


def test_missing_real_asset_fails_at_dag_build(clone: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "real.yaml"
    cfg.write_text(f"world: real\nassets:\n  body_models: {tmp_path}/nowhere\n")
    res = _run("snakemake", "-n", "--configfile", str(cfg), cwd=clone)
    assert res.returncode != 0
    assert "assets.body_models" in res.stdout + res.stderr and "smpl.is.tue.mpg.de" in res.stdout + res.stderr


def test_graphonomy_backend_without_checkpoint_fails_at_dag_build(clone: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("prior:\n  parser:\n    backend: graphonomy\n")
    res = _run("snakemake", "-n", "--configfile", str(cfg), cwd=clone)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "assets.graphonomy_checkpoint" in out and "universal_trained.pth" in out


#: Packages a job that predicts, scores or trains must not import (issue #21): torchvision imports torch._dynamo and
#: triton, ≈ 1.6 s of CPU per job; the HMR backbone is pipeline.model.resnet.
JOB_FORBIDDEN: tuple[str, ...] = ("torchvision", "torch._dynamo", "triton")


def test_regressor_jobs_import_neither_torchvision_nor_dynamo() -> None:
    """The modules of the prediction, scoring and training scripts, imported in a fresh interpreter as those jobs
    import them, build an HMR without loading the packages of :data:`JOB_FORBIDDEN`."""
    code = "\n".join(["import sys", "import pipeline.evaluate.predict, pipeline.train.loop, pipeline.model.hmr",
                      "pipeline.model.hmr.HMR(backbone='resnet18')",
                      f"print(sorted(set({JOB_FORBIDDEN!r}) & set(sys.modules)))"])
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "[]"
