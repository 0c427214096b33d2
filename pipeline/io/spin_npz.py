"""SPIN-style annotation files (``*_train.npz``, ``3dpw_test.npz``, ``h36m_valid_protocol*.npz`` ...).

One dataclass, :class:`PersonDataset`, is what every dataset reader returns (SPIN npz here, COCO-EFT JSON in
:mod:`pipeline.io.eft_json`), so later stages never see the file format. One row = one person sample; the
same image may appear in several rows (COCO has several people per image).

Keys (../shared/reference/DSR_SPIN_EFT_NOTES.md C.1), N samples:

=========== ================ ==============================================================================
key         shape / dtype    meaning
=========== ================ ==============================================================================
imgname     (N,) str         image path relative to the dataset's image root (required)
center      (N, 2) float     person box centre (x, y), original-image pixels (required)
scale       (N,) float       person box side / 200 (required; SPIN's crop is ``scale * 200`` px square)
part        (N, 24, 3)       SPIN-24 ground-truth 2D keypoints (x, y, visibility), original-image pixels
openpose    (N, 25, 3)       OpenPose BODY_25 detections (x, y, confidence), original-image pixels
S           (N, 24, 4)       3D joints in metres (camera frame, root-centred) + confidence
pose        (N, 72)          SMPL axis-angle, global orientation first
shape       (N, 10)          SMPL betas
has_smpl    (N,) bool        pose/shape are valid (absent: True iff both ``pose`` and ``shape`` are present)
gender      (N,) 'm'/'f'     3DPW only ('' = unknown when absent)
=========== ================ ==============================================================================

Absent optional keys are filled with zeros and recorded as ``present[key] = False``. Any other key in the
file (e.g. LSP's ``maskname``/``partname``) is kept verbatim in :attr:`PersonDataset.extra` and written back.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.io.damaged import describe_unreadable

log = logging.getLogger(__name__)

#: Keys every SPIN-style file carries.
REQUIRED: tuple[str, ...] = ("imgname", "center", "scale")
#: Optional float keys and their per-sample shape.
OPTIONAL_SHAPES: dict[str, tuple[int, ...]] = {
    "part": (24, 3),
    "openpose": (25, 3),
    "S": (24, 4),
    "pose": (72,),
    "shape": (10,),
}
#: Optional keys that are not float arrays.
OPTIONAL_OTHER: tuple[str, ...] = ("has_smpl", "gender")
#: Every key :class:`PersonDataset` models (anything else goes to ``extra``).
KNOWN_KEYS: tuple[str, ...] = (*REQUIRED, *OPTIONAL_SHAPES, *OPTIONAL_OTHER)
#: Gender codes in SPIN/3DPW files ('' = unknown).
GENDER_CODES: tuple[str, ...] = ("m", "f", "")
#: SPIN's box unit: ``scale * SPIN_BOX_PX`` is the person box side in pixels.
SPIN_BOX_PX: float = 200.0
NUM_OPENPOSE: int = 25
NUM_PART: int = 24
#: What to do about a damaged or incomplete annotation file (the open world's are written by make_images_*).
REGENERATE_HINT: str = ("re-download it (SPIN/EFT/3DPW data), or, for the open world, delete it and re-run the "
                        "make_images_* rule that writes it")
#: What ``np.load`` and reading an npz member raise on a damaged archive.
_DAMAGED_NPZ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, zipfile.BadZipFile,
                                                        zlib.error)


class DatasetFormatError(ValueError):
    """An annotation file lacks a key or has a wrongly shaped array; the message names file and key."""


class _ObjectArrayError(DatasetFormatError):
    """A key stored as a pickled object array (fatal for the modelled keys; other keys are dropped)."""


@dataclass
class PersonDataset:
    """Per-person samples of one split (optional fields absent from the file are zeros and flagged).

    Attributes:
        imgname: (N,) str, image path relative to the image root.
        center: (N, 2) float64, box centre (x, y) in original-image pixels.
        scale: (N,) float64, box side / 200.
        part: (N, 24, 3) float64, SPIN-24 keypoints (x, y, visibility), original-image pixels.
        openpose: (N, 25, 3) float64, OpenPose BODY_25 (x, y, confidence), original-image pixels.
        S: (N, 24, 4) float64, 3D joints (metres, camera frame) + confidence.
        pose: (N, 72) float64, SMPL axis-angle (global orientation first).
        shape: (N, 10) float64, SMPL betas.
        has_smpl: (N,) bool.
        gender: (N,) '<U1', 'm', 'f' or '' (unknown).
        present: which optional keys the source had (``part, openpose, S, pose, shape, has_smpl, gender``).
        extra: other per-file keys, kept verbatim (e.g. ``maskname``).
    """

    imgname: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    part: np.ndarray
    openpose: np.ndarray
    S: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    has_smpl: np.ndarray
    gender: np.ndarray
    present: dict[str, bool] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.imgname)

    @property
    def has_3d(self) -> np.ndarray:
        """(N,) bool: samples with 3D joints (any confidence > 0)."""
        return self.S[:, :, 3].sum(1) > 0

    def keypoints49(self) -> np.ndarray:
        """(N, 49, 3) float64: SPIN's 49-joint layout, the 25 OpenPose slots then the 24 ``part`` joints."""
        return np.concatenate([self.openpose, self.part], axis=1)

    def subset(self, index: Sequence[int] | np.ndarray) -> PersonDataset:
        """The samples at ``index`` (a new dataset; ``present`` copied, ``extra`` indexed alike)."""
        idx = np.asarray(index)
        return PersonDataset(
            imgname=self.imgname[idx], center=self.center[idx], scale=self.scale[idx], part=self.part[idx],
            openpose=self.openpose[idx], S=self.S[idx], pose=self.pose[idx], shape=self.shape[idx],
            has_smpl=self.has_smpl[idx], gender=self.gender[idx], present=dict(self.present),
            extra={k: v[idx] for k, v in self.extra.items()},
        )

    def check(self, source: str | Path = "<PersonDataset>") -> None:
        """Raise :class:`DatasetFormatError` naming ``source`` and the key if any array has the wrong shape."""
        n = len(self.imgname)
        expected: dict[str, tuple[int, ...]] = {
            "imgname": (n,), "center": (n, 2), "scale": (n,), "has_smpl": (n,), "gender": (n,),
            **{k: (n, *s) for k, s in OPTIONAL_SHAPES.items()},
        }
        for key, shape in expected.items():
            got = np.shape(getattr(self, key))
            if got != shape:
                raise DatasetFormatError(f"{source}: key {key!r} has shape {got}, expected {shape} "
                                         f"({n} samples, from the length of 'imgname')")
        for key, value in self.extra.items():
            if len(value) != n:
                raise DatasetFormatError(f"{source}: extra key {key!r} has {len(value)} rows, expected {n}")
        bad = sorted(set(np.asarray(self.gender).astype(str).tolist()) - set(GENDER_CODES))
        if bad:
            raise DatasetFormatError(f"{source}: key 'gender' holds {bad}; allowed: 'm', 'f' or '' (unknown)")


def empty_arrays(n: int) -> dict[str, np.ndarray]:
    """Zero-filled optional arrays for ``n`` samples (float64 keys, ``has_smpl`` False, ``gender`` '')."""
    out: dict[str, np.ndarray] = {k: np.zeros((n, *s)) for k, s in OPTIONAL_SHAPES.items()}
    out["has_smpl"] = np.zeros(n, dtype=bool)
    out["gender"] = np.full(n, "", dtype="<U1")
    return out


def _strings(value: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N,) unicode array from a str/bytes/object array, or a :class:`DatasetFormatError`."""
    value = np.asarray(value)
    if value.dtype.kind == "S":
        return np.char.decode(value, "utf-8")
    if value.dtype.kind == "U":
        return value
    if value.dtype.kind == "O" and all(isinstance(v, str | bytes) for v in value.ravel()):
        decoded = [v.decode() if isinstance(v, bytes) else v for v in value.ravel()]
        return np.array(decoded, dtype=str).reshape(value.shape)
    raise DatasetFormatError(f"{path}: key {key!r} has dtype {value.dtype}; expected strings "
                             f"(re-save it with np.array(list_of_str))")


def _load(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise _damaged(path, exc, key) from exc
        raise _ObjectArrayError(f"{path}: key {key!r} is stored as a pickled object array ({exc}); SPIN files "
                                "hold plain arrays: re-save it with np.savez(..., key=np.array(values))") from exc
    except _DAMAGED_NPZ_ERRORS as exc:  # a member whose bytes fail the CRC, do not inflate, or end early
        raise _damaged(path, exc, key) from exc


def _damaged(path: Path, exc: BaseException, key: str | None = None) -> DatasetFormatError:
    """The error for an annotation file that ``np.load`` (or reading member ``key``) could not parse."""
    where = "" if key is None else f"key {key!r}: "
    return DatasetFormatError(f"{path}: {where}{describe_unreadable(path, exc, 'an npz archive')}; "
                              f"{REGENERATE_HINT}")


def read_spin_npz(path: str | Path) -> PersonDataset:
    """Read a SPIN-style npz; optional keys may be absent (``present`` records which were there).

    Raises:
        DatasetFormatError: file missing, empty, truncated or corrupt, a required key missing, or a key with
            the wrong shape/dtype; the message names the file (and the key) and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: annotation file not found; check the dataset path in the config")
    try:
        npz = np.load(path, allow_pickle=False)
    except _DAMAGED_NPZ_ERRORS as exc:  # empty (EOFError), truncated (BadZipFile), not an archive (ValueError)
        raise _damaged(path, exc) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a single .npy array saved under an .npz name
        raise DatasetFormatError(f"{path}: holds one {type(npz).__name__}, not an npz archive of named arrays; "
                                 f"{REGENERATE_HINT}")
    with npz:
        missing = [k for k in REQUIRED if k not in npz.files]
        if missing:
            raise DatasetFormatError(f"{path}: missing key(s) {missing} (found {sorted(npz.files)}); SPIN-style "
                                     f"files need {list(REQUIRED)}: {REGENERATE_HINT}")
        imgname = _strings(_load(npz, "imgname", path), "imgname", path).reshape(-1)
        n = len(imgname)
        arrays = empty_arrays(n)
        present: dict[str, bool] = {}
        for key, shape in OPTIONAL_SHAPES.items():
            present[key] = key in npz.files
            if present[key]:
                value = np.asarray(_load(npz, key, path), dtype=np.float64)
                if value.shape != (n, *shape):
                    raise DatasetFormatError(f"{path}: key {key!r} has shape {value.shape}, expected {(n, *shape)}")
                arrays[key] = value
        present["has_smpl"] = "has_smpl" in npz.files
        if present["has_smpl"]:
            has_smpl = np.asarray(_load(npz, "has_smpl", path)).reshape(-1)
            if has_smpl.shape != (n,):
                raise DatasetFormatError(f"{path}: key 'has_smpl' has shape {has_smpl.shape}, expected {(n,)}")
            arrays["has_smpl"] = has_smpl.astype(bool)
        else:
            arrays["has_smpl"] = np.full(n, present["pose"] and present["shape"])
        present["gender"] = "gender" in npz.files
        if present["gender"]:
            gender = _strings(_load(npz, "gender", path), "gender", path).reshape(-1)
            if gender.shape != (n,):
                raise DatasetFormatError(f"{path}: key 'gender' has shape {gender.shape}, expected {(n,)}")
            arrays["gender"] = np.char.lower(np.char.strip(gender)).astype("<U1")
        center = np.asarray(_load(npz, "center", path), dtype=np.float64)
        scale = np.asarray(_load(npz, "scale", path), dtype=np.float64)
        if center.shape != (n, 2):
            raise DatasetFormatError(f"{path}: key 'center' has shape {center.shape}, expected {(n, 2)}")
        if scale.size != n:
            raise DatasetFormatError(f"{path}: key 'scale' has shape {scale.shape}, expected {(n,)}")
        extra: dict[str, np.ndarray] = {}
        for key in npz.files:
            if key in KNOWN_KEYS:
                continue
            try:
                value = np.asarray(_load(npz, key, path))
            except _ObjectArrayError as exc:  # a damaged member still raises
                log.warning("%s; key %r is not kept", exc, key)
                continue
            if value.ndim > 0 and len(value) == n:
                extra[key] = value
            else:
                log.warning("%s: key %r has shape %s (not one row per sample); it is not kept", path, key, value.shape)
        data = PersonDataset(imgname=imgname, center=center, scale=scale.reshape(n), present=present, extra=extra,
                             **arrays)
    data.check(path)
    return data


def write_spin_npz(path: str | Path, data: PersonDataset, keys: Iterable[str] | None = None) -> None:
    """Write ``data`` with SPIN's key names, atomically (temp file + rename).

    Args:
        path: output ``.npz``.
        data: the samples (checked first).
        keys: the optional keys to write (``part, openpose, S, pose, shape, has_smpl, gender``); None writes
            every optional key. ``extra`` keys are always written.
    """
    path = Path(path)
    data.check(path)
    wanted = set(OPTIONAL_SHAPES) | set(OPTIONAL_OTHER) if keys is None else set(keys)
    unknown = sorted(wanted - set(OPTIONAL_SHAPES) - set(OPTIONAL_OTHER))
    if unknown:
        raise ValueError(f"unknown SPIN key(s) {unknown}; allowed: {list(OPTIONAL_SHAPES) + list(OPTIONAL_OTHER)}")
    out: dict[str, np.ndarray] = {"imgname": np.asarray(data.imgname).astype(str),
                                  "center": np.asarray(data.center, dtype=np.float64),
                                  "scale": np.asarray(data.scale, dtype=np.float64)}
    for key in (*OPTIONAL_SHAPES, *OPTIONAL_OTHER):
        if key in wanted:
            out[key] = np.asarray(getattr(data, key))
    if "gender" in out:
        out["gender"] = out["gender"].astype("<U1")
    for key, value in data.extra.items():
        if key in out:
            raise ValueError(f"extra key {key!r} clashes with a SPIN key")
        out[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    try:
        np.savez(tmp, **out)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
