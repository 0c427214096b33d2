"""The SLURM profile, statically and as Snakemake reads it. The real-cluster run is `make test-slurm`
(tests/slurm/run.sh, real daemons, part of `make test` where the machine allows it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ROOT, copy_workflow

BIN = Path(sys.executable).parent
SLURM = ROOT / "profiles" / "slurm" / "config.yaml"
DEFAULT = ROOT / "profiles" / "default" / "config.yaml"


def _profile(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "PYOPENGL_PLATFORM": "egl"})


def _resource(expr: object, attempt: int = 1, checkpoint: bool = False) -> object:
    """A resource value as the plugin evaluates it: a Python expression over `attempt` and `input`."""
    if not isinstance(expr, str):
        return expr
    inputs = SimpleNamespace(checkpoint="universal_trained.pth") if checkpoint else SimpleNamespace(labels="x")
    try:
        return eval(expr, {"attempt": attempt, "input": inputs})  # the profile's own expressions
    except NameError:
        return expr


@pytest.mark.parametrize("path", [SLURM, DEFAULT], ids=["slurm", "default"])
def test_every_profile_entry_is_commented(path: Path) -> None:
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^ {0,2}[a-z][\w-]*:", line):  # top-level keys, rules and default resources
            assert lines[i - 1].lstrip().startswith("#"), f"{path.parent.name}: no comment above {line!r}"


def test_workflow_profile_does_not_override_the_slurm_profile() -> None:
    """profiles/default is applied after --profile, key by key: a shared key must carry the same value."""
    slurm, default = _profile(SLURM), _profile(DEFAULT)
    clashes = {k for k in default.keys() & slurm.keys() if default[k] != slurm[k]}
    assert not clashes
    assert not {"executor", "default-resources", "set-resources", "jobs", "retries"} & default.keys()


def test_profile_names_only_rules_that_exist(tmp_path: Path) -> None:
    """Snakemake silently ignores set-resources/groups for unknown rules, so a typo would go unnoticed."""
    res = _snakemake("--list-rules", cwd=copy_workflow(tmp_path))  # .snakemake/ goes there, not into the checkout
    assert res.returncode == 0, res.stderr[-3000:]
    rules = set(res.stdout.split())
    profile = _profile(SLURM)
    grouped = {entry.split("=")[0] for entry in profile["groups"]}
    assert set(profile["set-resources"]) | grouped <= rules


def test_resources_grow_on_retry_and_gpus_go_where_needed() -> None:
    profile = _profile(SLURM)
    assert profile["retries"] >= 2 and profile["slurm-status-command"] == "squeue"
    for rule, res in {"default": profile["default-resources"], **profile["set-resources"]}.items():
        first, second = _resource(res["mem_mb"], 1), _resource(res["mem_mb"], 2)
        assert second == 2 * first, f"{rule}: mem_mb {first} → {second} on the first retry"
        assert isinstance(_resource(res.get("runtime", 30)), int)
    train = profile["set-resources"]["train_regressor"]
    assert train["gpu"] == 1 and train["slurm_partition"] == "gpu"
    for rule in ("parse_scan_views", "parse_images"):
        res = profile["set-resources"][rule]
        assert (_resource(res["gpu"], checkpoint=True), _resource(res["slurm_partition"], checkpoint=True)) == (1, "gpu")
        assert (_resource(res["gpu"]), _resource(res["slurm_partition"])) == (0, "cpu")


def test_job_count_of_a_coco_h36m_mpi_size_run(tmp_path: Path) -> None:
    """The masks stage of three datasets at 64 shards is 195 jobs, whatever the number of images."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        "masks:\n  datasets: [coco_eft, h36m, mpi_inf_3dhp]\n  num_shards: 64\n")
    targets = [f"results/masks/{d}.h5" for d in ("coco_eft", "h36m", "mpi_inf_3dhp")]
    res = _snakemake("--directory", str(tmp_path), "--profile", str(ROOT / "profiles" / "slurm"), "-n", "--quiet",
                     "rules", "--", *targets, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^([a-z_0-9]+)\s+(\d+)\s*$", table, re.MULTILINE)}
    assert counts["parse_images"] == 192 and counts["clean_masks"] == 3


def test_harness_config_template_is_loopback_only() -> None:
    conf = (ROOT / "tests" / "slurm" / "slurm.conf.in").read_text()
    assert "SlurmctldHost=localhost(127.0.0.1)" in conf and "NodeAddr=127.0.0.1" in conf
    for setting in ("MinJobAge=600", "SchedulerParameters=batch_sched_delay=0", "DefMemPerCPU="):
        assert setting in conf
    script = (ROOT / "tests" / "slurm" / "run.sh").read_text()
    assert "trap teardown EXIT" in script and "timeout -s INT -k 30" in script and "pkill" not in script
