"""Open-world images: keypoints on the person, exact label maps at noise 0, left is left, formats read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion

from pipeline.body.model import BodyModel
from pipeline.io.eft_json import read_eft_json
from pipeline.io.spin_npz import read_spin_npz
from pipeline.parsing.labels import LABEL_ID
from pipeline.render.offscreen import Camera, MeshData, SceneRenderer, intrinsics, look_at, render_label_map
from pipeline.world.images import label_root, make_image_split, render_sample, split_spec
from pipeline.world.parser_noise import ParserNoise
from pipeline.world.scans import make_person

SIZE = 128
EXACT = ParserNoise(level=0.0)


def _split(open_model, tmp: Path, name: str, group: str, fmt: str, count: int, noise: ParserNoise) -> Path:
    folder, _ = open_model
    ann = tmp / name / ("ann.json" if fmt == "eft_json" else f"{name}.npz")
    spec = split_spec(name, group, {"count": count, "distractor_prob": 0.5, "occluder_prob": 0.5}, fmt)
    make_image_split(folder, folder / "joint_regressors.npz", ann, tmp / name / "images", spec, size=SIZE,
                     focal_range=(1.0, 1.8), person_height_range=(0.55, 0.85), noise=noise, seed=0, progress=False)
    return ann


def test_formats_read_back_by_the_real_readers(open_model, tmp_path: Path) -> None:
    coco = read_eft_json(_split(open_model, tmp_path, "coco_eft", "train", "eft_json", 4, ParserNoise()))
    assert len(coco) == 4 and coco.imgname[0].startswith("train2014/")
    assert (tmp_path / "coco_eft" / "images" / coco.imgname[0]).is_file()
    assert coco.part.shape == (4, 24, 3) and coco.pose.shape == (4, 72) and coco.has_smpl.all()
    pw = read_spin_npz(_split(open_model, tmp_path, "3dpw", "test", "spin_npz", 3, ParserNoise()))
    assert set(pw.gender) <= {"m", "f"} and pw.present["gender"] and not pw.present["S"]
    h36m = read_spin_npz(_split(open_model, tmp_path, "h36m_p1", "test", "spin_npz", 3, ParserNoise()))
    assert h36m.present["S"] and not h36m.present["pose"]
    np.testing.assert_allclose(h36m.S[:, 14, :3], 0.0, atol=1e-9)  # root-centred at the pelvis


def test_visible_keypoints_inside_silhouette_and_exact_label_maps(open_model, tmp_path: Path) -> None:
    folder, _ = open_model
    models = {g: BodyModel(folder, gender=g, joint_regressors=folder / "joint_regressors.npz") for g in ("male", "female")}
    spec = split_spec("3dpw", "train", {"count": 1, "distractor_prob": 0.0, "occluder_prob": 0.3}, "spin_npz")
    inside, total, ious = 0, 0, []
    with SceneRenderer(SIZE, SIZE) as renderer:
        for i in range(12):
            rng = np.random.default_rng(100 + i)
            sample = render_sample(models, renderer, spec, rng, SIZE, (1.0, 1.8), (0.55, 0.85))
            uv, z = sample.camera.project(sample.joints_spin)
            pix = np.floor(uv).astype(int)
            ok = (pix >= 0).all(1) & (pix < SIZE).all(1)
            vis = ok & sample.visible_mask[np.clip(pix[:, 1], 0, SIZE - 1), np.clip(pix[:, 0], 0, SIZE - 1)]
            # Noise-free label map of the person alone (its own silhouette, ignoring occlusion).
            alone, _ = render_label_map([(sample.person.scan_vertices, sample.person.faces,
                                          sample.person.clothed.face_label)], sample.camera, renderer=renderer)
            # A visible joint's pixel shows the person; allow one pixel of slack for joints near an edge.
            sil = np.pad(alone > 0, 1)
            near = np.zeros(vis.sum(), dtype=bool)
            for dy in (0, 1, 2):
                for dx in (0, 1, 2):
                    near |= sil[pix[vis, 1] + dy, pix[vis, 0] + dx]
            inside += int(near.sum())
            total += int(vis.sum())
            # The same label map vs pyrender's silhouette of the lit person (depth > 0).
            _, depth = renderer.render_rgb([MeshData(sample.person.scan_vertices, sample.person.faces,
                                                     sample.person.clothed.vertex_colors)], sample.camera)
            fg, person = alone > 0, depth > 0
            # pyrender's depth comes from one of 4 anti-aliasing samples: ignore a 1-pixel band on the edge.
            band = binary_dilation(fg) & ~binary_erosion(fg)
            fg, person = fg & ~band, person & ~band
            ious.append((fg & person).sum() / max((fg | person).sum(), 1))
    print(f"visible part keypoints inside the silhouette: {inside}/{total}; label/silhouette IoU min {min(ious):.4f}")
    assert total > 100 and inside / total >= 0.95
    assert min(ious) >= 0.99


@pytest.mark.parametrize("view", ["front", "back"])
def test_left_arm_is_on_the_persons_left(open_model, view: str) -> None:
    folder, _ = open_model
    models = {g: BodyModel(folder, gender=g) for g in ("male", "female")}
    person = make_person(models, np.random.default_rng(7), pose_style="t_pose", global_orient=np.zeros(3))
    centre = person.body_vertices.mean(0)
    eye = centre + np.array([0.0, 0.0, 4.0 if view == "front" else -4.0])
    R, t = look_at(eye, centre)
    cam = Camera(intrinsics(200.0, SIZE, SIZE), R, t, SIZE, SIZE)
    with SceneRenderer(SIZE, SIZE) as renderer:
        labels, _ = render_label_map([(person.scan_vertices, person.faces, person.clothed.face_label)], cam, renderer=renderer)
    cols = {name: np.nonzero(labels == LABEL_ID[name])[1].mean() for name in ("LeftArm", "RightArm", "LeftShoe", "RightShoe")}
    if view == "front":  # facing the camera, the person's left is on the image's right
        assert cols["LeftArm"] > SIZE / 2 > cols["RightArm"] and cols["LeftShoe"] > cols["RightShoe"]
    else:
        assert cols["LeftArm"] < SIZE / 2 < cols["RightArm"] and cols["LeftShoe"] < cols["RightShoe"]


def test_noise_zero_label_png_equals_ground_truth(open_model, tmp_path: Path) -> None:
    ann = _split(open_model, tmp_path, "h36m", "train", "spin_npz", 3, EXACT)
    data = read_spin_npz(ann)
    root = tmp_path / "h36m" / "images"
    for name in data.imgname:
        png = Path(name).with_suffix(".png")
        noisy = np.array(Image.open(label_root(root) / png))
        exact = np.array(Image.open(label_root(root, exact=True) / png))
        np.testing.assert_array_equal(noisy, exact)
        assert Image.open(label_root(root) / png).mode == "P"


def test_camera_azimuth_follows_the_direction_the_person_faces() -> None:
    """open_world.images.azimuth_std_deg: the camera's azimuth about the vertical, measured from the direction
    the body faces, is N(0, σ) — a narrow σ puts every camera in front of the person whatever their heading —
    and None spreads it uniformly over the circle (half the views from behind)."""
    from types import SimpleNamespace

    from scipy.spatial.transform import Rotation

    from pipeline.world.images import _place_camera

    def facing_angles(std: float | None, n: int = 400) -> np.ndarray:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            heading = rng.uniform(-np.pi, np.pi)
            person = SimpleNamespace(global_orient=np.array([0.0, heading, 0.0]),
                                     body_vertices=rng.normal(size=(50, 3)) * [0.2, 0.5, 0.1] + [0, 0.9, 0])
            cam = _place_camera(person, rng, 256, (1.0, 1.8), (0.55, 0.85), std)  # type: ignore[arg-type]
            forward = Rotation.from_rotvec(person.global_orient).apply([0.0, 0.0, 1.0])
            to_camera = cam.centre - person.body_vertices.mean(0)
            a = np.arctan2(to_camera[0], to_camera[2]) - np.arctan2(forward[0], forward[2])
            out.append(np.degrees(np.angle(np.exp(1j * a))))
        return np.asarray(out)

    narrow = facing_angles(1.0)
    assert np.abs(narrow).max() < 12.0  # target jitter and elevation only
    spread = facing_angles(45.0)
    assert 35.0 < np.std(spread) < 55.0 and (np.abs(spread) > 90).mean() < 0.1
    uniform = facing_angles(None)
    assert 0.4 < (np.abs(uniform) > 90).mean() < 0.6


def test_training_shapes_are_given_in_the_neutral_model(open_model, tmp_path: Path) -> None:
    """Splits without gender carry neutral-model betas fitted to the person (as EFT/SPIN fits): posed with the
    neutral model they land on the annotated 3D joints S; 3DPW-style splits keep the gendered betas."""
    from pipeline.evaluate.protocols import evaluate_h36m

    folder, _ = open_model
    neutral = BodyModel(folder, "neutral", joint_regressors=folder / "joint_regressors.npz")
    data = read_spin_npz(_split(open_model, tmp_path, "h36m", "train", "spin_npz", 4, EXACT))
    assert not data.present["gender"]

    def error_to_s(betas: np.ndarray) -> float:
        import torch

        pose = torch.as_tensor(data.pose, dtype=torch.float32)
        posed = neutral(betas=torch.as_tensor(betas, dtype=torch.float32), body_pose=pose[:, 3:],
                        global_orient=pose[:, :3])
        return evaluate_h36m(posed.joints_h36m.numpy(), data.S, protocol=1).mpjpe_mm

    fitted = error_to_s(data.shape)
    assert fitted < 12.0, fitted  # the H36M regressor vs SPIN's kinematic joints, and the fit, a few mm each
    assert error_to_s(np.zeros_like(data.shape)) > fitted + 5.0
    pw = read_spin_npz(_split(open_model, tmp_path, "3dpw", "train", "spin_npz", 2, EXACT))
    assert pw.present["gender"] and np.abs(pw.shape).max() < 4.0


def test_train_and_test_splits_of_one_name_show_different_people(open_model, tmp_path: Path) -> None:
    """3DPW and MPI-INF-3DHP have a training and a test split of the same name; they must not share images (they
    did: the image seed ignored the group, so the test images were the first training images)."""
    train = read_spin_npz(_split(open_model, tmp_path / "train", "3dpw", "train", "spin_npz", 2, EXACT))
    test = read_spin_npz(_split(open_model, tmp_path / "test", "3dpw", "test", "spin_npz", 2, EXACT))
    assert train.imgname.tolist() == test.imgname.tolist()  # same file names, other people
    for k in range(2):
        assert np.abs(train.pose[k] - test.pose[k]).max() > 0.1
        a = np.asarray(Image.open(tmp_path / "train" / "3dpw" / "images" / train.imgname[k]), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "test" / "3dpw" / "images" / test.imgname[k]), dtype=np.int16)
        assert np.abs(a - b).mean() > 10.0
