"""Pseudo-GT cleaning: keypoint box, 60-px rule, class mappings, nearest-neighbour crop, dataset stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.io.masks_h5 import (
    INVALID_NO_KEYPOINTS,
    INVALID_NO_PARSE,
    MaskStore,
    ParseShardWriter,
)
from pipeline.io.spin_npz import PersonDataset, empty_arrays
from pipeline.masks.clean import (
    CleanSettings,
    apply_box,
    clean_dataset,
    clean_in_image,
    clean_sample,
    crop_transform,
    invert_affine,
    keypoint_box,
    mc_mask,
    uncrop,
    warp_nearest,
)
from pipeline.masks.mappings import (
    MC_FLIP_PERMUTATION,
    NAMED_MAPPINGS,
    flip_valid_mc,
    mapping_from_json,
    resolve_mapping,
    validate_mapping,
)
from pipeline.parsing.labels import CIHP_LABELS, LABEL_ID, MC_LABELS, flip_label_map

L = LABEL_ID
TABLE1 = resolve_mapping("table1")


def _kp(points: list[tuple[float, float, float]]) -> np.ndarray:
    out = np.zeros((49, 3))
    out[25:25 + len(points)] = points
    return out


# ---------------------------------------------------------------------------------------------------- keypoint box


def test_keypoint_box_zeroes_31px_outside_keeps_29px_inside() -> None:
    labels = np.full((300, 400), L["UpperClothes"], np.uint8)
    kp = _kp([(100, 100, 1.0), (200, 150, 0.9), (390, 290, 0.3)])  # the last is not confident (> 0.3 needed)
    box = keypoint_box(kp, labels.shape)
    assert box == (70, 70, 230, 180)
    cleaned = apply_box(labels, box)
    row = cleaned[120]
    assert row[200 + 29] == L["UpperClothes"] and row[200 + 30] == L["UpperClothes"] and row[200 + 31] == 0
    assert row[100 - 29] == L["UpperClothes"] and row[100 - 30] == L["UpperClothes"] and row[100 - 31] == 0
    col = cleaned[:, 150]
    assert col[150 + 29] == L["UpperClothes"] and col[150 + 31] == 0 and col[100 - 29] != 0 and col[100 - 31] == 0
    assert cleaned.sum() == labels[70:181, 70:231].sum()
    class_map, _, _, box2 = clean_in_image(labels, kp, TABLE1)
    assert box2 == box and class_map[120, 231] == 0 and class_map[120, 229] == 1


def test_keypoint_box_clamped_and_missing() -> None:
    assert keypoint_box(_kp([(5.5, 10.2, 1.0), (395.0, 290.0, 1.0)]), (300, 400)) == (0, 0, 399, 299)
    assert keypoint_box(_kp([(50, 50, 0.3)]), (300, 400)) is None  # confidence must exceed 0.3
    assert keypoint_box(_kp([(-500, -500, 1.0)]), (300, 400)) is None  # entirely outside the image
    assert keypoint_box(_kp([(50, 60, 1.0)]), (300, 400), margin_px=0) == (50, 60, 50, 60)


# ---------------------------------------------------------------------------------------------------- 60-px rule


@pytest.mark.parametrize(("pixels", "kept"), [(59, False), (60, True), (61, True)])
def test_min_label_pixels_keeps_60_drops_59(pixels: int, kept: bool) -> None:
    labels = np.zeros((20, 20), np.uint8)
    labels.ravel()[:pixels] = L["LeftShoe"]
    labels[15:20, 0:20] = L["Face"]  # 100 px
    labels[14, 0:10] = L["RightArm"]  # 10 px
    mask, valid, pixels_mc = mc_mask(labels, 60)
    j = MC_LABELS.index("LeftShoe")
    assert valid[j] == kept and pixels_mc[j] == pixels
    assert valid.tolist() == [False, False, kept, False, True]
    assert (mask[labels == L["LeftShoe"]] == int(kept)).all()
    assert (mask[labels == L["Face"]] == 1).all() and (mask[labels == L["RightArm"]] == 0).all()
    assert mask.sum() == 100 + (pixels if kept else 0)


def test_threshold_counts_inside_the_keypoint_box_only() -> None:
    labels = np.zeros((200, 200), np.uint8)
    labels[100:110, 100:106] = L["LeftArm"]  # 60 px inside the box
    labels[0:10, 190:200] = L["RightArm"]  # 100 px far outside it
    kp = _kp([(100, 100, 1), (110, 110, 1)])
    _, mc, valid, _ = clean_in_image(labels, kp, TABLE1, CleanSettings(keypoint_margin_px=30))
    assert valid.tolist() == [True, False, False, False, False] and mc.sum() == 60
    _, _, valid80, _ = clean_in_image(labels, kp, TABLE1, CleanSettings(min_label_pixels=80))
    assert not valid80.any()


# ---------------------------------------------------------------------------------------------------- mappings


def test_table1_mapping_of_every_label() -> None:
    expected = {
        "Background": "Background", "Hat": "MinimalClothing", "Hair": "MinimalClothing", "Glove": "MinimalClothing",
        "Sunglasses": "MinimalClothing", "UpperClothes": "UpperClothes", "Dress": "UpperClothes",
        "Coat": "UpperClothes", "Socks": "MinimalClothing", "Pants": "LowerClothes", "Torso-skin": "UpperClothes",
        "Scarf": "MinimalClothing", "Skirt": "LowerClothes", "Face": "MinimalClothing", "LeftArm": "MinimalClothing",
        "RightArm": "MinimalClothing", "LeftLeg": "MinimalClothing", "RightLeg": "MinimalClothing",
        "LeftShoe": "MinimalClothing", "RightShoe": "MinimalClothing",
    }
    assert TABLE1.classes == ("Background", "UpperClothes", "LowerClothes", "MinimalClothing")
    lut = TABLE1.lut()
    assert {name: TABLE1.classes[lut[i]] for i, name in enumerate(CIHP_LABELS)} == expected
    assert lut.tolist() == [0, 3, 3, 3, 3, 1, 1, 1, 3, 2, 1, 3, 2, 3, 3, 3, 3, 3, 3, 3]  # ids 0..19
    np.testing.assert_array_equal(TABLE1.matrix().sum(1), 1)
    assert TABLE1.matrix()[L["Skirt"]].tolist() == [0, 0, 1, 0]


def test_official8_matches_released_merge_map() -> None:
    grph_merge_map = {0: [0], 1: [1, 2, 4, 11, 13], 2: [3, 5, 6, 7, 10], 3: [8, 9, 12], 4: [14], 5: [15],
                      6: [16, 18], 7: [17, 19]}
    lut = resolve_mapping("official8").lut()
    for cls, ids in grph_merge_map.items():
        assert (lut[ids] == cls).all()


def test_user_mapping_validation_names_the_label() -> None:
    spec = {k: list(v) for k, v in NAMED_MAPPINGS["table1"].items()}
    spec["UpperClothes"] = ["UpperClothes", "Dress", "Coat", "Jumpsuits"]  # the paper's name is accepted
    assert validate_mapping(spec).lut().tolist() == TABLE1.lut().tolist()
    with pytest.raises(ValueError, match=r"masks.mapping: class 'LowerClothes' lists unknown label 'Trousers'; "
                                         r"allowed labels: \['Background', 'Hat'"):
        validate_mapping({**spec, "LowerClothes": ["Trousers", "Skirt"]})
    with pytest.raises(ValueError, match=r"label 'Pants' is in class 'LowerClothes' and in class 'Extra'"):
        validate_mapping({**spec, "Extra": ["Pants"]})
    with pytest.raises(ValueError, match=r"label\(s\) \['Skirt'\] are in no class"):
        validate_mapping({**spec, "LowerClothes": ["Pants"]})
    with pytest.raises(ValueError, match="put the class holding 'Background' first"):
        validate_mapping(dict(reversed(list(spec.items()))))
    with pytest.raises(ValueError, match=r"unknown mapping 'table2'; allowed: \['official8', 'table1'\]"):
        resolve_mapping("table2")
    lopsided = {"Background": ["Background"], "Left": ["LeftArm"],
                "Rest": [n for n in CIHP_LABELS if n not in ("Background", "LeftArm")]}
    with pytest.raises(ValueError, match="horizontal flip"):
        validate_mapping(lopsided)
    assert mapping_from_json(resolve_mapping("official8").to_json()) == resolve_mapping("official8")


@pytest.mark.parametrize("name", sorted(NAMED_MAPPINGS))
def test_flip_helpers_commute_with_mapping(name: str) -> None:
    mapping = resolve_mapping(name)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 20, (16, 24)).astype(np.uint8)
    flipped = mapping.lut()[flip_label_map(labels)]
    np.testing.assert_array_equal(flipped, mapping.flip_permutation()[mapping.lut()[labels][:, ::-1]])
    labels[:8, :8] = L["LeftArm"]
    labels[:, 20:] = L["RightShoe"]
    _, valid, _ = mc_mask(labels, 60)
    _, valid_f, _ = mc_mask(flip_label_map(labels), 60)
    np.testing.assert_array_equal(valid_f, flip_valid_mc(valid))
    assert MC_FLIP_PERMUTATION.tolist() == [1, 0, 3, 2, 4]
    assert flip_valid_mc(flip_valid_mc(valid)).tolist() == valid.tolist()


# ---------------------------------------------------------------------------------------------------- crop frame


def test_crop_transform_is_spins_enlarged_by_the_margin() -> None:
    t = crop_transform(np.array([300.0, 200.0]), scale=1.2, resolution=224, margin=1.0)
    h = 200 * 1.2  # SPIN get_transform: [[res/h, 0, res(-cx/h + 0.5)], [0, res/h, res(-cy/h + 0.5)]]
    np.testing.assert_allclose(t, [[224 / h, 0, 224 * (-300 / h + 0.5)], [0, 224 / h, 224 * (-200 / h + 0.5)]])
    t2 = crop_transform(np.array([300.0, 200.0]), scale=1.2, resolution=392, margin=1.75)
    corner = t2 @ [300 - 1.75 * h / 2, 200 + 1.75 * h / 2, 1.0]
    np.testing.assert_allclose(corner, [0, 392], atol=1e-9)
    np.testing.assert_allclose(invert_affine(t2) @ [196, 196, 1], [300, 200])


def test_nearest_crop_hand_computed_case() -> None:
    src = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], np.uint8)
    # side 4 px around the centre (1.5, 1.5) at 8 px: s = 2, crop = 2 x + 1; crop u samples x = (u - 1) / 2
    t = crop_transform(np.array([1.5, 1.5]), scale=4 / 200, resolution=8, margin=1.0)
    np.testing.assert_allclose(t, [[2, 0, 1], [0, 2, 1]])
    out = warp_nearest(src, t, (8, 8))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(src, 2, 0), 2, 1))
    # shifted by one source pixel to the right: the last crop columns fall outside the image -> 0
    out2 = warp_nearest(src, crop_transform(np.array([2.5, 1.5]), 4 / 200, 8, 1.0), (8, 8))
    np.testing.assert_array_equal(out2[0], [2, 2, 3, 3, 4, 4, 0, 0])
    # down-sampling by 2: crop = x / 2 + 0.25, so crop u samples x = 2 u - 0.5 -> floor(2 u) = 0, 2 (ties up)
    out3 = warp_nearest(src, crop_transform(np.array([1.5, 1.5]), 4 / 200, 2, 1.0), (2, 2))
    np.testing.assert_array_equal(out3, [[1, 3], [9, 11]])


def test_nearest_warp_never_creates_labels() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        present = rng.choice(np.arange(1, 20), size=4, replace=False)
        src = rng.choice(present, size=(37, 53)).astype(np.uint8)
        angle = rng.uniform(-0.5, 0.5) if trial % 2 else 0.0
        s = rng.uniform(0.3, 3.0)
        t = np.array([[s * np.cos(angle), -s * np.sin(angle), rng.uniform(-20, 20)],
                      [s * np.sin(angle), s * np.cos(angle), rng.uniform(-20, 20)]])
        out = warp_nearest(src, t, (64, 64))
        assert set(np.unique(out).tolist()) <= set(present.tolist()) | {0}


def _blocky_labels(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 20, (h // 16 + 1, w // 16 + 1)).astype(np.uint8)
    return np.repeat(np.repeat(coarse, 16, 0), 16, 1)[:h, :w]


def test_clean_sample_equals_literal_image_frame_steps() -> None:
    labels = _blocky_labels(240, 320, 1)
    kp = _kp([(120, 60, 1), (200, 200, 0.8), (20, 20, 0.1)])
    settings = CleanSettings(crop_resolution=96, crop_margin=1.4)
    for mapping in (TABLE1, resolve_mapping("official8")):
        got = clean_sample(labels, kp, np.array([160.0, 130.0]), 0.9, mapping, settings)
        class_img, mc_img, valid, box = clean_in_image(labels, kp, mapping, settings)
        assert got.box == box
        np.testing.assert_array_equal(got.valid_mc, valid)
        np.testing.assert_array_equal(got.mask_c, warp_nearest(class_img, got.crop_transform, (96, 96)))
        np.testing.assert_array_equal(got.mask_mc, warp_nearest(mc_img, got.crop_transform, (96, 96)))
        np.testing.assert_array_equal(got.class_pixels, np.bincount(class_img.ravel(), minlength=mapping.num_classes))
        assert got.mask_c.dtype == np.uint8 and got.mask_mc.max() <= 1


def test_stored_crop_warped_back_reproduces_image_mask() -> None:
    labels = _blocky_labels(240, 320, 2)
    kp = _kp([(110, 50, 1), (210, 190, 1)])
    settings = CleanSettings(crop_resolution=224, crop_margin=1.2)  # 1.1 crop px per image px
    got = clean_sample(labels, kp, np.array([160.0, 120.0]), 1.0, TABLE1, settings)
    class_img, mc_img, _, _ = clean_in_image(labels, kp, TABLE1, settings)
    back_c = uncrop(got.mask_c, got.crop_transform, labels.shape)
    back_mc = uncrop(got.mask_mc, got.crop_transform, labels.shape)
    boundary = ndimage.binary_dilation(ndimage.morphological_gradient(class_img, size=2) > 0, iterations=1)
    inside = uncrop(np.ones((224, 224), np.uint8), got.crop_transform, labels.shape) > 0
    away = inside & ~boundary
    assert away.sum() > 0.3 * labels.size
    assert (back_c[away] == class_img[away]).mean() >= 0.99
    assert (back_mc[away] == mc_img[away]).mean() >= 0.99


# ---------------------------------------------------------------------------------------------------- dataset stage


def test_clean_dataset_joins_flags_counts_and_reports(tmp_path: Path) -> None:
    h, w = 120, 160
    img_a = np.zeros((h, w), np.uint8)
    img_a[20:100, 30:70] = L["UpperClothes"]
    img_a[20:30, 30:40] = L["Face"]  # 100 px
    img_a[90:100, 30:36] = L["LeftShoe"]  # 60 px
    img_a[20:100, 110:150] = L["Pants"]  # a second person on the right
    img_b = np.full((h, w), L["RightArm"], np.uint8)
    with ParseShardWriter(tmp_path / "parsing" / "000.h5", attrs={"parser": "rendered"}) as writer:
        writer.add("train2014/a.jpg", img_a)
        writer.add("train2014/b.jpg", img_b)
    names = ["train2014/a.jpg", "train2014/a.jpg", "train2014/b.jpg", "train2014/c.jpg", "train2014/b.jpg"]
    arrays = empty_arrays(5)
    arrays["part"][0, :2] = [(40, 30, 1), (60, 90, 1)]  # left person: box x 10..90, y 0..119
    arrays["part"][1, :2] = [(120, 30, 1), (140, 90, 1)]  # right person
    arrays["openpose"][2, :2] = [(50, 50, 0.9), (60, 60, 0.9)]
    arrays["part"][3, :2] = [(50, 50, 1), (60, 60, 1)]  # image c was never parsed
    # sample 4 has no keypoints at all
    data = PersonDataset(imgname=np.array(names), center=np.tile([80.0, 60.0], (5, 1)), scale=np.full(5, 0.6),
                         **arrays)
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "images" / "train2014").mkdir(parents=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(tmp_path / "images" / "train2014" / "a.jpg")
    settings = CleanSettings(crop_resolution=64)
    qc = clean_dataset(data, [tmp_path / "parsing" / "000.h5"], tmp_path / "coco.h5", mapping=TABLE1,
                       settings=settings, dataset_name="coco", qc_json=tmp_path / "mask_qc.json",
                       contact_sheet=tmp_path / "sheet.png", image_root=tmp_path / "images",
                       config={"masks": {"min_label_pixels": 60}}, git_sha="deadbeef", progress=False)
    with MaskStore(tmp_path / "coco.h5") as store:
        store.check_aligned(data.imgname, data.center)
        m = store.meta
        assert m["valid"].tolist() == [True, True, True, False, False]
        assert m["invalid_reason"].tolist() == [0, 0, 0, INVALID_NO_PARSE, INVALID_NO_KEYPOINTS]
        assert store.counts == {"samples": 5, "valid": 3, "no_keypoints": 1, "no_parse_map": 1}
        assert m["valid_mc"][0].tolist() == [False, False, True, False, True]  # LeftShoe 60 px, Face 100 px
        assert not m["valid_mc"][1].any()  # the right person has only Pants
        assert m["valid_mc"][2].tolist() == [False, True, False, False, False]
        assert m["mc_pixels"][0].tolist() == [0, 0, 60, 0, 100]
        # sample 0's box (x 10..90) excludes the other person's Pants; sample 1's box includes them
        assert m["class_pixels"][0, 2] == 0 and m["class_pixels"][1, 2] == 80 * 40
        assert m["class_pixels"][0].sum() == h * w and m["image_hw"][0].tolist() == [h, w]
        assert store[3].mask_c.max() == 0 and store[4].mask_mc.max() == 0
        assert store.json_attr("mapping")["name"] == "table1" and store.attrs["parser"] == "rendered"
        assert store.attrs["git_sha"] == "deadbeef" and store.json_attr("config") == {"masks": {"min_label_pixels": 60}}
        assert store.json_attr("settings")["min_label_pixels"] == 60 and store.resolution == 64
        np.testing.assert_array_equal(store[0].mask_mc, clean_sample(img_a, data.keypoints49()[0], data.center[0],
                                                                     0.6, TABLE1, settings).mask_mc)
    doc = json.loads((tmp_path / "mask_qc.json").read_text())
    assert doc == json.loads(json.dumps(qc))
    assert doc["invalid"] == {"no_keypoints": 1, "no_parse_map": 1, "both": 0} and doc["valid_fraction"] == 0.6
    assert doc["mc"]["LeftShoe"]["kept_fraction"] == pytest.approx(1 / 3)
    assert doc["mc"]["Face"]["present_fraction"] == pytest.approx(1 / 3) and doc["mc"]["Face"]["drop_rate"] == 0
    assert sum(doc["classes"]["Background"]["histogram"]["counts"]) == 3
    assert sorted(doc["contact_sheet_samples"]) == [0, 1, 2]
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape == (2 + 2 * 130, 2 + 8 * 130, 3)
    assert not list(tmp_path.glob(".*partial*"))


def test_clean_dataset_rerun_with_other_threshold_changes_only_mc(tmp_path: Path) -> None:
    labels = np.zeros((50, 50), np.uint8)
    labels[10:17, 10:20] = L["LeftArm"]  # 70 px
    labels[30:40, 10:40] = L["Coat"]
    with ParseShardWriter(tmp_path / "s.h5") as writer:
        writer.add("a.jpg", labels)
    arrays = empty_arrays(1)
    arrays["part"][0, :2] = [(10, 10, 1), (40, 40, 1)]
    data = PersonDataset(imgname=np.array(["a.jpg"]), center=np.array([[25.0, 25.0]]), scale=np.array([0.3]), **arrays)
    out = {}
    for px in (60, 80):
        clean_dataset(data, [tmp_path / "s.h5"], tmp_path / f"{px}.h5", mapping=TABLE1,
                      settings=CleanSettings(min_label_pixels=px, crop_resolution=32), git_sha="x", progress=False)
        with MaskStore(tmp_path / f"{px}.h5") as store:
            out[px] = store[0]
    assert out[60].valid_mc[0] and not out[80].valid_mc[0]
    assert out[60].mask_mc.sum() > 0 and out[80].mask_mc.sum() == 0
    np.testing.assert_array_equal(out[60].mask_c, out[80].mask_c)
