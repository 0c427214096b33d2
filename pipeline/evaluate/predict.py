"""Run a trained regressor over a test split once; metrics and figures read the stored predictions.

A test split is a :class:`~pipeline.io.spin_npz.PersonDataset` plus its image root. Every sample is cropped
exactly as in training (:func:`pipeline.train.crop.crop_affine` around ``center``/``scale``, no augmentation),
normalised, and passed through the network in batches; the predicted SMPL parameters are posed with the
**neutral** body model (SPIN / DSR evaluation).

Stored per sample (:class:`Predictions`, one ``.npz`` per (test split, run), float32):

============ ================= ==========================================================================
key          shape             meaning
============ ================= ==========================================================================
imgname      (N,) str          image path relative to the split's image root (joins with the annotations)
rotmat       (N, 24, 3, 3)     predicted rotations, global orientation first (camera orientation)
betas        (N, B)            predicted shape coefficients
cam          (N, 3)            weak-perspective camera ``[s, tx, ty]`` of the 224-px SPIN crop convention
vertices     (N, V, 3)         neutral-model vertices, metres, camera orientation, no translation
joints_h36m  (N, 17, 3)        ``J_regressor_h36m @ vertices``, metres
provenance   JSON string       checkpoint, its step and hash, backbone, crop size, git SHA ...
============ ================= ==========================================================================

``vertices`` may be left out (``store_vertices=False``; 35K 3DPW frames × 6,890 vertices are 2.9 GB): the
reader then re-poses them from ``rotmat``/``betas`` with the neutral model.

The baseline ``mean-params`` (the regressor's output before any training) is predicted by this same code with
``n_iter=0``: :meth:`pipeline.model.hmr.HMR.forward` then returns its ``init_pose``/``init_shape``/``init_cam``
buffers unchanged, for every image.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.body.model import BodyModel
from pipeline.evaluate.names import PROTOCOLS
from pipeline.evaluate.protocols import (
    DEFAULT_BATCH_SIZE,
    EvalResult,
    evaluate_3dpw,
    evaluate_h36m,
    evaluate_mpi_inf_3dhp,
)
from pipeline.io.images import read_image_rgb
from pipeline.io.spin_npz import PersonDataset
from pipeline.runtime import atomic_path
from pipeline.train.crop import crop_affine, normalize_image, warp_image

if TYPE_CHECKING:  # annotation only: scoring and plotting need no network code (torchvision, torch._dynamo)
    from pipeline.model.hmr import HMR

log = logging.getLogger(__name__)

#: Annotation keys each protocol needs (checked before anything is evaluated).
PROTOCOL_KEYS: dict[str, tuple[str, ...]] = {
    "3dpw": ("pose", "shape", "gender"),
    "h36m-p1": ("S",),
    "h36m-p2": ("S",),
    "mpi-inf-3dhp": ("S",),
}
#: Seconds between tqdm updates: logs go to files, one line every half minute is plenty.
PROGRESS_MININTERVAL_S: float = 30.0
#: Hex digits of the checkpoint SHA-256 kept as provenance.
CHECKPOINT_HASH_CHARS: int = 16
#: Missing image files named in the error message before "and N more".
MAX_NAMED_MISSING: int = 3


@dataclass(frozen=True, eq=False)
class Predictions:
    """Per-sample network outputs on one test split (module docstring for the file layout).

    imgname: (N,) str. rotmat: (N, 24, 3, 3) float32. betas: (N, B) float32. cam: (N, 3) float32 ``[s, tx, ty]``.
    vertices: (N, V, 3) float32, metres, neutral model, camera orientation, no translation.
    joints_h36m: (N, 17, 3) float32, metres. provenance: JSON-serialisable facts about the model.
    """

    imgname: np.ndarray
    rotmat: np.ndarray
    betas: np.ndarray
    cam: np.ndarray
    vertices: np.ndarray = field(repr=False)
    joints_h36m: np.ndarray = field(repr=False)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.imgname)


def file_sha256(path: str | Path, chars: int = CHECKPOINT_HASH_CHARS) -> str:
    """First ``chars`` hex digits of the SHA-256 of a file (identifies the evaluated checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:chars]


def check_images(data: PersonDataset, image_root: str | Path, split: str = "test split") -> None:
    """Raise one ``FileNotFoundError`` naming the missing images of a split and how to get them."""
    root = Path(image_root)
    names = list(dict.fromkeys(str(n) for n in data.imgname))
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        shown = ", ".join(str(root / n) for n in missing[:MAX_NAMED_MISSING])
        more = f" and {len(missing) - MAX_NAMED_MISSING} more" if len(missing) > MAX_NAMED_MISSING else ""
        raise FileNotFoundError(
            f"{split}: {len(missing)} of {len(names)} images are missing under {root}: {shown}{more}. "
            f"Fix: in the open world regenerate the split (snakemake --forcerun make_images_test_{split}); with "
            f"real data point assets.test_datasets.{split}.images at the folder the annotation's imgname "
            "entries are relative to"
        )


def crop_batch(data: PersonDataset, index: np.ndarray, image_root: str | Path, image_size: int) -> np.ndarray:
    """(B, 3, S, S) float32 ImageNet-normalised test crops (training crop, no augmentation) of ``index``."""
    root = Path(image_root)
    out = np.empty((len(index), 3, image_size, image_size), dtype=np.float32)
    for k, i in enumerate(index):
        image = read_image_rgb(root / str(data.imgname[i]))
        affine = crop_affine(data.center[i], float(data.scale[i]), image_size)
        out[k] = normalize_image(warp_image(image, affine, image_size))
    return out


@torch.no_grad()
def pose_neutral(body: BodyModel, rotmat: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Neutral-model vertices (B, V, 3) and H36M joints (B, 17, 3) for rotations (B, 24, 3, 3) and betas, on the
    body model's device (the inputs are moved there)."""
    if body.h36m_regressor is None:
        raise ValueError(f"body model {body.model_path} has no H36M regressor; build it with joint_regressors=")
    device = body.faces.device
    rotmat, betas = rotmat.to(device), betas.to(device)
    out = body(betas=betas, body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1], pose2rot=False)
    return out.vertices, out.joints_h36m


@torch.no_grad()
def predict_split(
    model: HMR,
    body: BodyModel,
    data: PersonDataset,
    image_root: str | Path,
    *,
    image_size: int,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    split: str = "test split",
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
    n_iter: int | None = None,
) -> Predictions:
    """Predict every sample of a test split.

    Args:
        model: the regressor (put in eval mode here; BatchNorm running statistics, no dropout).
        body: the **neutral** body model, with an H36M regressor, on ``device``.
        data: the split's annotations (only ``imgname``, ``center``, ``scale`` are read).
        image_root: folder the ``imgname`` entries are relative to.
        image_size: crop side the network was trained at (checkpoint ``model_config['image_size']``).
        batch_size: samples per forward pass.
        device: torch device of ``model`` and ``body``.
        split: name used in messages and the progress bar.
        progress: show a tqdm bar (updated at most every :data:`PROGRESS_MININTERVAL_S` seconds).
        provenance: stored with the predictions.
        n_iter: regressor refinement steps (None: the model's own; 0: its mean-parameter buffers, the
            ``mean-params`` baseline).

    Returns:
        :class:`Predictions` (float32 numpy arrays).

    Raises:
        FileNotFoundError: images are missing (:func:`check_images`), before any network work.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_iter is not None and n_iter < 0:
        raise ValueError(f"n_iter must be >= 0 (0 = the mean-parameter buffers) or None, got {n_iter}")
    n = len(data)
    if n == 0:
        raise ValueError(f"{split}: the split has no samples")
    check_images(data, image_root, split)
    model.eval()
    rotmat, betas, cam, verts, joints = [], [], [], [], []
    bar = tqdm(total=n, desc=f"predict {split}", unit="img", disable=not progress, mininterval=PROGRESS_MININTERVAL_S)
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        images = torch.from_numpy(crop_batch(data, index, image_root, image_size)).to(device)
        out = model(images, n_iter=n_iter)
        v, j = pose_neutral(body, out.pred_rotmat, out.pred_betas)
        for store, value in ((rotmat, out.pred_rotmat), (betas, out.pred_betas), (cam, out.pred_cam),
                             (verts, v), (joints, j)):
            store.append(value.detach().float().cpu().numpy())
        bar.update(len(index))
    bar.close()
    return Predictions(
        imgname=np.asarray(data.imgname).astype(str),
        rotmat=np.concatenate(rotmat),
        betas=np.concatenate(betas),
        cam=np.concatenate(cam),
        vertices=np.concatenate(verts),
        joints_h36m=np.concatenate(joints),
        provenance=dict(provenance or {}),
    )


def body_predictions(
    body_models: Mapping[str, BodyModel],
    pose: np.ndarray,
    betas: np.ndarray,
    gender: np.ndarray | None = None,
    imgname: np.ndarray | None = None,
) -> Predictions:
    """Predictions made of given SMPL parameters (e.g. the ground truth), posed per sample's model.

    Args:
        body_models: ``{'neutral'|'male'|'female': BodyModel}`` with H36M regressors.
        pose: (N, 72) axis-angle, global orientation first.
        betas: (N, B).
        gender: (N,) ``'m'``/``'f'`` to pose each sample with its gendered model; None = neutral for all.
        imgname: (N,) names; default ``sample_{i}``.
    """
    from smplx.lbs import batch_rodrigues

    n = len(pose)
    rot = batch_rodrigues(torch.as_tensor(np.ascontiguousarray(pose), dtype=torch.float32).reshape(-1, 3)).reshape(n, 24, 3, 3)
    b = torch.as_tensor(np.ascontiguousarray(betas), dtype=torch.float32)
    names = np.full(n, "neutral", dtype=object) if gender is None else np.array(
        ["male" if str(g) in ("m", "male", "0") else "female" for g in np.asarray(gender).tolist()], dtype=object)
    first = body_models[str(names[0])] if n else body_models["neutral"]
    verts = np.empty((n, first.num_vertices, 3), np.float32)
    joints = np.empty((n, 17, 3), np.float32)
    for name in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == name)
        v, j = pose_neutral(body_models[name], rot[rows], b[rows])
        verts[rows], joints[rows] = v.cpu().numpy(), j.cpu().numpy()
    return Predictions(
        imgname=np.asarray(imgname if imgname is not None else [f"sample_{i}" for i in range(n)]).astype(str),
        rotmat=rot.numpy(), betas=b.numpy(), cam=np.zeros((n, 3), np.float32), vertices=verts, joints_h36m=joints,
        provenance={"source": "parameters"},
    )


# --------------------------------------------------------------------------------------------- storage


def save_predictions(pred: Predictions, path: str | Path, store_vertices: bool = True) -> Path:
    """Write :class:`Predictions` as an npz, atomically (temporary sibling + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "imgname": np.asarray(pred.imgname).astype(str),
        "rotmat": pred.rotmat.astype(np.float32),
        "betas": pred.betas.astype(np.float32),
        "cam": pred.cam.astype(np.float32),
        "joints_h36m": pred.joints_h36m.astype(np.float32),
        "provenance": np.array(json.dumps(pred.provenance, sort_keys=True, default=str)),
    }
    if store_vertices:
        arrays["vertices"] = pred.vertices.astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_predictions(path: str | Path, body: BodyModel | None = None, batch_size: int = DEFAULT_BATCH_SIZE
                     ) -> Predictions:
    """Read :func:`save_predictions` output; without stored vertices, re-pose them with the neutral ``body``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions {path} do not exist; run rule predict_test_split first")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    provenance = json.loads(str(arrays.pop("provenance")))
    if "vertices" not in arrays:
        if body is None:
            raise ValueError(f"predictions {path} were stored without vertices; pass the neutral body model")
        rot, betas = torch.as_tensor(arrays["rotmat"]), torch.as_tensor(arrays["betas"])
        arrays["vertices"] = np.concatenate([
            pose_neutral(body, rot[s:s + batch_size], betas[s:s + batch_size])[0].cpu().numpy()
            for s in range(0, len(rot), batch_size)
        ]) if len(rot) else np.zeros((0, body.num_vertices, 3), np.float32)
    return Predictions(imgname=arrays["imgname"].astype(str), rotmat=arrays["rotmat"], betas=arrays["betas"],
                       cam=arrays["cam"], vertices=arrays["vertices"], joints_h36m=arrays["joints_h36m"],
                       provenance=provenance)


# --------------------------------------------------------------------------------------------- scoring


def protocol_of(split: str) -> str:
    """The evaluation protocol of a test split name (:data:`PROTOCOLS`)."""
    if split not in PROTOCOLS:
        raise ValueError(f"unknown test split {split!r}; allowed: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[split]


def evaluate_predictions(
    pred: Predictions,
    data: PersonDataset,
    split: str,
    body_models: Mapping[str, BodyModel] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> EvalResult:
    """Score predictions of a test split with its protocol (:mod:`pipeline.evaluate.protocols`).

    Args:
        pred: predictions in the annotation order (``imgname`` must match).
        data: the split's annotations.
        split: test split name (``3dpw``, ``h36m_p1``, ``h36m_p2``, ``mpi_inf_3dhp``).
        body_models: ``{'male', 'female'}`` (3DPW ground truth; not needed otherwise).
        batch_size: samples per GT body-model pass (3DPW).

    Raises:
        ValueError: predictions of another split, or annotations lacking the protocol's keys.
    """
    protocol = protocol_of(split)
    if len(pred) != len(data) or not np.array_equal(np.asarray(pred.imgname).astype(str),
                                                     np.asarray(data.imgname).astype(str)):
        raise ValueError(f"{split}: the predictions ({len(pred)} samples) are not of this split's annotations "
                         f"({len(data)} samples) in the same order; rerun rule predict_test_split")
    lacking = [k for k in PROTOCOL_KEYS[protocol] if not data.present.get(k, False)]
    if lacking:
        raise ValueError(f"{split}: the annotations lack {lacking}, which protocol {protocol} needs "
                         "(3DPW: pose, shape, gender; Human3.6M / MPI-INF-3DHP: S)")
    if protocol == "3dpw":
        if body_models is None:
            raise ValueError("3dpw: pass the male and female body models for the ground truth")
        return evaluate_3dpw(pred.vertices, data.pose, data.shape, data.gender, body_models, batch_size=batch_size)
    if protocol == "mpi-inf-3dhp":
        return evaluate_mpi_inf_3dhp(pred.joints_h36m, data.S)
    return evaluate_h36m(pred.joints_h36m, data.S, protocol=int(protocol[-1]))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def result_json(result: EvalResult, run: str, world: str, provenance: Mapping[str, Any]) -> bytes:
    """The CSV rows of one scored (split, run) as JSON bytes: ``row``, ``per_joint`` and ``groups``.

    ``groups`` are the paper's per-joint table (left/right averaged; :data:`~pipeline.evaluate.protocols.
    JOINT_GROUPS`), with MPJPE and PA-MPJPE.
    """
    from pipeline.evaluate.report import per_joint_rows, result_row

    mpjpe_groups = result.grouped_joint_errors(aligned=False)
    pa_groups = result.grouped_joint_errors(aligned=True)
    groups = [{"run": run, "dataset": result.dataset, "world": world, "group": g, "mpjpe_mm": mpjpe_groups[g],
               "pa_mpjpe_mm": pa_groups[g]} for g in mpjpe_groups]
    payload = {"row": result_row(result, run, world, **provenance), "per_joint": per_joint_rows(result, run, world),
               "groups": groups}
    buf = io.StringIO()
    json.dump(payload, buf, indent=1, default=_json_default)
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------------- stages


def load_body_models(body_model_dir: str | Path, joint_regressors: str | Path,
                     genders: tuple[str, ...] = ("neutral", "male", "female"),
                     device: str | torch.device = "cpu") -> dict[str, BodyModel]:
    """The body models evaluation needs, with their H36M regressors, on ``device``."""
    return {g: BodyModel(body_model_dir, gender=g, joint_regressors=joint_regressors).to(device) for g in genders}


def predict_checkpoint(
    checkpoint: str | Path,
    annotations: str | Path,
    fmt: str,
    image_root: str | Path,
    body_model_dir: str | Path,
    joint_regressors: str | Path,
    out_npz: str | Path,
    *,
    split: str,
    run: str,
    batch_size: int = 32,
    device: str = "cpu",
    store_vertices: bool = True,
    foreign_backbone: str = "resnet50",
    git_sha: str = "unknown",
    progress: bool = True,
    n_iter: int | None = None,
) -> Predictions:
    """Stage function of rule ``predict_test_split``: load a checkpoint, predict a split, save the npz.

    Args:
        checkpoint: our ``final.pt`` or a foreign (SPIN) checkpoint, evaluated with ``foreign_backbone`` at 224 px.
        annotations, fmt, image_root: the test split (:func:`pipeline.masks.parse_images.read_dataset`).
        body_model_dir, joint_regressors: the body models (the neutral one poses predictions).
        out_npz: ``results/eval/{split}/{run}.predictions.npz``.
        split, run: names, recorded in the provenance.
        n_iter: regressor refinement steps (None: the checkpoint's; 0: the ``mean-params`` baseline, i.e. the
            checkpoint's mean-parameter buffers), recorded in the provenance.
    """
    from pipeline.masks.parse_images import read_dataset
    from pipeline.train.checkpoint import model_from_checkpoint, read_checkpoint

    data = read_dataset(annotations, fmt)
    check_images(data, image_root, split)
    model, model_config = model_from_checkpoint(checkpoint, device, backbone=foreign_backbone)
    step = read_checkpoint(checkpoint).get("step")
    body = load_body_models(body_model_dir, joint_regressors, ("neutral",), device)["neutral"]
    provenance = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "step": int(step) if isinstance(step, (int, np.integer)) else "",
        "backbone": model_config["backbone"],
        "image_size": int(model_config["image_size"]),
        "n_iter": int(model.n_iter if n_iter is None else n_iter),
        "git_sha": git_sha,
    }
    log.info("%s on %s: %d samples, %s", run, split, len(data), provenance)
    pred = predict_split(model, body, data, image_root, image_size=int(model_config["image_size"]),
                         batch_size=batch_size, device=device, split=split, progress=progress, provenance=provenance,
                         n_iter=n_iter)
    save_predictions(pred, out_npz, store_vertices=store_vertices)
    return pred


def score_split(
    predictions: str | Path,
    annotations: str | Path,
    fmt: str,
    body_model_dir: str | Path,
    joint_regressors: str | Path,
    out_json: str | Path,
    out_result: str | Path,
    *,
    split: str,
    run: str,
    world: str,
) -> EvalResult:
    """Stage function of rule ``score_predictions``: protocol metrics of one (split, run).

    Writes ``out_json`` (:func:`result_json`: the CSV rows with the predictions' provenance) and
    ``out_result`` (:func:`pipeline.evaluate.report.save_result`: per-sample and per-joint errors).
    """
    from pipeline.evaluate.report import atomic_write_bytes, save_result
    from pipeline.masks.parse_images import read_dataset

    genders = ("neutral", "male", "female") if protocol_of(split) == "3dpw" else ("neutral",)
    models = load_body_models(body_model_dir, joint_regressors, genders)
    pred = load_predictions(predictions, models["neutral"])
    result = evaluate_predictions(pred, read_dataset(annotations, fmt), split, models)
    log.info("%s on %s: MPJPE %.2f mm, PA-MPJPE %.2f mm, PVE %.2f mm (n=%d)", run, split, result.mpjpe_mm,
             result.pa_mpjpe_mm, result.pve_mm, result.n)
    save_result(result, out_result)
    atomic_write_bytes(out_json, result_json(result, run, world, pred.provenance))
    return result
