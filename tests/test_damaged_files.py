"""Damaged input files: every reader raises one error naming the file, what is wrong with it and what to do.

Each reader gets a good file written by its own writer, then the same file emptied, cut to its first half,
replaced by random bytes, and (pickles) given a protocol-6 header; corruption inside an otherwise intact
container (an npz member, an HDF5 chunk, a parse-shard offset) is covered separately.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.body.smpl_io import BodyModelFileError, load_smpl_arrays, save_smpl_pickle
from pipeline.io.agora_fit import (
    AgoraFit,
    AgoraFitError,
    read_agora_fit,
    write_agora_fit,
)
from pipeline.io.eft_json import read_eft_json, write_eft_json
from pipeline.io.images import (
    LabelImageError,
    read_image_rgb,
    read_label_png,
    write_label_png,
)
from pipeline.io.masks_h5 import (
    MaskStore,
    ParseShard,
    StoreFormatError,
    write_parse_shard,
)
from pipeline.io.spin_npz import DatasetFormatError, read_spin_npz, write_spin_npz
from tests.conftest import make_tiny_smpl
from tests.test_io_formats import _dataset, _write_store

#: Random bytes that are no known format; the first, 0xbf, is no pickle opcode (so unpickling stops there).
RANDOM_BYTES = b"\xbf" + np.random.default_rng(0).integers(0, 256, 4095, dtype=np.uint8).tobytes()


@dataclass(frozen=True)
class Reader:
    """A reader, a writer of a good file for it, its error type and the fix its messages must give."""

    name: str
    suffix: str
    write: Callable[[Path], None]
    read: Callable[[Path], object]
    error: type[Exception]
    fix: str
    pickled: bool = False


def _write_agora(path: Path) -> None:
    write_agora_fit(path, AgoraFit(betas=np.arange(10.0), global_orient=np.zeros(3), body_pose=np.zeros(69),
                                   transl=np.ones(3), gender="female"))


def _write_label_png(path: Path) -> None:
    write_label_png(path, (np.arange(64 * 64).reshape(64, 64) % 20).astype(np.uint8))


def _write_photo(path: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)


def _read_shard(path: Path) -> object:
    with ParseShard(path) as shard:
        return shard["a.jpg"]


def _read_store(path: Path) -> object:
    with MaskStore(path) as store:
        return [store[i].mask_c for i in range(len(store))]


READERS = [
    Reader("spin_npz", ".npz", lambda p: write_spin_npz(p, _dataset()), read_spin_npz, DatasetFormatError,
           r"re-download it .*make_images_\* rule"),
    Reader("eft_json", ".json", lambda p: write_eft_json(p, _dataset()), read_eft_json, DatasetFormatError,
           r"re-download it .*make_images_\* rule"),
    Reader("agora_fit", ".pkl", _write_agora, read_agora_fit, AgoraFitError,
           "re-download it from AGORA, or, for the open world, delete it and re-run make_scans", pickled=True),
    Reader("mask_store", ".h5", lambda p: _write_store(p, 3), _read_store, StoreFormatError,
           "delete it and re-run clean_masks"),
    Reader("parse_shard", ".h5", lambda p: write_parse_shard(p, [("a.jpg", np.ones((40, 30), np.uint8))]),
           _read_shard, StoreFormatError, "delete it and re-run parse_images"),
    Reader("label_png", ".png", _write_label_png, read_label_png, LabelImageError,
           "delete it and re-run the parsing stage"),
    Reader("image", ".png", _write_photo, read_image_rgb, LabelImageError,
           "re-download or re-extract the dataset's images"),
    Reader("smpl_pkl", ".pkl", lambda p: save_smpl_pickle(make_tiny_smpl(), p), load_smpl_arrays,
           BodyModelFileError, r"smpl\.is\.tue\.mpg\.de", pickled=True),
    Reader("smpl_npz", ".npz", lambda p: np.savez(p, **make_tiny_smpl()), load_smpl_arrays, BodyModelFileError,
           r"smpl\.is\.tue\.mpg\.de"),
]


def _damage(good: bytes, how: str) -> bytes:
    if how == "empty":
        return b""
    if how == "truncated":
        return good[:len(good) // 2]
    if how == "random":
        return RANDOM_BYTES
    assert how == "protocol6" and good[0] == pickle.PROTO[0], "protocol 6 only makes sense for a pickle"
    return pickle.PROTO + bytes([6]) + good[2:]


#: What the message must say is wrong, per damage.
WHAT: dict[str, str] = {
    "empty": r"the file is empty \(0 bytes\)",
    "truncated": r"truncated, corrupt or not ",
    "random": r"(truncated, corrupt or not |not an npz archive \(starts with b'\\xbf)",
    "protocol6": r"written with pickle protocol 6, but Python 3\.11 reads protocols up to 5",
}

CASES = [pytest.param(r, how, id=f"{r.name}-{how}") for r in READERS
         for how in ("empty", "truncated", "random", *(("protocol6",) if r.pickled else ()))]


@pytest.mark.parametrize(("reader", "how"), CASES)
def test_damaged_file_error_names_file_problem_and_fix(tmp_path: Path, reader: Reader, how: str) -> None:
    good = tmp_path / f"good{reader.suffix}"
    reader.write(good)
    reader.read(good)  # the undamaged file reads
    bad = tmp_path / f"damaged_{how}{reader.suffix}"
    bad.write_bytes(_damage(good.read_bytes(), how))
    with pytest.raises(reader.error) as err:
        reader.read(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert re.search(WHAT[how], msg), msg
    assert re.search(reader.fix, msg), msg


def test_protocol6_agora_fit_was_a_bare_value_error(tmp_path: Path) -> None:
    """The case of the issue: ``ValueError: unsupported pickle protocol: 6``, no file named."""
    path = tmp_path / "rp_eric_rigged_005.pkl"
    _write_agora(path)
    path.write_bytes(_damage(path.read_bytes(), "protocol6"))
    with pytest.raises(AgoraFitError) as err:
        read_agora_fit(path)
    assert str(err.value) == (
        f"{path}: cannot read the SMPL fit: written with pickle protocol 6, but Python 3.11 reads protocols up to 5 "
        "(a newer Python can re-save it with pickle.dump(obj, fh, protocol=4)); re-download it from AGORA, or, for "
        "the open world, delete it and re-run make_scans"
    )


def test_spin_npz_exact_messages(tmp_path: Path) -> None:
    path = tmp_path / "coco_2014_train.npz"
    path.write_bytes(b"")
    with pytest.raises(DatasetFormatError) as err:
        read_spin_npz(path)
    assert str(err.value) == (f"{path}: the file is empty (0 bytes); re-download it (SPIN/EFT/3DPW data), or, for "
                              "the open world, delete it and re-run the make_images_* rule that writes it")
    write_spin_npz(path, _dataset())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetFormatError) as err:
        read_spin_npz(path)
    assert str(err.value).startswith(f"{path}: truncated, corrupt or not an npz archive (1,000 bytes; BadZipFile: ")


def test_npz_missing_required_key_names_file_key_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "lsp_train.npz"
    np.savez(path, imgname=np.array(["a.jpg"]), scale=np.ones(1))
    with pytest.raises(DatasetFormatError) as err:
        read_spin_npz(path)
    assert str(err.value) == (
        f"{path}: missing key(s) ['center'] (found ['imgname', 'scale']); SPIN-style files need "
        "['imgname', 'center', 'scale']: re-download it (SPIN/EFT/3DPW data), or, for the open world, delete it "
        "and re-run the make_images_* rule that writes it"
    )


def _corrupt_member(path: Path, member: str) -> None:
    """Overwrite the middle of one stored npz member's bytes (np.savez stores members uncompressed)."""
    data = bytearray(path.read_bytes())
    start = data.index(member.encode()) + len(member) + 200  # into the member's array bytes
    data[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_npz_member_failing_its_crc_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mpii_train.npz"
    write_spin_npz(path, _dataset())
    _corrupt_member(path, "openpose.npy")
    with pytest.raises(DatasetFormatError) as err:  # was zipfile.BadZipFile: Bad CRC-32 ..., no path
        read_spin_npz(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: key 'openpose': truncated, corrupt or not an npz archive (")
    assert "Bad CRC-32 for file 'openpose.npy'" in msg and "re-download it" in msg


def test_npz_extra_key_damaged_is_an_error_not_a_dropped_key(tmp_path: Path) -> None:
    path = tmp_path / "lsp_train.npz"
    data = _dataset()
    data.extra["maskname"] = np.array([f"m{i}.png" * 20 for i in range(3)])
    write_spin_npz(path, data)
    _corrupt_member(path, "maskname.npy")
    with pytest.raises(DatasetFormatError, match=r"lsp_train\.npz: key 'maskname': truncated, corrupt"):
        read_spin_npz(path)


@pytest.mark.parametrize("text", ['{"ver": 0.1, "data": [{"parm_pose": [[', "<html>502 Bad Gateway</html>"])
def test_eft_json_truncated_or_not_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "COCO2014-All-ver01.json"
    path.write_text(text)
    with pytest.raises(DatasetFormatError) as err:
        read_eft_json(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not a readable EFT JSON: truncated, corrupt or not a JSON document "
                          f"({len(text)} bytes; JSONDecodeError: ")
    assert msg.endswith("re-download it (SPIN/EFT/3DPW data), or, for the open world, delete it and re-run the "
                        "make_images_* rule that writes it")
    path.write_text(json.dumps({"ver": 0.1}))
    with pytest.raises(DatasetFormatError, match=r"ver01\.json: missing top-level list 'data'.*re-download it"):
        read_eft_json(path)


def test_hdf5_truncated_names_file_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "coco.h5"
    _write_store(path, 3)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:size // 2])
    with pytest.raises(StoreFormatError) as err:
        MaskStore(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: truncated, corrupt or not an HDF5 file ({size // 2:,} bytes; OSError: ")
    assert "truncated file" in msg and msg.endswith("; delete it and re-run clean_masks")


def test_hdf5_mask_chunk_that_does_not_inflate_names_file_and_sample(tmp_path: Path) -> None:
    path = tmp_path / "coco.h5"
    _write_store(path, 3)
    with h5py.File(path) as h5:
        info = h5["mask_c"].id.get_chunk_info(1)  # sample 1's gzip chunk
    data = bytearray(path.read_bytes())
    data[info.byte_offset:info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(data))
    with MaskStore(path) as store:
        np.testing.assert_array_equal(store[0].mask_c.shape, (8, 8))  # other samples still read
        with pytest.raises(StoreFormatError) as err:  # was OSError: Can't synchronously read data, no path
            store[1]
    msg = str(err.value)
    assert msg.startswith(f"{path}: sample 1: truncated, corrupt or not an HDF5 file (")
    assert "filter returned failure" in msg and msg.endswith("; delete it and re-run clean_masks")


def test_parse_shard_offset_past_the_label_stream_names_file_and_image(tmp_path: Path) -> None:
    path = tmp_path / "0.h5"
    write_parse_shard(path, [("a.jpg", np.ones((4, 5), np.uint8)), ("b.jpg", np.ones((3, 3), np.uint8))])
    with h5py.File(path, "r+") as h5:
        h5["offset"][1] = 25  # b's 9 bytes would end at 34, past the 29-byte stream
    with ParseShard(path) as shard:
        np.testing.assert_array_equal(shard["a.jpg"], np.ones((4, 5), np.uint8))
        with pytest.raises(StoreFormatError) as err:  # was ValueError: cannot reshape array of size 4, no path
            shard["b.jpg"]
    assert str(err.value) == (f"{path}: image 'b.jpg' needs 9 label bytes at offset 25 but 'labels' ends at 29; "
                              "delete it and re-run parse_images")


def test_damaged_image_says_redownload_missing_image_says_check_root(tmp_path: Path) -> None:
    path = tmp_path / "im.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(LabelImageError) as err:
        read_image_rgb(path)
    msg = str(err.value)  # was "...; check the dataset's image root", which is not the fix for a damaged file
    assert msg.startswith(f"{path}: cannot read the image: truncated, corrupt or not an image (300 bytes; OSError: ")
    assert msg.endswith("; re-download or re-extract the dataset's images (open world: delete the folder and re-run "
                        "the make_images_* rule)")
    with pytest.raises(LabelImageError) as err:
        read_image_rgb(tmp_path / "absent.jpg")
    assert str(err.value) == (f"{tmp_path / 'absent.jpg'}: cannot read the image (not found); check the dataset's "
                              "image root in the config")
