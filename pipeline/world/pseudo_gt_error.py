"""Error of the open world's pseudo ground truth against the truth (rule ``pseudo_gt_error``).

The pseudo-GT body (the labels' SMPL parameters) against the true body (``<annotation stem>.truth.npz``,
:mod:`pipeline.world.pseudo_gt`) with the 3DPW protocol's joints: H36M regressor, 14 LSP joints, pelvis
aligned; MPJPE, PA-MPJPE and PVE (no alignment) in millimetres, plus the betas error.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.body.joints import H36M_TO_J14
from pipeline.body.model import BodyModel
from pipeline.evaluate import metrics
from pipeline.evaluate.protocols import root_relative_eval_joints
from pipeline.evaluate.sections import ReportSection, write_section_file
from pipeline.io.eft_json import read_eft_json
from pipeline.io.spin_npz import PersonDataset, read_spin_npz
from pipeline.world.pseudo_gt import TruthFileError, read_truth, truth_path

M_TO_MM: float = 1000.0
#: Columns of ``pseudo_gt_error.csv``.
ERROR_COLUMNS: tuple[str, ...] = ("split", "n", "mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "betas_l2", "betas_shrink_fit")
#: Body model of each gender code of a truth file.
GENDER_MODELS: dict[str, str] = {"m": "male", "f": "female", "n": "neutral"}


def _vertices(models: Mapping[str, BodyModel], codes: np.ndarray, pose: np.ndarray, betas: np.ndarray,
              batch_size: int) -> np.ndarray:
    """(N, V, 3) float64 vertices, model chosen per sample by gender code ('m', 'f', 'n')."""
    n = len(pose)
    out: np.ndarray | None = None
    with torch.no_grad():
        for code, name in GENDER_MODELS.items():
            idx = np.flatnonzero(codes == code)
            for start in range(0, len(idx), batch_size):
                sl = idx[start:start + batch_size]
                p = torch.as_tensor(pose[sl], dtype=torch.float32)
                v = models[name](betas=torch.as_tensor(betas[sl], dtype=torch.float32), body_pose=p[:, 3:],
                                 global_orient=p[:, :3]).vertices.double().numpy()
                if out is None:
                    out = np.zeros((n, v.shape[1], 3))
                out[sl] = v
    assert out is not None
    return out


def pseudo_gt_error(label_pose: np.ndarray, label_betas: np.ndarray, true_pose: np.ndarray, true_betas: np.ndarray,
                    gender: np.ndarray | None, models: Mapping[str, BodyModel], h36m_regressor: np.ndarray,
                    batch_size: int = 64) -> dict[str, float]:
    """Error of the pseudo-GT body against the true body (3DPW protocol joints), millimetres.

    Args:
        label_pose, true_pose: (N, 72) axis-angle; label_betas, true_betas: (N, 10).
        gender: (N,) 'm'/'f'/'n' or None (all neutral: the labels of splits without gender).
        models: ``neutral``, ``male``, ``female`` body models (those the codes name).
        h36m_regressor: (17, V) the H36M joint regressor.

    Returns:
        ``n``, ``mpjpe_mm`` and ``pa_mpjpe_mm`` (14 LSP joints, pelvis aligned), ``pve_mm`` (no alignment),
        ``betas_l2`` (mean ||label - true||) and ``betas_shrink_fit`` (1 - least-squares slope of label on
        true betas: the shrink toward the mean the labels show).
    """
    n = len(label_pose)
    if n == 0:
        raise ValueError("pseudo_gt_error: nothing to compare (0 samples)")
    codes = np.full(n, "n") if gender is None else np.asarray(gender).astype(str)
    pred_v = _vertices(models, codes, np.asarray(label_pose), np.asarray(label_betas), batch_size)
    true_v = _vertices(models, codes, np.asarray(true_pose), np.asarray(true_betas), batch_size)
    reg = np.asarray(h36m_regressor, dtype=np.float64)
    pred_j = root_relative_eval_joints(np.einsum("jv,nvc->njc", reg, pred_v), H36M_TO_J14)
    true_j = root_relative_eval_joints(np.einsum("jv,nvc->njc", reg, true_v), H36M_TO_J14)
    lb, tb = np.asarray(label_betas, dtype=np.float64), np.asarray(true_betas, dtype=np.float64)
    denom = float((tb * tb).sum())
    return {
        "n": n,
        "mpjpe_mm": float(np.mean(metrics.mpjpe(pred_j, true_j))) * M_TO_MM,
        "pa_mpjpe_mm": float(np.mean(metrics.pa_mpjpe(pred_j, true_j))) * M_TO_MM,
        "pve_mm": float(np.mean(metrics.pve(pred_v, true_v))) * M_TO_MM,
        "betas_l2": float(np.linalg.norm(lb - tb, axis=1).mean()),
        "betas_shrink_fit": 1.0 - float((lb * tb).sum()) / denom if denom > 0 else float("nan"),
    }


def read_labels(annotations: str | Path, fmt: str) -> PersonDataset:
    """The annotation file as a :class:`PersonDataset` (``fmt``: eft_json or spin_npz)."""
    if fmt == "eft_json":
        return read_eft_json(annotations)
    if fmt == "spin_npz":
        return read_spin_npz(annotations)
    raise ValueError(f"{annotations}: unknown annotation format {fmt!r}; allowed: eft_json, spin_npz")


def split_error(annotations: str | Path, fmt: str, models: Mapping[str, BodyModel],
                h36m_regressor: np.ndarray) -> dict[str, float]:
    """:func:`pseudo_gt_error` of one split: its labels against its truth file (same samples, same order)."""
    data = read_labels(annotations, fmt)
    path = truth_path(annotations)
    truth = read_truth(path)
    if not np.array_equal(np.asarray(data.imgname).astype(str), truth["imgname"]):
        raise TruthFileError(f"{path}: its imgname list differs from {annotations}'s ({len(truth['imgname'])} vs "
                             f"{len(data)} samples): regenerate both with the split's make_images_train_* rule")
    return pseudo_gt_error(data.pose, data.shape, truth["pose"], truth["betas"], truth.get("gender"), models,
                           h36m_regressor)


def write_error_csv(splits: Mapping[str, tuple[str | Path, str]], body_model_dir: str | Path,
                    joint_regressors: str | Path, out: str | Path) -> list[dict[str, Any]]:
    """Write ``pseudo_gt_error.csv``: one row per split (``splits``: name -> (annotations, format)), columns
    :data:`ERROR_COLUMNS`; written to a temporary name, then renamed."""
    models = {g: BodyModel(body_model_dir, gender=g, joint_regressors=joint_regressors)
              for g in ("neutral", "male", "female")}
    regressor = models["neutral"].h36m_regressor
    assert regressor is not None  # loaded with joint_regressors
    rows = [{"split": name, **split_error(ann, fmt, models, regressor.double().numpy())}
            for name, (ann, fmt) in splits.items()]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ERROR_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    tmp.replace(out)
    return rows


def write_report_section(rows: list[dict[str, Any]], out_json: str | Path) -> Path:
    """The pseudo-GT error table as a section of ``results/report.html`` (rule build_report's ``sections``)."""
    section = ReportSection(
        title="Pseudo ground truth vs truth (open world)",
        note=("The SMPL parameters of these training splits carry the configured fitting error "
              "(open_world.pseudo_gt), as EFT/SPIN fits do; their bodies against the true bodies, 3DPW protocol "
              "(14 joints, pelvis-aligned). Test splits keep exact ground truth."),
        tables={"Pseudo-GT error per split": rows},
    )
    return write_section_file(out_json, section)
