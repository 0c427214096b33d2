"""SMPL file loading without chumpy, the BodyModel facade, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from pipeline.body.joints import SPIN_PART_NAMES
from pipeline.body.model import _NO_EXTRA_JOINTS, BodyModel
from pipeline.body.smpl_io import BodyModelFileError, count_faces, load_smpl_arrays, save_smpl_pickle
from pipeline.world.standins import write_chumpy_smpl_pickle


def test_chumpy_pickle_loads_without_chumpy(tmp_path: Path, tiny_smpl: dict) -> None:
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    write_chumpy_smpl_pickle(tiny_smpl, path)
    assert b"chumpy.ch" in path.read_bytes()
    with pytest.raises(ModuleNotFoundError):
        import chumpy  # noqa: F401  # chumpy really is absent
    arrays = load_smpl_arrays(path)
    np.testing.assert_array_equal(arrays["shapedirs"], tiny_smpl["shapedirs"])
    np.testing.assert_array_equal(arrays["v_template"], tiny_smpl["v_template"])
    np.testing.assert_allclose(arrays["J_regressor"], tiny_smpl["J_regressor"])
    assert arrays["f"].dtype == np.int64 and arrays["bs_style"] == "lbs"


def test_bodymodel_matches_smplx_on_plain_pickle(tmp_path: Path, tiny_smpl: dict) -> None:
    for gender in ("NEUTRAL", "MALE", "FEMALE"):
        write_chumpy_smpl_pickle(tiny_smpl, tmp_path / f"SMPL_{gender}.pkl")
    plain = tmp_path / "plain" / "SMPL_NEUTRAL.pkl"
    plain.parent.mkdir()
    save_smpl_pickle(tiny_smpl, plain)
    reference = smplx.SMPL(model_path=str(plain), **_NO_EXTRA_JOINTS)  # smplx reads our plain pickle unchanged
    model = BodyModel(tmp_path, gender="neutral")
    gen = torch.Generator().manual_seed(0)
    betas = torch.randn(4, 10, generator=gen)
    pose = torch.randn(4, 69, generator=gen) * 0.4
    orient = torch.randn(4, 3, generator=gen) * 0.4
    transl = torch.randn(4, 3, generator=gen)
    ours = model(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    ref = reference(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    torch.testing.assert_close(ours.vertices, ref.vertices, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.joints, ref.joints[:, :24], rtol=1e-5, atol=1e-6)
    assert model.num_vertices == tiny_smpl["v_template"].shape[0]
    assert model.vertex_part.shape == (model.num_vertices,)


def test_bodymodel_regressors(tmp_path: Path, tiny_smpl: dict) -> None:
    """H36M rows on the posed vertices; SPIN's 49 joints composed from kinematic joints, extra rows and picks."""
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **tiny_smpl)
    nv = tiny_smpl["v_template"].shape[0]
    h36m = np.zeros((17, nv))
    h36m[np.arange(17), np.arange(17)] = 1.0
    picks = np.zeros((11, nv))
    picks[np.arange(11), 20 + np.arange(11)] = 1.0
    np.savez(tmp_path / "reg.npz", h36m=h36m, extra=np.full((9, nv), 1.0 / nv), vertex_joints=picks)
    model = BodyModel(tmp_path, joint_regressors=tmp_path / "reg.npz")
    out = model(body_pose=0.3 * torch.randn(1, 69, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(out.joints_h36m[0], out.vertices[0, :17])
    spin = {name: k for k, name in enumerate(SPIN_PART_NAMES)}
    torch.testing.assert_close(out.joints_spin[0, spin["Right Hip"]], out.vertices[0].mean(0))  # extra row 0
    torch.testing.assert_close(out.joints_spin[0, spin["Right Ankle"]], out.joints[0, 8])  # SMPL R_Ankle
    torch.testing.assert_close(out.joints_spin[0, spin["Left Eye"]], out.vertices[0, 22])  # pick "leye"
    torch.testing.assert_close(out.joints_openpose[0, 8], out.joints[0, 0])  # OP MidHip = SMPL pelvis
    torch.testing.assert_close(out.joints_openpose[0, 24], out.vertices[0, 30])  # OP RHeel = pick 10
    np.savez(tmp_path / "bad.npz", h36m=h36m[:, :-1], extra=h36m[:9, :-1], vertex_joints=picks[:, :-1])
    with pytest.raises(ValueError, match="rebuild the regressors"):
        BodyModel(tmp_path, joint_regressors=tmp_path / "bad.npz")
    np.savez(tmp_path / "old.npz", h36m=h36m, spin_part=np.full((24, nv), 1.0 / nv))
    with pytest.raises(ValueError, match="lacks key 'extra'"):
        BodyModel(tmp_path, joint_regressors=tmp_path / "old.npz")


def test_pose_representation_is_explicit(tmp_path: Path, tiny_smpl: dict) -> None:
    """A batch of 3 axis-angle global orientations, shape (3, 3), is axis-angle, not a rotation matrix
    (issue #18: 3DPW chunks with exactly 3 samples of one gender crashed)."""
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **tiny_smpl)
    model = BodyModel(tmp_path)
    gen = torch.Generator().manual_seed(1)
    orient, pose = 0.5 * torch.randn(3, 3, generator=gen), 0.3 * torch.randn(3, 69, generator=gen)
    batched = model(body_pose=pose, global_orient=orient).vertices
    for i in range(3):
        single = model(body_pose=pose[i:i + 1], global_orient=orient[i:i + 1]).vertices
        torch.testing.assert_close(batched[i], single[0])
    rot = smplx.lbs.batch_rodrigues(orient)[:, None]
    body_rot = smplx.lbs.batch_rodrigues(pose.reshape(-1, 3)).reshape(3, 23, 3, 3)
    torch.testing.assert_close(model(body_pose=body_rot, global_orient=rot, pose2rot=False).vertices, batched)
    with pytest.raises(ValueError, match="rotation matrices must be"):
        model(body_pose=body_rot, global_orient=rot[:, 0], pose2rot=False)
    with pytest.raises(ValueError, match="axis-angle must be"):
        model(body_pose=body_rot, global_orient=orient)


def test_missing_file_error_names_key_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(BodyModelFileError) as err:
        load_smpl_arrays(tmp_path / "SMPL_MALE.pkl")
    msg = str(err.value)
    assert "assets.body_models" in msg and "SMPL_MALE.pkl" in msg and "smpl.is.tue.mpg.de" in msg
    with pytest.raises(BodyModelFileError, match="SMPL_FEMALE"):
        BodyModel(tmp_path, gender="female")


def test_corrupt_and_incomplete_files(tmp_path: Path, tiny_smpl: dict) -> None:
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"not a pickle")
    with pytest.raises(BodyModelFileError, match="corrupt"):
        load_smpl_arrays(tmp_path / "SMPL_NEUTRAL.pkl")
    partial = {k: v for k, v in tiny_smpl.items() if k != "weights"}
    np.savez(tmp_path / "SMPL_MALE.npz", **partial)
    with pytest.raises(BodyModelFileError, match="weights"):
        load_smpl_arrays(tmp_path / "SMPL_MALE.npz")


def test_pose_points_reproduces_body_without_correctives(tmp_path: Path, tiny_smpl: dict) -> None:
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **tiny_smpl)  # posedirs are zero: skinning alone = forward
    model = BodyModel(tmp_path)
    gen = torch.Generator().manual_seed(1)
    betas, pose = torch.randn(2, 10, generator=gen), torch.randn(2, 69, generator=gen) * 0.5
    orient, transl = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    rest, joints = model.rest_body(betas)
    posed = model.pose_points(rest, model.skinning_weights, betas, pose, orient, transl)
    torch.testing.assert_close(posed, model(betas, pose, orient, transl).vertices, rtol=1e-5, atol=1e-5)
    assert joints.shape == (2, 24, 3)


def test_count_faces_reads_the_face_array_alone(tmp_path: Path, tiny_smpl: dict) -> None:
    """count_faces equals the built model's face count for an npz (read for ``f`` alone) and a chumpy pickle; a
    damaged npz or a folder without the model stops with the full reader's message."""
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **tiny_smpl)
    write_chumpy_smpl_pickle(tiny_smpl, tmp_path / "SMPL_MALE.pkl")
    expected = BodyModel(tmp_path, gender="neutral").num_faces
    assert expected == len(tiny_smpl["f"])
    assert count_faces(tmp_path) == expected
    assert count_faces(tmp_path, "male") == expected
    (tmp_path / "SMPL_FEMALE.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BodyModelFileError, match="SMPL_FEMALE.npz"):
        count_faces(tmp_path, "female")
    with pytest.raises(BodyModelFileError, match="assets.body_models"):
        count_faces(tmp_path / "missing")
