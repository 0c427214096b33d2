"""Rerun semantics (issue #19): what a dry run of a finished project schedules, and why.

Snakemake 9 reruns a job on five triggers (``--rerun-triggers``): *mtime* (an input newer than the job's outputs
whose content differs from the checksum recorded at the last run: a touched but unchanged file reruns nothing),
*params* (the ``repr`` of each param), *input* (the recorded set of input paths), *code* (a rule's shell or run
text; for a script rule, the script's modification time) and *software-env* (conda envs under ``--sdm conda``).
This workflow relies on the first three:

- input: rules name their code inputs relative to the project, so a moved project has nothing to do;
- mtime: each rule's code inputs are the import closure of its script (:mod:`pipeline.code_inputs`), the same
  set Python's ``modulefinder`` finds; editing a module reruns exactly the rules that import it;
- params: a setting reruns exactly the rules whose outputs it can change (the table below), and params are
  canonical (sorted keys, floats for numbers), so a reordered config or an explicit default reruns nothing.

All dry runs go against one copy of the session's finished tiny project (``tiny_project`` in conftest.py), moved
to a folder of another depth; each test restores what it changed (file text and modification time).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import modulefinder
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from pipeline.code_inputs import (
    _direct_imports,
    imported_modules,
    script_code_files,
    workflow_input_path,
)
from pipeline.config import deep_update
from pipeline.masks.clean import CleanSettings, cleaning_params
from pipeline.prior.parse import ParserSettings, parser_params
from pipeline.train.settings import AugmentSettings, SourceSpec, TrainSettings
from tests.conftest import ROOT, run_snakemake

#: The DSR run of the tiny config, retrained, and everything downstream of it (tests/config_tiny.yaml: runs sd
#: and dsr = DSR-MC + DSR-C; no pretraining, as assets.pretrained_checkpoint is null there).
#: (The open world's Potential of DSR experiment, a report section, reads the same masks, prior, DSR settings and
#: device as the DSR run.)
DSR_RUN_DOWNSTREAM = {"train_regressor", "predict_test_split", "score_predictions", "evaluate_3dpw", "evaluate_h36m",
                      "evaluate_mpi_inf_3dhp", "plot_qualitative", "plot_training_curves", "summarise_validation",
                      "potential_of_dsr", "build_report", "all"}
#: New predictions (any run) and everything downstream of them.
PREDICTIONS_DOWNSTREAM = {"predict_test_split", "score_predictions", "evaluate_3dpw", "evaluate_h36m",
                          "evaluate_mpi_inf_3dhp", "plot_qualitative", "build_report", "all"}
#: A new semantic prior and everything downstream of it.
PRIOR_DOWNSTREAM = {"accumulate_prior", "plot_prior", "check_prior_quality"} | DSR_RUN_DOWNSTREAM
#: Text of a dry run gone wrong (an input function raising, a traceback).
NOISE = re.compile(r"exception|traceback", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Job:
    """One job of a dry run: rule, wildcards (``run=dsr``), the reason Snakemake gives."""

    rule: str
    wildcards: str
    reason: str


def dry_run(project: Path, *args: str) -> tuple[list[Job], str]:
    """The jobs ``snakemake -n`` would run in ``project`` (default target), and its output.

    Every dry run here must also be quiet: no exception text (issue #19 item 3)."""
    res = run_snakemake(project, "-n", *args, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert not NOISE.search(out), out[-6000:]
    jobs: list[dict[str, str]] = []
    for line in out.splitlines():
        text = line.strip()
        if m := re.fullmatch(r"(?:local)?rule (\w+):", text):
            jobs.append({"rule": m.group(1), "wildcards": "", "reason": ""})
        elif jobs and text.startswith(("wildcards:", "reason:")):
            key, _, value = text.partition(": ")
            jobs[-1][key] = value
    return [Job(**j) for j in jobs], out


def rules_of(jobs: list[Job]) -> set[str]:
    return {j.rule for j in jobs}


@contextmanager
def edited(path: Path, text: str) -> Iterator[None]:
    """Temporarily replace a file's text; restore text and modification time after."""
    old, stat = path.read_text(), path.stat()
    path.write_text(text)
    try:
        yield
    finally:
        path.write_text(old)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture(scope="module")
def project(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished tiny project, copied (timestamps kept) to a folder of another depth: moved."""
    moved = tmp_path_factory.mktemp("moved") / "to" / "another" / "folder"
    shutil.copytree(tiny_project, moved, symlinks=True)
    return moved


@pytest.fixture(scope="module")
def untouched_dry_run(project: Path) -> tuple[list[Job], str]:
    return dry_run(project)


# ------------------------------------------------------------------------------------- a moved project
def test_a_moved_project_has_nothing_to_do(untouched_dry_run: tuple[list[Job], str]) -> None:
    jobs, out = untouched_dry_run
    assert jobs == [] and "Nothing to be done" in out, out[-3000:]


def test_a_healthy_dry_run_prints_no_exception_text(untouched_dry_run: tuple[list[Job], str]) -> None:
    """The mask store pattern results/masks/{dataset}.h5 no longer matches the parse shards
    results/masks/{dataset}/parsing/{k}.h5 (whose evaluation as a mask store printed an InputFunctionException
    per shard on every dry run)."""
    _, out = untouched_dry_run
    assert "Building DAG of jobs" in out
    assert not NOISE.search(out) and "KeyError" not in out, out


def test_code_inputs_are_named_relative_to_the_project(tiny_project: Path) -> None:
    """What Snakemake recorded (the input trigger compares it): no absolute path, so a moved project stays done."""
    records = _records(tiny_project)
    code = {path for r in records for path in r["input"] if "pipeline/" in path}
    assert code and all(path.startswith("pipeline/") for path in code), sorted(code)[:5]
    assert not [path for r in records for path in r["input"] if os.path.isabs(path)]


# ------------------------------------------------------------------------------------- code inputs
def _metadata(project: Path) -> dict[str, dict]:
    """Snakemake's provenance records (.snakemake/metadata: one JSON per output file, named by the output's
    URL-safe base64, split into @-prefixed folders when longer than a file name): output -> record."""
    root = project / ".snakemake" / "metadata"
    records = {}
    for path in (p for p in root.rglob("*") if p.is_file()):
        name = "".join(part.removeprefix("@") for part in path.relative_to(root).parts)
        records[base64.urlsafe_b64decode(name).decode()] = json.loads(path.read_text())
    assert records and all(r["record_format_version"] >= 6 for r in records.values())
    return records


def _records(project: Path) -> list[dict]:
    return list(_metadata(project).values())


class _PipelineFinder(modulefinder.ModuleFinder):
    """The standard library's module finder (bytecode, not ``ast``), following the ``pipeline`` package only."""

    def find_module(self, name, path, parent=None):  # type: ignore[no-untyped-def]
        full = f"{parent.__name__}.{name}" if parent else name
        if full.split(".")[0] != "pipeline" and name != "__init__":
            raise ImportError(full)
        return super().find_module(name, path, parent)


def _modulefinder_closure(script: Path, root: Path) -> set[str]:
    """``pipeline/...`` files the script imports, transitively (package ``__init__.py`` files included)."""
    finder = _PipelineFinder(path=[str(root)])
    finder.run_script(str(script))
    files = set()
    for name, module in finder.modules.items():
        if name.split(".")[0] == "pipeline":
            path = Path(module.__file__)
            files.add(str((path / "__init__.py" if path.is_dir() else path).relative_to(root)))
    return files


def _rule_code_inputs(project: Path) -> dict[str, tuple[str, set[str]]]:
    """rule -> (its script, its code inputs) as recorded at the last run; every job of a rule agrees."""
    rules: dict[str, tuple[str, set[str]]] = {}
    for record in _records(project):
        script = re.fullmatch(r'\s*"\.\./scripts/(\w+\.py)"\s*', record["code"]).group(1)
        code = {p for p in record["input"] if p.startswith("pipeline/")}
        assert rules.setdefault(record["rule"], (script, code)) == (script, code), record["rule"]
    return rules


def test_each_module_is_a_code_input_of_exactly_the_rules_that_import_it(tiny_project: Path) -> None:
    """For every pipeline module: the rules whose recorded code inputs include it = the rules whose script imports
    it directly or indirectly, by modulefinder (an independent implementation: bytecode, not ast)."""
    rules = _rule_code_inputs(tiny_project)
    assert len(rules) == 31, sorted(rules)  # every rule of the tiny DAG but `all` (no script)
    closure = {s: _modulefinder_closure(tiny_project / "workflow" / "scripts" / s, tiny_project)
               for s in {s for s, _ in rules.values()}}
    modules = sorted(str(p.relative_to(tiny_project)) for p in (tiny_project / "pipeline").rglob("*.py"))
    importers = {}
    for module in modules:
        derived = {rule for rule, (_, code) in rules.items() if module in code}
        independent = {rule for rule, (script, _) in rules.items() if module in closure[script]}
        assert derived == independent, module
        importers[module] = derived
    assert importers["pipeline/losses/dsr.py"] == {"train_regressor", "potential_of_dsr"}
    assert importers["pipeline/prior/figures.py"] == {"plot_prior"}
    assert importers["pipeline/masks/clean.py"] == {"clean_masks", "train_regressor", "potential_of_dsr"}
    assert importers["pipeline/runtime.py"] == set(rules)
    assert importers["pipeline/code_inputs.py"] == importers["pipeline/config.py"] == set()  # DAG-build time only


def test_every_rule_with_a_script_takes_its_code_inputs_from_that_script() -> None:
    """Also the rules outside the tiny DAG (prepare_body_model, evaluate_ablation, the pretraining rules)."""
    checked = 0
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^(?=rule \w+:|    rule:)", smk.read_text(), flags=re.MULTILINE)[1:]
        for block in blocks:
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', block)
            code = re.findall(r'code=get_script_code\("(\w+\.py)"\)', block)
            assert script and code == [script.group(1)], block[:300]
            checked += 1
    assert checked == 30


def _downstream(project: Path, rules: set[str]) -> set[str]:
    """The rules that read, directly or not, what ``rules`` wrote (from the recorded inputs and outputs)."""
    records = _metadata(project)
    producer = {output: record["rule"] for output, record in records.items()}
    reads = {(producer[f], r["rule"]) for r in records.values() for f in r["input"] if f in producer}
    found, todo = set(), set(rules)
    while todo:
        found |= todo
        todo = {b for a, b in reads if a in todo} - found
    return found - rules | {"all"}


@pytest.mark.parametrize(
    ("module", "importers"),
    [
        ("pipeline/losses/dsr.py", {"train_regressor", "potential_of_dsr"}),
        ("pipeline/io/masks_h5.py", {"parse_images", "clean_masks", "train_regressor", "predict_test_split",
                                     "score_predictions", "plot_qualitative", "potential_of_dsr"}),
    ],
)
def test_editing_a_module_reruns_exactly_its_importers(project: Path, module: str, importers: set[str]) -> None:
    """Trigger mtime: the edited module is newer than the outputs and its checksum changed. What runs: the rules
    that import it and what reads their outputs. A job of an importing rule that also reads a rerun job's output
    is reported with that reason (Snakemake gives the first), the others with the edited module."""
    path = project / module
    assert importers == {rule for rule, (_, code) in _rule_code_inputs(project).items() if module in code}
    with edited(path, path.read_text() + "\n# an edit\n"):
        jobs, out = dry_run(project)
    assert rules_of(jobs) == importers | _downstream(project, importers), out[-3000:]
    for job in jobs:
        if job.reason.startswith("Updated input files"):
            assert job.reason == f"Updated input files: {module}" and job.rule in importers, job
        else:
            assert job.reason.startswith("Input files updated by another job"), job
    assert {j.rule for j in jobs if j.reason.startswith("Updated input files")}  # some job names the module


def test_touching_a_module_without_changing_it_reruns_nothing(project: Path) -> None:
    """Newer, but with the content recorded at the last run (checksum): nothing to do. Use --forcerun to rerun."""
    path = project / "pipeline" / "runtime.py"  # imported by every rule
    stat = path.stat()
    os.utime(path)
    try:
        jobs, out = dry_run(project)
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs == [], out[-3000:]


# ------------------------------------------------------------------------------------- settings
#: (config edit (a mapping merged into the project's config, or an (old, new) text replacement), extra command-line
#:  arguments, the rules that rerun, the runs retrained). The tiny config: device cpu, rendered parsers, runs
#: sd and dsr (DSR-MC + DSR-C).
SETTINGS = {
    # parsers of the rendered backend read the open world's label maps: scales, flip and device change nothing
    "{prior,masks}.parser.scales+flip (rendered)": ({"prior": {"parser": {"scales": [1.0], "flip": False}},
                                                     "masks": {"parser": {"scales": [1.0], "flip": False}}},
                                                    (), set(), set()),
    # device reaches the network stages only: both runs retrain and every run predicts again, no parse job reruns
    "device auto": ({"device": "auto"}, (), DSR_RUN_DOWNSTREAM, {"sd", "dsr"}),
    # weights and settings of DSR terms no run uses: nothing
    "train.loss_weights.dsr_fb+fb_metric (unused)": ({"train": {"loss_weights": {"dsr_fb": 0.5}, "fb_metric": "bce"}},
                                                     (), set(), set()),
    # a setting of a term the DSR run uses: the DSR run only
    "train.dsr_c_requires_mc": ({"train": {"dsr_c_requires_mc": True}}, (), DSR_RUN_DOWNSTREAM, {"dsr"}),
    # CPU kernels round differently per batch size (tiny world: predictions differ by <= 2.4e-7, 1-2 float32
    # ulps), so evaluate.batch_size stays a param of the predictions: every run predicts again, none retrains
    "evaluate.batch_size": ({"evaluate": {"batch_size": 2}}, (), PREDICTIONS_DOWNSTREAM, set()),
    # nested --config values arrive as strings ('80'): read as the schema's integer; mask cleaning and the DSR run
    "--config masks.min_label_pixels": ({}, ("--config", 'masks={"min_label_pixels": 80}'),
                                        {"clean_masks"} | DSR_RUN_DOWNSTREAM, {"dsr"}),
    # keys reordered, a default written out (as an integer for a float): the same params
    "prior.views reordered, default explicit": (("  views:\n    count: 3\n    image_size: 160\n",
                                                 "  views:\n    image_size: 160\n    distance_m: 3\n    count: 3\n"),
                                                (), set(), set()),
    # views per scan: every render and parse job of the prior, then everything downstream of the prior
    "prior.views.count": ({"prior": {"views": {"count": 4}}}, (),
                          {"render_scan_views", "parse_scan_views"} | PRIOR_DOWNSTREAM, {"dsr"}),
}


@pytest.mark.parametrize(("edit", "args", "expected", "retrained"), list(SETTINGS.values()), ids=list(SETTINGS))
def test_each_setting_reruns_exactly_the_rules_it_changes(project: Path, edit: dict | tuple[str, str],
                                                          args: tuple[str, ...], expected: set[str],
                                                          retrained: set[str]) -> None:
    config = project / "config" / "config.yaml"
    text = config.read_text()
    if isinstance(edit, tuple):
        assert edit[0] in text
        new = text.replace(*edit)
    else:
        new = yaml.safe_dump(deep_update(yaml.safe_load(text), edit), sort_keys=False) if edit else text
    with edited(config, new):
        jobs, out = dry_run(project, *args)
    assert rules_of(jobs) == expected, out[-3000:]
    assert {j.wildcards.removeprefix("run=") for j in jobs if j.rule == "train_regressor"} == retrained
    reasons = " ".join(j.reason for j in jobs)
    assert "Updated input files" not in reasons and "Set of input files has changed" not in reasons, out[-3000:]


# ------------------------------------------------------------------------------------- units
def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_import_closure_follows_the_package_only(tmp_path: Path) -> None:
    """Absolute, relative and function-level imports; names vs submodules; cycles; parents' __init__ files."""
    root = _package(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/a/__init__.py": "",
        "pipeline/a/x.py": "import numpy\nfrom pipeline.b import CONSTANT\n\ndef f():\n    from . import y\n",
        "pipeline/a/y.py": "from ..b import z\n",
        "pipeline/b/__init__.py": "CONSTANT = 1\n",
        "pipeline/b/z.py": "import pipeline.a.x\n",  # a cycle
        "pipeline/b/unused.py": "",
        "scripts/s.py": "import os\nfrom pipeline.a import x\n",
    })
    assert imported_modules(root / "scripts/s.py", root) == ["pipeline", "pipeline.a", "pipeline.a.x", "pipeline.a.y",
                                                             "pipeline.b", "pipeline.b.z"]
    files = script_code_files([root / "scripts/s.py"], root)
    assert [str(f.relative_to(root.resolve())) for f in files] == [
        "pipeline/__init__.py", "pipeline/a/__init__.py", "pipeline/a/x.py", "pipeline/a/y.py",
        "pipeline/b/__init__.py", "pipeline/b/z.py"]


def test_import_closure_of_every_script_takes_under_a_second() -> None:
    _direct_imports.cache_clear()
    t0 = time.process_time()  # CPU time: wall time fails on a loaded machine (1.16 s beside pytest workers)
    files = script_code_files(sorted((ROOT / "workflow" / "scripts").glob("*.py")), ROOT)
    assert time.process_time() - t0 < 1.0
    assert ROOT / "pipeline" / "train" / "loop.py" in files and ROOT / "pipeline" / "code_inputs.py" not in files


def test_code_input_paths_move_with_the_project(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    module = repo / "pipeline" / "runtime.py"
    assert workflow_input_path(module, repo, repo) == "pipeline/runtime.py"
    assert workflow_input_path(module, repo, repo / "runs" / "a") == "../../pipeline/runtime.py"
    # a working directory apart from the workflow may move alone: the workflow's absolute path
    assert workflow_input_path(module, repo, tmp_path / "elsewhere") == str(module.resolve())


def _settings(terms: tuple[str, ...], **overrides: object) -> TrainSettings:
    return TrainSettings(run="r", dsr_terms=terms, seed=1, steps=10, batch_size=4,
                         datasets=(SourceSpec("h36m", "a.npz", "img", "spin_npz", "m.h5"),), ratios=(1.0,),
                         loss_weights={"dsr_mc": 0.01, "dsr_c": 0.01, "dsr_fb": 0.01, "keypoint_2d": 5}, **overrides)


def test_train_params_hold_only_what_the_run_uses() -> None:
    mc = _settings(("dsr_mc",)).params_dict()
    assert mc["loss_weights"] == {"dsr_mc": 0.01, "keypoint_2d": 5.0}  # no weight of an unused term; floats
    assert "fb_metric" not in mc and "dsr_c_requires_mc" not in mc and mc["render_size"] == 224
    fb = _settings(("dsr_fb",), fb_metric="bce").params_dict()
    assert fb["fb_metric"] == "bce" and set(fb["loss_weights"]) == {"dsr_fb", "keypoint_2d"}
    sd = _settings((), val_dataset=None, augment=AugmentSettings(enabled=False, flip_prob=0.1)).params_dict()
    assert not {"render_size", "renderer", "dsr_start_iter", "val_every", "val_fraction"} & set(sd)
    assert sd["augment"] == {"enabled": False} and sd["loss_weights"] == {"keypoint_2d": 5.0}
    assert list(sd) == sorted(sd) and list(mc["renderer"]) == sorted(mc["renderer"])
    # what is left out does not matter to the run: changing it leaves the params as they are
    assert _settings(("dsr_mc",), fb_metric="bce", dsr_c_requires_mc=True).params_dict() == mc
    assert TrainSettings.from_dict(mc).params_dict() == mc


def test_parser_params_of_the_rendered_backend_ignore_scales_flip_and_device() -> None:
    cfg = {"backend": "rendered", "scales": [1, 2], "flip": True}
    assert parser_params(cfg, device="auto") == parser_params({**cfg, "scales": [1.0], "flip": False}, device="cpu") \
        == {"backend": "rendered"}
    assert parser_params(cfg, device="cpu", noise={"level": 1.0}, seed=3) == {"backend": "rendered",
                                                                               "noise": {"level": 1.0}, "seed": 3}
    graphonomy = parser_params({**cfg, "backend": "graphonomy"}, device="auto", noise={"level": 1.0}, seed=3)
    assert graphonomy == {"backend": "graphonomy", "device": "auto", "flip": True, "scales": [1.0, 2.0]}
    assert ParserSettings.from_params(graphonomy, "cpu") == ParserSettings("graphonomy", (1.0, 2.0), True, "cpu")


def test_cleaning_params_are_the_cleaning_settings_and_the_mapping() -> None:
    masks = {"datasets": ["h36m"], "parser": {"backend": "rendered"}, "num_shards": 2, "mapping": "table1",
             **CleanSettings().to_dict()}
    params = cleaning_params(masks)
    assert list(params) == sorted([*CleanSettings().to_dict(), "mapping"])
    assert CleanSettings.from_config(params) == CleanSettings()
