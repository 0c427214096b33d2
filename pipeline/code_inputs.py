"""The ``pipeline`` source files a workflow script runs: the import closure of its ``pipeline`` imports.

Snakemake does not see edits inside imported modules, so each rule lists the modules its script runs as
``code`` inputs (``workflow/rules/common.smk``, :func:`get_script_code` there). This module derives that list
from the import statements instead of a hand-kept one: every ``import pipeline...`` / ``from pipeline... import``
/ relative import anywhere in the script or in a reached module (function bodies included: they run when the
function is called), followed transitively inside the ``pipeline`` package, plus the ``__init__.py`` of every
package on the way (Python runs them on import). Modules outside the package are not followed. The closure is
per file, so a rule depends on a whole module even when it calls one function of it.

It reads source text only (``ast``, no import is executed) and parses each module once per process: the 21
scripts of the workflow resolve in a few tenths of a second at DAG-build time.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

#: The package whose modules are followed.
PACKAGE: str = "pipeline"


def module_file(root: Path, name: str) -> Path | None:
    """Source file of module ``name`` (dotted) under ``root`` (the folder holding the package), or None."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs every enclosing package's ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` names; ``package`` is the importing module's package."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def _direct_imports(path: Path, root: Path, package: str) -> tuple[str, ...]:
    """Modules of :data:`PACKAGE` (dotted names, parents included) that the file at ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            # `from pkg import name`: name is a submodule when such a file exists, else an attribute
            targets = [module, *(f"{module}.{a.name}" for a in node.names if a.name != "*")]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != PACKAGE:
                continue
            found.update(n for n in _with_parents(target) if module_file(root, n) is not None)
    return tuple(sorted(found))


def imported_modules(script: str | Path, root: str | Path) -> list[str]:
    """Dotted names of every :data:`PACKAGE` module the script runs (transitively), sorted.

    Args:
        script: a Python file (a workflow script or a module).
        root: the folder holding the ``pipeline`` package (the workflow root).
    """
    root = Path(root).resolve()
    script = Path(script).resolve()
    todo = list(_direct_imports(script, root, _package_of(script, root)))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(root, name)
        assert path is not None  # _direct_imports keeps existing modules only
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(_direct_imports(path, root, package))
    return sorted(seen)


def _package_of(path: Path, root: Path) -> str:
    """The package a file belongs to (for its relative imports); "" outside ``root``'s packages."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return ""
    parts = list(rel.parent.parts)
    return ".".join(parts) if parts and parts[0] == PACKAGE else ""


def script_code_files(scripts: Iterable[str | Path], root: str | Path) -> list[Path]:
    """Source files of every module the scripts run, sorted (absolute paths under ``root``)."""
    root = Path(root).resolve()
    names = sorted({n for s in scripts for n in imported_modules(s, root)})
    return sorted(p for p in (module_file(root, n) for n in names) if p is not None)


def workflow_input_path(path: str | Path, root: str | Path, workdir: str | Path) -> str:
    """How a rule names a source file of the workflow in ``root`` as an input, seen from ``workdir``.

    Snakemake records each job's input paths and reruns a job whose recorded set differs, so the path must
    survive moving the project. When the workflow root and the working directory contain one another (the usual
    layout: snakemake run from the repository root), they move together: the path is relative to ``workdir``
    (``pipeline/train/loop.py``). Otherwise the working directory may move on its own: the path is absolute.
    """
    path, root, workdir = Path(path).resolve(), Path(root).resolve(), Path(workdir).resolve()
    if root.is_relative_to(workdir) or workdir.is_relative_to(root):
        return os.path.relpath(path, workdir)
    return str(path)
