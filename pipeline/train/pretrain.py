"""Pretraining with full supervision: the start every fine-tuning run loads (paper §4: "we initialize the
network with SPIN pre-trained weights").

With real assets the user's SPIN ``model_checkpoint.pt`` is that start. A world without one trains its own
here, on a pretraining set kept apart from the fine-tuning mix (as SPIN's pretraining data is apart from the
paper's): the same loop as every run (:func:`pipeline.train.loop.train`), no DSR terms, every sample with
SMPL parameters and 3D joints, and loss weights of its own (``loss_weights``: a regressor trained from
scratch needs the SMPL-parameter term far stronger than SPIN's fine-tuning weights, see the README's
*Pretraining* section). The result is written in SPIN's checkpoint layout, so it loads through
:func:`pipeline.model.hmr.load_pretrained` exactly like SPIN's file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.runtime import stage_seed
from pipeline.train.settings import AugmentSettings, SourceSpec, TrainSettings

#: Run name of the pretraining run (folder, logs, fingerprint).
PRETRAIN_RUN: str = "pretrain"


def pretrain_settings(pretrain_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                      shards: Sequence[tuple[str, str]], *, master_seed: int, device: str = "cpu",
                      threads: int = 0, progress: bool = True) -> TrainSettings:
    """:class:`TrainSettings` of the pretraining run.

    Args:
        pretrain_cfg: the pretraining section (``augmentation``, ``steps``, ``batch_size``, ``lr``, ``warmup_steps``,
            ``lr_final_factor``, ``grad_clip_norm``, ``precision``, ``loss_weights``, ``validation``,
            ``checkpoint_every``).
        train_cfg: ``config["train"]``: the architecture (``backbone``, ``n_iter``, ``image_size``), which the
            fine-tuning runs share with the checkpoint.
        shards: ``(annotations, images)`` of each pretraining shard (SPIN npz); each is one source of the mix,
            sampled in proportion to its size.
        master_seed: ``config["seed"]``.
    """
    if not shards:
        raise ValueError("pretraining needs at least one pretraining shard")
    datasets = tuple(SourceSpec(name=f"pretrain_{k}", annotations=str(a), images=str(i), fmt="spin_npz")
                     for k, (a, i) in enumerate(shards))
    val = pretrain_cfg["validation"]
    return TrainSettings(
        run=PRETRAIN_RUN, dsr_terms=(), seed=stage_seed(master_seed, PRETRAIN_RUN) % 2**31,
        steps=int(pretrain_cfg["steps"]), batch_size=int(pretrain_cfg["batch_size"]), datasets=datasets,
        ratios=tuple(1.0 for _ in datasets), lr=float(pretrain_cfg["lr"]),
        warmup_steps=int(pretrain_cfg["warmup_steps"]), lr_final_factor=float(pretrain_cfg["lr_final_factor"]),
        grad_clip_norm=float(pretrain_cfg["grad_clip_norm"]), precision=str(pretrain_cfg.get("precision", "fp32")),
        backbone=train_cfg["backbone"], n_iter=int(train_cfg["n_iter"]), image_size=int(train_cfg["image_size"]),
        loss_weights=dict(pretrain_cfg["loss_weights"]), augment=AugmentSettings(**pretrain_cfg["augmentation"]),
        val_dataset=datasets[0].name, val_fraction=float(val["fraction"]),
        checkpoint_every=int(pretrain_cfg["checkpoint_every"]), val_every=int(val["every"]),
        log_every=int(train_cfg["log_every"]), num_workers=int(train_cfg["num_workers"]), threads=threads,
        device=device, progress=progress,
    )


def export_spin_checkpoint(final: str | Path, out: str | Path) -> Path:
    """Write a run's ``final.pt`` in the layout of SPIN's ``model_checkpoint.pt``.

    SPIN's file holds ``model``, ``optimizer``, ``epoch``, ``batch_idx``, ``batch_size`` and
    ``total_step_count``; ``model_config`` and ``settings`` are kept as well (how to rebuild the model, what
    trained it). RNG state and the resume fingerprint are dropped: the file is a start, not a resume point.
    """
    # imported here: the workflow reads pretrain_settings at DAG-build time, without torch
    from pipeline.train.checkpoint import read_checkpoint, save_checkpoint

    state = read_checkpoint(final)
    settings = state.get("settings", {})
    spin = {
        "model": state["model"],
        "optimizer": state["optimizer"],
        "epoch": 0,
        "batch_idx": int(state["step"]),
        "batch_size": int(settings.get("batch_size", 0)),
        "total_step_count": int(state["step"]),
        "model_config": state.get("model_config", {}),
        "settings": settings,
    }
    return save_checkpoint(out, spin)

