"""Open-world image datasets written in the real formats (COCO-EFT JSON, SPIN npz).

Each image shows one dressed person at a random camera, light and procedural background; a configurable
fraction adds a second, partial person and an occluding box. Alongside every image the world writes what
a human parser would output: the ground-truth CIHP label map (``labels_gt/``) and the same map passed
through the parser-noise model (``labels/``), as Graphonomy-palette PNGs. The distractor person is
labelled too, as a real parser would label every person.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from pipeline.body.model import BodyModel
from pipeline.io.eft_json import write_eft_json
from pipeline.io.spin_npz import PersonDataset, empty_arrays, write_spin_npz
from pipeline.parsing.labels import CIHP_LABELS, NUM_LABELS, PALETTE
from pipeline.render.offscreen import Camera, Lighting, MeshData, SceneRenderer, intrinsics, look_at, render_label_map
from pipeline.runtime import stage_seed
from pipeline.world.backgrounds import random_background
from pipeline.world.keypoints import PELVIS_MPII, keypoint_bbox
from pipeline.world.layout import label_root
from pipeline.world.parser_noise import ParserNoise, apply_parser_noise
from pipeline.world.pseudo_gt import PseudoGtNoise, perturb_labels, truth_path, write_truth
from pipeline.world.scans import Person, make_person

log = logging.getLogger(__name__)

#: Which SPIN keys each kind of split carries (as the real files do; see DSR_SPIN_EFT_NOTES C.1).
SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "train": ("part", "openpose", "S", "pose", "shape", "has_smpl"),
    "train_gendered": ("part", "openpose", "S", "pose", "shape", "has_smpl", "gender"),
    "test_smpl": ("part", "pose", "shape", "gender"),
    "test_joints": ("part", "S"),
}
#: Key sets without ``gender``: their ``shape`` is given in the neutral model, as EFT's and SPIN's fits are
#: (:class:`NeutralShapeFit`); gendered sets keep the person's own (gendered) betas, as 3DPW's.
NEUTRAL_SHAPE_KEYS: frozenset[str] = frozenset({"train"})
OPENPOSE_NOISE_PX = 1.5
JPEG_QUALITY = 92
#: Fraction of samples keeping SMPL parameters in MPI-INF-3DHP-style splits (static fits, as in SPIN).
PARTIAL_SMPL_FRACTION = 0.6


@dataclass(frozen=True)
class SplitSpec:
    """One generated split: its name, size, clutter, file format and key set."""

    name: str
    count: int
    distractor_prob: float
    occluder_prob: float
    fmt: str  # "eft_json" or "spin_npz"
    keys: str  # a key of SPLIT_KEYS
    partial_smpl: bool = False
    image_folder: str = ""  # sub-folder of the image root (COCO: train2014)
    labels: bool = True  # write the parser-like label maps (not needed by the pretraining set)
    #: ``train``, ``test`` or ``pretrain``: part of every image's seed, so that a training and a test split of
    #: the same name (``3dpw``, ``mpi_inf_3dhp``) show different people, as real train/test splits do.
    group: str = "train"


def split_spec(name: str, group: str, settings: dict, fmt: str) -> SplitSpec:
    """The spec of a configured split: key sets follow the real file of the same name."""
    if group == "train":
        keys = "train_gendered" if name == "3dpw" else "train"
    else:
        keys = "test_smpl" if name == "3dpw" else "test_joints"
    return SplitSpec(name=name, count=int(settings["count"]), distractor_prob=float(settings["distractor_prob"]),
                     occluder_prob=float(settings["occluder_prob"]), fmt=fmt, keys=keys,
                     partial_smpl=(group == "train" and name == "mpi_inf_3dhp"),
                     image_folder="train2014" if fmt == "eft_json" else "", group=group)


def pretrain_spec(shard: int, count: int, distractor_prob: float, occluder_prob: float) -> SplitSpec:
    """One shard of the pretraining set (the open world's stand-in for the data SPIN's checkpoint was trained
    on): SPIN npz with every training key, shapes in the neutral model as SPIN's fits, no label maps; shard
    ``k`` is split ``pretrain_k``."""
    return SplitSpec(name=f"pretrain_{shard}", count=count, distractor_prob=distractor_prob,
                     occluder_prob=occluder_prob, fmt="spin_npz", keys="train", labels=False, group="pretrain")


def _box_mesh(centre: np.ndarray, size: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    box = trimesh.creation.box(extents=size)
    rot = Rotation.from_rotvec([0.0, yaw, 0.0]).as_matrix()
    return box.vertices @ rot.T + centre, np.asarray(box.faces)


def _place_camera(person: Person, rng: np.random.Generator, size: int, focal_range: tuple[float, float],
                  height_range: tuple[float, float], azimuth_std_deg: float | None = None) -> Camera:
    """A camera looking at the person. Its azimuth about the vertical is measured from the direction the
    body faces: ``N(0, azimuth_std_deg)`` (photos show people mostly from the front) or, with ``None``,
    uniform over the circle (front and back equally likely)."""
    v = person.body_vertices
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    height = hi[1] - lo[1]
    focal = rng.uniform(*focal_range) * size
    frac = rng.uniform(*height_range)
    distance = focal * height / (frac * size) + 0.3
    if azimuth_std_deg is None:
        azim = rng.uniform(-np.pi, np.pi)
    else:
        forward = Rotation.from_rotvec(person.global_orient).apply([0.0, 0.0, 1.0])
        azim = np.arctan2(forward[0], forward[2]) + np.deg2rad(azimuth_std_deg) * rng.normal()
    elev = np.deg2rad(rng.uniform(-8, 25))
    target = centre + rng.uniform(-0.08, 0.08, 3) * height
    eye = target + distance * np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)])
    R, t = look_at(eye, target)
    return Camera(intrinsics(focal, size, size), R, t, size, size)


def _person_mesh(p: Person) -> MeshData:
    return MeshData(p.scan_vertices, p.faces, p.clothed.vertex_colors, p.clothed.face_label)


@dataclass
class RenderedSample:
    """One generated image with its annotations (model/world frame -> camera via ``camera``)."""

    rgb: np.ndarray
    labels_gt: np.ndarray
    visible_mask: np.ndarray  # pixels where the main person is the nearest surface
    camera: Camera
    person: Person
    joints_spin: np.ndarray  # (24, 3) world, SPIN's ground-truth joints
    joints_openpose: np.ndarray  # (25, 3) world, SPIN's OpenPose joints


def render_sample(models: dict[str, BodyModel], renderer: SceneRenderer, spec: SplitSpec, rng: np.random.Generator,
                  size: int, focal_range: tuple[float, float], height_range: tuple[float, float],
                  azimuth_std_deg: float | None = None) -> RenderedSample:
    """Generate and render one image of the split (``azimuth_std_deg``: see :func:`_place_camera`)."""
    person = make_person(models, rng)
    camera = _place_camera(person, rng, size, focal_range, height_range, azimuth_std_deg)
    meshes = [_person_mesh(person)]
    right = camera.R[0]
    height = np.ptp(person.body_vertices[:, 1])
    if rng.random() < spec.distractor_prob:
        side = rng.choice([-1.0, 1.0])
        offset = right * side * rng.uniform(0.55, 0.9) * height + camera.R[2] * rng.uniform(-0.3, 0.8)
        other = make_person(models, rng, transl=offset)
        meshes.append(_person_mesh(other))
    if rng.random() < spec.occluder_prob:
        cam_dir = person.body_vertices.mean(0) - camera.centre
        cam_dir /= np.linalg.norm(cam_dir)
        centre = person.body_vertices.mean(0) - cam_dir * rng.uniform(0.4, 0.8)
        centre = centre + right * rng.uniform(-0.35, 0.35) * height + np.array([0.0, rng.uniform(-0.45, 0.0) * height, 0.0])
        verts, faces = _box_mesh(centre, rng.uniform([0.15, 0.25, 0.1], [0.45, 0.7, 0.3]), rng.uniform(0, np.pi))
        colour = np.tile(np.r_[rng.integers(30, 230, 3), 255], (len(verts), 1)).astype(np.uint8)
        meshes.append(MeshData(verts, faces, colour, np.zeros(len(faces), dtype=np.uint8), smooth=False))
    lighting = Lighting(direction=np.array([rng.uniform(-1, 1), rng.uniform(-1, -0.2), rng.uniform(-1, 1)]),
                        intensity=rng.uniform(2.0, 5.0), ambient=rng.uniform(0.25, 0.5),
                        color=rng.uniform(0.85, 1.0, 3))
    background = random_background(size, size, rng)
    rgb, _ = renderer.render_rgb(meshes, camera, lighting, background)
    labels, owner = render_label_map(meshes, camera, renderer=renderer)
    model = models[person.gender]
    with torch.no_grad():
        posed = model(betas=torch.as_tensor(person.betas[None], dtype=torch.float32),
                      body_pose=torch.as_tensor(person.body_pose[None], dtype=torch.float32),
                      global_orient=torch.as_tensor(person.global_orient[None], dtype=torch.float32),
                      transl=torch.as_tensor(person.transl[None], dtype=torch.float32))
    if posed.joints_j49 is None:
        raise ValueError("the body models were loaded without joint regressors; SPIN's joints need them")
    return RenderedSample(rgb=rgb, labels_gt=labels, visible_mask=owner == 0,
                          camera=camera, person=person, joints_spin=posed.joints_spin[0].double().numpy(),
                          joints_openpose=posed.joints_openpose[0].double().numpy())


def _project_visible(sample: RenderedSample, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (N, 2) of world points, whether they fall in the image, and whether the main person is the
    nearest surface there (not hidden by the distractor or the occluder)."""
    size = sample.camera.width
    uv, z = sample.camera.project(points)
    inside = (uv >= 0).all(1) & (uv < size).all(1) & (z > 0)
    pix = np.clip(np.floor(np.nan_to_num(uv)).astype(int), 0, size - 1)
    return uv, inside, inside & sample.visible_mask[pix[:, 1], pix[:, 0]]


def annotate(sample: RenderedSample, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """SPIN-convention annotations of the main person: part, openpose, S, pose, shape, centre, scale."""
    cam = sample.camera
    uv, inside, visible = _project_visible(sample, sample.joints_spin)
    part = np.c_[uv, visible.astype(np.float64)]
    op_uv, _, op_visible = _project_visible(sample, sample.joints_openpose)
    openpose = np.c_[op_uv, op_visible.astype(np.float64)]
    detected = openpose[:, 2] > 0
    openpose[detected, :2] += rng.normal(0, OPENPOSE_NOISE_PX, (detected.sum(), 2))
    openpose[detected, 2] = rng.uniform(0.45, 0.95, detected.sum())
    joints_cam = sample.joints_spin @ cam.R.T + cam.t
    S = np.c_[joints_cam - joints_cam[PELVIS_MPII], np.ones(24)]
    rot_cam = Rotation.from_matrix(cam.R) * Rotation.from_rotvec(sample.person.global_orient)
    pose = np.r_[rot_cam.as_rotvec(), sample.person.body_pose]
    box_kp = np.c_[uv, inside.astype(np.float64)]
    centre, scale = keypoint_bbox(box_kp if inside.any() else np.c_[uv, np.ones(24)])
    return {"part": part, "openpose": openpose, "S": S, "pose": pose, "shape": sample.person.betas,
            "center": centre, "scale": np.float64(scale)}


def save_palette_png(labels: np.ndarray, path: Path) -> None:
    """Write a (H, W) uint8 CIHP label map as a Graphonomy-palette PNG (mode P)."""
    img = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette turns it into P
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:NUM_LABELS] = PALETTE
    img.putpalette(pal.ravel().tolist())
    img.save(path)


class NeutralShapeFit:
    """The neutral-model betas whose rest shape best matches a gendered body's (least squares over vertices).

    Fitting data of SPIN and EFT give SMPL parameters of the *neutral* model, which every regressor predicts;
    the gendered betas of a generated person, read by the neutral model, describe another body (on the
    3DPW-style training poses: MPJPE 35 mm and PVE 68 mm from the person; the fitted betas: 2.9 mm and 5.2 mm).
    """

    def __init__(self, neutral: BodyModel) -> None:
        layer = neutral.layer
        self.template = layer.v_template.double().reshape(-1)
        self.pinv = torch.linalg.pinv(layer.shapedirs.double().reshape(-1, layer.shapedirs.shape[-1]))

    def __call__(self, model: BodyModel, betas: np.ndarray) -> np.ndarray:
        """(B,) neutral betas for the rest shape of ``model`` (a gendered body model) with ``betas``."""
        with torch.no_grad():
            rest, _ = model.rest_body(torch.as_tensor(betas, dtype=torch.float32)[None])
            return (self.pinv @ (rest[0].double().reshape(-1) - self.template)).numpy()


def make_image_split(
    body_model_dir: str | Path,
    joint_regressors: str | Path,
    annotations: str | Path,
    image_root: str | Path,
    spec: SplitSpec,
    *,
    size: int,
    focal_range: tuple[float, float],
    person_height_range: tuple[float, float],
    noise: ParserNoise | None,
    seed: int,
    azimuth_std_deg: float | None = None,
    pseudo_gt: PseudoGtNoise | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Generate one split: JPEG images, palette label maps and the annotation file in the real format.

    ``azimuth_std_deg``: spread of the camera around the direction the person faces (None: uniform).
    ``pseudo_gt``: error model of the split's SMPL parameters (None: exact labels; pipeline.world.pseudo_gt).
    A training split also gets its true parameters in ``truth_path(annotations)``, for analysis only."""
    image_root = Path(image_root)
    folders = {k: d / spec.image_folder for k, d in (("img", image_root), ("lab", label_root(image_root)),
                                                      ("gt", label_root(image_root, exact=True)))}
    if not spec.labels:
        del folders["lab"], folders["gt"]
    elif noise is None:
        raise ValueError(f"split {spec.name!r} writes parser-like label maps and needs the parser-noise settings")
    for d in folders.values():
        d.mkdir(parents=True, exist_ok=True)
    models = {g: BodyModel(body_model_dir, gender=g, joint_regressors=joint_regressors) for g in ("male", "female")}
    neutral_fit = NeutralShapeFit(BodyModel(body_model_dir, gender="neutral")) if spec.keys in NEUTRAL_SHAPE_KEYS \
        else None
    n = spec.count
    arrays = empty_arrays(n)
    names, centers, scales = [], np.zeros((n, 2)), np.zeros(n)
    label_pixels = np.zeros(NUM_LABELS, dtype=np.int64)
    noisy = pseudo_gt is not None and not pseudo_gt.exact
    label_models = dict(models, neutral=BodyModel(body_model_dir, gender="neutral")) if noisy else models
    true_pose, true_betas = np.zeros((n, 72)), np.zeros((n, 10))
    with SceneRenderer(size, size) as renderer:
        for i in tqdm(range(n), desc=f"make_images {spec.name}", unit="img", disable=not progress):
            rng = np.random.default_rng(stage_seed(seed, "image", spec.group, spec.name, str(i)))
            sample = render_sample(models, renderer, spec, rng, size, focal_range, person_height_range,
                                   azimuth_std_deg)
            ann = annotate(sample, rng)
            stem = f"{spec.name}_{i:05d}"
            Image.fromarray(sample.rgb).save(folders["img"] / f"{stem}.jpg", quality=JPEG_QUALITY)
            if spec.labels:
                save_palette_png(sample.labels_gt, folders["gt"] / f"{stem}.png")
                save_palette_png(apply_parser_noise(sample.labels_gt, noise, rng),  # type: ignore[arg-type]
                                 folders["lab"] / f"{stem}.png")
            label_pixels += np.bincount(sample.labels_gt.ravel(), minlength=NUM_LABELS)
            names.append(f"{spec.image_folder}/{stem}.jpg" if spec.image_folder else f"{stem}.jpg")
            for key in ("part", "openpose", "S", "pose", "shape"):
                arrays[key][i] = ann[key]
            if neutral_fit is not None:
                arrays["shape"][i] = neutral_fit(models[sample.person.gender], sample.person.betas)
            true_pose[i], true_betas[i] = arrays["pose"][i], arrays["shape"][i]
            if noisy:  # its own random stream: the images do not change with the error model
                label_model = label_models["neutral" if neutral_fit is not None else sample.person.gender]
                with torch.no_grad():
                    rest = label_model.rest_body(torch.as_tensor(true_betas[i:i + 1], dtype=torch.float32))[1]
                pg_rng = np.random.default_rng(stage_seed(seed, "pseudo_gt", spec.group, spec.name, str(i)))
                pose_i, betas_i = perturb_labels(true_pose[i:i + 1], true_betas[i:i + 1], rest[0].double().numpy(),
                                                 label_model.layer.parents.numpy(), pseudo_gt, pg_rng)  # type: ignore[arg-type]
                arrays["pose"][i], arrays["shape"][i] = pose_i[0], betas_i[0]
            centers[i], scales[i] = ann["center"], ann["scale"]
            arrays["has_smpl"][i] = not spec.partial_smpl or rng.random() < PARTIAL_SMPL_FRACTION
            arrays["gender"][i] = "m" if sample.person.gender == "male" else "f"
    data = PersonDataset(imgname=np.array(names), center=centers, scale=scales, **arrays)
    Path(annotations).parent.mkdir(parents=True, exist_ok=True)
    if spec.fmt == "eft_json":
        write_eft_json(annotations, data)
    elif spec.fmt == "spin_npz":
        write_spin_npz(annotations, data, keys=SPLIT_KEYS[spec.keys])
    else:
        raise ValueError(f"unknown annotation format {spec.fmt!r}; allowed: eft_json, spin_npz")
    if spec.group == "train":
        gender = arrays["gender"] if "gender" in SPLIT_KEYS[spec.keys] and spec.fmt == "spin_npz" else None
        write_truth(truth_path(annotations), names, true_pose, true_betas, gender, noisy)
    summary = {"split": spec.name, "count": n, "label_pixels": {CIHP_LABELS[k]: int(c) for k, c in enumerate(label_pixels)}}
    (image_root.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
