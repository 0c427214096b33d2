"""Evaluation protocols of SPIN / DSR: 3DPW, Human3.6M (protocols 1 and 2) and MPI-INF-3DHP.

Facts from ../shared/reference/DSR_SPIN_EFT_NOTES.md A.10 and C.3 (SPIN ``eval.py``, DSR
``core/lightning.py``):

* Predicted joints are always ``J_regressor_h36m @ pred_vertices`` (17 H36M joints) from the **neutral**
  body model; the pelvis is regressed joint 0; the 14 (or 17) evaluation joints are selected with
  :data:`H36M_TO_J14` (:data:`H36M_TO_J17`) and the pelvis is subtracted from them.
* 3DPW ground truth: vertices of the **gendered** model (``'m'`` male, ``'f'`` female) with the GT pose and
  betas, no translation; the same regressor, pelvis and J14 selection. PVE compares the predicted neutral
  vertices with these GT vertices **without** any alignment.
* Human3.6M / MPI-INF-3DHP ground truth: ``S[:, J24_TO_J14 (J24_TO_J17), :3]``, used as is (SPIN's
  preprocessing already centred ``S`` on the pelvis). No PVE there (reported as NaN).
* MPJPE = mean joint distance; PA-MPJPE = the same after a per-sample similarity Procrustes alignment.
  Everything is reported in millimetres (metres × 1000).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.body.joints import H36M_TO_J14, H36M_TO_J17, J14_NAMES, J24_TO_J14, J24_TO_J17
from pipeline.body.joints import SPIN_PART_NAMES as J24_NAMES
from pipeline.body.model import BodyModel
from pipeline.evaluate import metrics

log = logging.getLogger(__name__)

# Joint index lists (SPIN's constants.py, notes C.2) live in pipeline.body.joints; re-exported here.
J17_NAMES: tuple[str, ...] = tuple(J24_NAMES[i] for i in J24_TO_J17)
#: Row of the pelvis in the H36M-17 regressor (SPIN: ``pred_keypoints_3d[:, [0], :]``).
H36M_PELVIS: int = 0
#: Index of the pelvis among SPIN's 24 GT joints (where a root-centred ``S`` is at the origin).
J24_PELVIS: int = 14
NUM_H36M_JOINTS: int = 17
NUM_J24: int = 24
NUM_SMPL_POSE: int = 72
#: Metres → millimetres, applied once at the protocol level.
M_TO_MM: float = 1000.0
#: A GT pelvis further than this from the origin (median over samples, metres) means ``S`` is not
#: root-centred as SPIN's preprocessing leaves it; evaluation goes on but logs a warning.
ROOT_CENTRED_TOL_M: float = 0.01
#: Joint groups of the paper's per-joint table (left and right averaged), by joint name.
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "ankle": ("Right Ankle", "Left Ankle"),
    "knee": ("Right Knee", "Left Knee"),
    "hip": ("Right Hip", "Left Hip"),
    "wrist": ("Right Wrist", "Left Wrist"),
    "elbow": ("Right Elbow", "Left Elbow"),
    "shoulder": ("Right Shoulder", "Left Shoulder"),
    "neck": ("Neck (LSP)",),
    "head": ("Head (H36M)",),
}
#: Gender codes accepted for 3DPW ground truth, mapped to :class:`BodyModel` gender names. Integers follow
#: SPIN's ``base_dataset`` encoding (0 male, 1 female).
GENDER_ALIASES: dict[object, str] = {
    "m": "male", "male": "male", 0: "male",
    "f": "female", "female": "female", 1: "female",
}
#: Human3.6M protocols: 1 = all cameras of S9/S11, 2 = frontal camera 60457274 only (same metrics; the
#: split lives in the npz).
H36M_PROTOCOLS: tuple[int, ...] = (1, 2)
DEFAULT_BATCH_SIZE: int = 128


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Errors of one evaluated set, millimetres.

    dataset: protocol name (``3dpw``, ``h36m-p1``, ``h36m-p2``, ``mpi-inf-3dhp``).
    n: number of samples.
    mpjpe_mm, pa_mpjpe_mm, pve_mm: means over samples (``pve_mm`` NaN where the protocol has no PVE).
    joint_names: (J,) names of the evaluation joints.
    per_joint_mpjpe_mm, per_joint_pa_mpjpe_mm: (J,) mean error of each joint over samples.
    per_sample_mpjpe_mm, per_sample_pa_mpjpe_mm, per_sample_pve_mm: (n,) errors of each sample.
    """

    dataset: str
    n: int
    mpjpe_mm: float
    pa_mpjpe_mm: float
    pve_mm: float
    joint_names: tuple[str, ...]
    per_joint_mpjpe_mm: np.ndarray = field(repr=False)
    per_joint_pa_mpjpe_mm: np.ndarray = field(repr=False)
    per_sample_mpjpe_mm: np.ndarray = field(repr=False)
    per_sample_pa_mpjpe_mm: np.ndarray = field(repr=False)
    per_sample_pve_mm: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, float | int | str]:
        """``dataset, n, mpjpe_mm, pa_mpjpe_mm, pve_mm`` as plain Python values (one CSV row's metrics)."""
        return {
            "dataset": self.dataset,
            "n": int(self.n),
            "mpjpe_mm": float(self.mpjpe_mm),
            "pa_mpjpe_mm": float(self.pa_mpjpe_mm),
            "pve_mm": float(self.pve_mm),
        }

    def grouped_joint_errors(self, aligned: bool = True) -> dict[str, float]:
        """Per-joint-group error (left/right averaged, the paper's per-joint table), millimetres.

        Args:
            aligned: PA-MPJPE per joint if True, MPJPE per joint otherwise.

        Returns:
            ``{group: mm}`` for the groups of :data:`JOINT_GROUPS` whose joints are all evaluated.
        """
        values = self.per_joint_pa_mpjpe_mm if aligned else self.per_joint_mpjpe_mm
        index = {name: i for i, name in enumerate(self.joint_names)}
        return {
            group: float(np.mean([values[index[name]] for name in names]))
            for group, names in JOINT_GROUPS.items()
            if all(name in index for name in names)
        }


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _result(
    dataset: str,
    joint_names: Sequence[str],
    joint_err: np.ndarray,
    pa_joint_err: np.ndarray,
    vertex_err: np.ndarray | None,
) -> EvalResult:
    """Assemble an :class:`EvalResult` from per-sample, per-joint errors in metres ((n, J) each)."""
    n = joint_err.shape[0]
    pve_mm = vertex_err * M_TO_MM if vertex_err is not None else np.full(n, np.nan)
    return EvalResult(
        dataset=dataset,
        n=int(n),
        mpjpe_mm=float(joint_err.mean() * M_TO_MM),
        pa_mpjpe_mm=float(pa_joint_err.mean() * M_TO_MM),
        pve_mm=float(pve_mm.mean()) if vertex_err is not None else float("nan"),
        joint_names=tuple(joint_names),
        per_joint_mpjpe_mm=joint_err.mean(0) * M_TO_MM,
        per_joint_pa_mpjpe_mm=pa_joint_err.mean(0) * M_TO_MM,
        per_sample_mpjpe_mm=joint_err.mean(1) * M_TO_MM,
        per_sample_pa_mpjpe_mm=pa_joint_err.mean(1) * M_TO_MM,
        per_sample_pve_mm=pve_mm,
    )


def root_relative_eval_joints(joints_h36m: np.ndarray | torch.Tensor, selection: Sequence[int]) -> np.ndarray:
    """SPIN's prediction side: pick the evaluation joints of H36M-17 joints and subtract the pelvis.

    Args:
        joints_h36m: (N, 17, 3) joints regressed with the H36M regressor, metres.
        selection: :data:`H36M_TO_J14` or :data:`H36M_TO_J17`.

    Returns:
        (N, len(selection), 3) float64, metres, relative to regressed joint :data:`H36M_PELVIS`.
    """
    joints = np.asarray(_to_numpy(joints_h36m), dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_H36M_JOINTS, 3):
        raise ValueError(f"expected H36M joints of shape (N, {NUM_H36M_JOINTS}, 3), got {joints.shape}")
    return joints[:, list(selection)] - joints[:, [H36M_PELVIS]]


def _gt_joints_from_s(s: np.ndarray | torch.Tensor, selection: Sequence[int], dataset: str) -> np.ndarray:
    """GT evaluation joints ``S[:, selection, :3]`` (metres, float64) after checking the shape of ``S``."""
    s = np.asarray(_to_numpy(s), dtype=np.float64)
    if s.ndim != 3 or s.shape[1] != NUM_J24 or s.shape[2] not in (3, 4):
        raise ValueError(f"{dataset}: expected S of shape (N, {NUM_J24}, 4) (or 3), got {s.shape}")
    pelvis = np.linalg.norm(s[:, J24_PELVIS, :3], axis=-1)
    if s.shape[0] and float(np.median(pelvis)) > ROOT_CENTRED_TOL_M:
        log.warning(
            "%s: the GT pelvis S[:, %d] is %.1f mm from the origin (median); SPIN's S is root-centred, so the "
            "errors will include this offset. Check how S was made.", dataset, J24_PELVIS,
            float(np.median(pelvis)) * M_TO_MM,
        )
    return s[:, list(selection), :3]


def _joint_protocol(
    pred_joints_h36m: np.ndarray | torch.Tensor,
    s: np.ndarray | torch.Tensor,
    h36m_selection: Sequence[int],
    j24_selection: Sequence[int],
    names: Sequence[str],
    dataset: str,
) -> EvalResult:
    pred = root_relative_eval_joints(pred_joints_h36m, h36m_selection)
    gt = _gt_joints_from_s(s, j24_selection, dataset)
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"{dataset}: {pred.shape[0]} predictions but {gt.shape[0]} ground-truth samples")
    if pred.shape[0] == 0:
        raise ValueError(f"{dataset}: nothing to evaluate (0 samples)")
    return _result(dataset, names, metrics.per_joint_errors(pred, gt), metrics.pa_per_joint_errors(pred, gt), None)


def evaluate_h36m(
    pred_joints_h36m: np.ndarray | torch.Tensor, s: np.ndarray | torch.Tensor, protocol: int
) -> EvalResult:
    """Human3.6M protocol 1 or 2 on the 14 LSP joints.

    Args:
        pred_joints_h36m: (N, 17, 3) ``J_regressor_h36m @ pred_vertices`` (neutral model), metres, any
            translation (the regressed pelvis is subtracted).
        s: (N, 24, 4) or (N, 24, 3) SPIN ``S`` (metres, root-centred; confidence ignored as in SPIN).
        protocol: 1 (all cameras) or 2 (frontal camera); the split is the npz's, the metrics are the same.

    Returns:
        :class:`EvalResult` named ``h36m-p{protocol}``; PVE is NaN.
    """
    if protocol not in H36M_PROTOCOLS:
        raise ValueError(f"unknown Human3.6M protocol {protocol!r}; allowed: {H36M_PROTOCOLS}")
    return _joint_protocol(pred_joints_h36m, s, H36M_TO_J14, J24_TO_J14, J14_NAMES, f"h36m-p{protocol}")


def evaluate_mpi_inf_3dhp(pred_joints_h36m: np.ndarray | torch.Tensor, s: np.ndarray | torch.Tensor) -> EvalResult:
    """MPI-INF-3DHP on the 17 joints (MPJPE / PA-MPJPE; the official PCK/AUC is MATLAB-only).

    Args:
        pred_joints_h36m: (N, 17, 3) ``J_regressor_h36m @ pred_vertices``, metres.
        s: (N, 24, 4) or (N, 24, 3) SPIN ``S`` (metres, root-centred).

    Returns:
        :class:`EvalResult` named ``mpi-inf-3dhp``; PVE is NaN.
    """
    return _joint_protocol(pred_joints_h36m, s, H36M_TO_J17, J24_TO_J17, J17_NAMES, "mpi-inf-3dhp")


def _gender_names(gender: Sequence[object] | np.ndarray) -> np.ndarray:
    """Map 3DPW gender codes to ``male``/``female`` (N,) or raise naming the bad codes."""
    out = []
    bad: set[str] = set()
    for g in np.asarray(gender).tolist():
        key: object = g.decode() if isinstance(g, bytes) else g
        key = key.strip().lower() if isinstance(key, str) else key
        name = GENDER_ALIASES.get(key)  # type: ignore[arg-type]
        if name is None:
            bad.add(repr(g))
        out.append(name)
    if bad:
        raise ValueError(
            f"3dpw: gender codes {sorted(bad)} are not male or female (allowed: 'm', 'f', 'male', 'female', "
            "0, 1); 3DPW ground truth needs the gendered body model of every sample"
        )
    return np.asarray(out)


def _h36m_regressor(
    body_models: Mapping[str, BodyModel], h36m_regressor: np.ndarray | torch.Tensor | None
) -> torch.Tensor:
    """(17, V) float32 H36M regressor: the override, else the first body model that carries one."""
    if h36m_regressor is not None:
        return torch.as_tensor(_to_numpy(h36m_regressor), dtype=torch.float32)
    for name in ("neutral", "male", "female"):
        model = body_models.get(name)
        if model is not None and model.h36m_regressor is not None:
            return model.h36m_regressor.detach().float().cpu()
    raise ValueError(
        "3dpw: no H36M joint regressor: build the body models with joint_regressors=<npz with 'h36m'> "
        "or pass h36m_regressor"
    )


def evaluate_3dpw(
    pred_vertices: np.ndarray | torch.Tensor,
    gt_pose: np.ndarray | torch.Tensor,
    gt_betas: np.ndarray | torch.Tensor,
    gender: Sequence[object] | np.ndarray,
    body_models: Mapping[str, BodyModel],
    batch_size: int = DEFAULT_BATCH_SIZE,
    h36m_regressor: np.ndarray | torch.Tensor | None = None,
) -> EvalResult:
    """3DPW test protocol (SPIN ``eval.py`` with DSR's ``GENDER_EVAL=True`` and PVE).

    Args:
        pred_vertices: (N, V, 3) vertices of the **neutral** model for the predicted pose/shape, metres; any
            translation is fine for MPJPE/PA-MPJPE (pelvis-aligned) but PVE uses them as they are, so they
            must be in the GT frame without camera translation (what the regressor outputs).
        gt_pose: (N, 72) GT SMPL axis-angle, global orientation first.
        gt_betas: (N, 10) GT SMPL betas.
        gender: (N,) ``'m'``/``'f'`` (3DPW npz ``gender``), or SPIN's 0 (male) / 1 (female).
        body_models: ``{'male': BodyModel, 'female': BodyModel}`` (a ``'neutral'`` entry is optional); they
            must share the vertex count of ``pred_vertices``.
        batch_size: samples per body-model forward pass.
        h36m_regressor: (17, V) override; default: the ``h36m`` regressor of the body models.

    Returns:
        :class:`EvalResult` named ``3dpw`` with MPJPE, PA-MPJPE (14 joints) and PVE, millimetres.
    """
    if batch_size < 1:
        raise ValueError(f"3dpw: batch_size must be >= 1, got {batch_size}")
    missing = [g for g in ("male", "female") if g not in body_models]
    if missing:
        raise ValueError(f"3dpw: body_models lacks {missing} (has {sorted(body_models)}); GT needs both genders")
    pose = torch.as_tensor(_to_numpy(gt_pose), dtype=torch.float32)
    betas = torch.as_tensor(_to_numpy(gt_betas), dtype=torch.float32)
    genders = _gender_names(gender)
    n = pose.shape[0]
    if pose.ndim != 2 or pose.shape[1] != NUM_SMPL_POSE:
        raise ValueError(f"3dpw: gt_pose must be (N, {NUM_SMPL_POSE}) axis-angle, got {tuple(pose.shape)}")
    if betas.ndim != 2 or betas.shape[0] != n:
        raise ValueError(f"3dpw: gt_betas must be (N={n}, B), got {tuple(betas.shape)}")
    if genders.shape != (n,) or tuple(pred_vertices.shape[:1]) != (n,):
        raise ValueError(f"3dpw: {n} poses, {genders.shape[0]} genders and {pred_vertices.shape[0]} predictions")
    if n == 0:
        raise ValueError("3dpw: nothing to evaluate (0 samples)")
    num_vertices = body_models["male"].num_vertices
    for name in ("male", "female"):
        if body_models[name].num_vertices != pred_vertices.shape[1] or pred_vertices.shape[2:] != (3,):
            raise ValueError(
                f"3dpw: predictions have shape {tuple(pred_vertices.shape)} but the {name} body model has "
                f"{body_models[name].num_vertices} vertices; evaluate with the body model the network was trained on"
            )
    regressor = _h36m_regressor(body_models, h36m_regressor).double()
    if tuple(regressor.shape) != (NUM_H36M_JOINTS, num_vertices):
        raise ValueError(f"3dpw: H36M regressor has shape {tuple(regressor.shape)}, expected (17, {num_vertices})")

    joint_err, pa_err, vertex_err = [], [], []
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        pred_v = torch.as_tensor(_to_numpy(pred_vertices[sl]), dtype=torch.float64)
        gt_v = torch.empty_like(pred_v)
        for name in ("male", "female"):
            idx = np.flatnonzero(genders[sl] == name)
            if idx.size == 0:
                continue
            model = body_models[name]
            device = model.layer.v_template.device
            rows = torch.as_tensor(idx)
            with torch.no_grad():
                out = model(
                    betas=betas[sl][rows].to(device),
                    body_pose=pose[sl][rows, 3:].to(device),
                    global_orient=pose[sl][rows, :3].to(device),
                )
            gt_v[rows] = out.vertices.detach().cpu().double()
        pred_j = root_relative_eval_joints(torch.einsum("jv,bvc->bjc", regressor, pred_v), H36M_TO_J14)
        gt_j = root_relative_eval_joints(torch.einsum("jv,bvc->bjc", regressor, gt_v), H36M_TO_J14)
        joint_err.append(metrics.per_joint_errors(pred_j, gt_j))
        pa_err.append(metrics.pa_per_joint_errors(pred_j, gt_j))
        vertex_err.append(metrics.pve(pred_v, gt_v).numpy())
    return _result("3dpw", J14_NAMES, np.concatenate(joint_err), np.concatenate(pa_err), np.concatenate(vertex_err))
