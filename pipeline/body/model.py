"""``BodyModel``: the one body-model facade every stage uses, whatever the world.

It wraps ``smplx.SMPLLayer`` (built from plain arrays, so official chumpy pickles work too) and adds the
H36M-17 vertex regressor, SPIN's 49 joints (composed as SPIN does, :mod:`pipeline.body.spin_joints`) and the
24-part vertex segmentation. Vertex and face
counts come from the model file; nothing here assumes 6,890 / 13,776.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints
from smplx.utils import Struct

from pipeline.body.parts import vertex_parts_from_weights
from pipeline.body.smpl_io import find_model_file, load_smpl_arrays
from pipeline.body.spin_joints import NUM_OPENPOSE, REGRESSOR_ROWS, compose_j49

NUM_SMPL_JOINTS = 24
NUM_BODY_JOINTS = NUM_SMPL_JOINTS - 1
#: smplx appends joints picked at fixed SMPL vertex ids; they mean nothing on other topologies, so the
#: facade asks for the minimum (5 face points at vertex 0) and only returns the 24 skeleton joints.
_NO_EXTRA_JOINTS = {"vertex_ids": dict.fromkeys(("nose", "reye", "leye", "rear", "lear"), 0), "use_hands": False, "use_feet_keypoints": False}


@dataclass
class BodyOutput:
    """Posed body. All tensors float, metres, in the model frame (y up, facing +z) plus ``transl``.

    vertices: (B, V, 3), or None when the caller asked for joints only; joints: (B, 24, 3) SMPL joints;
    joints_h36m: (B, 17, 3) or None; joints_j49: (B, 49, 3) SPIN's 49 joints (25 OpenPose, then the 24
    ground-truth ones) or None.
    """

    vertices: torch.Tensor | None
    joints: torch.Tensor
    joints_h36m: torch.Tensor | None
    joints_j49: torch.Tensor | None

    @property
    def joints_spin(self) -> torch.Tensor | None:
        """(B, 24, 3) SPIN's ground-truth ("part") joints: the last 24 of the 49."""
        return None if self.joints_j49 is None else self.joints_j49[:, NUM_OPENPOSE:]

    @property
    def joints_openpose(self) -> torch.Tensor | None:
        """(B, 25, 3) SPIN's OpenPose BODY_25 joints: the first 25 of the 49."""
        return None if self.joints_j49 is None else self.joints_j49[:, :NUM_OPENPOSE]


def _as_rotmats(pose: torch.Tensor, num_joints: int, pose2rot: bool, name: str) -> torch.Tensor:
    """Axis-angle (``pose2rot``: (B, 3·J) or (B, J, 3)) or rotation matrices ((B, J, 3, 3)) -> (B, J, 3, 3).

    The representation is stated by the caller, never guessed from the shape: a batch of 3 axis-angle global
    orientations, (3, 3), is not a rotation matrix.
    """
    if pose2rot:
        if not ((pose.ndim == 2 and pose.shape[1] == 3 * num_joints)
                or (pose.ndim == 3 and pose.shape[1:] == (num_joints, 3))):
            raise ValueError(f"{name}: axis-angle must be (B, {3 * num_joints}) or (B, {num_joints}, 3), got "
                             f"{tuple(pose.shape)} (rotation matrices need pose2rot=False)")
        return batch_rodrigues(pose.reshape(-1, 3)).reshape(-1, num_joints, 3, 3)
    if pose.ndim != 4 or pose.shape[1:] != (num_joints, 3, 3):
        raise ValueError(f"{name}: rotation matrices must be (B, {num_joints}, 3, 3), got {tuple(pose.shape)}")
    return pose


def _skin(points: torch.Tensor, weights: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning: (B, N, 3) rest-frame points, (N, 24) weights, (B, 24, 4, 4) relative joint
    transforms (smplx's ``batch_rigid_transform``) -> (B, N, 3) posed points."""
    transforms = torch.einsum("nj,bjkl->bnkl", weights, rel)
    return torch.einsum("bnkl,bnl->bnk", transforms[..., :3, :3], points) + transforms[..., :3, 3]


class BodyModel(torch.nn.Module):
    """SMPL-format body model with regressors and parts.

    Args:
        model_dir: folder with ``SMPL_{NEUTRAL,MALE,FEMALE}.{npz,pkl}``.
        gender: ``neutral``, ``male`` or ``female``.
        joint_regressors: optional npz with ``h36m`` (17, V), ``extra`` (9, V) and ``vertex_joints`` (11, V)
            (:mod:`pipeline.body.spin_joints`).
        num_betas: shape components used.
    """

    def __init__(
        self,
        model_dir: str | Path,
        gender: str = "neutral",
        joint_regressors: str | Path | None = None,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        path = find_model_file(model_dir, gender)
        arrays = load_smpl_arrays(path)
        self.model_path = path
        self.gender = gender
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-beta models
            self.layer = smplx.SMPLLayer(
                model_path=str(path), data_struct=Struct(**arrays), num_betas=num_betas, dtype=dtype, **_NO_EXTRA_JOINTS
            )
        self.register_buffer("faces", torch.as_tensor(arrays["f"], dtype=torch.long), persistent=False)
        parts = vertex_parts_from_weights(arrays["weights"])
        self.register_buffer("vertex_part", torch.as_tensor(parts, dtype=torch.long), persistent=False)
        self.num_vertices = int(arrays["v_template"].shape[0])
        self.num_faces = int(arrays["f"].shape[0])
        self.register_buffer("h36m_regressor", None, persistent=False)
        self.register_buffer("extra_regressor", None, persistent=False)
        self.register_buffer("vertex_joint_regressor", None, persistent=False)
        if joint_regressors is not None:
            with np.load(joint_regressors) as reg:
                for key, attr in (("h36m", "h36m_regressor"), ("extra", "extra_regressor"),
                                  ("vertex_joints", "vertex_joint_regressor")):
                    if key not in reg.files:
                        raise ValueError(
                            f"joint regressor file {joint_regressors} lacks key {key!r} (has {sorted(reg.files)}); "
                            "rebuild it (rule build_body_model, or prepare_joint_regressors from SPIN's files)")
                    mat = np.asarray(reg[key], dtype=np.float32)
                    if mat.shape != (REGRESSOR_ROWS[key], self.num_vertices):
                        raise ValueError(
                            f"joint regressor {key!r} in {joint_regressors} has shape {mat.shape}, but the body model "
                            f"{path} needs ({REGRESSOR_ROWS[key]}, {self.num_vertices}): rebuild the regressors for "
                            "this model"
                        )
                    setattr(self, attr, torch.as_tensor(mat))
        self._build_joint_subset()

    def _build_joint_subset(self) -> None:
        """Buffers of the joints-only path: the rest joints as a linear function of the betas, and the model
        restricted to the vertices the joint regressors read (4,732 of the demo body model's 13,718)."""
        layer = self.layer
        regressors = [r for r in (self.h36m_regressor, self.extra_regressor, self.vertex_joint_regressor)
                      if r is not None]
        used = torch.zeros(self.num_vertices, dtype=torch.bool)
        for reg in regressors:
            used |= (reg != 0).any(0)
        index = used.nonzero().squeeze(1)
        posedirs = layer.posedirs.reshape(layer.posedirs.shape[0], self.num_vertices, 3)
        buffers = {
            "rest_joints_template": layer.J_regressor @ layer.v_template,  # (24, 3)
            "rest_joints_shapedirs": torch.einsum("jv,vcl->jcl", layer.J_regressor, layer.shapedirs),  # (24, 3, L)
            "subset_template": layer.v_template[index],  # (K, 3)
            "subset_shapedirs": layer.shapedirs[index],  # (K, 3, L)
            "subset_posedirs": posedirs[:, index].reshape(posedirs.shape[0], -1),  # (207, K·3)
            "subset_weights": layer.lbs_weights[index],  # (K, 24)
        }
        for attr in ("h36m_regressor", "extra_regressor", "vertex_joint_regressor"):
            reg = getattr(self, attr)
            buffers[f"subset_{attr}"] = None if reg is None else reg[:, index]
        for name, value in buffers.items():
            self.register_buffer(name, None if value is None else value.contiguous(), persistent=False)
        self.num_joint_vertices = int(index.numel())

    def forward(
        self,
        betas: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        *,
        pose2rot: bool = True,
        vertices: bool = True,
    ) -> BodyOutput:
        """Pose the body.

        Args:
            betas: (B, num_betas).
            body_pose: (B, 69) or (B, 23, 3) axis-angle, or with ``pose2rot=False`` (B, 23, 3, 3) rotation matrices.
            global_orient: (B, 3) or (B, 1, 3) axis-angle, or with ``pose2rot=False`` (B, 1, 3, 3).
            transl: (B, 3) metres.
            pose2rot: the poses are axis-angle (True) or rotation matrices (False), as in smplx.
            vertices: False returns the joints only (``vertices`` None): the model is posed on the vertices the
                joint regressors read, which gives the full path's joints up to float rounding at a fraction of
                its cost (the training steps without a rendered term).
        """
        if not vertices:
            return self._pose_joints(betas, body_pose, global_orient, transl, pose2rot)
        kwargs: dict[str, torch.Tensor] = {}
        if body_pose is not None:
            kwargs["body_pose"] = _as_rotmats(body_pose, NUM_BODY_JOINTS, pose2rot, "body_pose")
        if global_orient is not None:
            kwargs["global_orient"] = _as_rotmats(global_orient, 1, pose2rot, "global_orient")
        out = self.layer(betas=betas, transl=transl, pose2rot=False, **kwargs)
        vertices = out.vertices
        joints = out.joints[:, :NUM_SMPL_JOINTS]
        h36m = torch.einsum("jv,bvc->bjc", self.h36m_regressor, vertices) if self.h36m_regressor is not None else None
        j49 = None
        if self.extra_regressor is not None and self.vertex_joint_regressor is not None:
            j49 = compose_j49(joints, vertices, self.extra_regressor, self.vertex_joint_regressor)
        return BodyOutput(vertices=vertices, joints=joints, joints_h36m=h36m, joints_j49=j49)

    def _pose_joints(self, betas: torch.Tensor | None, body_pose: torch.Tensor | None,
                     global_orient: torch.Tensor | None, transl: torch.Tensor | None, pose2rot: bool) -> BodyOutput:
        """:meth:`forward`'s joints without the full mesh: linear blend skinning (shape and pose correctives
        included) of the regressors' vertices only, with the rest joints from the betas directly."""
        layer = self.layer
        sizes = [len(t) for t in (betas, body_pose, global_orient, transl) if t is not None]
        batch = max(sizes, default=1)
        dtype, device = self.subset_template.dtype, self.subset_template.device
        eye = torch.eye(3, dtype=dtype, device=device)
        rot = torch.cat([
            eye.expand(batch, 1, 3, 3) if global_orient is None
            else _as_rotmats(global_orient, 1, pose2rot, "global_orient"),
            eye.expand(batch, NUM_BODY_JOINTS, 3, 3) if body_pose is None
            else _as_rotmats(body_pose, NUM_BODY_JOINTS, pose2rot, "body_pose"),
        ], dim=1)
        if betas is None:
            betas = torch.zeros(batch, self.subset_shapedirs.shape[-1], dtype=dtype, device=device)
        rest_joints = self.rest_joints_template + torch.einsum("bl,jcl->bjc", betas, self.rest_joints_shapedirs)
        joints, rel = batch_rigid_transform(rot, rest_joints, layer.parents, dtype=dtype)
        shaped = self.subset_template + torch.einsum("bl,kcl->bkc", betas, self.subset_shapedirs)
        pose_feature = (rot[:, 1:] - eye).reshape(batch, -1)
        posed = shaped + (pose_feature @ self.subset_posedirs).reshape(batch, -1, 3)
        points = _skin(posed, self.subset_weights, rel)
        if transl is not None:
            joints = joints + transl[:, None, :]
            points = points + transl[:, None, :]
        h36m = None
        if self.subset_h36m_regressor is not None:
            h36m = torch.einsum("jk,bkc->bjc", self.subset_h36m_regressor, points)
        j49 = None
        if self.subset_extra_regressor is not None and self.subset_vertex_joint_regressor is not None:
            j49 = compose_j49(joints, points, self.subset_extra_regressor, self.subset_vertex_joint_regressor)
        return BodyOutput(vertices=None, joints=joints, joints_h36m=h36m, joints_j49=j49)

    @property
    def skinning_weights(self) -> torch.Tensor:
        """(V, 24) linear-blend-skinning weights."""
        return self.layer.lbs_weights

    def rest_body(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shaped body in zero pose (the SMPL T-pose): vertices (B, V, 3) and joints (B, 24, 3), metres."""
        v_shaped = self.layer.v_template + blend_shapes(betas, self.layer.shapedirs)
        return v_shaped, vertices2joints(self.layer.J_regressor, v_shaped)

    def pose_points(
        self,
        points: torch.Tensor,
        weights: torch.Tensor,
        betas: torch.Tensor,
        body_pose: torch.Tensor,
        global_orient: torch.Tensor,
        transl: torch.Tensor | None = None,
        *,
        pose2rot: bool = True,
    ) -> torch.Tensor:
        """Skin arbitrary rest-frame points (e.g. garments on the body) with this body's joint transforms.

        Args:
            points: (B, N, 3) points in the shaped rest frame of ``betas``.
            weights: (N, 24) skinning weights of the points.
            betas, body_pose, global_orient, transl, pose2rot: as in :meth:`forward`.

        Returns:
            (B, N, 3) posed points (no pose correctives), in the same frame as :meth:`forward`'s vertices.
        """
        _, joints = self.rest_body(betas)
        rot = torch.cat([_as_rotmats(global_orient, 1, pose2rot, "global_orient"),
                         _as_rotmats(body_pose, NUM_BODY_JOINTS, pose2rot, "body_pose")], dim=1)
        _, rel = batch_rigid_transform(rot, joints, self.layer.parents, dtype=points.dtype)
        posed = _skin(points, weights.to(points.dtype), rel)
        if transl is not None:
            posed = posed + transl[:, None, :]
        return posed
