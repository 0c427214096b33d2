"""SPIN's 49 joints composed as SPIN's models/smpl.py does, and the regressor file built from SPIN's .npy files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.body.joints import J49_FLIP_PERM, OPENPOSE_NAMES, SPIN_PART_NAMES
from pipeline.body.spin_joints import (
    EXTRA_JOINT_NAMES,
    J49_SOURCES,
    NUM_SMPL_VERTICES,
    SMPL_VERTEX_IDS,
    build_spin_regressors,
    compose_j49,
)


def test_joint_map_by_hand() -> None:
    """Spot checks against SPIN's constants.JOINT_MAP (54 sources: 24 SMPL, 21 vertex picks, 9 extra)."""
    j49 = dict(zip(OPENPOSE_NAMES + SPIN_PART_NAMES, J49_SOURCES, strict=True))
    # compact layout: 0-23 SMPL joints, 24-34 vertex picks, 35-43 J_regressor_extra rows
    assert j49["OP Neck"] == 12 and j49["OP MidHip"] == 0 and j49["OP RHip"] == 2 and j49["OP LHip"] == 1
    assert j49["OP Nose"] == 24 and j49["OP RHeel"] == 34 and j49["OP LBigToe"] == 29
    assert j49["Right Ankle"] == 8 and j49["Left Wrist"] == 20 and j49["Right Shoulder"] == 17
    assert j49["Right Hip"] == 35 and j49["Left Hip"] == 36 and j49["Head (H36M)"] == 43
    assert j49["Nose"] == 24 and j49["Left Eye"] == 26 and j49["Right Eye"] == 25 and j49["Right Ear"] == 27
    # 10 of the 24 ground-truth joints are kinematic SMPL joints, 9 come from J_regressor_extra, 5 are picks
    gt = J49_SOURCES[len(OPENPOSE_NAMES):]
    assert sum(s < 24 for s in gt) == 10 and sum(s >= 35 for s in gt) == 9 and sum(24 <= s < 35 for s in gt) == 5
    # the mirror maps each joint to one with the mirrored source (left/right SMPL joints, picks, extra rows)
    assert len(set(J49_FLIP_PERM)) == 49


def test_compose_and_build_from_spin_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    h36m = rng.random((17, NUM_SMPL_VERTICES))
    extra = rng.random((9, NUM_SMPL_VERTICES))
    np.save(tmp_path / "J_regressor_h36m.npy", h36m)
    np.save(tmp_path / "J_regressor_extra.npy", extra)
    regs = build_spin_regressors(tmp_path / "J_regressor_h36m.npy", tmp_path / "J_regressor_extra.npy")
    np.testing.assert_array_equal(regs["h36m"], h36m)
    np.testing.assert_array_equal(regs["extra"], extra)
    assert tuple(regs["extra_names"]) == EXTRA_JOINT_NAMES
    np.testing.assert_array_equal(regs["vertex_joints"].argmax(1), SMPL_VERTEX_IDS)

    vertices = torch.as_tensor(rng.normal(size=(2, NUM_SMPL_VERTICES, 3)), dtype=torch.float64)
    smpl = torch.as_tensor(rng.normal(size=(2, 24, 3)), dtype=torch.float64)
    j49 = compose_j49(smpl, vertices, torch.as_tensor(extra), torch.as_tensor(regs["vertex_joints"]))
    name = {n: k for k, n in enumerate(OPENPOSE_NAMES + SPIN_PART_NAMES)}
    torch.testing.assert_close(j49[:, name["Right Knee"]], smpl[:, 5])
    torch.testing.assert_close(j49[:, name["Left Hip"]], torch.einsum("v,bvc->bc", torch.as_tensor(extra[1]), vertices))
    torch.testing.assert_close(j49[:, name["Nose"]], vertices[:, 332])
    torch.testing.assert_close(j49[:, name["OP LHeel"]], vertices[:, 3387])
    torch.testing.assert_close(j49[:, name["OP REar"]], vertices[:, 4071])


def test_build_rejects_wrong_files(tmp_path: Path) -> None:
    np.save(tmp_path / "J_regressor_h36m.npy", np.zeros((17, NUM_SMPL_VERTICES)))
    np.save(tmp_path / "J_regressor_extra.npy", np.zeros((24, NUM_SMPL_VERTICES)))
    with pytest.raises(ValueError, match=r"J_regressor_extra\.npy: expected a \(9, 6890\)"):
        build_spin_regressors(tmp_path / "J_regressor_h36m.npy", tmp_path / "J_regressor_extra.npy")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"broken\.npy: cannot read"):
        build_spin_regressors(tmp_path / "broken.npy", tmp_path / "J_regressor_extra.npy")
