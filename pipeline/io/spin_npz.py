"""SPIN-style annotation files (``*_train.npz``, ``3dpw_test.npz``, ``h36m_valid_protocol*.npz`` ...).

One dataclass, :class:`PersonDataset`, is what every reader returns (SPIN npz or COCO-EFT JSON), so later
stages never see the file format. Shapes: N samples; keypoints in original-image pixels (x, y, confidence);
``S`` in metres (camera frame) with a confidence column; poses SMPL axis-angle (global orient first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

REQUIRED = ("imgname", "center", "scale")
#: Optional keys, their per-sample shape, and the flag that records their presence.
OPTIONAL_SHAPES: dict[str, tuple[int, ...]] = {
    "part": (24, 3),
    "openpose": (25, 3),
    "S": (24, 4),
    "pose": (72,),
    "shape": (10,),
}


class DatasetFormatError(ValueError):
    """An annotation file lacks a key or has a wrongly shaped array; the message names file and key."""


@dataclass
class PersonDataset:
    """Per-person samples of one split (fields absent from the file are filled with zeros and flagged)."""

    imgname: np.ndarray  # (N,) str, relative to the image root
    center: np.ndarray  # (N, 2) px
    scale: np.ndarray  # (N,) box side / 200
    part: np.ndarray  # (N, 24, 3)
    openpose: np.ndarray  # (N, 25, 3)
    S: np.ndarray  # (N, 24, 4)
    pose: np.ndarray  # (N, 72)
    shape: np.ndarray  # (N, 10)
    has_smpl: np.ndarray  # (N,) bool
    gender: np.ndarray  # (N,) '<U1': 'm', 'f' or '' (unknown)
    present: dict[str, bool] = field(default_factory=dict)  # which optional keys the file had

    def __len__(self) -> int:
        return len(self.imgname)

    @property
    def has_3d(self) -> np.ndarray:
        """(N,) bool: samples with 3D joints."""
        return self.S[:, :, 3].sum(1) > 0


def empty_arrays(n: int) -> dict[str, np.ndarray]:
    out = {k: np.zeros((n, *s)) for k, s in OPTIONAL_SHAPES.items()}
    out["has_smpl"] = np.zeros(n, dtype=bool)
    out["gender"] = np.full(n, "", dtype="<U1")
    return out


def read_spin_npz(path: str | Path) -> PersonDataset:
    """Read a SPIN-style npz; optional keys may be absent (``present`` records which were there)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: annotation file not found")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: not a readable npz ({exc})") from exc
    with npz:
        missing = [k for k in REQUIRED if k not in npz.files]
        if missing:
            raise DatasetFormatError(f"{path}: missing key(s) {missing}; SPIN-style files need {list(REQUIRED)}")
        n = len(npz["imgname"])
        arrays = empty_arrays(n)
        present = {}
        for key, shape in OPTIONAL_SHAPES.items():
            present[key] = key in npz.files
            if present[key]:
                value = np.asarray(npz[key], dtype=np.float64)
                if value.shape != (n, *shape):
                    raise DatasetFormatError(f"{path}: key {key!r} has shape {value.shape}, expected {(n, *shape)}")
                arrays[key] = value
        if "has_smpl" in npz.files:
            arrays["has_smpl"] = np.asarray(npz["has_smpl"]).astype(bool)
        else:
            arrays["has_smpl"] = np.full(n, present["pose"] and present["shape"])
        present["gender"] = "gender" in npz.files
        if present["gender"]:
            arrays["gender"] = np.asarray(npz["gender"]).astype("<U1")
        center = np.asarray(npz["center"], dtype=np.float64)
        scale = np.asarray(npz["scale"], dtype=np.float64).reshape(-1)
        if center.shape != (n, 2) or scale.shape != (n,):
            raise DatasetFormatError(f"{path}: center/scale shapes {center.shape}/{scale.shape} do not match {n} images")
        return PersonDataset(imgname=np.asarray(npz["imgname"]).astype(str), center=center, scale=scale,
                             present=present, **arrays)


def write_spin_npz(path: str | Path, data: PersonDataset, keys: tuple[str, ...] | None = None) -> None:
    """Write the dataset with SPIN's key names (``keys`` limits the optional ones), atomically."""
    path = Path(path)
    out: dict[str, np.ndarray] = {"imgname": data.imgname.astype(str), "center": data.center, "scale": data.scale}
    for f in fields(data):
        if f.name in out or f.name == "present":
            continue
        if keys is None or f.name in keys:
            out[f.name] = getattr(data, f.name)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
