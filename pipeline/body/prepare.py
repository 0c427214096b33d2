"""Prepare the body-model folder every stage reads from the files a user downloads (rule prepare_body_model).

Inputs, as they come: the three SMPL pickles (official names such as
``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl`` or smplx's ``SMPL_NEUTRAL.pkl``; chumpy objects are read
without chumpy) and SPIN's ``J_regressor_h36m.npy`` / ``J_regressor_extra.npy``. Outputs, in the layout
the open world's builder writes too: ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` (plain arrays, checked once),
``joint_regressors.npz`` (:func:`pipeline.body.spin_joints.build_spin_regressors`) and ``parts.npz`` (the
24-part segmentation, argmax of the skinning weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.body.joints import SMPL_JOINT_NAMES
from pipeline.body.parts import vertex_parts_from_weights
from pipeline.body.smpl_io import GENDERS, find_model_file, load_smpl_arrays
from pipeline.body.spin_joints import build_spin_regressors

log = logging.getLogger(__name__)

#: Arrays of an SMPL file kept in the prepared ``.npz`` (what :class:`pipeline.body.model.BodyModel` reads).
MODEL_KEYS: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


def model_file_name(gender: str) -> str:
    """Prepared file name of a gender's model (``SMPL_NEUTRAL.npz``)."""
    return f"SMPL_{gender.upper()}.npz"


def prepare_body_models(smpl_dir: str | Path, j_regressor_h36m: str | Path, j_regressor_extra: str | Path,
                        out_dir: str | Path, config_key: str = "assets.body_models") -> dict[str, Any]:
    """Convert the downloaded SMPL models and SPIN's regressors into the pipeline's body-model folder.

    Args:
        smpl_dir: folder holding the SMPL download (:func:`pipeline.body.smpl_io.find_model_file` names).
        j_regressor_h36m, j_regressor_extra: SPIN's ``.npy`` files for the same mesh.
        out_dir: folder to write (created).
        config_key: named in errors about ``smpl_dir``.

    Returns:
        Report: source file of each gender, vertex and face counts.

    Raises:
        BodyModelFileError / ValueError: a missing, damaged or inconsistent file (the message names it), or
            models of different meshes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"sources": {}}
    shapes = {}
    arrays_by_gender = {}
    for gender in GENDERS:
        path = find_model_file(smpl_dir, gender, config_key)
        arrays = load_smpl_arrays(path, config_key)
        arrays_by_gender[gender] = arrays
        shapes[gender] = (arrays["v_template"].shape[0], arrays["f"].shape[0])
        report["sources"][gender] = str(path)
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{config_key}: the three SMPL models have different meshes (vertices, faces) {shapes}; "
                         "download the three genders of the same SMPL release")
    for gender, arrays in arrays_by_gender.items():
        np.savez(out_dir / model_file_name(gender), **{k: arrays[k] for k in MODEL_KEYS},
                 joint_names=np.array(SMPL_JOINT_NAMES))
        log.info("%s: %s -> %s", gender, report["sources"][gender], out_dir / model_file_name(gender))
    num_vertices, num_faces = shapes["neutral"]
    np.savez(out_dir / "joint_regressors.npz", **build_spin_regressors(j_regressor_h36m, j_regressor_extra,
                                                                       num_vertices))
    parts = vertex_parts_from_weights(arrays_by_gender["neutral"]["weights"])
    np.savez(out_dir / "parts.npz", vertex_part=parts, part_names=np.array(SMPL_JOINT_NAMES))
    report.update(num_vertices=int(num_vertices), num_faces=int(num_faces),
                  j_regressor_h36m=str(j_regressor_h36m), j_regressor_extra=str(j_regressor_extra))
    return report
