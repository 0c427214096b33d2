"""Conda envs for `--sdm conda` (conda itself cannot run here): valid YAML, exact pins that agree with
pyproject.toml, a post-deploy script installing `pipeline`, and every package each rule's script imports.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

ENVS = ROOT / "envs"
ENV_FILES = sorted(ENVS.glob("*.yaml"))
# Build tools and the interpreter, pinned in every env (conda-forge packages).
CONDA_PINS = {"python": "3.11.7", "pip": "25.1.1", "setuptools": "80.9.0", "wheel": "0.45.1"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_canonical(d.split("==")[0]): d.split("==")[1] for d in deps}


def _env(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(conda pins, pip pins) of an env file, names canonical; fails on any unpinned entry."""
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"][0] == "conda-forge", path.name
    conda, pip = {}, {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                name, sep, version = line.partition("==")
                assert sep and version, f"{path.name}: pip entry {line!r} is not pinned with =="
                pip[_canonical(name)] = version
        else:
            name, sep, version = dep.partition("=")
            assert sep and version, f"{path.name}: conda entry {dep!r} is not pinned"
            conda[name] = version
    return conda, pip


def _rules() -> list[tuple[str, Path, Path]]:
    """(rule name, conda env file, script) of every rule with a script, parsed from workflow/rules/*.smk."""
    found = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^\s*rule(?:\s+(\w+))?:\s*$", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            name = name or re.search(r'name:\s*\n\s*f?"([^"]+)"', body).group(1)
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', body)
            assert conda, f"rule {name} in {smk.name} has no conda: env"
            if script:
                base = smk.parent
                found.append((name, (base / conda.group(1)).resolve(), (base / script.group(1)).resolve()))
    return found


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _third_party_imports(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level third-party modules imported by a file and, transitively, by the pipeline modules it uses."""
    seen = set() if seen is None else seen
    if path in seen:
        return set()
    seen.add(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "pipeline":
                parts = name.split(".")
                for k in range(1, len(parts) + 1):
                    module = _module_file(".".join(parts[:k]))
                    if module:
                        found |= _third_party_imports(module, seen)
            elif top not in sys.stdlib_module_names and top != "snakemake":
                found.add(top)
    return found


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.stem for p in ENV_FILES])
def test_env_is_pinned_and_agrees_with_pyproject(path: Path) -> None:
    conda, pip = _env(path)
    assert conda == CONDA_PINS, path.name
    assert pip, path.name
    pyproject = _pyproject_pins()
    for name, version in pip.items():
        # pyproject's pin where it has one, else the version measured in the project venv
        expected = pyproject.get(name) or importlib.metadata.version(name)
        assert version == expected, f"{path.name}: {name}=={version}, but the project pins {expected}"


def test_conda_python_pin_is_the_venv_interpreter() -> None:
    assert CONDA_PINS["python"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.stem for p in ENV_FILES])
def test_post_deploy_installs_the_pipeline_package(path: Path) -> None:
    script = path.with_name(f"{path.stem}.post-deploy.sh")
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and script.stat().st_mode & 0o111
    assert 'pip install --no-deps --no-build-isolation --editable "$root"' in text
    assert text == (ENVS / "pipeline.post-deploy.sh").read_text()


def test_every_rule_has_a_stage_env_covering_its_imports() -> None:
    distributions = importlib.metadata.packages_distributions()
    rules = _rules()
    assert {"build_body_model", "render_scan_views", "parse_images", "clean_masks"} <= {r[0] for r in rules}
    missing = {}
    for name, env, script in rules:
        assert env.parent == ENVS and env.exists(), f"rule {name}: env {env} is not a file in envs/"
        _, pip = _env(env)
        needed = {_canonical(d) for mod in _third_party_imports(script) for d in distributions.get(mod, [mod])}
        if needed - set(pip):
            missing[name] = sorted(needed - set(pip))
    assert not missing, f"packages imported by a rule's script but absent from its env: {missing}"


def test_stage_rules_use_their_stage_env() -> None:
    envs = {name: env.stem for name, env, _ in _rules()}
    assert envs["build_body_model"] == envs["check_body_model"] == "body"
    assert envs["make_scans"] == envs["make_images_{group}_{split}"] == "world"
    assert {envs[r] for r in ("render_scan_views", "parse_scan_views", "accumulate_prior", "plot_prior")} == {"prior"}
    assert envs["parse_images"] == envs["clean_masks"] == "masks"


def test_import_scan_sees_through_pipeline_modules() -> None:
    """The scan follows `from pipeline.x import y` into the package (else the coverage test proves nothing)."""
    script = ROOT / "workflow" / "scripts" / "build_body_model.py"
    assert not re.search(r"^\s*(import|from) anny", script.read_text(), re.MULTILINE)
    assert "anny" in _third_party_imports(script)
