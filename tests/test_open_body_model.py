"""The open SMPL-format body model built from Anny: format, conventions, fidelity to Anny, shape space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from smplx.lbs import batch_rodrigues

from pipeline.body.anny_build import AnnyConverter, PhenotypeSampler, sample_tposed
from pipeline.body.model import BodyModel
from pipeline.world.poses import sample_body_pose, sample_global_orient

L_HIP, L_FOOT, L_ANKLE, L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST = 1, 10, 7, 16, 17, 20, 21
#: Joints held at rest in the comparison with Anny: the merged fingers and toes.
HELD_AT_REST = (10, 11, 22, 23)


@pytest.fixture(scope="session")
def converter() -> AnnyConverter:
    return AnnyConverter()


@pytest.mark.parametrize("gender", ["NEUTRAL", "MALE", "FEMALE"])
def test_smplx_loads_files_unchanged(open_model: tuple[Path, dict], gender: str) -> None:
    folder, report = open_model
    model = smplx.SMPL(model_path=str(folder), gender=gender.lower())  # reads SMPL_{GENDER}.pkl as for real SMPL
    out = model()
    assert out.vertices.shape[1] == report["num_vertices"] == model.v_template.shape[0]
    assert model.faces.shape[0] == report["num_faces"]
    with np.load(folder / f"SMPL_{gender}.npz") as npz:
        np.testing.assert_allclose(npz["v_template"], model.v_template.numpy(), atol=1e-6)
        assert npz["J_regressor"].shape == (24, report["num_vertices"])
        np.testing.assert_allclose(npz["J_regressor"].sum(1), 1.0, atol=1e-6)
        assert (npz["J_regressor"] != 0).sum(1).max() <= 400  # sparse rows


def test_zero_pose_is_smpl_t_pose(open_model: tuple[Path, dict]) -> None:
    folder, _ = open_model
    for gender in ("neutral", "male", "female"):
        joints = BodyModel(folder, gender=gender)().joints[0].detach().numpy()
        assert abs(joints[L_WRIST, 1] - joints[L_SHOULDER, 1]) < 0.03
        assert abs(joints[R_WRIST, 1] - joints[R_SHOULDER, 1]) < 0.03
        assert joints[L_HIP, 0] > 0 and joints[L_WRIST, 0] > 0  # body's left is +x
        assert joints[L_FOOT, 2] > joints[L_ANKLE, 2]  # toes point forward: facing +z
        assert joints[15, 1] > joints[0, 1] + 0.4  # head above pelvis: y up


def test_lbs_matches_anny_skinning(open_model: tuple[Path, dict], converter: AnnyConverter) -> None:
    """50 random poses through the bone merge: SMPL-format LBS vs Anny's own kinematics and skinning."""
    folder, _ = open_model
    rng = np.random.default_rng(3)
    model = BodyModel(folder, gender="male")
    phen = PhenotypeSampler(0.0).sample(1, rng)
    tpose = converter.tposed(phen)
    with np.load(folder / "SMPL_MALE.npz") as npz:
        dirs = npz["shapedirs"].reshape(-1, npz["shapedirs"].shape[-1])
        betas = np.linalg.lstsq(dirs, (tpose["vertices"][0] - npz["v_template"]).ravel(), rcond=None)[0]
    errors = []
    for _ in range(50):
        body_pose = sample_body_pose(rng, "random", activity=0.8).reshape(23, 3)
        body_pose[[j - 1 for j in HELD_AT_REST]] = 0.0
        orient = sample_global_orient(rng, max_tilt=0.5)
        full = np.concatenate([orient[None], body_pose])
        rotmats = batch_rodrigues(torch.as_tensor(full)).numpy()
        with torch.no_grad():
            rest = converter.rest(phen)
            anny_verts, _ = converter.pose(rest, converter.smpl_pose_to_deltas(tpose, rotmats))
            ours = model(
                betas=torch.as_tensor(betas[None], dtype=torch.float32),
                body_pose=torch.as_tensor(body_pose.reshape(1, -1), dtype=torch.float32),
                global_orient=torch.as_tensor(orient[None], dtype=torch.float32),
            ).vertices[0].numpy()
        anny_smpl = converter.to_smpl(anny_verts)[0].numpy()
        # Both rotate about the pelvis joint; compare after removing the (constant) rest-frame offset.
        errors.append(np.linalg.norm(ours - anny_smpl, axis=1).mean())
    mean_error = float(np.mean(errors))
    print(f"SMPL-format LBS vs Anny skinning: mean vertex error {1e3 * mean_error:.2f} mm over 50 poses")
    assert mean_error < 0.005


def test_joint_regressor_follows_anny_bone_heads(open_model: tuple[Path, dict], converter: AnnyConverter) -> None:
    folder, _ = open_model
    samples = sample_tposed(converter, "neutral", 200, np.random.default_rng(11))
    with np.load(folder / "SMPL_NEUTRAL.npz") as npz:
        j_reg = npz["J_regressor"]
    err = np.linalg.norm(np.einsum("jv,svc->sjc", j_reg, samples["vertices"]) - samples["joints"], axis=-1)
    print(f"J_regressor vs Anny bone heads over 200 phenotypes: mean {1e3 * err.mean():.2f} mm")
    assert err.mean() < 0.005


def test_shape_space(open_model: tuple[Path, dict]) -> None:
    folder, report = open_model
    for gender, explained in report["explained_variance"].items():
        print(f"{gender}: 10 betas explain {100 * explained:.3f} % of sampled shape variance")
        assert explained >= 0.95
    templates = {g: BodyModel(folder, gender=g)().vertices[0].detach().numpy() for g in ("neutral", "male", "female")}
    assert np.abs(templates["male"] - templates["female"]).mean() > 0.005
    assert np.abs(templates["neutral"] - templates["male"]).mean() > 0.002
    model = BodyModel(folder, gender="neutral")
    heights = []
    for b in (-2.0, 2.0):
        betas = torch.zeros(1, 10)
        betas[0, 0] = b
        v = model(betas=betas).vertices[0].detach().numpy()
        heights.append(v[:, 1].max() - v[:, 1].min())
    print(f"betas[0] = -2 / +2: heights {heights[0]:.3f} / {heights[1]:.3f} m")
    assert abs(heights[1] - heights[0]) >= 0.10


def test_regressors_and_parts(open_model: tuple[Path, dict]) -> None:
    folder, report = open_model
    with np.load(folder / "joint_regressors.npz") as reg:
        assert reg["h36m"].shape == (17, report["num_vertices"])
        assert reg["spin_part"].shape == (24, report["num_vertices"])
        assert (reg["h36m"] >= 0).all() and np.allclose(reg["spin_part"].sum(1), 1.0)
    model = BodyModel(folder, joint_regressors=folder / "joint_regressors.npz")
    out = model()
    h36m = out.joints_h36m[0].detach().numpy()
    assert h36m[4, 0] > 0 > h36m[1, 0]  # LHip on the left (+x), RHip on the right
    assert h36m[10, 1] > h36m[9, 1] > h36m[8, 1]  # head top above nose above thorax
    with np.load(folder / "parts.npz") as parts:
        counts = np.bincount(parts["vertex_part"], minlength=24)
    assert (counts > 0).all() and counts.sum() == report["num_vertices"]
