"""Real AGORA adapter: fit-file variants, SMPL-X rejection, centimetre scans."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.io.agora_fit import AgoraFitError, read_agora_fit
from pipeline.prior.views import scan_unit_scale


def _dump(path: Path, data: dict) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def test_old_key_names_rotmats_and_tensors(tmp_path: Path) -> None:
    pose = np.random.default_rng(0).normal(0, 0.3, (24, 3))
    rot = Rotation.from_rotvec(pose).as_matrix()
    data = {"betas": torch.zeros(1, 10), "root_pose": torch.as_tensor(rot[:1][None]),
            "body_pose": torch.as_tensor(rot[1:][None]), "translation": torch.tensor([[0.1, 0.2, 0.3]]), "gender": "female"}
    fit = read_agora_fit(_dump(tmp_path / "a.pkl", data))
    np.testing.assert_allclose(fit.global_orient, pose[0], atol=1e-6)
    np.testing.assert_allclose(fit.body_pose, pose[1:].ravel(), atol=1e-6)
    np.testing.assert_allclose(fit.transl, [0.1, 0.2, 0.3], atol=1e-6)
    assert fit.gender == "female"


def test_smplx_and_kid_fits_are_rejected_with_the_fix(tmp_path: Path) -> None:
    smplx_fit = {"betas": np.zeros((1, 10)), "global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 63)),
                 "transl": np.zeros((1, 3)), "left_hand_pose": np.zeros((1, 45)), "expression": np.zeros((1, 10))}
    with pytest.raises(AgoraFitError, match="transfer_model"):
        read_agora_fit(_dump(tmp_path / "x.pkl", smplx_fit))
    kid = {"betas": np.zeros((1, 11)), "global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 69)),
           "transl": np.zeros((1, 3))}
    with pytest.raises(AgoraFitError, match="kid"):
        read_agora_fit(_dump(tmp_path / "k.pkl", kid))
    with pytest.raises(AgoraFitError, match="missing key 'global_orient'"):
        read_agora_fit(_dump(tmp_path / "m.pkl", {"betas": np.zeros(10)}))


def test_centimetre_scans_detected() -> None:
    body = np.array([[0.0, -0.9, 0.0], [0.0, 0.85, 0.0]])
    assert scan_unit_scale(body * 100.0, body, "cm.obj") == 0.01
    assert scan_unit_scale(body * 1.05, body, "m.obj") == 1.0
    with pytest.raises(ValueError, match="does not match its SMPL fit"):
        scan_unit_scale(body * 10.0, body, "odd.obj")
