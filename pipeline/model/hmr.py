"""HMR regressor (SPIN/EFT/DSR): ResNet backbone + iterative error-feedback regressor with 6D rotations.

Architecture (../shared/reference/DSR_SPIN_EFT_NOTES.md A.8, C.4; SPIN ``models/hmr.py``):

* ResNet backbone whose modules sit at the **top level** under torchvision's names (``conv1``, ``bn1``,
  ``layer1`` … ``layer4``), global average pool -> feature ``xf`` (2048-d for ResNet-50, 512-d for ResNet-18).
* ``n_iter`` (3) refinement steps: ``xc = [xf, pose(144), betas(10), cam(3)] -> fc1(1024) -> drop1 -> fc2(1024)
  -> drop2``, then ``decpose`` / ``decshape`` / ``deccam`` are *added* to the current estimate. Decoders are
  xavier-uniform initialised with gain 0.01.
* Initial estimate from the buffers ``init_pose`` (1, 144) 6D, ``init_shape`` (1, 10), ``init_cam`` (1, 3),
  filled from ``smpl_mean_params.npz`` or a dict (:func:`mean_params_from_dataset`).

Because the parameter and buffer names mirror SPIN's exactly, SPIN's ``model_checkpoint.pt``
(``{'model': state_dict, ...}``) loads with ``strict=True`` and torchvision ImageNet ResNet weights load into
the backbone; see :func:`load_pretrained`.

Differences from SPIN (deliberate): the pool is adaptive (SPIN's ``AvgPool2d(7)`` equals it at 224 px but
fails on the small crops of the CPU demo); ResNet-18 is selectable for the demo; ``num_betas`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from pipeline.model.geometry import (
    axis_angle_to_rotmat,
    project_to_so3,
    rot6d_to_rotmat,
    rotmat_to_rot6d,
)
from pipeline.model.resnet import ResNet

NUM_SMPL_JOINTS = 24
#: Width of the 6D pose vector (24 joints × 6).
NPOSE = NUM_SMPL_JOINTS * 6
#: Weak-perspective camera ``[s, tx, ty]``.
NCAM = 3
DEFAULT_NUM_BETAS = 10
#: Default iterative-regression steps (SPIN/DSR).
DEFAULT_N_ITER = 3
#: Hidden width of the regressor MLP (SPIN's fc1/fc2).
HIDDEN = 1024
#: Dropout probability of drop1 / drop2 (``nn.Dropout()`` default in SPIN).
DROPOUT = 0.5
#: Xavier gain of the decoder layers (SPIN).
DECODER_GAIN = 0.01
#: Default mean camera ``[s, tx, ty]`` when none is given (SPIN's ``smpl_mean_params.npz['cam']``).
DEFAULT_MEAN_CAM: tuple[float, float, float] = (0.9, 0.0, 0.0)
#: Keys and sizes of a mean-parameter dict / ``smpl_mean_params.npz``.
MEAN_PARAM_KEYS: tuple[str, ...] = ("pose", "shape", "cam")

#: Backbones (architectures of :class:`pipeline.model.resnet.ResNet`; pooled feature width 2048 / 512).
BACKBONES: tuple[str, ...] = ("resnet50", "resnet18")
#: torchvision ResNet modules kept at the top level of :class:`HMR` (the classifier ``fc`` is dropped).
BACKBONE_MODULES: tuple[str, ...] = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
#: Parameters/buffers of the regressor head (everything that is not backbone).
HEAD_PREFIXES: tuple[str, ...] = (
    "fc1.", "fc2.", "decpose.", "decshape.", "deccam.", "init_pose", "init_shape", "init_cam",
)
#: Prefixes stripped from foreign checkpoints: DataParallel's ``module.`` and DSR/PARE Lightning's
#: ``model.`` + ``backbone.`` / ``head.`` (notes A.8).
_STRIP_PREFIXES: tuple[str, ...] = ("module.", "model.")
_SUBMODULE_PREFIXES: tuple[str, ...] = ("backbone.", "head.")
#: State-dict entries that may be absent from a checkpoint (BatchNorm's counter, added in torch 0.4.1).
_OPTIONAL_SUFFIX = "num_batches_tracked"


class HMROutput(NamedTuple):
    """Regressor output (unpacks like SPIN's ``pred_rotmat, pred_betas, pred_camera``).

    pred_rotmat: (B, 24, 3, 3) float32 SMPL joint rotations (global orient first), camera orientation.
    pred_betas: (B, num_betas) float32 shape coefficients.
    pred_cam: (B, 3) float32 weak-perspective ``[s, tx, ty]`` in the normalised crop ([-1, 1]).
    """

    pred_rotmat: torch.Tensor
    pred_betas: torch.Tensor
    pred_cam: torch.Tensor


def default_mean_params(num_betas: int = DEFAULT_NUM_BETAS) -> dict[str, np.ndarray]:
    """Mean parameters when neither a file nor a dataset is available.

    Zero body pose, global orientation = 180° about x (SMPL is y-up, the camera y-down: the body stands upright
    in the crop, as SPIN's mean pose does), zero betas, camera :data:`DEFAULT_MEAN_CAM`.

    Returns:
        ``{'pose': (144,) float32 6D, 'shape': (num_betas,) float32, 'cam': (3,) float32}``.
    """
    rot = torch.eye(3).repeat(NUM_SMPL_JOINTS, 1, 1)
    rot[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    return {
        "pose": rotmat_to_rot6d(rot).reshape(NPOSE).numpy().astype(np.float32),
        "shape": np.zeros(num_betas, dtype=np.float32),
        "cam": np.asarray(DEFAULT_MEAN_CAM, dtype=np.float32),
    }


def mean_params_from_dataset(
    poses: np.ndarray | torch.Tensor,
    shapes: np.ndarray | torch.Tensor,
    cam: tuple[float, float, float] = DEFAULT_MEAN_CAM,
) -> dict[str, np.ndarray]:
    """Mean SMPL parameters of a training set, in the format of ``smpl_mean_params.npz``.

    Per joint, the chordal L2 mean rotation (the nearest rotation to the mean of the rotation matrices); betas
    are averaged arithmetically. The camera is not observed in SMPL annotations, so ``cam`` is passed through.

    Args:
        poses: (N, 72) axis-angle SMPL poses, radians, global orientation first (camera frame, as in SPIN npz).
        shapes: (N, num_betas) betas.
        cam: mean weak-perspective camera ``[s, tx, ty]``.

    Returns:
        ``{'pose': (144,) float32 6D, 'shape': (num_betas,) float32, 'cam': (3,) float32}``.

    Raises:
        ValueError: empty input or wrong shapes.
    """
    poses_t = torch.as_tensor(np.asarray(poses), dtype=torch.float64)
    shapes_t = torch.as_tensor(np.asarray(shapes), dtype=torch.float64)
    if poses_t.ndim != 2 or poses_t.shape[1] != 3 * NUM_SMPL_JOINTS or poses_t.shape[0] == 0:
        raise ValueError(f"poses must be (N, 72) axis-angle with N >= 1, got shape {tuple(poses_t.shape)}")
    if shapes_t.ndim != 2 or shapes_t.shape[0] != poses_t.shape[0]:
        raise ValueError(f"shapes must be (N, num_betas) with N = {poses_t.shape[0]}, got {tuple(shapes_t.shape)}")
    rotmats = axis_angle_to_rotmat(poses_t.reshape(-1, NUM_SMPL_JOINTS, 3))  # (N, 24, 3, 3)
    mean_rot = project_to_so3(rotmats.mean(0))  # (24, 3, 3)
    return {
        "pose": rotmat_to_rot6d(mean_rot).reshape(NPOSE).numpy().astype(np.float32),
        "shape": shapes_t.mean(0).numpy().astype(np.float32),
        "cam": np.asarray(cam, dtype=np.float32),
    }


def load_mean_params(path: str | Path) -> dict[str, np.ndarray]:
    """Read SPIN's ``smpl_mean_params.npz`` (keys ``pose`` (144,) 6D, ``shape`` (10,), ``cam`` (3,)).

    Raises:
        FileNotFoundError / ValueError: naming the file and the missing key or wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean-parameter file {path} does not exist (SPIN's smpl_mean_params.npz expected)")
    with np.load(path) as data:
        missing = [k for k in MEAN_PARAM_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"mean-parameter file {path} lacks key(s) {missing}; found {sorted(data.files)}")
        params = {k: np.asarray(data[k], dtype=np.float32).reshape(-1) for k in MEAN_PARAM_KEYS}
    _check_mean_params(params, source=str(path))
    return params


def _check_mean_params(params: Mapping[str, np.ndarray | torch.Tensor], source: str) -> None:
    missing = [k for k in MEAN_PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"mean parameters from {source} lack key(s) {missing}")
    sizes = {k: int(np.asarray(params[k]).size) for k in MEAN_PARAM_KEYS}
    if sizes["pose"] != NPOSE or sizes["cam"] != NCAM:
        raise ValueError(f"mean parameters from {source}: pose must have {NPOSE} and cam {NCAM} values, got {sizes}")


class HMR(nn.Module):
    """HMR regressor with SPIN-compatible parameter names.

    Args:
        backbone: ``"resnet50"`` (paper) or ``"resnet18"`` (CPU demo). Built with ``weights=None`` (nothing is
            downloaded); load ImageNet or SPIN weights with :func:`load_pretrained`.
        n_iter: iterative refinement steps (SPIN/DSR: 3).
        mean_params: ``{'pose' (144,), 'shape' (num_betas,), 'cam' (3,)}`` initial estimate; ``None`` =
            :func:`default_mean_params`.
        num_betas: shape coefficients regressed.

    Input images: (B, 3, H, W) float32, ImageNet-normalised; any H, W ≥ 32 (224 in the paper).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        n_iter: int = DEFAULT_N_ITER,
        mean_params: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        num_betas: int = DEFAULT_NUM_BETAS,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; allowed values: {', '.join(BACKBONES)}")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        self.backbone_name = backbone
        self.n_iter = n_iter
        self.num_betas = num_betas
        net = ResNet(backbone)  # torchvision's modules and initialisation, without importing torchvision
        feat_dim = net.fc.in_features  # the pooled feature the dropped classifier would read
        for name in BACKBONE_MODULES:
            self.add_module(name, getattr(net, name))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feat_dim = feat_dim

        self.fc1 = nn.Linear(feat_dim + NPOSE + num_betas + NCAM, HIDDEN)
        self.drop1 = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.drop2 = nn.Dropout(DROPOUT)
        self.decpose = nn.Linear(HIDDEN, NPOSE)
        self.decshape = nn.Linear(HIDDEN, num_betas)
        self.deccam = nn.Linear(HIDDEN, NCAM)
        for dec in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(dec.weight, gain=DECODER_GAIN)

        params = default_mean_params(num_betas) if mean_params is None else mean_params
        _check_mean_params(params, source="the mean_params argument")
        shape = torch.as_tensor(np.asarray(params["shape"]), dtype=torch.float32).reshape(1, -1)
        if shape.shape[1] != num_betas:
            raise ValueError(f"mean shape has {shape.shape[1]} betas but num_betas={num_betas}")
        pose = torch.as_tensor(np.asarray(params["pose"]), dtype=torch.float32).reshape(1, NPOSE)
        cam = torch.as_tensor(np.asarray(params["cam"]), dtype=torch.float32).reshape(1, NCAM)
        self.register_buffer("init_pose", pose)
        self.register_buffer("init_shape", shape)
        self.register_buffer("init_cam", cam)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone: (B, 3, H, W) images -> (B, feat_dim) pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(
        self,
        images: torch.Tensor,
        init_pose: torch.Tensor | None = None,
        init_shape: torch.Tensor | None = None,
        init_cam: torch.Tensor | None = None,
        n_iter: int | None = None,
    ) -> HMROutput:
        """Regress SMPL parameters and camera.

        Args:
            images: (B, 3, H, W) float32, ImageNet-normalised crops.
            init_pose / init_shape / init_cam: optional (B, 144) / (B, num_betas) / (B, 3) starting estimates
                (default: the mean-parameter buffers).
            n_iter: refinement steps (default: ``self.n_iter``).

        Returns:
            :class:`HMROutput` (``pred_rotmat`` (B, 24, 3, 3), ``pred_betas`` (B, num_betas), ``pred_cam`` (B, 3)).
        """
        batch = images.shape[0]
        pose = self.init_pose.expand(batch, -1) if init_pose is None else init_pose
        betas = self.init_shape.expand(batch, -1) if init_shape is None else init_shape
        cam = self.init_cam.expand(batch, -1) if init_cam is None else init_cam
        steps = self.n_iter if n_iter is None else n_iter
        xf = self.features(images) if steps > 0 else None  # n_iter = 0: the initial estimate, no backbone pass
        for _ in range(steps):
            xc = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat([xf, pose, betas, cam], dim=1)))))
            pose = self.decpose(xc) + pose
            betas = self.decshape(xc) + betas
            cam = self.deccam(xc) + cam
        rotmat = rot6d_to_rotmat(pose.reshape(batch, NUM_SMPL_JOINTS, 6))
        return HMROutput(pred_rotmat=rotmat, pred_betas=betas, pred_cam=cam)

    def backbone_state_keys(self) -> list[str]:
        """State-dict keys of the backbone (what an ImageNet ResNet checkpoint provides)."""
        return [k for k in self.state_dict() if not k.startswith(HEAD_PREFIXES)]


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel / Lightning prefixes (``module.``, ``model.``, then ``backbone.`` / ``head.``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _STRIP_PREFIXES:
            key = key.removeprefix(prefix)
        for prefix in _SUBMODULE_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def _format_keys(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _check_and_load(model: HMR, state: dict[str, torch.Tensor], expected: list[str], path: Path, kind: str) -> None:
    """Load ``state`` into ``model`` requiring exactly the ``expected`` keys with matching shapes."""
    own = model.state_dict()
    # BatchNorm's step counter is not a weight and very old checkpoints lack it: tolerated when missing.
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        header = (
            f"checkpoint {path} does not match HMR(backbone={model.backbone_name!r}, "
            f"num_betas={model.num_betas}) as a {kind} state dict:"
        )
        parts = [header]
        if missing:
            parts.append(f"missing keys [{_format_keys(missing)}]")
        if unexpected:
            parts.append(f"unexpected keys [{_format_keys(unexpected)}]")
        if mismatched:
            parts.append(f"shape mismatches [{_format_keys(mismatched)}]")
        parts.append(
            "check the backbone setting and that the file is a SPIN/DSR HMR checkpoint or a torchvision ResNet "
            "state dict"
        )
        raise ValueError(" ".join(parts))
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)


def load_pretrained(model: HMR, path: str | Path) -> str:
    """Load weights into ``model`` from one of the supported checkpoint formats.

    * SPIN ``model_checkpoint.pt`` / our training checkpoints: ``{'model': state_dict, ...}`` -> whole model,
      strict (every parameter and buffer, including ``init_pose``/``init_shape``/``init_cam``).
    * DSR/PARE Lightning checkpoints: ``{'state_dict': ...}`` with ``model.``/``backbone.``/``head.`` prefixes
      (stripped) -> whole model, strict.
    * A raw HMR state dict (has ``fc1.weight``) -> whole model, strict.
    * A torchvision ResNet state dict (``conv1.weight``, ``layer*``, classifier ``fc.*``) -> backbone only,
      strict on the backbone keys; ``fc.*`` is ignored and the regressor head keeps its initialisation.

    Args:
        model: the model to fill (its backbone must match the checkpoint's).
        path: checkpoint file (``torch.save`` format; read with ``weights_only=True``, never executes code).

    Returns:
        ``"full"`` or ``"backbone"``: what was loaded.

    Raises:
        FileNotFoundError: the file does not exist.
        TypeError: the file holds something other than a dict.
        ValueError: unreadable file, unknown layout, or missing / unexpected / wrongly shaped keys (listed, with
            the file name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unpickling error types
        raise ValueError(f"cannot read pretrained checkpoint {path}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise TypeError(f"pretrained checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    if "model" in obj and isinstance(obj["model"], Mapping):
        state = obj["model"]
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state = obj["state_dict"]
    else:
        state = obj
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"pretrained checkpoint {path}: could not find a tensor state dict (top-level keys {sorted(obj)[:12]})"
        )
    state = _strip_prefixes(state)
    if "fc1.weight" in state:
        _check_and_load(model, state, list(model.state_dict()), path, "full HMR")
        return "full"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        _check_and_load(model, backbone, model.backbone_state_keys(), path, "torchvision ResNet (backbone)")
        return "backbone"
    raise ValueError(
        f"pretrained checkpoint {path} is neither an HMR state dict (no 'fc1.weight') nor a torchvision ResNet "
        f"(no 'conv1.weight' / 'layer1.*'); first keys: [{_format_keys(sorted(state))}]"
    )
