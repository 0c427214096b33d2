"""COCO-EFT pseudo-ground-truth JSON (``COCO2014-All-ver01.json``) read into / written from PersonDataset.

File layout: ``{"ver", "data": [...], "meta": {"dbname", "rawname"}}``; per sample ``parm_pose`` 24×3×3
rotation matrices, ``parm_shape`` 10, ``parm_cam`` [s, tx, ty], ``bbox_scale``, ``bbox_center``,
``gt_keypoint_2d`` 49×3 in SPIN's 49-joint order (25 OpenPose slots, then the 24 GT joints), ``imageName``
(basename only), ``smpltype``, ``annotId``. Reading converts rotation matrices to axis-angle, splits the 49
keypoints into ``openpose`` + ``part``, and prefixes ``imageName`` with the image folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.io.spin_npz import DatasetFormatError, PersonDataset, empty_arrays

SAMPLE_KEYS = ("parm_pose", "parm_shape", "bbox_scale", "bbox_center", "gt_keypoint_2d", "imageName")


def read_eft_json(path: str | Path, image_folder: str = "train2014") -> PersonDataset:
    """Read a COCO-EFT JSON; ``imgname`` becomes ``{image_folder}/{imageName}``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not a readable EFT JSON ({exc})") from exc
    if "data" not in doc:
        raise DatasetFormatError(f"{path}: missing top-level key 'data' (EFT files hold {{ver, data, meta}})")
    samples = doc["data"]
    n = len(samples)
    arrays = empty_arrays(n)
    names, centers, scales = [], np.zeros((n, 2)), np.zeros(n)
    for i, s in enumerate(samples):
        missing = [k for k in SAMPLE_KEYS if k not in s]
        if missing:
            raise DatasetFormatError(f"{path}: sample {i} lacks key(s) {missing}")
        rot = np.asarray(s["parm_pose"], dtype=np.float64)
        if rot.shape != (24, 3, 3):
            raise DatasetFormatError(f"{path}: sample {i} 'parm_pose' has shape {rot.shape}, expected (24, 3, 3)")
        arrays["pose"][i] = Rotation.from_matrix(rot).as_rotvec().reshape(-1)
        arrays["shape"][i] = np.asarray(s["parm_shape"], dtype=np.float64)[:10]
        kp = np.asarray(s["gt_keypoint_2d"], dtype=np.float64)
        if kp.shape != (49, 3):
            raise DatasetFormatError(f"{path}: sample {i} 'gt_keypoint_2d' has shape {kp.shape}, expected (49, 3)")
        arrays["openpose"][i], arrays["part"][i] = kp[:25], kp[25:]
        centers[i] = s["bbox_center"]
        scales[i] = s["bbox_scale"]
        names.append(f"{image_folder}/{s['imageName']}" if image_folder else s["imageName"])
    arrays["has_smpl"][:] = True
    present = {"part": True, "openpose": True, "S": False, "pose": True, "shape": True, "gender": False}
    return PersonDataset(imgname=np.array(names, dtype=str), center=centers, scale=scales, present=present, **arrays)


def write_eft_json(path: str | Path, data: PersonDataset, cams: np.ndarray | None = None, dbname: str = "COCO2014") -> None:
    """Write ``data`` in EFT's layout (``imageName`` = basename of ``imgname``), atomically."""
    path = Path(path)
    rot = Rotation.from_rotvec(data.pose.reshape(-1, 3)).as_matrix().reshape(len(data), 24, 3, 3)
    cams = np.tile([0.9, 0.0, 0.0], (len(data), 1)) if cams is None else cams
    samples = []
    for i in range(len(data)):
        samples.append({
            "parm_pose": rot[i].tolist(),
            "parm_shape": data.shape[i].tolist(),
            "parm_cam": np.asarray(cams[i]).tolist(),
            "bbox_scale": float(data.scale[i]),
            "bbox_center": data.center[i].tolist(),
            "gt_keypoint_2d": np.concatenate([data.openpose[i], data.part[i]]).tolist(),
            "joint_validity_openpose18": [int(v) for v in (data.part[i, :18, 2] > 0)],
            "smpltype": "smpl",
            "annotId": i,
            "imageName": Path(str(data.imgname[i])).name,
        })
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"ver": 0.1, "data": samples, "meta": {"dbname": dbname, "rawname": "open-world"}}))
    os.replace(tmp, path)
