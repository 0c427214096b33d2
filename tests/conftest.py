"""Shared test fixtures. Tests run headless: pyrender uses EGL.

`make test` runs the suite on one pytest-xdist worker per core (``-n``). The expensive fixtures are built once per
run, whichever worker asks first, into a folder every worker reads (:func:`build_once`): the open body model and the
tiny project (the whole DAG on tests/config_tiny.yaml), which starts in the background as soon as collection
shows a test that needs it, so that the unit tests run while it builds. Tests that need a writable DAG copy it
(:func:`tiny_run`, one per worker). The same code runs without xdist (``-p no:xdist`` or ``-n 0``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# anny imports roma -> torch._dynamo -> triton, which segfaults when imported after an EGL context exists;
# importing it first (as any real stage process does, one library per process) keeps the test session safe.
import torch
import torch._dynamo

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def pytest_configure(config: pytest.Config) -> None:
    """On a pytest-xdist worker, torch's intra-op threads take the worker's share of the cores: every worker using
    all of them would oversubscribe the machine (spinning OpenMP threads)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


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


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every xdist worker of this run shares (the run's base temporary folder; a worker's own base is a
    subfolder of it), or the session's base folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """``build(folder)`` once per test run for all workers: the first caller builds into ``<shared root>/<name>``
    under a file lock, the others wait for the lock and get the same folder and what ``build`` returned (a JSON
    object). A failed build fails every later caller with the first one's traceback instead of building again.
    Callers must treat the folder as read-only."""
    root = shared_root(tmp_path_factory)
    folder, done, failed = root / name, root / f"{name}.json", root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if failed.exists():
            pytest.fail(f"building {name} failed (in another worker):\n{failed.read_text()}", pytrace=False)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                info = build(folder)
            except BaseException:
                failed.write_text(traceback.format_exc())
                raise
            done.write_text(json.dumps(info))
    return folder, json.loads(done.read_text())


@pytest.fixture(scope="session")
def open_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The open body model, built once per test run for all workers (≈10 s): (folder, build report). Read-only."""
    from pipeline.body.anny_build import build_open_body_model

    return build_once(tmp_path_factory, "body_models",
                      lambda out: build_open_body_model(out, n_shape_samples=120, seed=0, progress=False))


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


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line that runs the workflow in ``workdir`` (its own config/config.yaml) on 2 cores: the folder's
    own copy of the workflow when it holds one (a project, see :func:`copy_workflow`), else this repository's."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").is_file() else ROOT / "Snakefile"
    return [str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` (see :func:`snakemake_command`) and capture its output."""
    return subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, "PYOPENGL_PLATFORM": "egl"})


# ------------------------------------------------------------------------------------------- the tiny project
#: Seconds the tiny project's DAG may take (it takes ≈ 4 min on 2 idle cores).
TINY_PROJECT_TIMEOUT = 900
#: The background build this process started, if any (see :func:`start_tiny_project`).
_TINY_BUILD: list[subprocess.Popen] = []


def _tiny_paths(root: Path) -> dict[str, Path]:
    return {"work": root / "tiny_project", "log": root / "tiny_project.log", "rc": root / "tiny_project.rc",
            "started": root / "tiny_project.started", "lock": root / "tiny_project.lock"}


def start_tiny_project(root: Path) -> None:
    """Start the tiny project's DAG in the background in ``root``/tiny_project unless a worker already did. A shell
    around Snakemake writes its exit status to tiny_project.rc, so any worker can wait for it
    (:func:`wait_for_tiny_project`); its own process group lets the starter stop all of it
    (:func:`stop_tiny_project`). Not a session of its own: Linux gives each session (autogroup) an equal share of
    the CPU whatever the niceness, and the DAG must get the cores before the test processes
    (:data:`TEST_NICENESS`)."""
    paths = _tiny_paths(root)
    with FileLock(str(paths["lock"])):
        if paths["started"].exists():
            return
        work = copy_workflow(paths["work"])
        shutil.copy(ROOT / "tests" / "config_tiny.yaml", work / "config" / "config.yaml")
        record = 'rc=$?; echo $rc > "$0.part" && mv "$0.part" "$0"'
        with paths["log"].open("w") as log:
            proc = subprocess.Popen(["bash", "-c", f'"$@"; {record}', str(paths["rc"]), *snakemake_command(work, "all")],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    process_group=0, env={**os.environ, "PYOPENGL_PLATFORM": "egl"})
        _TINY_BUILD.append(proc)
        paths["started"].write_text(json.dumps({"pid": proc.pid, "time": time.time()}))


def wait_for_tiny_project(root: Path) -> Path:
    """The finished tiny project (started here if nobody did); fails with the log's tail if its DAG failed or ran
    past :data:`TINY_PROJECT_TIMEOUT` (then stopped)."""
    paths = _tiny_paths(root)
    start_tiny_project(root)
    started = json.loads(paths["started"].read_text())
    while not paths["rc"].exists():
        if time.time() - started["time"] > TINY_PROJECT_TIMEOUT:
            _kill_group(started["pid"])
            pytest.fail(f"the tiny project ran past {TINY_PROJECT_TIMEOUT} s:\n{_tail(paths['log'])}", pytrace=False)
        time.sleep(0.5)
    rc = int(paths["rc"].read_text())
    if rc != 0:
        pytest.fail(f"the tiny project's DAG failed (exit status {rc}):\n{_tail(paths['log'])}", pytrace=False)
    return paths["work"]


def stop_tiny_project(wait: bool) -> None:
    """At the end of the session that started the background build: wait for it (another worker may still need
    it) or, when the run was interrupted, stop Snakemake and its jobs."""
    for proc in _TINY_BUILD:
        if proc.poll() is None and wait:
            try:
                proc.wait(timeout=TINY_PROJECT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            _kill_group(proc.pid)
    _TINY_BUILD.clear()


def _kill_group(pid: int) -> None:
    """SIGINT (Snakemake stops its jobs), then SIGKILL after 30 s, to the process group ``pid`` leads."""
    for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _tail(path: Path, chars: int = 8000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-chars:]


#: Test modules whose tests share an expensive module-scoped fixture (named here): under pytest-xdist one worker runs
#: all of a module's tests, so that the fixture is built once (:func:`pytest_xdist_make_scheduler`). The tests of
#: other modules are handed out one at a time.
ONE_WORKER_MODULES: dict[str, str] = {
    "test_evaluate_predict.py": "splits: two generated image splits, models, checkpoint",
    "test_graphonomy.py": "model, checkpoint: Graphonomy's Universal network",
    "test_open_body_model.py": "conv: the Anny-to-SMPL converter",
    "test_pretrain.py": "pretrained_world: a pretraining run of the tiny world",
    "test_prior_stage.py": "prior_run: 3 scans made, rendered and parsed",
    "test_real_world.py": "real_work: stand-ins of every licensed file, ~200 MB",
    "test_world_scans.py": "scans: 40 scans",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` (``--dist load``): whole modules of :data:`ONE_WORKER_MODULES`, single tests otherwise, handed out
    in collection order (:func:`pytest_collection_modifyitems`). xdist's own ``--dist loadgroup`` cannot do this
    under pytest 9: it tags a test by rewriting ``item._nodeid``, which pytest 9 no longer reads."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if Path(module).name in ONE_WORKER_MODULES else nodeid

    config.option.loadscopereorder = False  # biggest scopes first would put DAG tests before the unit tests
    return ModuleGroupScheduling(config, log)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that need the tiny project run after the others, so that the others run while it builds: each such
    test, and every test of a module of :data:`ONE_WORKER_MODULES` with one (one worker runs that module whole, so
    it must not wait for the project early). In each part those modules (the longest units of work) go first, then
    the tests marked ``slow`` (a long test handed out last would leave the other worker idle at the end);
    collection order otherwise."""
    waiting = {item.path for item in items if "tiny_project" in item.fixturenames
               and item.path.name in ONE_WORKER_MODULES}

    def waits(item: pytest.Item) -> bool:
        return item.path in waiting or "tiny_project" in item.fixturenames

    items.sort(key=lambda item: (waits(item), item.path.name not in ONE_WORKER_MODULES,
                                 item.get_closest_marker("slow") is None))


#: Niceness the test processes take once the tiny project's DAG runs: the DAG is the run's critical path (most DAG
#: tests wait for it), so it gets the cores first and the unit tests fill what it leaves idle.
TEST_NICENESS = 10


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the tiny project's DAG in the background as soon as a collected test needs it, then lower this
    process's priority (:data:`TEST_NICENESS`; the DAG, started before, keeps the priority it had)."""
    if not session.config.option.collectonly and any("tiny_project" in item.fixturenames for item in session.items):
        start_tiny_project(shared_root(session.config._tmp_path_factory))  # type: ignore[attr-defined]
        os.nice(max(0, TEST_NICENESS - os.nice(0)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_tiny_project(wait=exitstatus != pytest.ExitCode.INTERRUPTED and not session.shouldstop)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG (default target) on tests/config_tiny.yaml, run once per test run for all workers in a project
    folder (a copy of the workflow with that config, run from its root as a clone is). Never modified: copy it to
    change anything (``shutil.copytree(..., symlinks=True)`` keeps it done, tests/test_rerun.py). Its 67 jobs take
    ≈ 4 min on 2 cores; they start in the background when collection ends (:func:`pytest_collection_finish`)."""
    return wait_for_tiny_project(shared_root(tmp_path_factory))


@pytest.fixture(scope="session")
def tiny_run(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished tiny project that the tests of one worker share and may change (restoring what they
    change)."""
    work = tmp_path_factory.mktemp("dag") / "project"
    shutil.copytree(tiny_project, work, symlinks=True)
    return work
