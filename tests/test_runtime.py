"""Shared runtime helpers: atomic outputs keep the usual file mode and leave nothing behind on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.evaluate.report import atomic_write_bytes
from pipeline.runtime import atomic_path


def test_atomic_output_gets_the_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "sub" / "table.csv", b"a,b\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"a,b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]


def test_atomic_output_failure_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "result.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.npz"]


def test_resolve_device_cpu_needs_no_torch() -> None:
    """``cpu`` resolves without importing torch (the open world's parser jobs never touch it); ``auto`` resolves
    to what torch sees; an unknown name is refused."""
    import subprocess
    import sys

    code = ("import sys; from pipeline.runtime import resolve_device; "
            "print(resolve_device('cpu'), 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["cpu", "False"]
    import torch

    from pipeline.runtime import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'; allowed: auto, cpu, cuda"):
        resolve_device("gpu")
