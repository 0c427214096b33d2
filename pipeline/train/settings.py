"""Training settings as plain data (torch-free: the Snakefile resolves them per run at DAG-build time).

:func:`settings_from_config` turns the validated ``train`` config section and a run name into
:class:`TrainSettings`; :meth:`TrainSettings.params_dict` is what determines the trained weights. It is the
rule's ``params`` (so only runs whose own settings changed rerun: an SD run ignores every DSR setting) and the
resume fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.losses.terms import DSR_TERMS
from pipeline.params import canonical
from pipeline.train.runs import OFFICIAL_SWITCHES, parse_run, variant_options

#: SPIN/DSR crop side.
CROP_SIZE: int = 224
#: DSR-C mapping of the official code (switch ``classes8``); its mask stores live in a sibling folder named after
#: it, ``results/masks/official8/{dataset}.h5`` (rule ``clean_masks_mapped``).
OFFICIAL_MAPPING: str = "official8"
#: Loss weights named like the DSR terms: each matters only to runs with its term.
DSR_WEIGHTS: tuple[str, ...] = DSR_TERMS
#: Settings that only matter to runs with one of the given DSR terms (left out of other runs' params).
DSR_SETTING_TERMS: dict[str, tuple[str, ...]] = {
    "render_size": DSR_TERMS,
    "dsr_start_iter": DSR_TERMS,
    "dsr_reduction": DSR_TERMS,
    "renderer": DSR_TERMS,
    "official": DSR_TERMS,
    "fb_metric": ("dsr_fb",),
    "dsr_c_requires_mc": ("dsr_c",),
}
#: Settings that only matter to runs with DSR terms.
DSR_ONLY_SETTINGS: tuple[str, ...] = tuple(DSR_SETTING_TERMS)
#: Validation settings, which only matter when a validation dataset is in the mix.
VALIDATION_SETTINGS: tuple[str, ...] = ("val_fraction", "val_every")


@dataclass(frozen=True)
class SourceSpec:
    """One training dataset: name, annotation file, image root, format, optional mask store."""

    name: str
    annotations: str
    images: str
    fmt: str
    masks: str | None = None


@dataclass(frozen=True)
class AugmentSettings:
    """SPIN's augmentation constants (``train.augmentation`` in the config).

    enabled: False gives the identity (evaluation, validation); flip_prob: 0.5; noise_factor: 0.4;
    rot_factor: 30 degrees (std); rot_prob: 0.4 (probability of a non-zero rotation); rot_max: 60 degrees;
    scale_factor: 0.25 (std of the zoom, clipped to ``1 ± scale_factor``).
    """

    enabled: bool = True
    flip_prob: float = 0.5
    noise_factor: float = 0.4
    rot_factor: float = 30.0
    rot_prob: float = 0.4
    rot_max: float = 60.0
    scale_factor: float = 0.25


#: Settings of the machine, not of the run (never in the rule's params).
RUNTIME_SETTINGS: tuple[str, ...] = ("threads", "device", "progress")
#: Run settings that do not change the weights of a given step (left out of the resume fingerprint, so
#: a longer run or another logging interval resumes from the last checkpoint).
OPERATIONAL_SETTINGS: tuple[str, ...] = ("steps", "checkpoint_every", "val_every", "log_every", "num_workers")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that defines a run (the resolved ``train`` config plus the run's variant and seed).

    Attributes:
        run: run name; dsr_terms: enabled DSR terms (:data:`pipeline.losses.composite.DSR_TERMS`); seed.
        steps: optimiser steps; batch_size; lr, weight_decay: Adam (SPIN: 5e-5, 0; DSR: 3e-5).
        warmup_steps: linear learning-rate warm-up from 0; lr_final_factor: cosine decay from ``lr`` to
            ``lr · lr_final_factor`` over the remaining steps (1 = constant, SPIN); see :meth:`lr_at`.
        grad_clip_norm: clip the global gradient norm to this (0 = off, SPIN); the norm is logged either way.
        precision: ``fp32``, ``bf16`` (the regressor's training forward pass under bfloat16 autocast; body model,
            renderer, losses and validation in float32; :func:`pipeline.train.loop.predict_body`) or ``auto``
            (bf16 where the device computes it natively, else fp32: :func:`pipeline.runtime.resolve_precision`,
            resolved when the run starts).
        openpose_train_weight, gt_train_weight: SPIN's multipliers of the 2D keypoint confidences of the 25
            OpenPose and the 24 ground-truth joints (0 and 1); the 2D term averages over all 49.
        backbone: ``resnet50`` (paper) or ``resnet18``; n_iter: regressor iterations; num_betas.
        image_size: crop side fed to the network (224 in the paper); render_size: DSR render/mask side.
        dsr_start_iter: first step with DSR terms (paper: 10K); loss_weights: :class:`LossWeights` overrides.
        dsr_reduction: ``valid_mean`` or ``batch_mean`` (official); fb_metric: DSR-FB metric.
        dsr_c_requires_mc: apply DSR-C only to samples that also have a valid DSR-MC mask (the official code,
            which skips both terms together) instead of every sample with a cleaned mask.
        renderer: ``{"backend", "sigma", "gamma", "sigma_px"}`` of :func:`pipeline.render.soft.render_semantics`;
            ``sigma`` is in SoftRas' NDC units²; ``sigma_px`` (None = unused), when given, replaces it by the blur
            length in pixels of the render, ``σ = (2·sigma_px/render_size)²``
            (:func:`pipeline.render.soft.sigma_from_pixels`: the same pixel blur at any render size).
        official: the official-code switches the run turns on (:data:`pipeline.train.runs.OFFICIAL_SWITCHES`,
            in that order; empty = this project's losses).
        datasets: the mix; ratios: sampling probability per dataset.
        augment: SPIN augmentation; val_dataset / val_fraction: held-out validation samples (None: none).
        checkpoint_every, val_every, log_every: in steps; num_workers: DataLoader workers; threads: torch
        intra-op threads (0 = torch default); device: ``cpu`` / ``cuda``; progress: tqdm bar.
    """

    run: str
    dsr_terms: tuple[str, ...]
    seed: int
    steps: int
    batch_size: int
    datasets: tuple[SourceSpec, ...]
    ratios: tuple[float, ...]
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_final_factor: float = 1.0
    grad_clip_norm: float = 0.0
    precision: str = "fp32"
    openpose_train_weight: float = 0.0
    gt_train_weight: float = 1.0
    backbone: str = "resnet50"
    n_iter: int = 3
    num_betas: int = 10
    image_size: int = CROP_SIZE
    render_size: int = CROP_SIZE
    dsr_start_iter: int = 0
    loss_weights: Mapping[str, float] = field(default_factory=dict)
    dsr_reduction: str = "valid_mean"
    fb_metric: str = "soft_iou"
    dsr_c_requires_mc: bool = False
    renderer: Mapping[str, Any] = field(default_factory=lambda: {"backend": "pairs", "sigma": 1e-5, "gamma": 1e-1})
    official: tuple[str, ...] = ()
    augment: AugmentSettings = AugmentSettings()
    val_dataset: str | None = None
    val_fraction: float = 0.1
    checkpoint_every: int = 1000
    val_every: int = 1000
    log_every: int = 10
    num_workers: int = 0
    threads: int = 0
    device: str = "cpu"
    progress: bool = True

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine decay to
        ``lr · lr_final_factor`` at ``steps`` (a pure function of the step, so resuming needs no state)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_final_factor == 1.0 or self.steps <= self.warmup_steps:
            return self.lr
        t = min(1.0, (step - self.warmup_steps) / (self.steps - self.warmup_steps))
        return self.lr * (self.lr_final_factor + (1.0 - self.lr_final_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dsr_terms"] = list(self.dsr_terms)
        d["datasets"] = [asdict(s) for s in self.datasets]
        d["ratios"] = list(self.ratios)
        d["loss_weights"] = dict(self.loss_weights)
        d["renderer"] = dict(self.renderer)
        d["official"] = list(self.official)
        return d

    def uses_official(self, switch: str) -> bool:
        """Whether the official-code switch ``switch`` is on.

        Raises:
            ValueError: unknown switch (lists the allowed ones).
        """
        if switch not in OFFICIAL_SWITCHES:
            raise ValueError(f"unknown official switch {switch!r}; allowed: {', '.join(OFFICIAL_SWITCHES)}")
        return switch in self.official

    def params_dict(self) -> dict[str, Any]:
        """The run's settings as the rule's ``params``, in canonical form: only what can change the run's outputs.

        Left out: machine settings (:data:`RUNTIME_SETTINGS`); the weight of every DSR term the run does not use
        and every DSR setting none of its terms reads (:data:`DSR_SETTING_TERMS`: an SD run has none, a DSR-MC run
        no ``fb_metric``); the validation settings when no validation dataset is in the mix; the augmentation
        constants when augmentation is off. Keys are sorted and weights are floats (:func:`pipeline.params.canonical`),
        so a reordered config or ``5`` for ``5.0`` reruns nothing. :meth:`from_dict` reads it back (what was left
        out takes its default, unused by the run).
        """
        d = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_SETTINGS}
        terms = set(self.dsr_terms)
        for key, users in DSR_SETTING_TERMS.items():
            if not terms & set(users):
                d.pop(key)
        d["loss_weights"] = {k: float(v) for k, v in d["loss_weights"].items() if k not in DSR_WEIGHTS or k in terms}
        if self.val_dataset is None:
            for key in VALIDATION_SETTINGS:
                d.pop(key)
        if not self.augment.enabled:
            d["augment"] = {"enabled": False}
        # settings at their "off" value are left out, so adding them changed no existing run's params
        if not d.get("official", True):
            d.pop("official")
        if d.get("precision") == "fp32":
            d.pop("precision")
        if "renderer" in d:
            renderer = {k: v for k, v in d["renderer"].items() if not (k == "sigma_px" and v is None)}
            if renderer.get("sigma_px") is not None:
                renderer.pop("sigma", None)  # replaced by the pixel blur
            d["renderer"] = renderer
        return canonical(d)

    def fingerprint(self) -> str:
        """Hash of the settings that determine the weights at a given step (resume guard)."""
        # with a decaying learning rate the number of steps shapes every step's weights: a longer run is a new run
        operational = [k for k in OPERATIONAL_SETTINGS if not (k == "steps" and self.lr_final_factor != 1.0)]
        d = {k: v for k, v in self.params_dict().items() if k not in operational}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **runtime: Any) -> TrainSettings:
        """Inverse of :meth:`params_dict` / :meth:`to_dict`; ``runtime`` sets threads, device, progress."""
        values = dict(d)
        values.update(runtime)
        values["dsr_terms"] = tuple(values["dsr_terms"])
        values["datasets"] = tuple(SourceSpec(**s) for s in values["datasets"])
        values["ratios"] = tuple(values["ratios"])
        values["augment"] = AugmentSettings(**values["augment"])
        values["official"] = tuple(values.get("official", ()))
        return cls(**values)


@dataclass(frozen=True)
class TrainPaths:
    """Input files: body-model folder, joint regressors, semantic prior (DSR runs), optional mean params and
    pretrained weights; ``code``: the source files that determine the weights (the rule's ``code`` input),
    part of the resume guard."""

    body_models: str
    joint_regressors: str
    prior: str | None = None
    mean_params: str | None = None
    pretrained: str | None = None
    code: tuple[str, ...] = ()


def settings_from_config(train_cfg: Mapping[str, Any], train_datasets: Mapping[str, Mapping[str, str]],
                         mask_stores: Mapping[str, str], run: str, *, master_seed: int, device: str,
                         threads: int = 0, progress: bool = True, masks_mapping: Any = None) -> TrainSettings:
    """Resolve a run's :class:`TrainSettings` from the validated ``train`` config section.

    Args:
        train_cfg: ``config["train"]`` (schema defaults filled).
        train_datasets: ``config["assets"]["train_datasets"]``.
        mask_stores: dataset name -> cleaned mask store (only needed by DSR runs).
        run: run name (:func:`pipeline.train.runs.parse_run`).
        master_seed: ``config["seed"]``; device: a torch device string; threads: torch threads.
        masks_mapping: ``config["masks"]["mapping"]``, the mapping of ``mask_stores``. A run with the official
            switch ``classes8`` reads the :data:`OFFICIAL_MAPPING` stores instead, ``<folder>/official8/<file>``
            beside each of ``mask_stores`` (unless ``masks_mapping`` is already ``official8``).

    The variant's options (:func:`pipeline.train.runs.variant_options`, config ``train.variant_options``) override
    the section's ``fb_metric``, ``dsr_reduction``, ``dsr_c_requires_mc``, ``renderer.sigma_px`` and ``official``;
    its ``loss_weights`` are merged over ``train.loss_weights``.
    """
    spec = parse_run(run, train_cfg["variants"], master_seed)
    options = variant_options(spec.variant, train_cfg.get("variant_options"))
    official = tuple(options.get("official", ()))
    loss_weights = {**train_cfg["loss_weights"], **options.get("loss_weights", {})}
    remap = "classes8" in official and spec.uses_dsr and masks_mapping != OFFICIAL_MAPPING
    mix = {k: float(v) for k, v in train_cfg["datasets"].items() if float(v) > 0}
    if not mix:
        raise ValueError("train.datasets: every ratio is 0; give at least one dataset a positive ratio")
    val = train_cfg["validation"]
    if val["dataset"] in train_cfg["datasets"] and val["dataset"] not in mix:
        # listed at ratio 0: a source for held-out validation only, never drawn (and so needing no masks); e.g.
        # Table 1's COCO-EFT-only training validated on 3DPW training samples (config/study.yaml)
        mix[val["dataset"]] = 0.0
    datasets = []
    for name, ratio in mix.items():
        entry = train_datasets[name]
        masks = mask_stores.get(name) if spec.uses_dsr and ratio > 0 else None
        if remap and masks is not None:
            masks = official_mask_store(masks)
        if spec.uses_dsr and ratio > 0 and masks is None:
            raise ValueError(f"run {run!r} uses DSR terms {list(spec.dsr_terms)} but training dataset {name!r} has no "
                             f"masks: add it to masks.datasets (now {sorted(mask_stores)}) or set its ratio in "
                             "train.datasets to 0")
        datasets.append(SourceSpec(name=name, annotations=str(entry["annotations"]), images=str(entry["images"]),
                                   fmt=str(entry["format"]), masks=None if masks is None else str(masks)))
    return TrainSettings(
        run=run, dsr_terms=spec.dsr_terms, seed=spec.seed, steps=int(train_cfg["steps"]),
        batch_size=int(train_cfg["batch_size"]), datasets=tuple(datasets), ratios=tuple(mix.values()),
        lr=float(train_cfg["lr"]), weight_decay=float(train_cfg["weight_decay"]),
        warmup_steps=int(train_cfg["warmup_steps"]), lr_final_factor=float(train_cfg["lr_final_factor"]),
        grad_clip_norm=float(train_cfg["grad_clip_norm"]), precision=str(train_cfg.get("precision", "fp32")),
        openpose_train_weight=float(train_cfg["openpose_train_weight"]),
        gt_train_weight=float(train_cfg["gt_train_weight"]), backbone=train_cfg["backbone"],
        n_iter=int(train_cfg["n_iter"]), image_size=int(train_cfg["image_size"]),
        render_size=int(train_cfg["render_size"]), dsr_start_iter=int(train_cfg["dsr_start_iter"]),
        loss_weights={k: float(v) for k, v in loss_weights.items()},
        dsr_reduction=options.get("dsr_reduction", train_cfg["dsr_reduction"]),
        fb_metric=options.get("fb_metric", train_cfg["fb_metric"]),
        dsr_c_requires_mc=bool(options.get("dsr_c_requires_mc", train_cfg["dsr_c_requires_mc"])),
        renderer={**train_cfg["renderer"], **({"sigma_px": float(options["sigma_px"])} if "sigma_px" in options
                                               else {})},
        official=official,
        augment=AugmentSettings(**train_cfg["augmentation"]),
        val_dataset=val["dataset"] if val["dataset"] in mix else None, val_fraction=float(val["fraction"]),
        checkpoint_every=int(train_cfg["checkpoint_every"]), val_every=int(val["every"]),
        log_every=int(train_cfg["log_every"]), num_workers=int(train_cfg["num_workers"]), threads=threads,
        device=device, progress=progress,
    )


def official_mask_store(store: str) -> str:
    """The :data:`OFFICIAL_MAPPING` mask store beside ``store``: ``results/masks/x.h5`` ->
    ``results/masks/official8/x.h5`` (rule ``clean_masks_mapped``)."""
    head, _, tail = store.replace("\\", "/").rpartition("/")
    return f"{head}/{OFFICIAL_MAPPING}/{tail}" if head else f"{OFFICIAL_MAPPING}/{tail}"
