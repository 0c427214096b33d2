"""Training checkpoints: atomic save, exact-resume state, and loading a model for evaluation.

File format (``torch.save`` of a dict; SPIN's keys plus what exact resume and evaluation need)::

    model          HMR state dict (SPIN-compatible names: SPIN's eval code can load it)
    optimizer      Adam state dict
    step           optimiser steps done (SPIN: total_step_count)
    model_config   {"backbone", "n_iter", "num_betas", "image_size"}: how to rebuild the model
    rng            {"torch": ByteTensor, "cuda": [...] or None}: dropout RNG for exact resume
    fingerprint    hash of the resolved training settings + :func:`inputs_digest` of the files the run reads
                   and of its code; a checkpoint of other settings, inputs or code is never resumed
    run            run name; settings: the resolved settings (dict)

Everything is written to a temporary sibling and renamed (:func:`pipeline.runtime.atomic_path`), so a killed job leaves a previous complete
checkpoint or none, never a truncated one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.model.hmr import HMR, load_pretrained
from pipeline.runtime import atomic_path

#: Model settings stored in every checkpoint.
MODEL_CONFIG_KEYS: tuple[str, ...] = ("backbone", "n_iter", "num_betas", "image_size")
#: SPIN's crop side, assumed for foreign checkpoints without ``model_config``.
DEFAULT_IMAGE_SIZE: int = 224


def inputs_digest(data_files: Iterable[str | Path], code_files: Iterable[str | Path] = ()) -> str:
    """Resume guard for what a run reads: (path, size, mtime) of each data file, the contents of each code file.

    Snakemake reruns a training job when an input, a parameter or the code changed, and also after a killed
    job. Only the last case may resume from ``last.pt``: regenerated masks or an edited loss must train anew,
    or the rerun would re-save the old weights. Data files are stamped by size and modification time (cheap
    for multi-GB mask stores; a regenerated file always gets a new one), code files by content. Folders
    count by the regular files directly inside them; missing paths by their name.
    """
    h = hashlib.sha256()
    for name in sorted({str(f) for f in data_files}):
        path = Path(name)
        members = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for member in members:
            st = member.stat() if member.exists() else None
            h.update(f"{member}:{st.st_size}:{st.st_mtime_ns}\n".encode() if st else f"{member}:-\n".encode())
    for name in sorted({str(f) for f in code_files}):
        h.update(name.encode() + b"\0" + Path(name).read_bytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically (partial file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU (``weights_only``: never executes code from the file).

    Raises:
        FileNotFoundError / ValueError / TypeError naming the file when it is missing, unreadable or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train the run first (rule train_regressor)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # several unpickling error types
        raise ValueError(f"cannot read checkpoint {path}: {exc}; delete it and rerun training") from exc
    if not isinstance(obj, dict):
        raise TypeError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                          backbone: str = "resnet50") -> tuple[HMR, dict[str, Any]]:
    """Rebuild the regressor stored in ``path``, in eval mode on ``device``.

    Our checkpoints carry ``model_config``; a foreign one (SPIN's ``model_checkpoint.pt``, DSR's released
    model, a raw state dict) is loaded into ``HMR(backbone)`` with :func:`pipeline.model.hmr.load_pretrained`
    and evaluated at 224 px.

    Returns:
        ``(model, model_config)`` with ``model_config`` holding :data:`MODEL_CONFIG_KEYS`.
    """
    obj = read_checkpoint(path)
    cfg = obj.get("model_config")
    if isinstance(cfg, dict) and "model" in obj:
        missing = [k for k in MODEL_CONFIG_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"checkpoint {path}: model_config lacks {missing}")
        model = HMR(backbone=cfg["backbone"], n_iter=int(cfg["n_iter"]), num_betas=int(cfg["num_betas"]))
        model.load_state_dict(obj["model"])
        config = {k: cfg[k] for k in MODEL_CONFIG_KEYS}
    else:
        model = HMR(backbone=backbone)
        kind = load_pretrained(model, path)
        if kind != "full":
            raise ValueError(f"checkpoint {path} holds only a backbone ({kind}); it cannot be evaluated")
        config = {"backbone": backbone, "n_iter": model.n_iter, "num_betas": model.num_betas,
                  "image_size": DEFAULT_IMAGE_SIZE}
    return model.to(device).eval(), config
