"""The training loop: ``train(settings, paths, out_dir) -> metrics`` (stage 8, rule ``train_regressor``).

Per step (SPIN's trainer plus the DSR terms, ../shared/reference/DSR_SPIN_EFT_NOTES.md A.6–A.9, C.6):

1. HMR regresses rotations, betas and the weak-perspective camera from the augmented crops;
2. the neutral body model gives vertices and SPIN's 49 joints (:mod:`pipeline.body.spin_joints`);
3. standard terms: 2D keypoints over the 49 (projected with SPIN's f = 5000 px camera; OpenPose confidences
   × ``openpose_train_weight``), pelvis-centred 3D joints (the 24 ground-truth ones), SMPL rotation-matrix and
   betas MSE, camera scale term;
4. from ``dsr_start_iter`` on, the run's DSR terms: one soft render of the body with per-face textures
   (DSR-MC: the prior summed over the sample's valid MC labels; DSR-C: the prior summed per class; MVP: the
   argmax prior) at ``render_size`` pixels, compared with the sample's masks;
5. Adam step.

Validation on held-out samples runs through the test protocols (:func:`protocol_errors`), so its step-0 point
is the ``mean-params`` / ``pretrained`` evaluation rows' definition.

Exact resume: ``checkpoints/last.pt`` holds model, optimiser, step and the torch RNG (dropout); data are a
pure function of ``(seed, step)`` (:mod:`pipeline.train.data`). A checkpoint is only resumed when its settings
fingerprint and the digest of the run's input files and code match (a killed job); after changed masks, prior
or training code training starts over (logged). ``metrics.csv`` rows after the resumed step are
dropped before appending, so a killed-and-resumed run writes the same table as an uninterrupted one.
Bit for bit on the CPU (tested); on CUDA the resumed run follows the same data, dropout masks and weights but
atomic additions (the renderer's ``index_add``, cuDNN's convolution backward) sum in a varying order, so it
drifts from an uninterrupted run at float precision (~1e-7 relative per step), as any two CUDA runs do unless
``torch.use_deterministic_algorithms(True)`` is set.

Several devices (``workers``, :mod:`pipeline.train.distributed`): each worker trains on its share of every
step's batch under DistributedDataParallel with synchronised BatchNorm; rank 0 alone validates and writes
``metrics.csv``, TensorBoard and the checkpoints. With the default single worker none of that code runs.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.body.model import BodyModel
from pipeline.evaluate.protocols import evaluate_3dpw, evaluate_h36m
from pipeline.io.spin_npz import PersonDataset
from pipeline.losses.composite import LossWeights, dsr_enabled, total_loss
from pipeline.losses.dsr import (
    argmax_prior,
    distance_to_mask,
    get_dsr_loss,
    official_class_ratio_weights,
    official_min_pixels,
)
from pipeline.losses.standard import (
    GT_TRAIN_WEIGHT,
    NUM_OPENPOSE_JOINTS,
    OPENPOSE_TRAIN_WEIGHT,
    camera_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    smpl_param_loss,
)
from pipeline.masks.clean import MC_IDS
from pipeline.model.hmr import (
    HMR,
    HMROutput,
    load_mean_params,
    load_pretrained,
    mean_params_from_dataset,
)
from pipeline.render.camera import (
    CROP_SIZE,
    FOCAL_LENGTH,
    perspective_projection,
    pixels_to_normalized,
    scale_focal_length,
    weak_perspective_to_translation,
)
from pipeline.render.soft import (
    BACKGROUND_EPS,
    SOFTRAS_KERNEL_EPS,
    render_semantics,
    resolve_sigma,
)
from pipeline.runtime import resolve_precision
from pipeline.train.checkpoint import inputs_digest, read_checkpoint, save_checkpoint
from pipeline.train.data import (
    MixedDataset,
    SampleSource,
    StepRange,
    to_tensors,
    validation_indices,
)
from pipeline.train.distributed import (
    SINGLE,
    Workers,
    check_world_size,
    distribute_model,
    term_normalisers,
    term_scales,
)
from pipeline.train.settings import OFFICIAL_MAPPING, TrainPaths, TrainSettings

log = logging.getLogger(__name__)

#: DSR terms rendered from the MC texture (the prior summed over the sample's valid MC labels).
MC_TERMS: tuple[str, ...] = ("dsr_mc", "soft_distm")
#: Key of :func:`dsr_terms`'s counts: samples with a cleaned mask but no valid DSR-MC label.
NO_MC_COUNT: str = "dsr_c_no_mc"
# ------------------------------------------------------------------------------------------------ set-up
def _sources(settings: TrainSettings, need_masks: bool) -> tuple[list[SampleSource], SampleSource | None, np.ndarray]:
    """Training sources, the validation source (a view of one of them, no augmentation) and its indices."""
    sources, val_source, val_index = [], None, np.zeros(0, dtype=np.int64)
    swap = not settings.uses_official("no_flip_swap")
    names = [s.name for s in settings.datasets]
    if settings.val_dataset is not None and settings.val_dataset not in names:
        raise ValueError(f"train.validation.dataset {settings.val_dataset!r} is not one of the training datasets "
                         f"{names}")
    for spec, ratio in zip(settings.datasets, settings.ratios, strict=True):
        if need_masks and ratio > 0 and spec.masks is None:
            raise ValueError(f"run {settings.run!r} uses DSR terms but dataset {spec.name!r} has no mask store; add "
                             "it to masks.datasets")
        exclude: np.ndarray = np.zeros(0, dtype=np.int64)
        if spec.name == settings.val_dataset:
            probe = SampleSource(spec, settings.image_size, settings.render_size, swap_lr_on_flip=swap)
            exclude = validation_indices(probe.data, settings.val_fraction)
            if not len(exclude):
                raise ValueError(f"validation dataset {spec.name!r} has no samples with 3D joints (S); choose "
                                 "another train.validation.dataset or null")
            val_source, val_index = probe, exclude
        sources.append(SampleSource(spec, settings.image_size, settings.render_size, exclude=exclude,
                                    swap_lr_on_flip=swap))
    return sources, val_source, val_index


def _mean_params(paths: TrainPaths, sources: Sequence[SampleSource], num_betas: int) -> dict[str, np.ndarray]:
    if paths.mean_params is not None:
        return load_mean_params(paths.mean_params)
    poses, shapes = [], []
    for src in sources:
        idx = src.train_index[src.data.has_smpl[src.train_index].astype(bool)]
        poses.append(src.data.pose[idx])
        shapes.append(src.data.shape[idx, :num_betas])
    pose = np.concatenate(poses)
    if not len(pose):
        raise ValueError("no training sample has SMPL parameters to compute mean parameters from; set "
                         "assets.smpl_mean_params to SPIN's smpl_mean_params.npz")
    return mean_params_from_dataset(pose, np.concatenate(shapes))


class PriorTextures:
    """Per-face textures from ``semantic_prior.npz`` for the DSR terms.

    Args:
        path: the prior file (``face_prob`` (F, 20)).
        num_faces: faces of the body model (must match).
        class_matrix: (20, C) label -> DSR-C class membership (``ClassMapping.matrix()``).
    """

    def __init__(self, path: str | Path, num_faces: int, class_matrix: np.ndarray, device: torch.device) -> None:
        with np.load(path) as f:
            if "face_prob" not in f.files:
                raise ValueError(f"{path}: no 'face_prob' array; rebuild it with rule accumulate_prior")
            face_prob = torch.as_tensor(np.asarray(f["face_prob"], dtype=np.float32))
        if face_prob.shape[0] != num_faces:
            raise ValueError(f"{path}: prior has {face_prob.shape[0]} faces but the body model has {num_faces}; build "
                             "the prior for this body model")
        self.face_prob = face_prob.to(device)
        self.mc = self.face_prob[:, MC_IDS]  # (F, 5)
        self.mc_argmax = argmax_prior(self.face_prob)[:, MC_IDS]
        self.classes = (self.face_prob @ torch.as_tensor(class_matrix, device=device)).T.contiguous()  # (C, F)

    def textures(self, terms: Sequence[str], valid_mc: torch.Tensor) -> tuple[torch.Tensor, dict[str, slice]]:
        """(B, K, F) textures for the active terms and the channel slice of each texture kind."""
        batch = valid_mc.shape[0]
        w = valid_mc.to(self.mc.dtype)
        parts: list[torch.Tensor] = []
        where: dict[str, slice] = {}
        if any(t in terms for t in MC_TERMS):
            where["mc"] = slice(len(parts), len(parts) + 1)
            parts.append((w @ self.mc.T)[:, None])
        if "mvp" in terms:
            where["mvp"] = slice(len(parts), len(parts) + 1)
            parts.append((w @ self.mc_argmax.T)[:, None])
        if "dsr_c" in terms:
            n = self.classes.shape[0]
            start = sum(p.shape[1] for p in parts)
            where["c"] = slice(start, start + n)
            parts.append(self.classes[None].expand(batch, -1, -1))
        if not parts:  # DSR-FB alone: any texture, only the silhouette is used
            where["fb"] = slice(0, 1)
            parts.append(torch.ones(batch, 1, self.mc.shape[0], device=self.mc.device))
        return torch.cat(parts, dim=1), where


# ------------------------------------------------------------------------------------------------ losses
def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam as every training loop here builds it: torch's fused kernel where all parameters allow it (floating
    point, on the CPU or a CUDA device), one pass over the weights instead of a dozen (ResNet-18 HMR, 13 M
    parameters, one CPU thread: 8.2 instead of 24.2 ms per step, benchmarks/bench_step_parts.py). The same update
    rule, up to float rounding."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def predict_body(model: HMR, body: BodyModel, images: torch.Tensor, precision: str = "fp32", *,
                 vertices: bool = True) -> tuple[HMROutput, Any, torch.Tensor]:
    """Regressor + body model: output, posed body and the camera translation.

    ``precision="bf16"`` runs the regressor under bfloat16 autocast (convolutions and linear layers in bf16, the
    rest as autocast decides) and returns its output in float32: the body model, the renderer and the losses
    always run in float32. ``vertices=False`` poses the joints only (``posed.vertices`` is None; the training
    steps that render nothing: :meth:`pipeline.body.model.BodyModel.forward`).
    """
    if precision == "bf16":
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16):
            raw = model(images)
        out = HMROutput(*(t.float() for t in raw))
    elif precision == "fp32":
        out = model(images)
    else:
        raise ValueError(f"unknown precision {precision!r}; allowed: fp32, bf16")
    posed = body(betas=out.pred_betas, body_pose=out.pred_rotmat[:, 1:], global_orient=out.pred_rotmat[:, :1],
                 pose2rot=False, vertices=vertices)
    return out, posed, weak_perspective_to_translation(out.pred_cam)


def standard_terms(out: HMROutput, posed: Any, cam_t: torch.Tensor, batch: Mapping[str, torch.Tensor], *,
                   openpose_weight: float = OPENPOSE_TRAIN_WEIGHT, gt_weight: float = GT_TRAIN_WEIGHT
                   ) -> dict[str, torch.Tensor]:
    """SPIN's terms (weights applied in :func:`pipeline.losses.composite.total_loss`): the 2D term over SPIN's 49
    keypoints (OpenPose confidences × ``openpose_weight``, ground-truth ones × ``gt_weight``, mean over all 49),
    the 3D term over the 24 ground-truth joints."""
    kp = pixels_to_normalized(perspective_projection(posed.joints_j49, cam_t), CROP_SIZE)
    loss_pose, loss_betas = smpl_param_loss(out.pred_rotmat, out.pred_betas, batch["pose"], batch["betas"],
                                            batch["has_smpl"])
    return {
        "keypoint_2d": keypoint_2d_loss(kp, batch["keypoints"], openpose_weight=openpose_weight, gt_weight=gt_weight,
                                        num_openpose=NUM_OPENPOSE_JOINTS),
        "keypoint_3d": keypoint_3d_loss(posed.joints_spin, batch["joints_3d"], batch["has_pose_3d"]),
        "smpl_pose": loss_pose,
        "smpl_betas": loss_betas,
        "camera": camera_loss(out.pred_cam),
    }


def dsr_terms(settings: TrainSettings, prior: PriorTextures, vertices: torch.Tensor, faces: torch.Tensor,
              cam_t: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Render once, then every enabled DSR term; returns the terms and their valid-sample counts, plus under
    :data:`NO_MC_COUNT` the samples with a cleaned mask but no valid DSR-MC label (DSR-C applies to them unless
    ``settings.dsr_c_requires_mc``, the official code's choice). The official switches
    (:attr:`TrainSettings.official`) select the released code's renderer background weight, row-wise IoU,
    cross-entropy on probabilities and per-class pixel-ratio weights."""
    terms = settings.dsr_terms
    valid_mc = batch["valid_mc"]
    textures, where = prior.textures(terms, valid_mc)
    r = settings.render_size
    official = settings.uses_official
    images, silhouette = render_semantics(
        vertices, faces, textures, cam_t, focal=scale_focal_length(FOCAL_LENGTH, CROP_SIZE, r), image_size=r,
        sigma=resolve_sigma(settings.renderer.get("sigma"), settings.renderer.get("sigma_px"), r),
        gamma=float(settings.renderer["gamma"]), backend=settings.renderer["backend"],
        eps=SOFTRAS_KERNEL_EPS if official("softras_bg_weight") else BACKGROUND_EPS)
    has = batch["has_masks"]
    mc_valid = has & valid_mc.any(dim=1)
    known = batch["mask_known"]
    red = settings.dsr_reduction
    out: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for term in terms:
        if term == "dsr_mc":
            loss, n = get_dsr_loss(term)(images[:, where["mc"]][:, 0], batch["mask_mc"], mc_valid,
                                         valid_pixels=known, reduction=red, rowwise=official("rowwise_iou"))
        elif term == "soft_distm":
            dist = distance_to_mask(batch["mask_mc"]).to(images.device)
            loss, n = get_dsr_loss(term)(images[:, where["mc"]][:, 0], batch["mask_mc"], mc_valid, distance=dist,
                                         valid_pixels=known, reduction=red)
        elif term == "mvp":
            loss, n = get_dsr_loss(term)(images[:, where["mvp"]][:, 0], batch["mask_mc"], mc_valid,
                                         valid_pixels=known, reduction=red)
        elif term == "dsr_c":
            rendered_c = images[:, where["c"]]
            class_weights = None
            if official("class_ratio_weights"):
                class_weights = official_class_ratio_weights(batch["mask_c"], rendered_c.shape[1], known,
                                                             official_min_pixels(r)).to(rendered_c.dtype)
            loss, n = get_dsr_loss(term)(rendered_c, batch["mask_c"], known,
                                         valid=mc_valid if settings.dsr_c_requires_mc else has, reduction=red,
                                         check_labels=False, class_weights=class_weights,
                                         ce_on_probs=official("ce_on_probs"))
        elif term == "dsr_fb":
            person = (batch["mask_c"] > 0).to(silhouette.dtype)
            loss, n = get_dsr_loss(term)(silhouette, person, has, metric=settings.fb_metric, valid_pixels=known,
                                         reduction=red)
        else:  # parse_run already rejects unknown terms
            raise ValueError(f"unknown DSR term {term!r}")
        out[term] = loss
        counts[term] = int(n)
    counts[NO_MC_COUNT] = int((has & ~mc_valid).sum())
    return out, counts


# -------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: HMR, body: BodyModel, source: SampleSource, index: np.ndarray, batch_size: int,
             device: torch.device, gt_models: Mapping[str, BodyModel] | None = None) -> dict[str, float]:
    """Errors (mm) on held-out samples, no augmentation, through the test protocols
    (:func:`protocol_errors`): ``val_mpjpe_mm``, ``val_pa_mpjpe_mm`` and ``val_pve_mm`` (NaN without it)."""
    was_training = model.training
    model.eval()
    vertices, joints = [], []
    for start in range(0, len(index), batch_size):
        items = [source.item(int(i)) for i in index[start:start + batch_size]]
        images = torch.as_tensor(np.stack([it["img"] for it in items]), device=device)
        _, posed, _ = predict_body(model, body, images)
        vertices.append(posed.vertices.cpu().numpy())
        joints.append(posed.joints_h36m.cpu().numpy())
    model.train(was_training)
    return protocol_errors(np.concatenate(vertices), np.concatenate(joints), source.data.subset(index), gt_models,
                           prefix="val_")


def uses_3dpw_protocol(data: PersonDataset) -> bool:
    """Whether held-out samples of ``data`` are scored with the 3DPW protocol (every sample has SMPL ground
    truth, with PVE) rather than the Human3.6M one on ``S``."""
    return bool(data.present.get("pose") and data.present.get("shape") and len(data) and data.has_smpl.all())


def protocol_errors(pred_vertices: np.ndarray, pred_joints_h36m: np.ndarray, data: PersonDataset,
                    gt_models: Mapping[str, BodyModel] | None, prefix: str = "") -> dict[str, float]:
    """Mean MPJPE / PA-MPJPE / PVE (mm) of predictions for ``data`` by the evaluation's own protocol functions.

    Samples with SMPL ground truth (:func:`uses_3dpw_protocol`) follow the 3DPW protocol (GT meshes, H36M
    regressor, pelvis = joint 0, PVE without alignment): with each sample's gendered model when the data carry a
    gender (3DPW), else with the neutral model their parameters are given in (EFT/SPIN-style fits); ``gt_models``
    holds ``male``, ``female`` and ``neutral``. Otherwise the Human3.6M protocol 1 on ``S`` (14 joints, no PVE).
    The training curve's step-0 point is therefore the ``mean-params`` / ``pretrained`` rows' own definition.

    Args:
        pred_vertices: (N, V, 3) neutral-model vertices, metres. pred_joints_h36m: (N, 17, 3), metres.
    """
    if uses_3dpw_protocol(data):
        if gt_models is None:
            raise ValueError("3DPW-protocol validation needs the male, female and neutral body models")
        if data.present.get("gender"):
            result = evaluate_3dpw(pred_vertices, data.pose, data.shape, data.gender, gt_models)
        else:  # parameters of the neutral model: the protocol with the neutral body as every sample's model
            neutral = {"male": gt_models["neutral"], "female": gt_models["neutral"]}
            result = evaluate_3dpw(pred_vertices, data.pose, data.shape, np.full(len(data), "m"), neutral)
    elif data.has_3d.all():
        result = evaluate_h36m(pred_joints_h36m, data.S, protocol=1)
    else:
        raise ValueError(f"validation samples need 3D joints (S) or SMPL parameters; "
                         f"{int((~data.has_3d).sum())} of {len(data)} have neither")
    return {f"{prefix}mpjpe_mm": result.mpjpe_mm, f"{prefix}pa_mpjpe_mm": result.pa_mpjpe_mm,
            f"{prefix}pve_mm": result.pve_mm}


# --------------------------------------------------------------------------------------------- logging
class MetricsTable:
    """``metrics.csv`` with a fixed header; on resume rows after the resumed step are dropped."""

    def __init__(self, path: Path, columns: Sequence[str], resume_step: int) -> None:
        self.path = path
        self.columns = list(columns)
        rows: list[dict[str, str]] = []
        if resume_step > 0 and path.is_file():
            with path.open() as f:
                reader = csv.DictReader(f)
                if reader.fieldnames == self.columns:
                    rows = [r for r in reader if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "nan"
    return str(value)


def _tensorboard(path: Path, purge_step: int):  # type: ignore[no-untyped-def]
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(path), purge_step=purge_step if purge_step > 0 else None)


# -------------------------------------------------------------------------------------------------- loop
def build_model(settings: TrainSettings, paths: TrainPaths, sources: Sequence[SampleSource]) -> tuple[HMR, str]:
    """The regressor, initialised from the mean parameters and optionally from pretrained weights."""
    torch.manual_seed(settings.seed)
    model = HMR(backbone=settings.backbone, n_iter=settings.n_iter,
                mean_params=_mean_params(paths, [s for s, r in zip(sources, settings.ratios, strict=True) if r > 0],
                                         settings.num_betas), num_betas=settings.num_betas)
    loaded = load_pretrained(model, paths.pretrained) if paths.pretrained is not None else "none"
    return model, loaded


def train(settings: TrainSettings, paths: TrainPaths, out_dir: str | Path, *,
          stop_after: int | None = None, workers: Workers = SINGLE) -> dict[str, Any]:
    """Train (or resume) one run into ``out_dir``.

    Writes ``checkpoints/last.pt`` (and the running ``checkpoints/metrics.csv``) every ``checkpoint_every``
    steps, ``checkpoints/final.pt`` at the end, ``metrics.csv`` and TensorBoard events under ``tensorboard/``.

    Args:
        settings: the run.
        paths: input files.
        out_dir: the run's folder.
        stop_after: stop (with a checkpoint) after this many steps in total, as if killed right after a
            checkpoint — for tests and time-sliced jobs; ``final.pt`` is not written then.
        workers: this process's rank among the run's workers (:func:`pipeline.train.distributed.workers_from_env`,
            process group already joined); the default is the single-process run.

    Returns:
        Summary metrics: ``steps``, ``seconds``, ``samples_per_s``, mean of each logged term over the last
        logging interval, the last validation metrics, DSR valid/skipped sample counts, ``resumed_from``.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = workers.device(settings.device)
    precision = resolve_precision(settings.precision, device.type)  # an unknown name stops here, before any work
    if precision != settings.precision:  # auto: the machine's choice, logged and recorded with the run
        log.info("run %s: precision %s -> %s on %s", settings.run, settings.precision, precision, device)
        settings = dataclasses.replace(settings, precision=precision)
    share = check_world_size(workers.world_size, settings.batch_size)
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    need_dsr = bool(settings.dsr_terms)
    if need_dsr and paths.prior is None:
        raise ValueError(f"run {settings.run!r} uses DSR terms {list(settings.dsr_terms)} but no semantic prior was "
                         "given")
    sources, val_source, val_index = _sources(settings, need_masks=need_dsr)
    weights = LossWeights.from_dict(settings.loss_weights)

    body = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors).to(device)
    if body.extra_regressor is None:
        raise ValueError(f"{paths.joint_regressors}: no joint regressors; training needs SPIN's 49 joints")
    gt_models = None
    if val_source is not None and uses_3dpw_protocol(val_source.data.subset(val_index)):
        gt_models = {g: BodyModel(paths.body_models, g, joint_regressors=paths.joint_regressors)
                     for g in ("male", "female", "neutral")}
    faces = body.faces
    prior = None
    if need_dsr:
        mappings = {s.mapping.to_json() for s in sources if s.mapping is not None}
        if len(mappings) != 1:
            raise ValueError("the mask stores of the training datasets use different DSR-C mappings; rerun "
                             "clean_masks with one masks.mapping")
        mapping = next(s.mapping for s in sources if s.mapping is not None)
        if settings.uses_official("classes8") and mapping.name != OFFICIAL_MAPPING:
            raise ValueError(f"run {settings.run!r} has the official switch classes8 but its mask stores "
                             f"{[s.spec.masks for s in sources]} use the DSR-C mapping {mapping.name!r}; give it the "
                             f"{OFFICIAL_MAPPING} stores (results/masks/{OFFICIAL_MAPPING}/<dataset>.h5, rule "
                             "clean_masks_mapped) or drop the switch")
        class_matrix = mapping.matrix()
        prior = PriorTextures(paths.prior, body.num_faces, class_matrix, device)

    model, loaded = build_model(settings, paths, sources)
    model.to(device).train()
    optimizer = adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    data_files = [d.annotations for d in settings.datasets] + [d.masks for d in settings.datasets if d.masks]
    data_files += [f for f in (paths.body_models, paths.joint_regressors, paths.prior, paths.mean_params,
                               paths.pretrained) if f is not None]
    fingerprint = f"{settings.fingerprint()}-{inputs_digest(data_files, paths.code)}"

    start = 0
    last = ckpt_dir / "last.pt"
    if last.is_file():
        state = read_checkpoint(last)
        if state.get("fingerprint") == fingerprint and int(state.get("step", -1)) <= settings.steps:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
            if device.type == "cuda" and state["rng"].get("cuda") is not None:
                # the training device's stream (each worker's dropout stream is rank 0's); older single-process
                # checkpoints hold every visible GPU's state, the first being the default device's
                torch.cuda.set_rng_state(state["rng"]["cuda"][0], device)
            start = int(state["step"])
            log.info("resuming run %s from %s at step %d", settings.run, last, start)
        else:
            log.warning("ignoring %s: it was written with other settings, inputs or code (fingerprint %s, now %s); "
                        "starting over",
                        last, state.get("fingerprint"), fingerprint)
    if start == 0:
        torch.manual_seed(settings.seed + 1)  # dropout stream, independent of the initialisation
        log.info("run %s: %d steps, batch %d, %s, DSR terms %s from step %d, init %s (pretrained: %s)",
                 settings.run, settings.steps, settings.batch_size, settings.backbone, list(settings.dsr_terms),
                 settings.dsr_start_iter, "mean parameters", loaded)

    term_names = ["keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas", "camera", *settings.dsr_terms]
    columns = ["step", "phase", "total", "lr", "grad_norm", *term_names, *[f"n_valid_{t}" for t in settings.dsr_terms],
               *[f"n_skipped_{t}" for t in settings.dsr_terms], *([f"n_{NO_MC_COUNT}"] if "dsr_c" in settings.dsr_terms else []),
               "samples_per_s", "val_mpjpe_mm", "val_pa_mpjpe_mm", "val_pve_mm"]
    # The log lives beside last.pt (Snakemake deletes a rerun job's outputs; the log must survive with the
    # checkpoint) and is copied to metrics.csv at the end. Rank 0 alone writes.
    table = MetricsTable(ckpt_dir / "metrics.csv", columns, start) if workers.main else None
    tb = _tensorboard(out_dir / "tensorboard", start) if workers.main else None
    net: torch.nn.Module = model  # what the training steps run: the model, or its DDP wrapper
    if workers.distributed:
        net = distribute_model(model, workers, device)

    mixed = MixedDataset(sources, settings.ratios, settings.batch_size, settings.seed, settings.augment)
    stop = settings.steps if stop_after is None else min(settings.steps, stop_after)
    loader = DataLoader(mixed, batch_size=share, sampler=StepRange(start, stop, settings.batch_size, workers.shard()),
                        num_workers=settings.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=False,
                        # its own generator: creating the iterator must not consume the global (dropout) RNG
                        generator=torch.Generator().manual_seed(settings.seed))

    def checkpoint(step: int, name: str) -> None:
        cuda = None
        if device.type == "cuda":
            cuda = [torch.cuda.get_rng_state(device)]  # the training device's only (GPU count may change)
        rng = {"torch": torch.get_rng_state(), "cuda": cuda}
        save_checkpoint(ckpt_dir / name, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "model_config": {"backbone": settings.backbone, "n_iter": settings.n_iter,
                             "num_betas": settings.num_betas, "image_size": settings.image_size},
            "rng": rng, "fingerprint": fingerprint, "run": settings.run, "settings": settings.to_dict(),
        })

    def run_validation(step: int) -> dict[str, float]:
        metrics = validate(model, body, val_source, val_index, settings.batch_size, device,  # type: ignore[arg-type]
                           gt_models)
        table.append({"step": step, "phase": "val", **metrics})  # type: ignore[union-attr]
        for k, v in metrics.items():
            tb.add_scalar(f"val/{k}", v, step)  # type: ignore[union-attr]
        log.info("step %d: validation %s", step, {k: round(v, 1) for k, v in metrics.items()})
        return metrics

    last_val: dict[str, float] = {}
    if val_source is not None and start == 0 and workers.main:
        # the initialisation (mean parameters or the pretrained model) as the curve's first point: the baseline
        # the run has to beat; RNG-free (no augmentation, eval mode), so resuming stays exact
        last_val = run_validation(0)
    sums: dict[str, float] = {}
    counts_total = {t: 0 for t in settings.dsr_terms}
    skipped_total = {t: 0 for t in settings.dsr_terms}
    interval_n = 0
    last_log: dict[str, Any] = {}
    t0 = time.perf_counter()
    t_interval = t0
    bar = tqdm(total=settings.steps, initial=start, desc=f"train {settings.run}", unit="step",
               disable=not settings.progress, mininterval=10.0)
    step = start
    for raw in loader:
        batch = to_tensors(raw, device)
        render = need_dsr and dsr_enabled(step, settings.dsr_start_iter)
        out, posed, cam_t = predict_body(net, body, batch["img"], settings.precision,  # type: ignore[arg-type]
                                         vertices=render)
        terms = standard_terms(out, posed, cam_t, batch, openpose_weight=settings.openpose_train_weight,
                               gt_weight=settings.gt_train_weight)
        dsr_counts: dict[str, int] = {}
        if render:
            extra, dsr_counts = dsr_terms(settings, prior, posed.vertices, faces, cam_t, batch)  # type: ignore[arg-type]
            terms.update(extra)
        if workers.distributed:  # global-batch means of the per-label terms (pipeline.train.distributed)
            local = term_normalisers(list(terms), batch, dsr_counts, settings.dsr_reduction)
            summed = workers.all_sum({**{f"n:{k}": v for k, v in local.items()},
                                      **{f"count:{k}": v for k, v in dsr_counts.items()}}, device)
            scales = term_scales(local, {k: summed[f"n:{k}"] for k in local}, workers.world_size)
            terms = {k: v * scales[k] if k in scales else v for k, v in terms.items()}
            dsr_counts = {k: round(summed[f"count:{k}"]) for k in dsr_counts}
        loss, values = total_loss(terms, weights, step, settings.dsr_start_iter)
        if workers.distributed:
            values = workers.mean(values)
        lr = settings.lr_at(step)
        values["lr"] = torch.tensor(lr)
        if not torch.isfinite(values["total"] if workers.distributed else loss):  # the same on every worker
            raise FloatingPointError(f"run {settings.run}: non-finite loss at step {step}: "
                                     f"{ {k: float(v) for k, v in values.items()} }")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = settings.grad_clip_norm if settings.grad_clip_norm > 0 else math.inf
        values["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).detach()
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        step += 1
        bar.update(1)

        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        no_mc = dsr_counts.pop(NO_MC_COUNT, 0)
        if "dsr_c" in dsr_counts:
            sums[f"n_{NO_MC_COUNT}"] = sums.get(f"n_{NO_MC_COUNT}", 0.0) + no_mc
        for t, n in dsr_counts.items():
            counts_total[t] += n
            skipped_total[t] += settings.batch_size - n
            sums[f"n_valid_{t}"] = sums.get(f"n_valid_{t}", 0.0) + n
            sums[f"n_skipped_{t}"] = sums.get(f"n_skipped_{t}", 0.0) + settings.batch_size - n
        interval_n += 1
        if step % settings.log_every == 0 or step == stop:
            now = time.perf_counter()
            row: dict[str, Any] = {"step": step, "phase": "train"}
            row.update({k: v / interval_n for k, v in sums.items() if k in columns and not k.startswith("n_")})
            row.update({k: int(v) for k, v in sums.items() if k.startswith("n_")})
            row["samples_per_s"] = interval_n * settings.batch_size / max(now - t_interval, 1e-9)
            if workers.main:
                table.append(row)  # type: ignore[union-attr]
                for k, v in row.items():
                    if k not in ("step", "phase") and v is not None:
                        tb.add_scalar(f"train/{k}", float(v), step)  # type: ignore[union-attr]
            last_log = row
            sums, interval_n, t_interval = {}, 0, now
        if not workers.main:
            continue
        if val_source is not None and (step % settings.val_every == 0 or step == settings.steps):
            last_val = run_validation(step)
        if step % settings.checkpoint_every == 0 or step == stop:
            checkpoint(step, "last.pt")
    bar.close()
    if workers.main:
        tb.close()  # type: ignore[union-attr]
        if step == settings.steps:
            checkpoint(step, "final.pt")
        shutil.copyfile(table.path, out_dir / "metrics.csv")  # type: ignore[union-attr]
    seconds = time.perf_counter() - t0
    done = step - start
    summary = {"run": settings.run, "steps": step, "resumed_from": start, "seconds": seconds,
               "samples_per_s": done * settings.batch_size / max(seconds, 1e-9),
               **{k: v for k, v in last_log.items() if k not in ("step", "phase")}, **last_val,
               "dsr_valid_samples": counts_total, "dsr_skipped_samples": skipped_total}
    log.info("run %s finished at step %d in %.1f s: %s", settings.run, step, seconds,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()})
    return summary

