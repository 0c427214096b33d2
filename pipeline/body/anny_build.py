"""Build the open SMPL-format body model from Anny (Apache-2.0 code, CC0 MakeHuman data).

Conversion (DESIGN §2): Anny's 53 bones are merged into SMPL's 24 joints by name (skinning weights of merged
bones summed), its rest A-pose is re-posed into SMPL's T-pose with Anny's own skinning, coordinates go from
Anny's frame (z up, facing −y, metres) to SMPL's (y up, facing +z), and the shape space is the first 10
principal directions of T-posed adult meshes, scaled to unit-variance betas. Joints are the merged bones'
heads; the joint regressors (SMPL 24, H36M 17, SPIN part 24) are sparse non-negative vertex weights fitted
with NNLS over sampled phenotypes. Anny has no pose correctives, so ``posedirs`` is zero.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import torch
from tqdm import tqdm

from pipeline.body.joints import H36M_JOINT_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS, SPIN_PART_NAMES
from pipeline.body.parts import vertex_parts_from_weights
from pipeline.body.smpl_io import save_smpl_pickle

log = logging.getLogger(__name__)

#: x_smpl = ANNY_TO_SMPL @ x_anny: Anny is z-up facing −y; SMPL is y-up facing +z (x = body's left in both).
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
NUM_POSE_BASIS = 207  # 23 joints × 9, SMPL's posedirs width
NUM_JOINTS = 24
FINGERS = ("index", "middle", "pinky", "ring", "thumb")

#: SMPL joint -> the Anny bone whose head is the joint and which receives the joint's rotation.
PRIMARY_BONE: dict[int, str] = {
    0: "pelvis", 1: "thigh_l", 2: "thigh_r", 3: "spine_01", 4: "calf_l", 5: "calf_r", 6: "spine_02",
    7: "foot_l", 8: "foot_r", 9: "spine_03", 10: "ball_l", 11: "ball_r", 12: "neck_01", 13: "clavicle_l",
    14: "clavicle_r", 15: "head", 16: "upperarm_l", 17: "upperarm_r", 18: "lowerarm_l", 19: "lowerarm_r",
    20: "hand_l", 21: "hand_r",
}
#: Finger bones whose heads (knuckles) define the SMPL hand joints 22/23.
KNUCKLES = {22: [f"{f}_01_l" for f in FINGERS if f != "thumb"], 23: [f"{f}_01_r" for f in FINGERS if f != "thumb"]}


def bone_to_joint(bone_labels: list[str]) -> np.ndarray:
    """SMPL joint index each Anny bone merges into, (53,) int64."""
    mapping = {name: j for j, name in PRIMARY_BONE.items()}
    out = []
    for name in bone_labels:
        if name in mapping:
            out.append(mapping[name])
        elif name == "Root":
            out.append(0)
        elif name.split("_")[0] in FINGERS:
            out.append(22 if name.endswith("_l") else 23)
        else:
            raise ValueError(f"Anny bone {name!r} has no SMPL joint in the bone merge")
    return np.array(out, dtype=np.int64)


@dataclass
class PhenotypeSampler:
    """Adult phenotypes: gender fixed or uniform, age between young and middle age, body measures bell-shaped."""

    gender: float | None  # 0 = male, 1 = female, None = uniform mix (neutral)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        gender = np.full(n, self.gender) if self.gender is not None else rng.uniform(0.0, 1.0, n)
        race = rng.dirichlet(np.ones(3), n)
        values = {
            "gender": gender,
            "age": rng.uniform(0.6, 0.85, n),  # Anny's "young" anchor is at 2/3, "old" at 1
            # Bell-shaped around Anny's average so betas ~ N(0, 1) stay realistic adults.
            "muscle": rng.beta(3.0, 3.0, n),
            "weight": rng.beta(3.0, 3.0, n),
            "height": rng.beta(4.0, 4.0, n),
            "proportions": rng.beta(2.0, 5.0, n),
            "cupsize": rng.uniform(0.2, 0.8, n),
            "firmness": rng.uniform(0.2, 0.8, n),
            "african": race[:, 0],
            "asian": race[:, 1],
            "caucasian": race[:, 2],
        }
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}


def _align(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (B, 3, 3) taking unit directions ``a`` (B, 3) onto ``b`` (B, 3)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    vx = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(vx)
    return eye + vx + vx @ vx / (1.0 + c)[:, None, None]


class AnnyConverter:
    """Anny posed into SMPL's T-pose and frame, batched over phenotypes."""

    def __init__(self) -> None:
        import anny  # heavy import, only when building

        self.model = anny.Anny(rig="game_engine")
        self.labels: list[str] = list(self.model.bone_labels)
        self.parents = np.asarray(self.model.bone_parents, dtype=np.int64)
        self.bone_joint = bone_to_joint(self.labels)
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        idx = self.model.vertex_bone_indices.cpu().numpy()
        wts = self.model.vertex_bone_weights.cpu().numpy()
        num_verts = idx.shape[0]
        weights = np.zeros((num_verts, NUM_JOINTS))
        np.add.at(weights, (np.repeat(np.arange(num_verts), idx.shape[1]), self.bone_joint[idx].ravel()), wts.ravel())
        self.weights = weights / weights.sum(1, keepdims=True)
        from anny.keypoints import KeypointsRegressor

        coco = KeypointsRegressor.coco(self.model)
        self.coco_labels: list[str] = list(coco.labels)
        self.coco_weights = coco.regression_weights.cpu().numpy()
        self._c = torch.as_tensor(ANNY_TO_SMPL, dtype=torch.float64)

    def bone(self, name: str) -> int:
        return self.labels.index(name)

    def rest(self, phenotypes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        coeffs = self.model.get_phenotype_blendshape_coefficients(**phenotypes)
        return self.model.get_rest_model(coeffs)

    def tpose_deltas(self, rest: dict[str, torch.Tensor]) -> torch.Tensor:
        """Local-ref deltas (B, 53, 4, 4) that bring the rest A-pose into SMPL's T-pose (arms along ±x)."""
        heads = rest["rest_bone_heads"]
        batch = heads.shape[0]
        deltas = torch.eye(4, dtype=heads.dtype).repeat(batch, len(self.labels), 1, 1)
        deltas[:, 0, :3, 3] = heads[:, 0]  # the root's delta is its world pose: keep it at rest
        for side, sign in (("l", 1.0), ("r", -1.0)):
            target = torch.tensor([sign, 0.0, 0.0], dtype=heads.dtype).expand(batch, 3)
            shoulder, elbow, wrist = (self.bone(f"{b}_{side}") for b in ("upperarm", "lowerarm", "hand"))
            upper = _align(heads[:, elbow] - heads[:, shoulder], target)
            deltas[:, shoulder, :3, :3] = upper
            # The forearm's delta acts before its parent's rotation: aim it at upper^T · target.
            fore_target = (upper.transpose(1, 2) @ target[..., None])[..., 0]
            deltas[:, elbow, :3, :3] = _align(heads[:, wrist] - heads[:, elbow], fore_target)
        return deltas

    def pose(self, rest: dict[str, torch.Tensor], deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anny's own forward kinematics + skinning: vertices (B, V, 3) and bone transforms (B, 53, 4, 4)."""
        transforms, _ = self.model.get_bone_transforms(deltas, rest["rest_bone_poses"], pose_parameterization="local-ref")
        verts = self.model.get_skinned_vertices(rest["rest_vertices"].expand(deltas.shape[0], -1, -1), transforms)
        return verts, transforms

    def to_smpl(self, points: torch.Tensor) -> torch.Tensor:
        return points @ self._c.T

    def tposed(self, phenotypes: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """T-posed vertices (B, V, 3), SMPL joints (B, 24, 3) and landmarks, all in the SMPL frame."""
        with torch.no_grad():
            rest = self.rest(phenotypes)
            deltas = self.tpose_deltas(rest)
            verts, transforms = self.pose(rest, deltas)
            heads = rest["rest_bone_heads"]
            posed_heads = (transforms[..., :3, :3] @ heads[..., None])[..., 0] + transforms[..., :3, 3]
        joints = torch.zeros(verts.shape[0], NUM_JOINTS, 3, dtype=verts.dtype)
        for j, name in PRIMARY_BONE.items():
            joints[:, j] = posed_heads[:, self.bone(name)]
        for j, names in KNUCKLES.items():
            joints[:, j] = posed_heads[:, [self.bone(n) for n in names]].mean(1)
        return {
            "vertices": self.to_smpl(verts).numpy(),
            "joints": self.to_smpl(joints).numpy(),
            "deltas": deltas.numpy(),
            "transforms": transforms.numpy(),
        }

    def smpl_pose_to_deltas(self, tpose: dict[str, np.ndarray], rotmats: np.ndarray, index: int = 0) -> torch.Tensor:
        """Map SMPL joint rotations (24, 3, 3), SMPL frame, onto Anny local-ref deltas (1, 53, 4, 4).

        A SMPL rotation R_j acts about the T-posed joint in world axes. Anny's local-ref delta of the joint's
        primary bone acts about the bone's rest head *before* its parents' T-pose rotation Q_p, so the delta is
        Q_pᵀ R_j Q_p D⁰ with D⁰ the bone's T-pose delta. Merged bones (fingers, root) keep their T-pose deltas.
        """
        c = ANNY_TO_SMPL
        deltas = torch.as_tensor(tpose["deltas"][index : index + 1]).clone()
        transforms = tpose["transforms"][index]
        for j, name in PRIMARY_BONE.items():
            b = self.bone(name)
            q_parent = transforms[self.parents[b], :3, :3]
            rot_anny = c.T @ rotmats[j] @ c
            new = q_parent.T @ rot_anny @ q_parent @ deltas[0, b, :3, :3].numpy()
            deltas[0, b, :3, :3] = torch.as_tensor(new)
        return deltas

    def coco_landmarks(self, vertices_smpl: np.ndarray) -> dict[str, np.ndarray]:
        """Anny's COCO keypoint regressor applied to (B, V, 3) vertices -> name -> (B, 3)."""
        pts = np.einsum("kv,bvc->bkc", self.coco_weights, vertices_smpl)
        return {name: pts[:, k] for k, name in enumerate(self.coco_labels)}


def landmark_targets(conv: AnnyConverter, tpose: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Anatomical definitions of the H36M-17 and SPIN part-24 joints on T-posed bodies -> (B, 17|24, 3)."""
    v, j = tpose["vertices"], tpose["joints"]
    coco = conv.coco_landmarks(v)
    head_sel = vertex_parts_from_weights(conv.weights) == 15
    head_v = v[:, head_sel]
    top_y = head_v[..., 1].max(1, keepdims=True)
    top = np.stack([head_v[b][head_v[b, :, 1] > top_y[b] - 0.015].mean(0) for b in range(len(v))])
    head_centre = head_v.mean(1)
    chin = head_v[np.arange(len(v)), np.argmin(head_v[..., 1] - 0.5 * head_v[..., 2], axis=1)]
    spine = 0.5 * (j[:, 3] + j[:, 6])
    thorax = 0.5 * (j[:, 9] + j[:, 12])
    h36m = np.stack([j[:, 0], j[:, 2], j[:, 5], j[:, 8], j[:, 1], j[:, 4], j[:, 7], spine, j[:, 12], coco["nose"],
                     top, j[:, 16], j[:, 18], j[:, 20], j[:, 17], j[:, 19], j[:, 21]], axis=1)
    spin = np.stack([j[:, 8], j[:, 5], j[:, 2], j[:, 1], j[:, 4], j[:, 7], j[:, 21], j[:, 19], j[:, 17], j[:, 16],
                     j[:, 18], j[:, 20], j[:, 12], top, j[:, 0], thorax, spine, chin, head_centre, coco["nose"],
                     coco["left_eye"], coco["right_eye"], coco["left_ear"], coco["right_ear"]], axis=1)
    assert h36m.shape[1] == len(H36M_JOINT_NAMES) and spin.shape[1] == len(SPIN_PART_NAMES)
    return {"smpl": j, "h36m": h36m, "spin_part": spin}


def fit_regressor(
    vertices: np.ndarray,
    targets: np.ndarray,
    *,
    signed: bool,
    n_candidates: int = 150,
    ridge: float = 1e-5,
    sum_weight: float = 100.0,
) -> np.ndarray:
    """Sparse vertex regressor with rows summing to 1 and ``targets ≈ R @ vertices``.

    Args:
        vertices: (S, V, 3) sample meshes; targets: (S, J, 3) points to regress.
        signed: False -> non-negative weights (NNLS; robust on posed meshes, used for the H36M / SPIN
            landmark regressors); True -> signed least squares with a ridge towards uniform weights
            (exact on the linear shape space; used for SMPL's J_regressor, which only sees rest shapes).
        n_candidates: vertices considered per joint (nearest to the mean target).

    Returns:
        R: (J, V) float64 with at most ``n_candidates`` non-zeros per row, rows summing to 1.
    """
    num_samples, num_verts, _ = vertices.shape
    mean_v = vertices.mean(0)
    reg = np.zeros((targets.shape[1], num_verts))
    for k in range(targets.shape[1]):
        cand = np.argsort(np.linalg.norm(mean_v - targets[:, k].mean(0), axis=1))[:n_candidates]
        # Centre on the mean target so the sum-to-one constraint cannot trade off against translation.
        centre = targets[:, k].mean(0)
        a = (vertices[:, cand, :] - centre).transpose(0, 2, 1).reshape(num_samples * 3, n_candidates)
        b = (targets[:, k, :] - centre).reshape(num_samples * 3)
        if signed:
            kkt = np.zeros((n_candidates + 1, n_candidates + 1))
            kkt[:n_candidates, :n_candidates] = a.T @ a + ridge * np.eye(n_candidates)
            kkt[:n_candidates, n_candidates] = kkt[n_candidates, :n_candidates] = 1.0
            rhs = np.concatenate([a.T @ b + ridge / n_candidates, [1.0]])
            w = np.linalg.solve(kkt, rhs)[:n_candidates]
        else:
            a = np.vstack([a, np.full((1, n_candidates), sum_weight)])
            w, _ = scipy.optimize.nnls(a, np.concatenate([b, [sum_weight]]), maxiter=50 * n_candidates)
            w = w / w.sum()
        reg[k, cand] = w
    return reg


def shape_space(vertices: np.ndarray, num_betas: int) -> tuple[np.ndarray, np.ndarray, float]:
    """PCA of (S, V, 3) meshes -> mean (V, 3), shapedirs (V, 3, num_betas) for unit-variance betas, explained."""
    flat = vertices.reshape(len(vertices), -1)
    mean = flat.mean(0)
    _, sing, vt = np.linalg.svd(flat - mean, full_matrices=False)
    var = sing**2 / (len(flat) - 1)
    dirs = vt[:num_betas] * np.sqrt(var[:num_betas])[:, None]
    explained = float(var[:num_betas].sum() / var.sum())
    return mean.reshape(-1, 3), dirs.T.reshape(-1, 3, num_betas), explained


def kintree_table() -> np.ndarray:
    """SMPL's (2, 24) kinematic table (parent of the root stored as 2³²−1, as in the official files)."""
    parents = np.array([4294967295 if p < 0 else p for p in SMPL_PARENTS], dtype=np.int64)
    return np.stack([parents, np.arange(NUM_JOINTS)])


GENDER_PHENOTYPE: dict[str, float | None] = {"male": 0.0, "female": 1.0, "neutral": None}


def sample_tposed(conv: AnnyConverter, gender: str, n: int, rng: np.random.Generator, chunk: int = 50,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """T-posed samples of one gender, concatenated over chunks."""
    sampler = PhenotypeSampler(GENDER_PHENOTYPE[gender])
    parts: list[dict[str, np.ndarray]] = []
    for start in tqdm(range(0, n, chunk), desc=f"anny {gender}", disable=not progress, unit="chunk"):
        parts.append(conv.tposed(sampler.sample(min(chunk, n - start), rng)))
    return {k: np.concatenate([p[k] for p in parts]) for k in ("vertices", "joints")}


def build_open_body_model(
    out_dir: str | Path,
    *,
    n_shape_samples: int,
    seed: int,
    num_betas: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``SMPL_{NEUTRAL,MALE,FEMALE}.{npz,pkl}``, ``joint_regressors.npz`` and ``parts.npz``.

    Returns:
        report: explained shape variance per gender, regressor fit errors (m), timings (s), counts.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    conv = AnnyConverter()
    report: dict[str, Any] = {"num_vertices": int(conv.weights.shape[0]), "num_faces": int(len(conv.faces)),
                              "n_shape_samples": n_shape_samples, "explained_variance": {}, "regressor_fit_error_m": {}}
    parts = vertex_parts_from_weights(conv.weights)
    neutral_samples: dict[str, np.ndarray] | None = None
    for gender in ("neutral", "male", "female"):
        samples = sample_tposed(conv, gender, n_shape_samples, rng, progress=progress)
        mean, shapedirs, explained = shape_space(samples["vertices"], num_betas)
        j_reg = fit_regressor(samples["vertices"], samples["joints"], signed=True)
        err = np.linalg.norm(np.einsum("jv,svc->sjc", j_reg, samples["vertices"]) - samples["joints"], axis=-1)
        report["explained_variance"][gender] = explained
        report["regressor_fit_error_m"][f"smpl_{gender}"] = float(err.mean())
        arrays = {
            "v_template": mean,
            "shapedirs": shapedirs,
            "posedirs": np.zeros((mean.shape[0], 3, NUM_POSE_BASIS)),
            "J_regressor": j_reg,
            "weights": conv.weights,
            "kintree_table": kintree_table(),
            "f": conv.faces,
        }
        stem = out_dir / f"SMPL_{gender.upper()}"
        np.savez(str(stem) + ".npz", **arrays)
        save_smpl_pickle(arrays, str(stem) + ".pkl")
        if gender == "neutral":
            neutral_samples = samples
        log.info("%s: explained variance of %d betas %.4f, joint fit %.2f mm", gender, num_betas, explained, 1e3 * err.mean())
    assert neutral_samples is not None
    targets = landmark_targets(conv, {"vertices": neutral_samples["vertices"], "joints": neutral_samples["joints"]})
    regs = {}
    for key in ("h36m", "spin_part"):
        regs[key] = fit_regressor(neutral_samples["vertices"], targets[key], signed=False, n_candidates=400)
        err = np.linalg.norm(np.einsum("jv,svc->sjc", regs[key], neutral_samples["vertices"]) - targets[key], axis=-1)
        report["regressor_fit_error_m"][key] = float(err.mean())
    np.savez(out_dir / "joint_regressors.npz", h36m=regs["h36m"], spin_part=regs["spin_part"],
             h36m_names=np.array(H36M_JOINT_NAMES), spin_part_names=np.array(SPIN_PART_NAMES))
    np.savez(out_dir / "parts.npz", vertex_part=parts, part_names=np.array(SMPL_JOINT_NAMES))
    report["seconds"] = time.perf_counter() - t0
    return report
