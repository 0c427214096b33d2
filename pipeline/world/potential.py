"""The "Potential of DSR" experiment (paper §5.3, Fig. 4) in the open world: overfit one fixed batch.

The paper takes 64 Human3.6M samples and over-fits them for 100 iterations with joints only (SD) and with
joints + DSR, to ask whether 3D joints alone give pixel-aligned bodies. Here, from the pretrained start, the
same fixed batch of the configured training split (default ``coco_eft``, the 2D-annotated pseudo-GT one) is
over-fitted in three **arms**:

================= ================================== ==========================================================
arm               terms                              masks
================= ================================== ==========================================================
``sd``            2D + 3D keypoints (+ SPIN camera)  none
``sd_dsr_parser`` SD + DSR-MC + DSR-C                the training mask store (parser noise, cleaned as training
                                                     reads it)
``sd_dsr_exact``  SD + DSR-MC + DSR-C                the same cleaning (:func:`pipeline.masks.clean.clean_sample`,
                                                     the store's mapping and thresholds) applied to the noise-free
                                                     label maps ``labels_gt/``: an upper bound no real data allow
================= ================================== ==========================================================

Choices (README, "Potential of DSR"):

* **No SMPL-parameter terms** in any arm (``smpl_pose`` and ``smpl_betas`` weights 0): "joints only".
* **3D joints**: COCO-EFT carries none (SPIN/EFT never apply a 3D-keypoint loss to COCO). ``joints_3d: fit``
  (default) supervises SPIN's 24 joints of the annotation's own SMPL fit (the EFT pseudo-GT, with its errors)
  where a sample has no ``S``, standing in for the paper's ground-truth H36M joints; ``labels`` uses only the
  dataset's ``S`` (COCO-EFT: the 2D term alone).
* **Fixed batch**: ``batch_size`` samples drawn once (seeded), no augmentation, the same batch every step.
* **BatchNorm**: optimisation in training mode (batch statistics, dropout on), as the paper trains; the running
  statistics follow the fixed batch (momentum 0.1: 1 − 0.9¹⁰⁰ of the way after 100 steps). Every score is taken in
  eval mode (running statistics), as at test time, so step 0 is the pretrained model's test-time output and all
  arms start equal.
* Optimiser, learning rate, loss weights, renderer and crop/render sizes: the ``train`` section's ("the same
  hyper-parameters used for other experiments"); ``lr`` can be overridden; DSR from step 0.

Scores per arm, before (step 0) and after: MPJPE, PA-MPJPE (14 joints) and PVE against the **true** bodies (the
world's truth file beside the annotations, :mod:`pipeline.world.pseudo_gt`; the annotations themselves when
none is given), the joint-group errors of the paper's
Table 4, and the IoU of the rendered body parts with the **exact** part masks: ``iou_mc`` (the DSR-MC render of
the exact mask's valid labels, thresholded at 0.5, vs the exact DSR-MC mask), ``soft_iou_mc`` and
``iou_person`` (soft silhouette > 0.5 vs the exact person mask).

Outputs: ``potential_of_dsr.csv`` (one row per arm and step), ``potential_of_dsr_joints.csv`` (arm, step,
joint group, MPJPE, PA-MPJPE), ``fig4.png`` (image | SD | SD + DSR parser masks | SD + DSR exact masks overlays).
:func:`report_section` renders both as an HTML fragment.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from pipeline.body.model import BodyModel
from pipeline.evaluate.protocols import EvalResult, evaluate_3dpw
from pipeline.evaluate.sections import ReportSection, write_section_file
from pipeline.io.images import read_image_rgb
from pipeline.losses.composite import LossWeights, total_loss
from pipeline.losses.dsr import hard_iou, soft_iou
from pipeline.masks.clean import CleanSettings, clean_sample, warp_nearest
from pipeline.masks.mappings import ClassMapping
from pipeline.render.camera import CROP_SIZE, FOCAL_LENGTH, scale_focal_length
from pipeline.render.soft import render_semantics, resolve_sigma
from pipeline.runtime import atomic_path, stage_seed
from pipeline.train.crop import crop_affine, store_to_crop_index
from pipeline.train.data import UNKNOWN, SampleSource, to_tensors
from pipeline.train.loop import (
    PriorTextures,
    adam,
    build_model,
    dsr_terms,
    predict_body,
    standard_terms,
)
from pipeline.train.settings import SourceSpec, TrainPaths, TrainSettings
from pipeline.world import pseudo_gt
from pipeline.world.layout import label_root

log = logging.getLogger(__name__)

#: The arms: name -> (DSR terms, masks). ``None`` masks: the arm renders nothing.
ARMS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "sd": ((), None),
    "sd_dsr_parser": (("dsr_mc", "dsr_c"), "parser"),
    "sd_dsr_exact": (("dsr_mc", "dsr_c"), "exact"),
}
#: Figure panel titles, in order after the input image.
ARM_TITLES: dict[str, str] = {"sd": "SD", "sd_dsr_parser": "SD+DSR (parser)", "sd_dsr_exact": "SD+DSR (exact)"}
#: Where the 3D joint targets come from (module doc).
JOINTS_3D_SOURCES: tuple[str, ...] = ("fit", "labels")
#: SMPL-parameter terms switched off in every arm ("joints only").
PARAMETER_TERMS: tuple[str, ...] = ("smpl_pose", "smpl_betas")
#: Threshold of a rendered image / silhouette for the hard IoU.
IOU_THRESHOLD: float = 0.5
#: Columns of the main CSV.
COLUMNS: tuple[str, ...] = ("arm", "masks", "terms", "step", "n", "mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "iou_mc",
                            "soft_iou_mc", "iou_person", "n_iou_mc", "loss", "seconds")
#: Columns of the joint-group CSV.
JOINT_COLUMNS: tuple[str, ...] = ("arm", "step", "group", "mpjpe_mm", "pa_mpjpe_mm")


@dataclass(frozen=True)
class PotentialSettings:
    """The experiment (config ``potential`` + the ``train`` hyper-parameters it shares).

    Attributes:
        dataset: training split (name of ``assets.train_datasets``); annotations, images, fmt: its files.
        batch_size: samples of the fixed batch (fewer when the split is smaller); steps: optimiser steps.
        seed: batch choice and dropout stream; joints_3d: :data:`JOINTS_3D_SOURCES`.
        lr, weight_decay, grad_clip_norm: Adam and clipping; loss_weights: ``train.loss_weights`` overrides
            (the SMPL-parameter weights are forced to 0).
        backbone, image_size, render_size, renderer, dsr_reduction, dsr_c_requires_mc, openpose_train_weight,
            gt_train_weight: as in ``train``.
        figure_samples, tile_px: samples and panel side of ``fig4.png``.
    """

    dataset: str
    annotations: str
    images: str
    fmt: str
    batch_size: int = 64
    steps: int = 100
    seed: int = 0
    joints_3d: str = "fit"
    lr: float = 5e-5
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    loss_weights: Mapping[str, float] = field(default_factory=dict)
    backbone: str = "resnet50"
    n_iter: int = 3
    image_size: int = CROP_SIZE
    render_size: int = CROP_SIZE
    renderer: Mapping[str, Any] = field(default_factory=lambda: {"backend": "pairs", "sigma": 1e-5, "gamma": 1e-1})
    dsr_reduction: str = "valid_mean"
    dsr_c_requires_mc: bool = False
    openpose_train_weight: float = 0.0
    gt_train_weight: float = 1.0
    figure_samples: int = 4
    tile_px: int = 128

    def __post_init__(self) -> None:
        if self.joints_3d not in JOINTS_3D_SOURCES:
            raise ValueError(f"potential.joints_3d {self.joints_3d!r} is not one of {list(JOINTS_3D_SOURCES)}")
        if self.batch_size < 1 or self.steps < 0:
            raise ValueError(f"potential.batch_size must be >= 1 and potential.steps >= 0, got {self.batch_size}, "
                             f"{self.steps}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PotentialSettings:
        """Inverse of the rule's ``settings`` param (``workflow/rules/potential.smk``)."""
        return cls(**dict(params))

    def train_settings(self, arm: str, source: SourceSpec) -> TrainSettings:
        """The :class:`TrainSettings` the loop's term functions read for ``arm``."""
        terms, _ = ARMS[arm]
        return TrainSettings(
            run=f"potential-{arm}", dsr_terms=terms, seed=self.seed, steps=self.steps, batch_size=self.batch_size,
            datasets=(source,), ratios=(1.0,), lr=self.lr, weight_decay=self.weight_decay,
            grad_clip_norm=self.grad_clip_norm, openpose_train_weight=self.openpose_train_weight,
            gt_train_weight=self.gt_train_weight, backbone=self.backbone, n_iter=self.n_iter, image_size=self.image_size,
            render_size=self.render_size, dsr_start_iter=0, loss_weights=self.weights_dict(),
            dsr_reduction=self.dsr_reduction, dsr_c_requires_mc=self.dsr_c_requires_mc, renderer=dict(self.renderer),
            progress=False)

    def weights_dict(self) -> dict[str, float]:
        """``train.loss_weights`` with the SMPL-parameter terms off."""
        weights = {k: float(v) for k, v in self.loss_weights.items()}
        weights.update(dict.fromkeys(PARAMETER_TERMS, 0.0))
        return weights


@dataclass(frozen=True)
class PotentialPaths:
    """Input files: body-model folder, joint regressors, semantic prior, the split's mask store and truth file
    (None: the annotations are the truth), and the start every run fine-tunes from (pretrained checkpoint, SPIN's
    mean parameters; None: as in training without them)."""

    body_models: str
    joint_regressors: str
    prior: str
    masks: str
    truth: str | None = None
    pretrained: str | None = None
    mean_params: str | None = None


# ------------------------------------------------------------------------------------------------- data
def choose_batch(n: int, batch_size: int, seed: int) -> np.ndarray:
    """The fixed batch: ``min(batch_size, n)`` distinct sample indices, seeded, sorted."""
    if n < 1:
        raise ValueError("the potential experiment's dataset has no samples")
    rng = np.random.default_rng(stage_seed(seed, "potential", "batch"))
    return np.sort(rng.choice(n, size=min(batch_size, n), replace=False))


def exact_label_map(image_root: str | Path, imgname: str) -> np.ndarray:
    """The noise-free CIHP label map the open world wrote beside ``imgname`` (``labels_gt/``), (H, W) uint8."""
    path = label_root(image_root, exact=True) / Path(imgname).with_suffix(".png")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no exact label map for {imgname}; regenerate the split (rule make_images_*) "
                                "— the potential experiment needs the open world's labels_gt/")
    return np.asarray(Image.open(path))


def exact_masks(source: SampleSource, index: int, mapping: ClassMapping, settings: CleanSettings,
                render_size: int) -> dict[str, np.ndarray | bool]:
    """Sample ``index``'s exact masks at the render resolution, un-augmented crop, in the keys and conventions of
    :meth:`pipeline.train.data.SampleSource.item` (``mask_c``, ``mask_mc``, ``mask_known``, ``valid_mc``,
    ``has_masks``): the store's cleaning (:func:`clean_sample`) applied to ``labels_gt/``."""
    d, r = source.data, render_size
    labels = exact_label_map(source.image_root, str(d.imgname[index]))
    cleaned = clean_sample(labels, d.keypoints49()[index], d.center[index], float(d.scale[index]), mapping, settings)
    if cleaned is None:
        return {"mask_c": np.zeros((r, r), np.int64), "mask_mc": np.zeros((r, r), np.float32),
                "mask_known": np.zeros((r, r), bool), "valid_mc": np.zeros(5, bool), "has_masks": False}
    affine = crop_affine(d.center[index], float(d.scale[index]), source.image_size)
    to_crop = store_to_crop_index(cleaned.crop_transform, affine, r, source.image_size)
    c = warp_nearest(cleaned.mask_c, to_crop, (r, r), fill=UNKNOWN)
    mc = warp_nearest(cleaned.mask_mc, to_crop, (r, r), fill=UNKNOWN)
    known = c != UNKNOWN
    return {"mask_c": np.where(known, c, 0).astype(np.int64), "mask_mc": (mc == 1).astype(np.float32),
            "mask_known": known, "valid_mc": np.asarray(cleaned.valid_mc, bool), "has_masks": True}


def fit_joints_3d(body: BodyModel, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """(B, 24, 4) SPIN's 24 joints (metres, camera frame) + confidence 1 of SMPL parameters (B, 72), (B, 10)."""
    with torch.no_grad():
        posed = body(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3])
    joints = posed.joints_spin
    return torch.cat([joints, torch.ones_like(joints[..., :1])], dim=-1)


def read_truth(truth_file: str | Path | None, annotations: str | Path, data_imgname: np.ndarray, pose: np.ndarray,
               betas: np.ndarray) -> dict[str, Any]:
    """The true bodies of a split: its truth file (:func:`pipeline.world.pseudo_gt.read_truth`, written beside the
    annotations by the open world), or, without one, the annotations' own parameters.

    Returns:
        ``{"pose" (N, 72), "betas" (N, 10), "gender" (N,) 'm'/'f' or None (neutral-model betas), "source": str,
        "noisy": bool (the labels carry pseudo-GT error)}`` in annotation order.

    Raises:
        ValueError: the truth file's samples are not the annotation file's, or it mixes neutral ('n') with
            gendered bodies.
    """
    if truth_file is None:
        return {"pose": np.asarray(pose, np.float64), "betas": np.asarray(betas, np.float64), "gender": None,
                "source": f"{annotations} (annotations)", "noisy": False}
    truth = pseudo_gt.read_truth(truth_file)
    names = np.asarray(truth["imgname"]).astype(str)
    if len(names) != len(data_imgname) or (names != np.asarray(data_imgname).astype(str)).any():
        raise ValueError(f"{truth_file}: its imgname does not match {annotations} sample by sample; regenerate the "
                         "split (rule make_images_train_*)")
    gender = truth.get("gender")
    if gender is not None:
        kinds = set(gender.tolist())
        if "n" in kinds and kinds - {"n"}:
            raise ValueError(f"{truth_file}: mixes neutral ('n') and gendered bodies; the potential experiment scores "
                             "one body-model convention per split")
        gender = None if kinds == {"n"} else gender
    return {"pose": np.asarray(truth["pose"], np.float64), "betas": np.asarray(truth["betas"], np.float64),
            "gender": gender, "source": str(truth_file), "noisy": bool(truth["pseudo_gt_noisy"])}


# --------------------------------------------------------------------------------------------- scoring
@dataclass
class Scores:
    """One arm's scores at one step (module doc); ``vertices`` (B, V, 3) and ``cams`` (B, 3) for the figure."""

    result: EvalResult
    iou_mc: float
    soft_iou_mc: float
    iou_person: float
    n_iou_mc: int
    vertices: np.ndarray
    cams: np.ndarray


def part_ious(prior: PriorTextures, vertices: torch.Tensor, faces: torch.Tensor, cam_t: torch.Tensor,
              exact: Mapping[str, torch.Tensor], settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor, torch.Tensor]:
    """Per-sample ``(iou_mc, soft_iou_mc, iou_person, has_mc)`` of the rendered body against the exact masks.

    The DSR-MC texture of each sample's *exact* valid MC labels is rendered at the render size (the
    renderer's ``images``; its ``silhouette`` for the person IoU) and compared over the known pixels.
    """
    r = settings.render_size
    textures, where = prior.textures(("dsr_mc",), exact["valid_mc"])
    images, silhouette = render_semantics(
        vertices, faces, textures, cam_t, focal=scale_focal_length(FOCAL_LENGTH, CROP_SIZE, r), image_size=r,
        sigma=resolve_sigma(settings.renderer.get("sigma"), settings.renderer.get("sigma_px"), r),
        gamma=float(settings.renderer["gamma"]), backend=settings.renderer["backend"])
    known = exact["mask_known"].to(images.dtype)
    mc = images[:, where["mc"]][:, 0] * known
    target = exact["mask_mc"] * known
    person = (exact["mask_c"] > 0).to(images.dtype) * known
    has_mc = exact["has_masks"] & exact["valid_mc"].any(dim=1)
    return (hard_iou(mc, target, IOU_THRESHOLD), soft_iou(mc, target), hard_iou(silhouette * known, person,
                                                                               IOU_THRESHOLD), has_mc)


@torch.no_grad()
def score(model: torch.nn.Module, body: BodyModel, prior: PriorTextures, batch: Mapping[str, torch.Tensor],
          exact: Mapping[str, torch.Tensor], truth: Mapping[str, Any], models: Mapping[str, BodyModel],
          settings: TrainSettings) -> Scores:
    """Eval-mode scores of ``model`` on the fixed batch (module doc); the model's mode is restored."""
    was_training = model.training
    model.eval()
    out, posed, cam_t = predict_body(model, body, batch["img"])  # type: ignore[arg-type]
    model.train(was_training)
    vertices = posed.vertices
    gender = truth["gender"] if truth["gender"] is not None else np.full(len(vertices), "m")
    gt_models = dict(models) if truth["gender"] is not None else {"male": models["neutral"],
                                                                   "female": models["neutral"]}
    result = evaluate_3dpw(vertices.cpu().numpy(), truth["pose"], truth["betas"], gender, gt_models)
    iou, soft, person, has_mc = part_ious(prior, vertices, body.faces, cam_t, exact, settings)
    n_mc = int(has_mc.sum())
    mean = (lambda x: float(x[has_mc].mean()) if n_mc else math.nan)
    has = exact["has_masks"]
    return Scores(result=result, iou_mc=mean(iou), soft_iou_mc=mean(soft),
                  iou_person=float(person[has].mean()) if bool(has.any()) else math.nan, n_iou_mc=n_mc,
                  vertices=vertices.cpu().numpy(), cams=out.pred_cam.cpu().numpy())


# ------------------------------------------------------------------------------------------------ arms
def overfit(model: torch.nn.Module, body: BodyModel, prior: PriorTextures, batch: Mapping[str, torch.Tensor],
            settings: TrainSettings) -> float:
    """``settings.steps`` Adam steps on the one fixed ``batch`` with the training loop's terms
    (:func:`pipeline.train.loop.standard_terms`, :func:`pipeline.train.loop.dsr_terms`,
    :func:`pipeline.losses.composite.total_loss`), in training mode; returns the last step's loss."""
    weights = LossWeights.from_dict(settings.loss_weights)
    optimizer = adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    clip = settings.grad_clip_norm if settings.grad_clip_norm > 0 else math.inf
    model.train()
    loss_value = math.nan
    for step in range(settings.steps):
        out, posed, cam_t = predict_body(model, body, batch["img"],  # type: ignore[arg-type]
                                         vertices=bool(settings.dsr_terms))
        terms = standard_terms(out, posed, cam_t, batch, openpose_weight=settings.openpose_train_weight,
                               gt_weight=settings.gt_train_weight)
        if settings.dsr_terms:
            extra, _ = dsr_terms(settings, prior, posed.vertices, body.faces, cam_t, batch)
            terms.update(extra)
        loss, _ = total_loss(terms, weights, step, 0)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"potential arm {settings.run}: non-finite loss at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        loss_value = float(loss.detach())
    return loss_value


def _row(arm: str, step: int, s: Scores, loss: float, seconds: float) -> dict[str, Any]:
    terms, masks = ARMS[arm]
    return {"arm": arm, "masks": masks or "none", "terms": "+".join(("keypoints", *terms)), "step": step,
            "n": s.result.n, "mpjpe_mm": s.result.mpjpe_mm, "pa_mpjpe_mm": s.result.pa_mpjpe_mm,
            "pve_mm": s.result.pve_mm, "iou_mc": s.iou_mc, "soft_iou_mc": s.soft_iou_mc, "iou_person": s.iou_person,
            "n_iou_mc": s.n_iou_mc, "loss": loss, "seconds": seconds}


def _joint_rows(arm: str, step: int, s: Scores) -> list[dict[str, Any]]:
    mpjpe = s.result.grouped_joint_errors(aligned=False)
    pa = s.result.grouped_joint_errors(aligned=True)
    return [{"arm": arm, "step": step, "group": g, "mpjpe_mm": mpjpe[g], "pa_mpjpe_mm": pa[g]} for g in mpjpe]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "nan"
    return str(value)


def write_rows(path: str | Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """A CSV written atomically, values formatted like ``metrics.csv``."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: _fmt(r.get(k)) for k in columns} for r in rows)
    return Path(path)


def run_potential(settings: PotentialSettings, paths: PotentialPaths, out_csv: str | Path, out_joints: str | Path,
                  out_figure: str | Path, *, device: str = "cpu", threads: int = 0) -> list[dict[str, Any]]:
    """Run the three arms (module doc) and write the CSVs and the figure.

    Returns:
        The main CSV's rows.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    spec = SourceSpec(name=settings.dataset, annotations=settings.annotations, images=settings.images,
                      fmt=settings.fmt, masks=paths.masks)
    source = SampleSource(spec, settings.image_size, settings.render_size)
    if source.store is None or source.mapping is None:  # SourceSpec has masks: cannot happen
        raise ValueError(f"{paths.masks}: no mask store")
    mapping = source.mapping
    clean = CleanSettings(**source.store.json_attr("settings"))
    index = choose_batch(len(source.data), settings.batch_size, settings.seed)
    items = [source.item(int(i)) for i in index]
    batch = to_tensors(default_collate(items), dev)
    exact = to_tensors(default_collate([exact_masks(source, int(i), mapping, clean, settings.render_size)
                                        for i in index]), dev)
    body = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors).to(dev)
    models = {g: BodyModel(paths.body_models, g, joint_regressors=paths.joint_regressors) for g in ("male", "female")}
    models["neutral"] = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors)
    if settings.joints_3d == "fit":
        no_s = ~batch["has_pose_3d"].bool() & batch["has_smpl"].bool()
        fitted = fit_joints_3d(body, batch["pose"], batch["betas"])
        batch["joints_3d"] = torch.where(no_s[:, None, None], fitted, batch["joints_3d"])
        batch["has_pose_3d"] = batch["has_pose_3d"].bool() | no_s
    d = source.data
    truth = read_truth(paths.truth, settings.annotations, d.imgname, d.pose, d.shape)
    truth_batch = {"pose": truth["pose"][index], "betas": truth["betas"][index],
                   "gender": None if truth["gender"] is None else truth["gender"][index]}
    prior = PriorTextures(paths.prior, body.num_faces, mapping.matrix(), dev)
    log.info("potential of DSR: %d samples of %s (%d with exact DSR-MC labels, %d with parser ones), %d steps, "
             "3D joints: %s (%d samples), truth: %s (labels with pseudo-GT error: %s)", len(index), settings.dataset,
             int((exact["has_masks"] & exact["valid_mc"].any(1)).sum()),
             int((batch["has_masks"] & batch["valid_mc"].any(1)).sum()), settings.steps, settings.joints_3d,
             int(batch["has_pose_3d"].sum()), truth["source"], truth["noisy"])

    start = TrainPaths(body_models=paths.body_models, joint_regressors=paths.joint_regressors, prior=paths.prior,
                       mean_params=paths.mean_params, pretrained=paths.pretrained)
    rows: list[dict[str, Any]] = []
    joint_rows: list[dict[str, Any]] = []
    final: dict[str, Scores] = {}
    for arm, (_, masks) in ARMS.items():
        ts = settings.train_settings(arm, spec)
        model, _ = build_model(ts, start, [source])  # the training runs' start (pretrained or mean parameters)
        model.to(dev)
        arm_batch = dict(batch)
        if masks == "exact":
            arm_batch.update(exact)
        before = score(model, body, prior, arm_batch, exact, truth_batch, models, ts)
        rows.append(_row(arm, 0, before, math.nan, 0.0))
        joint_rows += _joint_rows(arm, 0, before)
        torch.manual_seed(stage_seed(settings.seed, "potential", "dropout"))  # the same dropout stream per arm
        t0 = time.perf_counter()
        loss = overfit(model, body, prior, arm_batch, ts)
        seconds = time.perf_counter() - t0
        after = score(model, body, prior, arm_batch, exact, truth_batch, models, ts)
        rows.append(_row(arm, settings.steps, after, loss, seconds))
        joint_rows += _joint_rows(arm, settings.steps, after)
        final[arm] = after
        log.info("arm %s: %d steps in %.1f s (%.2f s/step); PVE %.1f -> %.1f mm, MPJPE %.1f -> %.1f mm, "
                 "IoU(MC) %.3f -> %.3f", arm, settings.steps, seconds, seconds / max(settings.steps, 1),
                 before.result.pve_mm, after.result.pve_mm, before.result.mpjpe_mm, after.result.mpjpe_mm,
                 before.iou_mc, after.iou_mc)
    write_rows(out_csv, COLUMNS, rows)
    write_rows(out_joints, JOINT_COLUMNS, joint_rows)
    figure_samples = index[:settings.figure_samples]
    write_figure(out_figure, source, figure_samples, {a: (s.vertices, s.cams) for a, s in final.items()},
                 body.faces.cpu().numpy(), settings.tile_px)
    return rows


# ---------------------------------------------------------------------------------------------- figure
def write_figure(path: str | Path, source: SampleSource, index: np.ndarray,
                 predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], faces: np.ndarray, tile: int) -> Path:
    """``fig4.png``: per sample ``image | SD | SD+DSR (parser) | SD+DSR (exact)`` overlays cut to the person box
    (the evaluation's qualitative panels, :func:`pipeline.evaluate.qualitative.render_sample_views`)."""
    import torch._dynamo  # noqa: F401  (before the first pyrender context, pipeline.render.offscreen)

    from pipeline.evaluate.qualitative import compose_figure, render_sample_views

    d = source.data
    blocks = []
    for k, i in enumerate(index):
        image = read_image_rgb(source.image_root / str(d.imgname[i]))
        panels: list[np.ndarray] = []
        for (vertices, cams) in predictions.values():
            views = render_sample_views(image, vertices[k], faces, d.center[i], float(d.scale[i]), cams[k], tile)
            if not panels:
                panels.append(views[0])
            panels.append(views[1])
        blocks.append(panels)
    labels = ["image", *(ARM_TITLES[a] for a in predictions)]
    grid = compose_figure(blocks, labels, columns=1)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)


# ---------------------------------------------------------------------------------------------- report
def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_rows`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build it with rule potential_of_dsr")
    with path.open() as f:
        return list(csv.DictReader(f))


def report_rows(csv_path: str | Path) -> list[dict[str, Any]]:
    """One row per arm (first and last step side by side) for :func:`pipeline.evaluate.report.build_html_report`'s
    ``tables`` (with ``fig4.png`` in its ``figures``): ``arm, masks, n, steps`` and ``<metric>_start`` /
    ``<metric>`` (after training) for PVE, MPJPE, PA-MPJPE (mm) and the part and person IoU."""
    by_arm: dict[str, dict[int, dict[str, str]]] = {}
    for r in read_rows(csv_path):
        by_arm.setdefault(r["arm"], {})[int(r["step"])] = r
    out = []
    for arm, by_step in by_arm.items():
        first, last = by_step[min(by_step)], by_step[max(by_step)]
        row: dict[str, Any] = {"arm": arm, "masks": last["masks"], "n": int(last["n"]), "steps": int(last["step"])}
        for m in ("pve_mm", "mpjpe_mm", "pa_mpjpe_mm", "iou_mc", "iou_person"):
            stem, unit = (m[:-3], "_mm") if m.endswith("_mm") else (m, "")
            row[f"{stem}_start{unit}"] = float(first[m])
            row[m] = float(last[m])
        out.append(row)
    return out


#: Report columns of :func:`report_rows`' metrics: title, decimals.
_REPORT_METRICS: dict[str, tuple[str, int]] = {"pve_mm": ("PVE (mm)", 1), "mpjpe_mm": ("MPJPE (mm)", 1),
                                                "pa_mpjpe_mm": ("PA-MPJPE (mm)", 1), "iou_mc": ("IoU parts", 3),
                                                "iou_person": ("IoU person", 3)}


def _before_after(row: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`report_rows` row as the report shows it: one ``start → end`` cell per metric."""
    out: dict[str, Any] = {k: row[k] for k in ("arm", "masks", "n")}
    for metric, (title, decimals) in _REPORT_METRICS.items():
        stem, unit = (metric[:-3], "_mm") if metric.endswith("_mm") else (metric, "")
        start, end = float(row[f"{stem}_start{unit}"]), float(row[metric])
        out[title] = "–" if not (math.isfinite(start) and math.isfinite(end)) else f"{start:.{decimals}f} → {end:.{decimals}f}"
    return out


def write_report_section(csv_path: str | Path, figure: str | Path, joints_csv: str | Path,
                         out_json: str | Path) -> Path:
    """The experiment's section of ``results/report.html`` (rule build_report's ``sections`` input): one row per
    arm (step 0 and the last step, :func:`report_rows`), the Table 4 joint groups after training and
    ``fig4.png``."""
    rows = report_rows(csv_path)
    steps = max((r["steps"] for r in rows), default=0)
    n = rows[0]["n"] if rows else 0
    joint_rows = [r for r in read_rows(joints_csv) if int(r["step"]) == steps]
    groups: dict[str, dict[str, Any]] = {}
    for r in joint_rows:
        groups.setdefault(r["arm"], {"arm": r["arm"]})[f"{r['group']}_mm"] = float(r["mpjpe_mm"])
    section = ReportSection(
        title="Potential of DSR (paper §5.3, Fig. 4)",
        note=(f"One fixed batch of {n} training samples over-fitted for {steps} steps from the pretrained start "
              "with joints only (sd) and with joints + DSR-MC + DSR-C on the parser's masks and on the exact "
              "masks. Errors against the true bodies (not the pseudo ground truth the labels carry); IoU of the "
              f"rendered parts / person with the exact masks. Each cell: step 0 → step {steps}."),
        tables={"Per arm": [_before_after(r) for r in rows],
                f"MPJPE per joint group after {steps} steps (paper Table 4 groups)": list(groups.values())},
        figures={"image | SD | SD + DSR (parser masks) | SD + DSR (exact masks)": Path(figure)},
    )
    return write_section_file(out_json, section)