"""The open SMPL-format body model built from Anny (issue 2): format, T-pose, fidelity to Anny, shape space,
regressors and parts.

The model is built once per session by the ``open_model`` fixture (tests/conftest.py, 120 phenotypes per
gender); the checks below re-sample fresh phenotypes with other seeds, so they measure held-out accuracy.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import smplx
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from smplx.utils import Struct

from pipeline.body import anny_build as ab
from pipeline.body.joints import (
    H36M_FLIP_PERM,
    H36M_JOINT_NAMES,
    H36M_TO_J14,
    H36M_TO_J17,
    J24_FLIP_PERM,
    J24_TO_J14,
    J24_TO_J17,
    J49_FLIP_PERM,
    SMPL_JOINT_NAMES,
    SMPL_JOINTS_FLIP_PERM,
    SMPL_PARENTS,
    SMPL_POSE_FLIP_PERM,
    SMPL_POSE_FLIP_SIGN,
    SPIN_PART_NAMES,
)
from pipeline.body.model import BodyModel
from pipeline.body.parts import vertex_parts_from_weights
from pipeline.body.spin_joints import EXTRA_JOINT_NAMES, VERTEX_JOINT_NAMES

GENDERS = ("neutral", "male", "female")
J = {name: k for k, name in enumerate(SMPL_JOINT_NAMES)}
H36M = {name: k for k, name in enumerate(H36M_JOINT_NAMES)}
#: Merged toes and fingers: held at rest in the issue's LBS check.
TOES_AND_FINGERS = (J["L_Foot"], J["R_Foot"], J["L_Hand"], J["R_Hand"])
NUM_POSES = 50
#: Issue thresholds (metres).
MAX_MEAN_LBS_ERROR = 0.005
MAX_MEAN_JOINT_ERROR = 0.005
MAX_WRIST_DROP = 0.03
MIN_HEIGHT_CHANGE = 0.10


@pytest.fixture(scope="module")
def conv() -> ab.AnnyToSMPL:
    return ab.AnnyToSMPL()


def _smpl(model_path: Path, gender: str, batch_size: int = 1, **kwargs: Any) -> smplx.SMPL:
    """``smplx.SMPL`` in float64, its 10-beta warning silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(model_path=str(model_path), gender=gender, batch_size=batch_size, dtype=torch.float64,
                          **kwargs)


def _arrays(folder: Path, gender: str) -> dict[str, np.ndarray]:
    with np.load(folder / f"SMPL_{gender.upper()}.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _project_betas(arrays: dict[str, np.ndarray], vertices: np.ndarray) -> np.ndarray:
    """Least-squares betas (S, B) of (S, V, 3) rest meshes in a file's shape space."""
    dirs = arrays["shapedirs"].reshape(-1, arrays["shapedirs"].shape[-1])
    offsets = (vertices - arrays["v_template"]).reshape(len(vertices), -1)
    return np.linalg.lstsq(dirs, offsets.T, rcond=None)[0].T


# ---------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize("gender", GENDERS)
def test_smplx_loads_each_file_unchanged(open_model: tuple[Path, dict], gender: str) -> None:
    folder, report = open_model
    arrays = _arrays(folder, gender)
    num_verts, num_faces = arrays["v_template"].shape[0], arrays["f"].shape[0]
    assert (num_verts, num_faces) == (report["num_vertices"], report["num_faces"])
    assert arrays["shapedirs"].shape == (num_verts, 3, 10)
    assert arrays["posedirs"].shape == (num_verts, 3, ab.NUM_POSE_BASIS) and not arrays["posedirs"].any()
    assert arrays["weights"].shape == (num_verts, 24)
    np.testing.assert_allclose(arrays["weights"].sum(1), 1.0, atol=1e-9)
    assert arrays["kintree_table"].shape == (2, 24)
    assert arrays["kintree_table"][0, 1:].tolist() == list(SMPL_PARENTS[1:])
    reg = arrays["J_regressor"]
    assert reg.shape == (24, num_verts) and (reg >= 0).all()
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-9)
    assert (reg > 0).sum(1).max() <= 64  # sparse rows

    # smplx reads the folder's SMPL_{GENDER}.pkl exactly as for real SMPL, and the npz as a data struct.
    from_pkl = _smpl(folder, gender)
    from_npz = _smpl(folder / f"SMPL_{gender.upper()}.npz", gender, data_struct=Struct(**arrays))
    pose = torch.tensor(np.random.default_rng(0).normal(0, 0.3, (1, 69)))
    betas = torch.tensor(np.random.default_rng(1).normal(0, 1, (1, 10)))
    out_pkl, out_npz = from_pkl(body_pose=pose, betas=betas), from_npz(body_pose=pose, betas=betas)
    assert out_pkl.vertices.shape == (1, num_verts, 3) == (1, *from_pkl.v_template.shape)
    assert from_pkl.faces.shape == (num_faces, 3) and from_pkl.faces.max() == num_verts - 1
    torch.testing.assert_close(out_pkl.vertices, out_npz.vertices)
    np.testing.assert_allclose(from_pkl.v_template.numpy(), arrays["v_template"])


@pytest.mark.parametrize("gender", GENDERS)
def test_zero_pose_is_smpl_t_pose(open_model: tuple[Path, dict], gender: str) -> None:
    folder, _ = open_model
    out = _smpl(folder, gender)()
    joints, verts = out.joints[0, :24].detach().numpy(), out.vertices[0].detach().numpy()
    for side in ("L", "R"):  # arms horizontal: elbows and wrists at shoulder height
        for joint in ("Elbow", "Wrist"):
            assert abs(joints[J[f"{side}_{joint}"], 1] - joints[J[f"{side}_Shoulder"], 1]) < MAX_WRIST_DROP
    assert joints[J["L_Hip"], 0] > 0 > joints[J["R_Hip"], 0]  # the body's left is +x
    assert joints[J["L_Wrist"], 0] > 0.5 > -0.5 > joints[J["R_Wrist"], 0]
    assert joints[J["L_Foot"], 2] > joints[J["L_Ankle"], 2] + 0.05  # toes point forward: facing +z
    assert joints[J["Head"], 1] > joints[J["Pelvis"], 1] + 0.4 > joints[J["L_Ankle"], 1] + 0.4  # y up
    height = verts[:, 1].max() - verts[:, 1].min()
    assert 1.5 < height < 1.9, height  # metres, adult
    spread = verts.max(0) - verts.min(0)
    assert spread[0] > height * 0.9 > spread[2]  # T-pose arm span ~ height; shallow in z


# ------------------------------------------------------------------------------------ fidelity to Anny


def test_smpl_pose_mapping_is_exact_on_anny_joints(conv: ab.AnnyToSMPL) -> None:
    """Anny posed through :meth:`deltas_from_smpl_pose` has exactly SMPL's forward kinematics (all 24 joints,
    fingers and toes included) when SMPL uses Anny's own joints."""
    rng = np.random.default_rng(4)
    tpose = conv.tposed(ab.AdultPhenotypeSampler("neutral").sample(conv, 8, rng))
    pose = ab.sample_fitting_poses(8, rng)
    pose[:, 0] = rng.normal(0.0, 0.5, (8, 3))
    rot = ab.axis_angle_to_matrix(pose)
    transl = torch.tensor(rng.normal(0.0, 0.5, (8, 3)))
    anny_verts, anny_joints = conv.posed(tpose, rot, transl)
    posed_joints, rel = batch_rigid_transform(rot, torch.as_tensor(tpose.joints), torch.tensor(SMPL_PARENTS),
                                              dtype=torch.float64)
    np.testing.assert_allclose(anny_joints, posed_joints.numpy() + transl.numpy()[:, None], atol=1e-9)
    # SMPL LBS of the T-posed mesh with these exact joints: only the double skinning of the regions the
    # T-pose moved (shoulders) differs from Anny's single skinning.
    transforms = torch.einsum("vj,bjkl->bvkl", torch.as_tensor(conv.weights), rel)
    verts = torch.einsum("bvkl,bvl->bvk", transforms[..., :3, :3], torch.as_tensor(tpose.vertices))
    verts = verts + transforms[..., :3, 3] + transl[:, None]
    error = np.linalg.norm(verts.numpy() - anny_verts, axis=-1).mean()
    print(f"SMPL LBS with Anny's exact joints vs Anny skinning: mean vertex error {1e3 * error:.2f} mm")
    assert error < 0.001


@pytest.mark.parametrize("hold_toes_and_fingers", [True, False])
def test_lbs_matches_anny_skinning(
    open_model: tuple[Path, dict], conv: ab.AnnyToSMPL, hold_toes_and_fingers: bool
) -> None:
    """50 random adult bodies in 50 random poses: smplx on the neutral file vs Anny's own kinematics and
    skinning, the pose mapped through the bone merge (betas = least-squares projection of the body)."""
    folder, _ = open_model
    rng = np.random.default_rng(3)
    arrays = _arrays(folder, "neutral")
    tpose = conv.tposed(ab.AdultPhenotypeSampler("neutral").sample(conv, NUM_POSES, rng))
    betas = _project_betas(arrays, tpose.vertices)
    pose = ab.sample_fitting_poses(NUM_POSES, rng)
    pose[:, 0] = rng.normal(0.0, 0.5, (NUM_POSES, 3))
    if hold_toes_and_fingers:
        pose[:, TOES_AND_FINGERS] = 0.0
    anny_verts, _ = conv.posed(tpose, ab.axis_angle_to_matrix(pose))
    ours = _smpl(folder, "neutral", NUM_POSES)(
        betas=torch.as_tensor(betas), global_orient=torch.as_tensor(pose[:, 0]),
        body_pose=torch.as_tensor(pose[:, 1:].reshape(NUM_POSES, -1)),
    ).vertices.detach().numpy()
    error = np.linalg.norm(ours - anny_verts, axis=-1)
    label = "toes/fingers at rest" if hold_toes_and_fingers else "all 24 joints posed"
    print(f"SMPL-format LBS vs Anny skinning ({label}): mean vertex error {1e3 * error.mean():.3f} mm, "
          f"95th percentile {1e3 * np.percentile(error, 95):.1f} mm over {NUM_POSES} poses")
    assert error.mean() < MAX_MEAN_LBS_ERROR


@pytest.mark.parametrize("gender, n", [("neutral", 200), ("male", 100), ("female", 100)])
def test_joint_regressor_follows_anny_joints(
    open_model: tuple[Path, dict], conv: ab.AnnyToSMPL, gender: str, n: int
) -> None:
    folder, _ = open_model
    samples = ab.sample_bodies(conv, gender, n, np.random.default_rng(11))
    reg = _arrays(folder, gender)["J_regressor"]
    error = np.linalg.norm(ab.regress(reg, samples.vertices) - samples.joints, axis=-1)
    worst = int(error.mean(0).argmax())
    print(f"{gender} J_regressor vs Anny merged-bone joints over {n} new phenotypes: mean {1e3 * error.mean():.2f}"
          f" mm, worst joint {SMPL_JOINT_NAMES[worst]} {1e3 * error.mean(0)[worst]:.1f} mm")
    assert error.mean() < MAX_MEAN_JOINT_ERROR


# ---------------------------------------------------------------------------------------- shape space


def test_shape_space(open_model: tuple[Path, dict], conv: ab.AnnyToSMPL) -> None:
    folder, report = open_model
    for gender in GENDERS:
        explained = report["explained_variance"][gender]
        print(f"{gender}: 10 betas explain {100 * explained:.3f} % of the sampled shape variance")
        assert explained >= 0.95
    templates = {g: _arrays(folder, g)["v_template"] for g in GENDERS}
    assert np.abs(templates["male"] - templates["female"]).mean() > 0.005
    assert np.abs(templates["neutral"] - templates["male"]).mean() > 0.002
    assert np.abs(templates["neutral"] - templates["female"]).mean() > 0.002

    model = _smpl(folder, "neutral", 2)
    betas = torch.zeros(2, 10, dtype=torch.float64)
    betas[:, 0] = torch.tensor([-2.0, 2.0])
    verts = model(betas=betas).vertices.detach().numpy()
    heights = verts[..., 1].max(1) - verts[..., 1].min(1)
    print(f"betas[0] = -2 / +2: heights {heights[0]:.3f} / {heights[1]:.3f} m")
    assert heights[1] - heights[0] >= MIN_HEIGHT_CHANGE  # +beta 0 = taller

    # Betas of fresh bodies of the sampled population are ~ N(0, 1).
    fresh = ab.sample_bodies(conv, "neutral", 150, np.random.default_rng(21))
    betas_fresh = _project_betas(_arrays(folder, "neutral"), fresh.vertices)
    print("std of projected betas:", np.round(betas_fresh.std(0), 2))
    assert np.all(np.abs(betas_fresh[:, :3].mean(0)) < 0.35)
    assert np.all((betas_fresh[:, :3].std(0) > 0.7) & (betas_fresh[:, :3].std(0) < 1.4))


# ------------------------------------------------------------------------------ regressors and parts


def test_landmark_regressors(open_model: tuple[Path, dict]) -> None:
    folder, report = open_model
    num_verts = report["num_vertices"]
    with np.load(folder / "joint_regressors.npz") as npz:
        regs = {k: npz[k] for k in npz.files}
    assert regs["h36m"].shape == (17, num_verts)
    assert regs["extra"].shape == (9, num_verts) and regs["vertex_joints"].shape == (11, num_verts)
    assert tuple(regs["h36m_names"]) == H36M_JOINT_NAMES and tuple(regs["extra_names"]) == EXTRA_JOINT_NAMES
    assert tuple(regs["vertex_joint_names"]) == VERTEX_JOINT_NAMES
    for key in ("h36m", "extra", "vertex_joints", "smpl"):
        assert (regs[key] >= 0).all()
        np.testing.assert_allclose(regs[key].sum(1), 1.0, atol=1e-9)
    # SPIN's evaluation pairs S[:, J24_TO_J17] with h36m[:, H36M_TO_J17]: the extra joints among them have the
    # H36M rows' definitions (hips, LSP neck = thorax, MPII pelvis, spine, jaw = neck/nose, head).
    extra = {name: k for k, name in enumerate(EXTRA_JOINT_NAMES)}
    for j24, h in zip(J24_TO_J17, H36M_TO_J17, strict=True):
        if SPIN_PART_NAMES[j24] in extra:
            np.testing.assert_allclose(regs["extra"][extra[SPIN_PART_NAMES[j24]]], regs["h36m"][h], atol=1e-12)
    print("landmark regressor fit errors (mm):",
          {k: round(v, 2) for k, v in report["joint_regressor_error_mm"].items()})

    template = _arrays(folder, "neutral")["v_template"]
    h36m, ex, picks = regs["h36m"] @ template, regs["extra"] @ template, regs["vertex_joints"] @ template
    vj = {name: k for k, name in enumerate(VERTEX_JOINT_NAMES)}
    assert h36m[H36M["LHip"], 0] > 0 > h36m[H36M["RHip"], 0]  # SPIN row order: left leg first
    assert h36m[H36M["LAnkle"], 0] > 0 > h36m[H36M["RAnkle"], 0]
    assert h36m[H36M["LWrist"], 0] > 0 > h36m[H36M["RWrist"], 0]
    up = [h36m[H36M[n], 1] for n in ("Pelvis", "Spine", "Thorax", "Neck/Nose", "Head")]
    assert up == sorted(up) and ex[extra["Top of Head (LSP)"], 1] > h36m[H36M["Head"], 1]
    assert picks[vj["leye"], 0] > 0 > picks[vj["reye"], 0]
    assert picks[vj["lear"], 0] > picks[vj["leye"], 0]
    assert picks[vj["nose"], 2] > h36m[H36M["Head"], 2] + 0.05  # the face looks along +z
    # feet: toes ahead of the heel, on the floor, on the body's own side; the big toe inside the small one
    for side, sign in (("L", 1.0), ("R", -1.0)):
        big, small, heel = picks[vj[f"{side}BigToe"]], picks[vj[f"{side}SmallToe"]], picks[vj[f"{side}Heel"]]
        assert big[2] > heel[2] + 0.12 and small[2] > heel[2] + 0.1
        assert sign * big[0] > 0 and sign * small[0] > sign * big[0]
        assert max(big[1], heel[1]) < h36m[H36M[f"{side}Ankle"], 1]
    # Thorax (neck base) ~ 11 cm under Neck/Nose, as in H3.6M.
    assert 0.07 < h36m[H36M["Neck/Nose"], 1] - h36m[H36M["Thorax"], 1] < 0.16


def test_parts_are_skinning_argmax(open_model: tuple[Path, dict]) -> None:
    folder, report = open_model
    with np.load(folder / "parts.npz") as npz:
        part, names = npz["vertex_part"], tuple(npz["part_names"])
    weights = _arrays(folder, "neutral")["weights"]
    assert names == SMPL_JOINT_NAMES and part.shape == (report["num_vertices"],) and part.dtype == np.int64
    np.testing.assert_array_equal(part, vertex_parts_from_weights(weights))
    counts = np.bincount(part, minlength=24)
    assert (counts > 0).all()
    template = _arrays(folder, "neutral")["v_template"]
    for side, sign in (("L", 1.0), ("R", -1.0)):  # left parts on the body's left
        for joint in ("Hip", "Knee", "Shoulder", "Wrist", "Hand"):
            assert sign * template[part == J[f"{side}_{joint}"], 0].mean() > 0


def test_vertex_parts_from_weights() -> None:
    weights = np.array([[0.1, 0.9, 0.0], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    np.testing.assert_array_equal(vertex_parts_from_weights(weights), [1, 0, 2])  # tie -> lowest index
    with pytest.raises(ValueError, match="non-empty"):
        vertex_parts_from_weights(np.zeros(3))


# ------------------------------------------------------------------------------ bone merge and joints


def test_bone_merge(conv: ab.AnnyToSMPL) -> None:
    merged = dict(zip(conv.bone_labels, (SMPL_JOINT_NAMES[j] for j in conv.bone_joint), strict=True))
    expected = {
        "Root": "Pelvis", "pelvis": "Pelvis", "thigh_l": "L_Hip", "calf_r": "R_Knee", "foot_l": "L_Ankle",
        "ball_r": "R_Foot", "spine_01": "Spine1", "spine_03": "Spine3", "neck_01": "Neck", "head": "Head",
        "clavicle_l": "L_Collar", "upperarm_r": "R_Shoulder", "lowerarm_l": "L_Elbow", "hand_r": "R_Wrist",
        "thumb_01_l": "L_Hand", "index_03_r": "R_Hand", "pinky_02_l": "L_Hand",
    }
    assert {k: merged[k] for k in expected} == expected
    assert set(merged.values()) == set(SMPL_JOINT_NAMES)  # every SMPL joint receives bones
    # Bones a rig might add merge into their parent's joint; an unknown root cannot.
    assert ab.smpl_joint_of_bone("upperarm_twist_01_l", "upperarm_l", J["L_Shoulder"]) == J["L_Shoulder"]
    with pytest.raises(ValueError, match="no SMPL joint"):
        ab.smpl_joint_of_bone("mystery_root")
    np.testing.assert_allclose(conv.weights.sum(1), 1.0)


def test_joint_constants() -> None:
    for perm in (SMPL_JOINTS_FLIP_PERM, J24_FLIP_PERM, H36M_FLIP_PERM, J49_FLIP_PERM, SMPL_POSE_FLIP_PERM):
        assert sorted(perm) == list(range(len(perm)))
        assert [perm[p] for p in perm] == list(range(len(perm)))  # involution
    assert len(SMPL_POSE_FLIP_PERM) == len(SMPL_POSE_FLIP_SIGN) == 72
    for k, j in enumerate(SMPL_JOINTS_FLIP_PERM):  # flips swap L_ and R_ names only
        assert SMPL_JOINT_NAMES[j] == SMPL_JOINT_NAMES[k].replace("L_", "#").replace("R_", "L_").replace("#", "R_")
    # The 14 evaluation joints picked from H36M and from SPIN's 24 are the same joints.
    side = {"L": "Left", "R": "Right"}
    for h, s in zip(H36M_TO_J14[:12], J24_TO_J14[:12], strict=True):
        name = H36M_JOINT_NAMES[h]
        assert SPIN_PART_NAMES[s] == f"{side[name[0]]} {name[1:]}"
    for k, j in enumerate(H36M_FLIP_PERM):
        assert H36M_JOINT_NAMES[j] == H36M_JOINT_NAMES[k].translate(str.maketrans("LR", "RL"))


def test_joints_only_path_equals_the_full_body(open_model: tuple[Path, dict]) -> None:
    """``vertices=False`` (the training steps without a rendered term) poses only the vertices the regressors
    read, yet gives the full path's joints: SMPL's 24, H36M's 17 and SPIN's 49, with shape and pose correctives,
    global orientation and translation, up to float32 rounding (µm)."""
    folder, report = open_model
    body = BodyModel(folder, "neutral", joint_regressors=folder / "joint_regressors.npz")
    assert 0 < body.num_joint_vertices < report["num_vertices"]
    gen = torch.Generator().manual_seed(0)
    betas, transl = torch.randn(5, 10, generator=gen) * 1.5, torch.randn(5, 3, generator=gen)
    pose, orient = torch.randn(5, 69, generator=gen) * 0.5, torch.randn(5, 3, generator=gen)
    full = body(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    joints = body(betas=betas, body_pose=pose, global_orient=orient, transl=transl, vertices=False)
    assert joints.vertices is None and full.vertices is not None
    for name in ("joints", "joints_h36m", "joints_j49"):
        torch.testing.assert_close(getattr(joints, name), getattr(full, name), rtol=0, atol=1e-5)
    assert (full.joints_j49 - body(betas=betas, body_pose=pose, global_orient=orient, vertices=False).joints_j49
            - transl[:, None]).abs().max() < 1e-5
    # rotation matrices, and the defaults (zero pose and shape, batch of one)
    rot = batch_rodrigues(torch.cat([orient, pose], 1).reshape(-1, 3)).reshape(5, 24, 3, 3)
    rot_joints = body(betas=betas, body_pose=rot[:, 1:], global_orient=rot[:, :1], pose2rot=False, vertices=False)
    torch.testing.assert_close(rot_joints.joints_j49 + transl[:, None], full.joints_j49, rtol=0, atol=1e-5)
    torch.testing.assert_close(body(vertices=False).joints_j49, body().joints_j49, rtol=0, atol=1e-6)
    # the gradients reach the network's outputs the same way
    grads = []
    for full_mesh in (True, False):
        b, p = betas.clone().requires_grad_(True), pose.clone().requires_grad_(True)
        body(betas=b, body_pose=p, global_orient=orient, vertices=full_mesh).joints_j49.square().sum().backward()
        grads.append((b.grad, p.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-5)
    # without regressors the path still gives the SMPL joints
    bare = BodyModel(folder, "neutral")
    assert bare.num_joint_vertices == 0
    out = bare(betas=betas, body_pose=pose, global_orient=orient, transl=transl, vertices=False)
    assert out.joints_j49 is None and out.joints_h36m is None
    torch.testing.assert_close(out.joints, full.joints, rtol=0, atol=1e-5)
