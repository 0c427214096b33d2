"""AGORA SMPL fits (``{scan}.pkl``): the SMPL parameters of the body under a clothed scan.

Keys (AGORA ``smpl_gt``, ../shared/reference/GRAPHONOMY_AGORA_SMPL_NOTES.md B1): ``betas`` (1, 10),
``global_orient`` (1, 3), ``body_pose`` (1, 69), ``transl`` (1, 3), ``gender``. Units: metres, in the scan's
own frame (y up).

Variants handled on read:

* old files name ``root_pose`` / ``translation`` instead of ``global_orient`` / ``transl``;
* poses may be rotation matrices ((1, 1, 3, 3) / (1, 23, 3, 3), any layout with 9 values per joint);
* values may be numpy arrays, lists or torch tensors, including tensors pickled on a CUDA device: they are
  unpickled onto the CPU (no GPU needed);
* kids' fits carry an 11th beta (the SMIL-template blend) that adult SMPL cannot use: by default this is an
  error (exclude the ``*_kids_*`` subsets); ``kid_betas="truncate"`` drops the 11th component with a warning,
  which gives an *adult*-proportioned body of roughly the kid's shape (the template blend is lost);
* more than 11 betas (e.g. a 16/300-component fit): the first 10 are kept with a warning;
* SMPL-X fits (hand/face keys present) are rejected with the conversion command.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.io.damaged import describe_unreadable

log = logging.getLogger(__name__)

NUM_BETAS: int = 10
#: Kids' fits: 10 SMPL betas + the SMIL template blend.
NUM_BETAS_KID: int = NUM_BETAS + 1
NUM_BODY_JOINTS: int = 23
#: Keys only SMPL-X fits carry.
SMPLX_ONLY_KEYS: tuple[str, ...] = ("left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose",
                                    "expression")
#: Canonical key -> accepted names, in order of preference (old AGORA files use the second ones).
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "betas": ("betas",),
    "global_orient": ("global_orient", "root_pose"),
    "body_pose": ("body_pose",),
    "transl": ("transl", "translation"),
}
GENDERS: tuple[str, ...] = ("male", "female", "neutral")
GENDER_ALIASES: dict[str, str] = {"m": "male", "f": "female", "n": "neutral"}
KidBetas = Literal["error", "truncate"]
#: What to do about a damaged fit (the open world's are written by make_scans).
REGENERATE_HINT: str = "re-download it from AGORA, or, for the open world, delete it and re-run make_scans"


class AgoraFitError(ValueError):
    """An AGORA fit file is missing keys or has shapes we cannot interpret; the message names file and key."""


@dataclass
class AgoraFit:
    """SMPL parameters of one scan, axis-angle, metres, the scan's frame.

    Attributes:
        betas: (10,) float64 shape coefficients.
        global_orient: (3,) float64 axis-angle of the root.
        body_pose: (69,) float64 axis-angle of the 23 body joints (SMPL order).
        transl: (3,) float64 metres.
        gender: ``"male"``, ``"female"`` or ``"neutral"``.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    gender: str


class _CpuUnpickler(pickle.Unpickler):
    """Unpickles torch tensors saved on a GPU onto the CPU (no CUDA needed)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch.storage" and name == "_load_from_bytes":
            import torch

            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=False)
        return super().find_class(module, name)


def _array(value: Any, key: str, path: Path) -> np.ndarray:
    """numpy float64 copy of a numpy/list/torch value."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AgoraFitError(f"{path}: key {key!r} is not numeric ({type(value).__name__}: {exc})") from exc


def _axis_angle(value: np.ndarray, joints: int, key: str, path: Path) -> np.ndarray:
    """(joints * 3,) axis-angle from axis-angle or rotation-matrix values of any layout."""
    if value.size == joints * 3:
        return value.reshape(-1)
    if value.size == joints * 9:
        mats = value.reshape(joints, 3, 3)
        det = np.linalg.det(mats)
        if np.any(np.abs(det - 1.0) > 0.1):
            raise AgoraFitError(f"{path}: key {key!r} holds 3x3 matrices that are not rotations (determinants "
                                f"{np.round(det, 3).tolist()})")
        return Rotation.from_matrix(mats).as_rotvec().reshape(-1)
    raise AgoraFitError(f"{path}: key {key!r} has {value.size} values; expected {joints * 3} (axis-angle) or "
                        f"{joints * 9} (rotation matrices)")


def _gender(value: Any, path: Path) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value
    gender = str(value).strip().lower()
    gender = GENDER_ALIASES.get(gender, gender)
    if gender not in GENDERS:
        raise AgoraFitError(f"{path}: key 'gender' is {value!r}; allowed: {list(GENDERS)} (or m/f/n)")
    return gender


def _betas(value: np.ndarray, path: Path, kid_betas: KidBetas) -> np.ndarray:
    betas = value.reshape(-1)
    if betas.size == NUM_BETAS_KID:
        if kid_betas == "error":
            raise AgoraFitError(f"{path}: 11 betas: a kid's fit (the 11th is the SMIL template blend), which adult "
                                "SMPL cannot represent; exclude the AGORA *_kids_* subsets, or read with "
                                "kid_betas='truncate' to drop the 11th component")
        log.warning("%s: kid's fit with 11 betas; dropping the SMIL template blend (adult-proportioned body)", path)
        return betas[:NUM_BETAS]
    if betas.size > NUM_BETAS_KID:
        log.warning("%s: %d betas; keeping the first %d", path, betas.size, NUM_BETAS)
        return betas[:NUM_BETAS]
    if betas.size != NUM_BETAS:
        raise AgoraFitError(f"{path}: key 'betas' has {betas.size} values; expected {NUM_BETAS}")
    return betas


def read_agora_fit(path: str | Path, *, kid_betas: KidBetas = "error") -> AgoraFit:
    """Read one AGORA SMPL fit (any of the variants in the module doc).

    Args:
        path: the ``.pkl`` file.
        kid_betas: what to do with an 11-beta kid's fit: ``"error"`` (default) or ``"truncate"`` (warn, keep 10).

    Raises:
        AgoraFitError: naming the file and the key (missing, empty, truncated or corrupt file, a pickle
            protocol this Python cannot read, missing key, SMPL-X fit, wrong size).
    """
    if kid_betas not in ("error", "truncate"):
        raise ValueError(f"unknown kid_betas {kid_betas!r}; allowed: 'error', 'truncate'")
    path = Path(path)
    if not path.is_file():
        raise AgoraFitError(f"{path}: SMPL fit not found; check assets.scans in the config (each scan's "
                            "{scan}.pkl sits beside its {scan}.obj)")
    try:
        with open(path, "rb") as fh:
            data = _CpuUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # damaged bytes make the unpickler raise almost anything; re-raised below
        what = describe_unreadable(path, exc, "an AGORA smpl_gt pickle (a dict of arrays or torch tensors)",
                                   pickled=True)
        raise AgoraFitError(f"{path}: cannot read the SMPL fit: {what}; {REGENERATE_HINT}") from exc
    if not isinstance(data, dict):
        raise AgoraFitError(f"{path}: holds a {type(data).__name__}, expected a dict with keys "
                            f"{list(KEY_ALIASES)} and 'gender'")
    smplx_keys = sorted(k for k in SMPLX_ONLY_KEYS if k in data)
    if smplx_keys:
        raise AgoraFitError(f"{path}: an SMPL-X fit (keys {smplx_keys}); this pipeline needs SMPL fits: use AGORA's "
                            "smpl_gt files, or convert with smplx's transfer_model "
                            "(python -m transfer_model --exp-cfg config_files/smplx2smpl.yaml)")
    values: dict[str, np.ndarray] = {}
    for key, names in KEY_ALIASES.items():
        name = next((n for n in names if n in data), None)
        if name is None:
            raise AgoraFitError(f"{path}: missing key {key!r} (found {sorted(map(str, data))}); AGORA SMPL fits "
                                f"carry betas, global_orient (or root_pose), body_pose, transl (or translation)")
        values[key] = _array(data[name], name, path)
    transl = values["transl"].reshape(-1)
    if transl.size != 3:
        raise AgoraFitError(f"{path}: key 'transl' has {transl.size} values; expected 3")
    return AgoraFit(
        betas=_betas(values["betas"], path, kid_betas),
        global_orient=_axis_angle(values["global_orient"], 1, "global_orient", path),
        body_pose=_axis_angle(values["body_pose"], NUM_BODY_JOINTS, "body_pose", path),
        transl=transl,
        gender=_gender(data.get("gender", "neutral"), path),
    )


def write_agora_fit(path: str | Path, fit: AgoraFit) -> None:
    """Write a fit in AGORA's layout (float32 arrays with a leading batch axis of 1), atomically."""
    path = Path(path)
    if fit.gender not in GENDERS:
        raise ValueError(f"gender {fit.gender!r}; allowed: {list(GENDERS)}")
    data = {
        "betas": np.asarray(fit.betas, dtype=np.float32).reshape(1, NUM_BETAS),
        "global_orient": np.asarray(fit.global_orient, dtype=np.float32).reshape(1, 3),
        "body_pose": np.asarray(fit.body_pose, dtype=np.float32).reshape(1, NUM_BODY_JOINTS * 3),
        "transl": np.asarray(fit.transl, dtype=np.float32).reshape(1, 3),
        "gender": fit.gender,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(data, fh, protocol=4)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
