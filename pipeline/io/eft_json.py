"""COCO-EFT pseudo-ground-truth JSON (``COCO2014-All-ver01.json`` ...) read into / written from PersonDataset.

File layout (../shared/reference/DSR_SPIN_EFT_NOTES.md D): ``{"ver", "data": [...], "meta": {"dbname",
"rawname"}}``; per sample

================== ============ ====================================================================
key                shape        meaning
================== ============ ====================================================================
parm_pose          24×3×3       SMPL joint rotations as rotation matrices (global orientation first)
parm_shape         10           SMPL betas
parm_cam           3            weak-perspective camera [s, tx, ty] in the 224 crop (not read)
bbox_scale         scalar       SPIN scale (box side / 200)
bbox_center        2            box centre (x, y), original-image pixels
gt_keypoint_2d     49×3         SPIN's 49 joints: 25 OpenPose slots (blank for COCO) then the 24 GT joints
imageName          str          image basename
================== ============ ====================================================================

Reading converts the rotation matrices to axis-angle (scipy, as EFT's own ``eftToNpz`` intends), splits the
49 keypoints into ``openpose`` (first 25) + ``part`` (last 24), sets ``has_smpl`` and prefixes ``imageName``
with the image folder (``train2014/``), exactly as EFT's npz export does. ``S`` and ``gender`` are absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.damaged import describe_unreadable
from pipeline.io.spin_npz import (
    NUM_OPENPOSE,
    REGENERATE_HINT,
    DatasetFormatError,
    PersonDataset,
    empty_arrays,
)

#: Per-sample keys the reader needs.
SAMPLE_KEYS: tuple[str, ...] = ("parm_pose", "parm_shape", "bbox_scale", "bbox_center", "gt_keypoint_2d", "imageName")
NUM_JOINTS_SMPL: int = 24
NUM_KEYPOINTS_EFT: int = 49
NUM_BETAS: int = 10
#: Image folder of COCO 2014 training images, the default ``imgname`` prefix.
COCO_IMAGE_FOLDER: str = "train2014"
#: Rotation matrices whose determinant is further than this from +1 are rejected (reflections, garbage).
DET_TOLERANCE: float = 0.1
#: Default weak-perspective camera written when none is given.
DEFAULT_CAM: tuple[float, float, float] = (0.9, 0.0, 0.0)
#: EFT's OpenPose-18 validity flags are taken from the first 18 SPIN-24 joints' visibility.
NUM_VALIDITY_OPENPOSE18: int = 18
EFT_VERSION: float = 0.1


def rotmats_to_axis_angle(rotmats: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), float64 (scipy; near-orthonormal input ok)."""
    from scipy.spatial.transform import Rotation  # here: readers of SPIN npz files import this module too

    rotmats = np.asarray(rotmats, dtype=np.float64)
    flat = rotmats.reshape(-1, 3, 3)
    return Rotation.from_matrix(flat).as_rotvec().reshape(*rotmats.shape[:-2], 3)


def axis_angle_to_rotmats(aa: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3), float64."""
    from scipy.spatial.transform import Rotation

    aa = np.asarray(aa, dtype=np.float64)
    return Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(*aa.shape[:-1], 3, 3)


def _sample_array(sample: dict[str, Any], key: str, shape: tuple[int, ...] | None, i: int, path: Path) -> np.ndarray:
    """``sample[key]`` as float64 of ``shape`` (None: any shape), or a :class:`DatasetFormatError`."""
    try:
        value = np.asarray(sample[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: sample {i} key {key!r} is not numeric ({exc})") from exc
    if shape is not None and value.shape != shape:
        raise DatasetFormatError(f"{path}: sample {i} key {key!r} has shape {value.shape}, expected {shape}")
    return value


def _scalar(sample: dict[str, Any], key: str, i: int, path: Path) -> float:
    value = np.ravel(np.asarray(sample[key], dtype=object))
    if value.size != 1:
        raise DatasetFormatError(f"{path}: sample {i} key {key!r} has {value.size} values, expected a number")
    try:
        return float(value[0])
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: sample {i} key {key!r} is not a number ({exc})") from exc


def read_eft_json(path: str | Path, image_folder: str = COCO_IMAGE_FOLDER) -> PersonDataset:
    """Read a COCO-EFT JSON into a :class:`PersonDataset`.

    Args:
        path: the JSON file.
        image_folder: prefix of ``imgname`` (``{image_folder}/{imageName}``); ``""`` keeps the basename.

    Returns:
        ``pose`` (N, 72) axis-angle, ``shape`` (N, 10), ``openpose`` (N, 25, 3), ``part`` (N, 24, 3),
        ``has_smpl`` all True; ``S`` and ``gender`` absent (``present`` False).

    Raises:
        DatasetFormatError: naming the file, the sample index and the key (file missing, empty, truncated or
            not JSON; key missing, wrong shape, or a parm_pose entry that is not a rotation).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: annotation file not found; check the dataset path in the config")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        what = describe_unreadable(path, exc, "a JSON document")
        raise DatasetFormatError(f"{path}: not a readable EFT JSON: {what}; {REGENERATE_HINT}") from exc
    if not isinstance(doc, dict) or "data" not in doc or not isinstance(doc["data"], list):
        raise DatasetFormatError(f"{path}: missing top-level list 'data'; EFT files hold {{ver, data, meta}}: "
                                 f"{REGENERATE_HINT}")
    samples = doc["data"]
    n = len(samples)
    arrays = empty_arrays(n)
    rot = np.zeros((n, NUM_JOINTS_SMPL, 3, 3))
    kp = np.zeros((n, NUM_KEYPOINTS_EFT, 3))
    names: list[str] = []
    centers, scales = np.zeros((n, 2)), np.zeros(n)
    for i, s in enumerate(samples):
        if not isinstance(s, dict):
            raise DatasetFormatError(f"{path}: sample {i} is a {type(s).__name__}, expected an object")
        missing = [k for k in SAMPLE_KEYS if k not in s]
        if missing:
            raise DatasetFormatError(f"{path}: sample {i} lacks key(s) {missing}; EFT samples carry "
                                     f"{list(SAMPLE_KEYS)}")
        rot[i] = _sample_array(s, "parm_pose", (NUM_JOINTS_SMPL, 3, 3), i, path)
        betas = _sample_array(s, "parm_shape", None, i, path).ravel()
        if betas.size < NUM_BETAS:
            raise DatasetFormatError(f"{path}: sample {i} key 'parm_shape' has {betas.size} values, "
                                     f"expected {NUM_BETAS}")
        arrays["shape"][i] = betas[:NUM_BETAS]
        kp[i] = _sample_array(s, "gt_keypoint_2d", (NUM_KEYPOINTS_EFT, 3), i, path)
        centers[i] = _sample_array(s, "bbox_center", (2,), i, path)
        scales[i] = _scalar(s, "bbox_scale", i, path)
        name = str(s["imageName"])
        names.append(f"{image_folder}/{name}" if image_folder else name)
    det = np.linalg.det(rot) if n else np.ones((0, NUM_JOINTS_SMPL))
    bad = np.argwhere(np.abs(det - 1.0) > DET_TOLERANCE)
    if len(bad):
        i, j = bad[0]
        raise DatasetFormatError(f"{path}: sample {i} key 'parm_pose' joint {j} is not a rotation matrix "
                                 f"(determinant {det[i, j]:.3f}); EFT poses are 24 rotation matrices")
    arrays["pose"] = rotmats_to_axis_angle(rot).reshape(n, NUM_JOINTS_SMPL * 3)
    arrays["openpose"], arrays["part"] = kp[:, :NUM_OPENPOSE].copy(), kp[:, NUM_OPENPOSE:].copy()
    arrays["has_smpl"][:] = True
    present = {"part": True, "openpose": True, "S": False, "pose": True, "shape": True, "has_smpl": True,
               "gender": False}
    data = PersonDataset(imgname=np.array(names, dtype=str).reshape(n), center=centers, scale=scales,
                         present=present, **arrays)
    data.check(path)
    return data


def write_eft_json(path: str | Path, data: PersonDataset, cams: np.ndarray | None = None,
                   dbname: str = "COCO2014", rawname: str = "open-world") -> None:
    """Write ``data`` in EFT's layout, atomically (temp file + rename).

    ``imageName`` = basename of ``imgname``; ``parm_pose`` = rotation matrices of ``pose``;
    ``gt_keypoint_2d`` = ``openpose`` then ``part``; ``parm_cam`` from ``cams`` (N, 3) or :data:`DEFAULT_CAM`.
    """
    path = Path(path)
    data.check(path)
    n = len(data)
    rot = axis_angle_to_rotmats(np.asarray(data.pose).reshape(n, NUM_JOINTS_SMPL, 3))
    cams = np.tile(DEFAULT_CAM, (n, 1)) if cams is None else np.asarray(cams, dtype=np.float64)
    if cams.shape != (n, 3):
        raise ValueError(f"cams has shape {cams.shape}, expected {(n, 3)}")
    samples = []
    for i in range(n):
        samples.append({
            "parm_pose": rot[i].tolist(),
            "parm_shape": np.asarray(data.shape[i], dtype=np.float64).tolist(),
            "parm_cam": cams[i].tolist(),
            "bbox_scale": float(data.scale[i]),
            "bbox_center": np.asarray(data.center[i], dtype=np.float64).tolist(),
            "gt_keypoint_2d": np.concatenate([data.openpose[i], data.part[i]]).tolist(),
            "joint_validity_openpose18": [int(v) for v in (data.part[i, :NUM_VALIDITY_OPENPOSE18, 2] > 0)],
            "smpltype": "smpl",
            "annotId": i,
            "imageName": Path(str(data.imgname[i])).name,
        })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(json.dumps({"ver": EFT_VERSION, "data": samples,
                                   "meta": {"dbname": dbname, "rawname": rawname}}))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
