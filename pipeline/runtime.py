"""Small runtime helpers shared by the workflow scripts: logging, seeds, devices, provenance."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send log records (and uncaught exceptions) to ``log_path`` and stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logger = logging.getLogger("pipeline")

    def _hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        logger.error("stage failed", exc_info=(exc_type, exc, tb))

    sys.excepthook = _hook
    return logger


def stage_seed(seed: int, *names: str) -> int:
    """Derive a stable 32-bit seed for one stage/item from the master seed and names."""
    digest = hashlib.sha256(("/".join([str(seed), *names])).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def resolve_device(device: str) -> str:
    """Map the config's ``auto|cpu|cuda`` onto an available torch device string (``cpu`` without importing torch:
    jobs that never touch torch, e.g. the open world's parsers, are spared its 1.8 s of CPU)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device: cuda, but torch sees no CUDA device; set device: auto or cpu")
    return device


#: Numeric precisions of the regressor's training forward pass (``train.precision``, ``open_world.pretrain.precision``).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def native_bf16(device: str) -> bool:
    """Whether ``device`` (``cpu`` / ``cuda`` / ``cuda:N``) computes bfloat16 in hardware: a CUDA device with bf16
    support, or a CPU with AVX512-BF16 or AMX units. Elsewhere torch emulates bf16, slower than float32."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: str) -> str:
    """Map ``auto|fp32|bf16`` onto ``fp32`` or ``bf16``: ``auto`` is bf16 where ``device`` has native bf16
    (:func:`native_bf16`), else fp32. Like ``device: auto`` it is a machine choice, recorded with each run."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def git_sha(root: str | Path | None = None) -> str:
    """The repository's HEAD commit (with ``-dirty`` when modified), or ``unknown`` outside git."""
    cwd = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (setting it is racy with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``, on error it is removed.

    The folder is created. The final file gets the usual ``0o666 & ~umask`` mode (``mkstemp`` alone would leave
    it private to the user, which breaks results shared on a cluster file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
