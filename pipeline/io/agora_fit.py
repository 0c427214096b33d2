"""AGORA SMPL fits (``{scan}.pkl``): the SMPL parameters of the body under a clothed scan.

Keys (AGORA ``smpl_gt``): ``betas`` (1, 10), ``global_orient`` (1, 3), ``body_pose`` (1, 69), ``transl`` (1, 3),
``gender``. Variants handled on read: old files name ``root_pose`` / ``translation``; poses may be rotation
matrices ((1, 1, 3, 3) / (1, 23, 3, 3)); values may be torch tensors saved on CUDA (loaded on the CPU);
kids' fits carry an 11th beta (the SMIL template blend), which SMPL-adult pipelines cannot use.
Units: metres, in the scan's own frame (y up).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

NUM_BETAS = 10
#: Keys only SMPL-X fits carry.
SMPLX_ONLY_KEYS = ("left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose", "expression")


class AgoraFitError(ValueError):
    """An AGORA fit file is missing keys or has shapes we cannot interpret."""


@dataclass
class AgoraFit:
    """SMPL parameters of one scan, axis-angle, metres."""

    betas: np.ndarray  # (10,)
    global_orient: np.ndarray  # (3,)
    body_pose: np.ndarray  # (69,)
    transl: np.ndarray  # (3,)
    gender: str  # "male", "female" or "neutral"


class _CpuUnpickler(pickle.Unpickler):
    """Unpickles torch tensors saved on a GPU onto the CPU."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch.storage" and name == "_load_from_bytes":
            import torch

            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=False)
        return super().find_class(module, name)


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _axis_angle(value: np.ndarray, joints: int, key: str, path: Path) -> np.ndarray:
    if value.size == joints * 9:
        return Rotation.from_matrix(value.reshape(joints, 3, 3)).as_rotvec().reshape(-1)
    if value.size == joints * 3:
        return value.reshape(-1)
    raise AgoraFitError(f"{path}: key {key!r} has {value.size} values; expected {joints * 3} (axis-angle) or "
                        f"{joints * 9} (rotation matrices)")


def read_agora_fit(path: str | Path) -> AgoraFit:
    """Read one AGORA SMPL fit; raises :class:`AgoraFitError` naming the file and the key."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = _CpuUnpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise AgoraFitError(f"{path}: cannot read the SMPL fit ({exc}); expected an AGORA smpl_gt .pkl") from exc
    if isinstance(data, dict) and any(k in data for k in SMPLX_ONLY_KEYS):
        raise AgoraFitError(f"{path}: an SMPL-X fit (keys {sorted(k for k in SMPLX_ONLY_KEYS if k in data)}); this "
                            "pipeline needs SMPL fits: use AGORA's smpl_gt files, or convert with smplx's "
                            "transfer_model (python -m transfer_model --exp-cfg config_files/smplx2smpl.yaml)")
    aliases = {"global_orient": ("global_orient", "root_pose"), "transl": ("transl", "translation")}
    values: dict[str, Any] = {}
    for key in ("betas", "global_orient", "body_pose", "transl"):
        for name in aliases.get(key, (key,)):
            if name in data:
                values[key] = data[name]
                break
        else:
            raise AgoraFitError(f"{path}: missing key {key!r} (found {sorted(data)}); AGORA SMPL fits carry "
                                "betas, global_orient, body_pose, transl")
    betas = _array(values["betas"]).reshape(-1)
    if betas.size == NUM_BETAS + 1:
        raise AgoraFitError(f"{path}: 11 betas: a kid's fit (SMIL template blend) is not supported by adult SMPL; "
                            "exclude the AGORA *_kids_* subsets")
    if betas.size < NUM_BETAS:
        raise AgoraFitError(f"{path}: key 'betas' has {betas.size} values; expected {NUM_BETAS}")
    gender = str(data.get("gender", "neutral"))
    gender = {"m": "male", "f": "female", "n": "neutral"}.get(gender, gender)
    return AgoraFit(
        betas=betas[:NUM_BETAS],
        global_orient=_axis_angle(_array(values["global_orient"]), 1, "global_orient", path),
        body_pose=_axis_angle(_array(values["body_pose"]), 23, "body_pose", path),
        transl=_array(values["transl"]).reshape(3),
        gender=gender,
    )


def write_agora_fit(path: str | Path, fit: AgoraFit) -> None:
    """Write a fit in AGORA's layout (arrays with a leading batch axis of 1), atomically."""
    path = Path(path)
    data = {
        "betas": np.asarray(fit.betas, dtype=np.float32).reshape(1, -1),
        "global_orient": np.asarray(fit.global_orient, dtype=np.float32).reshape(1, 3),
        "body_pose": np.asarray(fit.body_pose, dtype=np.float32).reshape(1, 69),
        "transl": np.asarray(fit.transl, dtype=np.float32).reshape(1, 3),
        "gender": fit.gender,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    tmp.replace(path)
