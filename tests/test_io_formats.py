"""Dataset and store formats: SPIN npz, COCO-EFT JSON, AGORA fit pkl, label PNGs, HDF5 parse shards and mask store."""

from __future__ import annotations

import collections
import io
import json
import logging
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.io.agora_fit import (
    AgoraFit,
    AgoraFitError,
    read_agora_fit,
    write_agora_fit,
)
from pipeline.io.eft_json import read_eft_json, write_eft_json
from pipeline.io.images import (
    LabelImageError,
    read_label_png,
    rgb_to_labels,
    write_label_png,
)
from pipeline.io.masks_h5 import (
    INVALID_NO_PARSE,
    PARSE_IMAGE_MISSING,
    MaskRecord,
    MaskStore,
    MaskStoreWriter,
    ParseShard,
    ParseShardSet,
    ParseShardWriter,
    StoreFormatError,
    partial_path,
    plan_shards,
)
from pipeline.io.spin_npz import (
    DatasetFormatError,
    PersonDataset,
    empty_arrays,
    read_spin_npz,
    write_spin_npz,
)
from pipeline.parsing.labels import PALETTE

ROOT = Path(__file__).resolve().parent.parent


def _dataset(n: int = 3, seed: int = 0) -> PersonDataset:
    rng = np.random.default_rng(seed)
    arrays = empty_arrays(n)
    for key in ("part", "openpose", "S", "pose", "shape"):
        arrays[key] = rng.normal(size=arrays[key].shape)
    arrays["pose"] *= 0.4  # |angle| < pi, so axis-angle round trips are unique
    arrays["has_smpl"] = np.array([True, False, True][:n])
    arrays["gender"] = np.array(["m", "f", "m"][:n])
    return PersonDataset(imgname=np.array([f"seq/img_{i}.jpg" for i in range(n)]), center=rng.uniform(50, 90, (n, 2)),
                         scale=rng.uniform(0.5, 1.5, n), **arrays)


# ---------------------------------------------------------------------------------------------------- SPIN npz


def test_spin_npz_round_trip_keeps_every_key(tmp_path: Path) -> None:
    data = _dataset()
    data.extra["maskname"] = np.array(["m0.png", "m1.png", "m2.png"])
    write_spin_npz(tmp_path / "x_train.npz", data)
    back = read_spin_npz(tmp_path / "x_train.npz")
    for key in ("center", "scale", "part", "openpose", "S", "pose", "shape"):
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key))
    assert back.imgname.tolist() == ["seq/img_0.jpg", "seq/img_1.jpg", "seq/img_2.jpg"]
    assert back.has_smpl.tolist() == [True, False, True] and back.gender.tolist() == ["m", "f", "m"]
    assert back.extra["maskname"].tolist() == ["m0.png", "m1.png", "m2.png"]
    assert all(back.present.values()) and len(back.present) == 7
    assert back.keypoints49().shape == (3, 49, 3)
    np.testing.assert_array_equal(back.keypoints49()[:, 25:], data.part)
    assert not list(tmp_path.glob(".*partial*"))


def test_spin_npz_absent_optional_keys_become_flags(tmp_path: Path) -> None:
    write_spin_npz(tmp_path / "h36m.npz", _dataset(), keys=("S",))
    back = read_spin_npz(tmp_path / "h36m.npz")
    assert back.present == {"part": False, "openpose": False, "S": True, "pose": False, "shape": False,
                            "has_smpl": False, "gender": False}
    assert not back.pose.any() and back.part.shape == (3, 24, 3) and not back.has_smpl.any()
    assert back.gender.tolist() == ["", "", ""]


def test_3dpw_style_test_npz_with_bytes_names_and_gender(tmp_path: Path) -> None:
    np.savez(tmp_path / "3dpw_test.npz", imgname=np.array([b"imageFiles/a.jpg", b"imageFiles/b.jpg"]),
             center=np.zeros((2, 2)), scale=np.ones((2, 1)), pose=np.zeros((2, 72)), shape=np.zeros((2, 10)),
             gender=np.array(["m", "f"]))
    back = read_spin_npz(tmp_path / "3dpw_test.npz")
    assert back.imgname.tolist() == ["imageFiles/a.jpg", "imageFiles/b.jpg"]
    assert back.gender.tolist() == ["m", "f"] and back.present["gender"] and not back.present["S"]
    assert back.has_smpl.all()  # pose + shape present, no has_smpl key
    assert back.scale.shape == (2,)


def test_spin_npz_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, imgname=np.array(["a.jpg"]), scale=np.ones(1))
    with pytest.raises(DatasetFormatError, match=r"bad\.npz: missing key\(s\) \['center'\]"):
        read_spin_npz(path)
    np.savez(path, imgname=np.array(["a.jpg"]), center=np.zeros((1, 2)), scale=np.ones(1), part=np.zeros((1, 14, 3)))
    with pytest.raises(DatasetFormatError, match=r"bad\.npz: key 'part' has shape \(1, 14, 3\), expected \(1, 24, 3\)"):
        read_spin_npz(path)
    np.savez(path, imgname=np.array(["a.jpg"]), center=np.zeros((1, 2)), scale=np.ones(1), gender=np.array(["x"]))
    with pytest.raises(DatasetFormatError, match="bad.npz: key 'gender' holds"):
        read_spin_npz(path)
    with pytest.raises(DatasetFormatError, match="nothere.npz: annotation file not found"):
        read_spin_npz(tmp_path / "nothere.npz")


# ---------------------------------------------------------------------------------------------------- EFT JSON


def _eft_sample(rotmats: np.ndarray, name: str = "COCO_train2014_000000000036.jpg") -> dict:
    kp = np.zeros((49, 3))
    kp[:25, 0] = 1.0  # OpenPose slots
    kp[25:, 0] = 2.0  # GT slots
    return {"parm_pose": rotmats.tolist(), "parm_shape": list(range(10)), "parm_cam": [0.9, 0, 0],
            "bbox_scale": 1.7, "bbox_center": [320.0, 240.0], "gt_keypoint_2d": kp.tolist(), "imageName": name,
            "smpltype": "smpl", "annotId": 7}


def test_eft_rotmats_become_axis_angle(tmp_path: Path) -> None:
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    rz90 = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # 90 deg about z
    c4, s4 = np.cos(np.pi / 4), np.sin(np.pi / 4)
    ry45 = np.array([[c4, 0, s4], [0, 1, 0], [-s4, 0, c4]])  # 45 deg about y
    rot = np.tile(np.eye(3), (24, 1, 1))
    rot[0], rot[5] = rz90, ry45
    (tmp_path / "eft.json").write_text(json.dumps({"ver": 0.1, "data": [_eft_sample(rot)], "meta": {}}))
    data = read_eft_json(tmp_path / "eft.json")
    pose = data.pose.reshape(24, 3)
    np.testing.assert_allclose(pose[0], [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(pose[5], [0, np.pi / 4, 0], atol=1e-12)
    np.testing.assert_allclose(np.delete(pose, [0, 5], 0), 0, atol=1e-12)
    assert data.imgname.tolist() == ["train2014/COCO_train2014_000000000036.jpg"]
    assert (data.openpose[0, :, 0] == 1).all() and (data.part[0, :, 0] == 2).all()
    assert data.shape[0].tolist() == list(range(10)) and data.scale[0] == 1.7 and data.center[0].tolist() == [320, 240]
    assert data.has_smpl.all() and not data.present["S"] and not data.present["gender"]
    assert read_eft_json(tmp_path / "eft.json", image_folder="").imgname[0] == "COCO_train2014_000000000036.jpg"


def test_eft_round_trip(tmp_path: Path) -> None:
    data = _dataset(2)
    data.imgname = np.array(["train2014/a.jpg", "train2014/b.jpg"])
    write_eft_json(tmp_path / "eft.json", data)
    back = read_eft_json(tmp_path / "eft.json")
    np.testing.assert_allclose(back.pose, data.pose, atol=1e-10)
    for key in ("shape", "openpose", "part", "center", "scale"):
        np.testing.assert_allclose(getattr(back, key), getattr(data, key))
    assert back.imgname.tolist() == data.imgname.tolist()


def test_eft_errors_name_file_sample_and_key(tmp_path: Path) -> None:
    path = tmp_path / "eft.json"
    path.write_text(json.dumps({"ver": 0.1}))
    with pytest.raises(DatasetFormatError, match="eft.json: missing top-level list 'data'"):
        read_eft_json(path)
    good = _eft_sample(np.tile(np.eye(3), (24, 1, 1)))
    bad = dict(good)
    del bad["parm_pose"]
    path.write_text(json.dumps({"data": [good, bad]}))
    with pytest.raises(DatasetFormatError, match=r"eft.json: sample 1 lacks key\(s\) \['parm_pose'\]"):
        read_eft_json(path)
    bad = dict(good, gt_keypoint_2d=np.zeros((24, 3)).tolist())
    path.write_text(json.dumps({"data": [bad]}))
    with pytest.raises(DatasetFormatError,
                       match=r"sample 0 key 'gt_keypoint_2d' has shape \(24, 3\), expected \(49, 3\)"):
        read_eft_json(path)
    mirror = np.tile(np.eye(3), (24, 1, 1))
    mirror[3, 0, 0] = -1
    path.write_text(json.dumps({"data": [dict(good, parm_pose=mirror.tolist())]}))
    with pytest.raises(DatasetFormatError, match="sample 0 key 'parm_pose' joint 3 is not a rotation"):
        read_eft_json(path)


# ---------------------------------------------------------------------------------------------------- AGORA fits


def _dump(path: Path, data: object) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def _cuda_tensor_pickle(values: np.ndarray) -> object:
    """A pickle-able stand-in for a CUDA tensor: the storage bytes carry the location 'cuda:0', as a fit
    pickled on a GPU does (plain unpickling fails without CUDA)."""
    t = torch.as_tensor(values, dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(t.flatten().storage(), buf, _use_new_zipfile_serialization=False)
    inner = buf.getvalue().replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert b"cuda:0" in inner

    class _Storage:
        def __reduce__(self) -> tuple:
            return (torch.storage._load_from_bytes, (inner,))

    class _Tensor:
        def __reduce__(self) -> tuple:
            stride = tuple(int(np.prod(t.shape[k + 1:])) for k in range(t.ndim))
            return (torch._utils._rebuild_tensor_v2, (_Storage(), 0, tuple(t.shape), stride, False,
                                                      collections.OrderedDict()))

    return _Tensor()


def test_agora_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    fit = AgoraFit(betas=rng.normal(size=10), global_orient=rng.normal(size=3) * 0.3,
                   body_pose=rng.normal(size=69) * 0.3, transl=rng.normal(size=3), gender="female")
    write_agora_fit(tmp_path / "s.pkl", fit)
    back = read_agora_fit(tmp_path / "s.pkl")
    for key in ("betas", "global_orient", "body_pose", "transl"):
        np.testing.assert_allclose(getattr(back, key), getattr(fit, key), atol=1e-6)
    assert back.gender == "female" and back.body_pose.shape == (69,)
    with open(tmp_path / "s.pkl", "rb") as fh:
        raw = pickle.load(fh)
    assert raw["betas"].shape == (1, 10) and raw["body_pose"].shape == (1, 69)  # AGORA's batch-of-1 layout


def test_agora_variants_old_names_rotmats_cuda_tensors(tmp_path: Path) -> None:
    from scipy.spatial.transform import Rotation

    pose = np.random.default_rng(2).normal(0, 0.3, (24, 3))
    rot = Rotation.from_rotvec(pose).as_matrix()
    data = {"betas": _cuda_tensor_pickle(np.arange(10.0)[None]), "root_pose": torch.as_tensor(rot[:1][None]),
            "body_pose": _cuda_tensor_pickle(rot[1:][None]), "translation": [[0.1, 0.2, 0.3]], "gender": b"m"}
    path = _dump(tmp_path / "old.pkl", data)
    if not torch.cuda.is_available():
        with open(path, "rb") as fh, pytest.raises(RuntimeError, match="CUDA"):
            pickle.load(fh)  # the file really needs the CPU remapping
    fit = read_agora_fit(path)
    np.testing.assert_allclose(fit.betas, np.arange(10.0))
    np.testing.assert_allclose(fit.global_orient, pose[0], atol=1e-6)
    np.testing.assert_allclose(fit.body_pose, pose[1:].ravel(), atol=1e-5)
    np.testing.assert_allclose(fit.transl, [0.1, 0.2, 0.3])
    assert fit.gender == "male"


def test_agora_kid_betas_error_or_truncate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kid = {"betas": np.arange(11.0)[None], "global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 69)),
           "transl": np.zeros((1, 3)), "gender": "neutral"}
    path = _dump(tmp_path / "kid.pkl", kid)
    with pytest.raises(AgoraFitError, match=r"kid\.pkl: 11 betas: a kid's fit"):
        read_agora_fit(path)
    with caplog.at_level(logging.WARNING, logger="pipeline.io.agora_fit"):
        fit = read_agora_fit(path, kid_betas="truncate")
    np.testing.assert_array_equal(fit.betas, np.arange(10.0))
    assert "SMIL template blend" in caplog.text
    with pytest.raises(ValueError, match="allowed: 'error', 'truncate'"):
        read_agora_fit(path, kid_betas="keep")  # type: ignore[arg-type]


def test_agora_errors_name_file_and_key(tmp_path: Path) -> None:
    base = {"betas": np.zeros((1, 10)), "global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 69)),
            "transl": np.zeros((1, 3))}
    with pytest.raises(AgoraFitError, match=r"m\.pkl: missing key 'transl'"):
        read_agora_fit(_dump(tmp_path / "m.pkl", {k: v for k, v in base.items() if k != "transl"}))
    with pytest.raises(AgoraFitError, match=r"p\.pkl: key 'body_pose' has 60 values; expected 69"):
        read_agora_fit(_dump(tmp_path / "p.pkl", dict(base, body_pose=np.zeros(60))))
    with pytest.raises(AgoraFitError, match=r"g\.pkl: key 'gender' is 'alien'"):
        read_agora_fit(_dump(tmp_path / "g.pkl", dict(base, gender="alien")))
    with pytest.raises(AgoraFitError, match=r"x\.pkl: an SMPL-X fit .*transfer_model"):
        read_agora_fit(_dump(tmp_path / "x.pkl", dict(base, jaw_pose=np.zeros((1, 3)))))
    with pytest.raises(AgoraFitError, match=r"l\.pkl: holds a list"):
        read_agora_fit(_dump(tmp_path / "l.pkl", [1, 2]))
    (tmp_path / "t.pkl").write_bytes(b"not a pickle")
    with pytest.raises(AgoraFitError, match=r"t\.pkl: cannot read the SMPL fit"):
        read_agora_fit(tmp_path / "t.pkl")
    assert read_agora_fit(_dump(tmp_path / "ok.pkl", base)).gender == "neutral"


# ---------------------------------------------------------------------------------------------------- label PNGs


def test_label_png_round_trip_and_colour_decoding(tmp_path: Path) -> None:
    labels = np.arange(20, dtype=np.uint8).repeat(3).reshape(6, 10)
    write_label_png(tmp_path / "a.png", labels)
    with Image.open(tmp_path / "a.png") as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), PALETTE[labels])
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png"), labels)
    rgb = PALETTE[labels].copy()
    rgb[0, 0] = (1, 2, 3)  # a blended boundary colour
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    decoded = read_label_png(tmp_path / "rgb.png")
    expected = labels.copy()
    expected[0, 0] = 0
    np.testing.assert_array_equal(decoded, expected)
    assert rgb_to_labels(rgb)[1] == 1
    Image.fromarray(np.full((2, 2), 25, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(LabelImageError, match=r"big\.png: label id 25 outside"):
        read_label_png(tmp_path / "big.png")
    with pytest.raises(LabelImageError, match=r"none\.png: cannot read"):
        read_label_png(tmp_path / "none.png")
    with pytest.raises(ValueError, match="label ids must lie in"):
        write_label_png(tmp_path / "c.png", np.full((2, 2), 20))


# ---------------------------------------------------------------------------------------------------- parse shards


def test_plan_shards_unique_images_in_order() -> None:
    names = ["a", "b", "a", "c", "d", "b", "e"]
    assert plan_shards(names, 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(names, 0)


def test_parse_shard_round_trip_variable_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = {"x/a.jpg": rng.integers(0, 20, (7, 5)).astype(np.uint8),
            "x/b.jpg": rng.integers(0, 20, (3, 11)).astype(np.uint8)}
    path = tmp_path / "parsing" / "000.h5"
    with ParseShardWriter(path, attrs={"parser": "rendered", "shard": 0, "config": {"k": 1}}) as writer:
        writer.add("x/a.jpg", maps["x/a.jpg"])
        writer.add("x/missing.jpg", None, PARSE_IMAGE_MISSING)
        writer.add("x/b.jpg", maps["x/b.jpg"])
        with pytest.raises(ValueError, match="added twice"):
            writer.add("x/a.jpg", maps["x/a.jpg"])
    with ParseShard(path) as shard:
        assert shard.imgnames == ["x/a.jpg", "x/missing.jpg", "x/b.jpg"]
        np.testing.assert_array_equal(shard["x/a.jpg"], maps["x/a.jpg"])
        np.testing.assert_array_equal(shard["x/b.jpg"], maps["x/b.jpg"])
        assert shard["x/missing.jpg"] is None and shard.status.tolist() == [0, 1, 0]
        assert shard.attrs["parser"] == "rendered" and json.loads(shard.attrs["config"]) == {"k": 1}
    with h5py.File(path) as h5:
        assert h5["labels"].compression == "gzip" and h5["labels"].shape == (7 * 5 + 3 * 11,)


def test_parse_shard_set_joins_and_rejects_overlap(tmp_path: Path) -> None:
    one = np.ones((2, 2), np.uint8)
    with ParseShardWriter(tmp_path / "0.h5") as w:
        w.add("a", one)
    with ParseShardWriter(tmp_path / "1.h5") as w:
        w.add("b", one * 2)
    with ParseShardSet([tmp_path / "0.h5", tmp_path / "1.h5"], max_open=1) as shards:
        assert shards.get("b")[0, 0] == 2 and shards.get("a")[0, 0] == 1 and shards.get("zzz") is None
    with ParseShardWriter(tmp_path / "2.h5") as w:
        w.add("a", one)
    with pytest.raises(StoreFormatError, match=r"2\.h5: image 'a' is also in .*0\.h5"):
        ParseShardSet([tmp_path / "0.h5", tmp_path / "2.h5"])


# ---------------------------------------------------------------------------------------------------- mask store


def _record(i: int, r: int = 8, n_cls: int = 4) -> MaskRecord:
    rng = np.random.default_rng(i)
    return MaskRecord(imgname=f"im{i // 2}.jpg", center=np.array([10.0 + i, 20.0]), scale=1.0 + i,
                      mask_c=rng.integers(0, n_cls, (r, r)).astype(np.uint8),
                      mask_mc=rng.integers(0, 2, (r, r)).astype(np.uint8), valid_mc=rng.random(5) > 0.5,
                      mc_pixels=rng.integers(0, 100, 5), class_pixels=rng.integers(0, 100, n_cls),
                      crop_transform=rng.normal(size=(2, 3)), image_hw=np.array([48, 64]), valid=i != 2,
                      invalid_reason=INVALID_NO_PARSE if i == 2 else 0)


def _write_store(path: Path, n: int, crash_after: int | None = None) -> None:
    with MaskStoreWriter(path, resolution=8, class_names=("Background", "U", "L", "M"),
                         attrs={"mapping": {"name": "table1"}, "git_sha": "abc", "min_label_pixels": 60},
                         expected=n) as writer:
        for i in range(n):
            if i == crash_after:
                raise RuntimeError("killed")
            writer.write(_record(i))


def test_mask_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "coco.h5"
    _write_store(path, 5)
    with MaskStore(path) as store:
        assert len(store) == 5 and store.resolution == 8 and store.class_names == ("Background", "U", "L", "M")
        assert store.mc_labels == ("LeftArm", "RightArm", "LeftShoe", "RightShoe", "Face")
        assert store.counts == {"samples": 5, "valid": 4, "no_keypoints": 0, "no_parse_map": 1}
        assert store.json_attr("mapping") == {"name": "table1"} and store.attrs["git_sha"] == "abc"
        for i in range(5):
            rec, ref = store[i], _record(i)
            for key in ("mask_c", "mask_mc", "valid_mc", "mc_pixels", "class_pixels", "crop_transform", "center"):
                np.testing.assert_array_equal(getattr(rec, key), getattr(ref, key))
            assert (rec.imgname, rec.valid, rec.invalid_reason) == (ref.imgname, ref.valid, ref.invalid_reason)
        store.check_aligned(np.array([f"im{i // 2}.jpg" for i in range(5)]), store.meta["center"])
        with pytest.raises(StoreFormatError, match="sample 1 is 'im0.jpg'"):
            store.check_aligned(np.array(["im0.jpg", "zz.jpg", "im1.jpg", "im1.jpg", "im2.jpg"]), store.meta["center"])
        clone = pickle.loads(pickle.dumps(store))  # DataLoader workers
        np.testing.assert_array_equal(clone[3].mask_c, _record(3).mask_c)
        clone.close()
    with h5py.File(path) as h5:
        assert h5["mask_c"].chunks == (1, 8, 8) and h5["mask_c"].compression == "gzip"
        assert h5["valid_mc"].dtype == bool and h5["crop_transform"].shape == (5, 2, 3)


def test_mask_store_writer_raising_or_short_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "coco.h5"
    with pytest.raises(RuntimeError, match="killed"):
        _write_store(path, 5, crash_after=3)
    assert not path.exists() and not partial_path(path).exists()
    with (pytest.raises(ValueError, match="2 samples written, expected 3"),
          MaskStoreWriter(path, resolution=8, class_names=("Background",) * 4, expected=3) as writer):
        writer.write(_record(0))
        writer.write(_record(1))
    assert not path.exists() and not partial_path(path).exists()
    with (pytest.raises(ValueError, match="field 'mask_c' has shape"),
          MaskStoreWriter(path, resolution=4, class_names=("Background",) * 4) as writer):
        writer.write(_record(0))
    assert not path.exists()


def test_mask_store_killed_process_leaves_no_file_and_rerun_is_identical(tmp_path: Path) -> None:
    path = tmp_path / "coco.h5"
    script = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])\n"
        "import test_io_formats as t\n"
        "from pipeline.io.masks_h5 import MaskStoreWriter\n"
        "w = MaskStoreWriter(sys.argv[3], resolution=8, class_names=('Background', 'U', 'L', 'M'))\n"
        "for i in range(3): w.write(t._record(i))\n"
        "w._flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT), str(ROOT / "tests"), str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == -9, proc.stderr
    assert not path.exists() and partial_path(path).exists()  # only the partial file survives a SIGKILL
    _write_store(path, 5)  # the rerun replaces the leftover
    assert not partial_path(path).exists()
    first = path.read_bytes()
    _write_store(tmp_path / "again.h5", 5)
    assert (tmp_path / "again.h5").read_bytes() == first  # deterministic: identical to an uninterrupted run


def test_mask_store_reader_rejects_other_files(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["kind"] = "something"
    with pytest.raises(StoreFormatError, match=r"other\.h5: attribute 'kind' is 'something'.*re-run"):
        MaskStore(tmp_path / "other.h5")
    with pytest.raises(StoreFormatError, match=r"absent\.h5: not found"):
        MaskStore(tmp_path / "absent.h5")
    with ParseShardWriter(tmp_path / "shard.h5") as w:
        w.add("a", np.zeros((1, 1), np.uint8))
    with pytest.raises(StoreFormatError, match="expected 'dsr_mask_store'"):
        MaskStore(tmp_path / "shard.h5")
