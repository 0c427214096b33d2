"""HDF5 stores of the pseudo-ground-truth stage: raw parse shards and the cleaned mask store (one schema module).

Raw parse shards — ``results/masks/{dataset}/parsing/{shard}.h5`` (written by ``parse_images``)
-----------------------------------------------------------------------------------------------
One file holds the CIHP-20 label maps of a set of *unique* images (a COCO image with several people is parsed
once), each at its original resolution. Variable-size maps are stored flattened, one after another, so a
shard is three small index arrays plus one compressed byte stream read sequentially:

=========== ==================== ===========================================================================
dataset     shape / dtype        meaning
=========== ==================== ===========================================================================
imgname     (M,) utf-8 str       image path relative to the image root (the dataset's ``imgname``)
shape       (M, 2) int32         label-map height, width (0, 0 when ``status`` != 0)
offset      (M,) int64           start of the map in ``labels`` (row-major H×W)
status      (M,) uint8           0 parsed; 1 image missing; 2 image unreadable; 3 parser failed
labels      (sum H·W,) uint8     all maps, concatenated; chunked (1 MiB) and gzip-compressed
=========== ==================== ===========================================================================

attrs: ``kind = "parse_shard"``, ``schema_version`` and whatever the writer passes (parser, dataset, shard,
git SHA, config as a JSON string).

Cleaned mask store — ``results/masks/{dataset}.h5`` (written by ``clean_masks``)
---------------------------------------------------------------------------------
Row i is sample i of the dataset's annotation file (same order; ``imgname``/``center`` let a reader verify
the alignment, :meth:`MaskStore.check_aligned`). Masks live in the **SPIN crop frame** at a fixed resolution R:
``crop = crop_transform @ [x, y, 1]`` maps original-image pixel coordinates (pixel centres at integers) to
crop pixel coordinates (same convention, cv2's), see :mod:`pipeline.masks.clean`.

============== ==================== ========================================================================
dataset        shape / dtype        meaning
============== ==================== ========================================================================
imgname        (N,) utf-8 str       the dataset's ``imgname``
center         (N, 2) float64       the dataset's ``center`` (px)
scale          (N,) float64         the dataset's ``scale`` (box side / 200)
mask_c         (N, R, R) uint8      DSR-C class ids (attrs ``class_names``); chunk = 1 sample, gzip
mask_mc        (N, R, R) uint8      DSR-MC binary mask (1 = a kept MC label); chunk = 1 sample, gzip
valid_mc       (N, 5) bool          kept MC labels, order ``mc_labels`` (LeftArm, RightArm, LeftShoe, RightShoe, Face)
mc_pixels      (N, 5) int32         MC label pixel counts inside the keypoint box, original image frame
class_pixels   (N, C) int32         class pixel counts inside the keypoint box (Background: also outside),
                                    original image frame
crop_transform (N, 2, 3) float64    original image -> crop affine
image_hw       (N, 2) int32         original image (label map) height, width; 0 when no map
valid          (N,) bool            the sample had keypoints and a parse map
invalid_reason (N,) uint8           bit flags: 1 no keypoint above the confidence threshold, 2 no parse map
============== ==================== ========================================================================

attrs: ``kind = "dsr_mask_store"``, ``schema_version``, ``resolution``, ``class_names`` (JSON),
``mc_labels`` (JSON), ``counts`` (JSON: samples, valid, no_keypoints, no_parse_map) and the writer's
provenance (mapping, thresholds, parser, git SHA, config — JSON strings).

Both writers write to ``.{name}.partial`` beside the target and rename it when complete; an exception
removes the partial file, and a killed process leaves only the partial file (overwritten by the next run),
never a half-written target. Writes are deterministic: the same records give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h5py
import numpy as np

from pipeline.io.damaged import describe_unreadable
from pipeline.parsing.labels import MC_LABELS

SCHEMA_VERSION: int = 1
PARSE_SHARD_KIND: str = "parse_shard"
MASK_STORE_KIND: str = "dsr_mask_store"
COMPRESSION: str = "gzip"
#: gzip level 1: measured ~1.5x faster cleaning than level 4 for ~30 % more bytes on crop masks.
COMPRESSION_LEVEL: int = 1
#: Chunk of the flattened label stream of a parse shard (bytes).
LABEL_CHUNK: int = 1 << 20
#: Parse-shard writes are buffered up to this many bytes.
WRITE_BUFFER_BYTES: int = 16 << 20
#: HDF5 chunk cache per open file (bytes): holds a few label chunks / mask samples.
CHUNK_CACHE_BYTES: int = 8 << 20
#: Mask-store samples buffered per write.
MASK_WRITE_BLOCK: int = 64
NUM_MC: int = len(MC_LABELS)

#: Parse status codes.
PARSE_OK: int = 0
PARSE_IMAGE_MISSING: int = 1
PARSE_IMAGE_UNREADABLE: int = 2
PARSE_FAILED: int = 3
PARSE_STATUS: dict[int, str] = {PARSE_OK: "ok", PARSE_IMAGE_MISSING: "image missing",
                                PARSE_IMAGE_UNREADABLE: "image unreadable", PARSE_FAILED: "parser failed"}

#: ``invalid_reason`` bit flags of the mask store.
INVALID_NO_KEYPOINTS: int = 1
INVALID_NO_PARSE: int = 2

#: The rule that writes each kind of store (named in the fix of a damaged or stale file).
WRITER_RULE: dict[str, str] = {PARSE_SHARD_KIND: "parse_images", MASK_STORE_KIND: "clean_masks"}
#: What h5py raises on a damaged file: at open (OSError), opening an object (KeyError), checking a link
#: (RuntimeError), reading a chunk that does not inflate (OSError) or a bad string/attribute (ValueError).
_DAMAGED_H5_ERRORS: tuple[type[BaseException], ...] = (OSError, KeyError, RuntimeError, ValueError)

_STR = h5py.string_dtype("utf-8")
_PARSE_DATASETS: tuple[str, ...] = ("imgname", "shape", "offset", "status", "labels")
_MASK_DATASETS: tuple[str, ...] = ("imgname", "center", "scale", "mask_c", "mask_mc", "valid_mc", "mc_pixels",
                                   "class_pixels", "crop_transform", "image_hw", "valid", "invalid_reason")


class StoreFormatError(ValueError):
    """An HDF5 store is missing, not of the expected kind/version, or lacks a dataset; names file and key."""


def partial_path(path: str | Path) -> Path:
    """The temporary file a writer of ``path`` fills before renaming it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _attr_value(value: Any) -> str | int | float | bool:
    """HDF5-storable attribute: scalars as they are, anything else as a JSON string."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, sort_keys=True, default=str)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


class _AtomicH5:
    """An ``h5py.File`` written at :func:`partial_path` and renamed to the target by :meth:`commit`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.unlink(missing_ok=True)  # a leftover of a killed run
        self.h5 = h5py.File(self.tmp, "w", rdcc_nbytes=CHUNK_CACHE_BYTES)
        self.done = False

    def commit(self) -> None:
        self.h5.flush()
        self.h5.close()
        os.replace(self.tmp, self.path)
        self.done = True

    def abort(self) -> None:
        try:
            self.h5.close()
        finally:
            self.tmp.unlink(missing_ok=True)
        self.done = True


def _damaged(path: Path, kind: str, exc: BaseException, where: str = "") -> StoreFormatError:
    """The error for a store h5py cannot open or read (``where``: e.g. ``"sample 3: "``)."""
    what = describe_unreadable(path, exc, "an HDF5 file")
    return StoreFormatError(f"{path}: {where}{what}; delete it and re-run {WRITER_RULE[kind]}")


def _open_h5(path: Path, kind: str) -> h5py.File:
    """``h5py.File(path, "r")``, or a :class:`StoreFormatError` naming the file and the rule that rewrites it."""
    try:
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES)
    except OSError as exc:  # empty, truncated ("truncated file: eof = ..."), not HDF5 ("file signature not found")
        raise _damaged(path, kind, exc) from exc


def _open(path: str | Path, kind: str, required: Sequence[str]) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise StoreFormatError(f"{path}: not found; run the stage that writes it ({WRITER_RULE[kind]})")
    h5 = _open_h5(path, kind)
    try:
        got_kind = _decode_attr(h5.attrs.get("kind"))
        version = _decode_attr(h5.attrs.get("schema_version"))
        missing = [k for k in required if k not in h5]
    except _DAMAGED_H5_ERRORS as exc:  # damaged object headers or symbol tables
        h5.close()
        raise _damaged(path, kind, exc) from exc
    problem = None
    if got_kind != kind:
        problem = f"attribute 'kind' is {got_kind!r}, expected {kind!r}"
    elif version != SCHEMA_VERSION:
        problem = f"schema_version {version!r}, this code reads {SCHEMA_VERSION}"
    elif missing:
        problem = f"missing dataset(s) {missing}"
    if problem:
        h5.close()
        raise StoreFormatError(f"{path}: {problem}; delete it and re-run the stage that writes it "
                               f"({WRITER_RULE[kind]})")
    return h5


# ----------------------------------------------------------------------------------------------------------
# raw parse shards


def plan_shards(imgnames: Iterable[str], shard_size: int) -> list[list[str]]:
    """Unique image names in order of first appearance, split into shards of ``shard_size`` images.

    Shard k of a dataset always holds the same images for the same annotation file and shard size.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    unique = list(dict.fromkeys(str(n) for n in imgnames))
    return [unique[i:i + shard_size] for i in range(0, len(unique), shard_size)]


class _AtomicWriterMixin:
    """Context-manager behaviour shared by the writers: commit on success, discard the partial file on error.

    Subclasses hold ``self._file`` (an :class:`_AtomicH5`) and define ``close()``.
    """

    _file: _AtomicH5

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        """Discard the partial file."""
        self._file.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._file.done:
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ParseShardWriter(_AtomicWriterMixin):
    """Write one raw parse shard, atomically.

    Usage::

        with ParseShardWriter(path, attrs={"parser": "graphonomy", "dataset": "coco", "shard": 3}) as w:
            w.add("train2014/a.jpg", labels)          # (H, W) uint8 CIHP ids
            w.add("train2014/b.jpg", None, PARSE_IMAGE_MISSING)

    The file appears at ``path`` only when the ``with`` block ends without an exception.
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Any] | None = None) -> None:
        self._file = _AtomicH5(path)
        h5 = self._file.h5
        h5.attrs["kind"] = PARSE_SHARD_KIND
        h5.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in (attrs or {}).items():
            h5.attrs[key] = _attr_value(value)
        self._labels = h5.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                         chunks=(LABEL_CHUNK,), compression=COMPRESSION,
                                         compression_opts=COMPRESSION_LEVEL)
        self._names: list[str] = []
        self._seen: set[str] = set()
        self._shapes: list[tuple[int, int]] = []
        self._offsets: list[int] = []
        self._status: list[int] = []
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0

    def add(self, imgname: str, labels: np.ndarray | None, status: int = PARSE_OK) -> None:
        """Append one image's label map ((H, W) uint8 ids), or ``None`` with a non-zero ``status``."""
        imgname = str(imgname)
        if imgname in self._seen:
            raise ValueError(f"{self._file.path}: image {imgname!r} added twice to the shard")
        if status not in PARSE_STATUS:
            raise ValueError(f"unknown parse status {status}; allowed: {PARSE_STATUS}")
        if (labels is None) != (status != PARSE_OK):
            raise ValueError(f"{imgname}: give a label map with status {PARSE_OK}, or None with a failure status")
        offset = self._written + self._buffered
        if labels is None:
            shape = (0, 0)
        else:
            labels = np.asarray(labels)
            if labels.ndim != 2:
                raise ValueError(f"{imgname}: label map must be (H, W), got shape {labels.shape}")
            shape = (int(labels.shape[0]), int(labels.shape[1]))
            flat = np.ascontiguousarray(labels, dtype=np.uint8).reshape(-1)
            self._buffer.append(flat)
            self._buffered += flat.size
            if self._buffered >= WRITE_BUFFER_BYTES:
                self._flush()
        self._seen.add(imgname)
        self._names.append(imgname)
        self._shapes.append(shape)
        self._offsets.append(offset)
        self._status.append(int(status))

    def _flush(self) -> None:
        if not self._buffer:
            return
        data = np.concatenate(self._buffer)
        self._labels.resize((self._written + data.size,))
        self._labels[self._written:] = data
        self._written += data.size
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        """Write the index datasets and move the file into place."""
        self._flush()
        h5 = self._file.h5
        h5.create_dataset("imgname", data=np.array(self._names, dtype=object), dtype=_STR)
        h5.create_dataset("shape", data=np.array(self._shapes, dtype=np.int32).reshape(-1, 2))
        h5.create_dataset("offset", data=np.array(self._offsets, dtype=np.int64))
        h5.create_dataset("status", data=np.array(self._status, dtype=np.uint8))
        self._file.commit()



def write_parse_shard(path: str | Path, items: Iterable[tuple[str, np.ndarray | None]],
                      attrs: Mapping[str, Any] | None = None) -> None:
    """Write a shard from ``(imgname, labels or None)`` pairs (None = image missing), atomically."""
    with ParseShardWriter(path, attrs) as writer:
        for name, labels in items:
            writer.add(name, labels, PARSE_OK if labels is not None else PARSE_IMAGE_MISSING)


class ParseShard:
    """Read one raw parse shard. ``shard[imgname]`` -> (H, W) uint8, or None when the image was not parsed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5 = _open(self.path, PARSE_SHARD_KIND, _PARSE_DATASETS)
        try:
            self.imgnames: list[str] = [n.decode() if isinstance(n, bytes) else str(n)
                                        for n in self._h5["imgname"][()]]
            self.shapes: np.ndarray = self._h5["shape"][()]
            self.offsets: np.ndarray = self._h5["offset"][()]
            self.status: np.ndarray = self._h5["status"][()]
            self.attrs: dict[str, Any] = {k: _decode_attr(v) for k, v in self._h5.attrs.items()}
        except _DAMAGED_H5_ERRORS as exc:
            self._h5.close()
            raise _damaged(self.path, PARSE_SHARD_KIND, exc) from exc
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.imgnames)}

    def __len__(self) -> int:
        return len(self.imgnames)

    def __contains__(self, imgname: object) -> bool:
        return imgname in self.index

    def read(self, i: int) -> np.ndarray | None:
        """The i-th label map, (H, W) uint8, or None if its status is not ok."""
        if self.status[i] != PARSE_OK:
            return None
        h, w = (int(v) for v in self.shapes[i])
        start = int(self.offsets[i])
        try:
            flat = self._h5["labels"][start:start + h * w]
        except _DAMAGED_H5_ERRORS as exc:  # a chunk that does not inflate
            raise _damaged(self.path, PARSE_SHARD_KIND, exc, f"image {self.imgnames[i]!r}: ") from exc
        if flat.size != h * w:
            raise StoreFormatError(f"{self.path}: image {self.imgnames[i]!r} needs {h * w} label bytes at offset "
                                   f"{start} but 'labels' ends at {self._h5['labels'].shape[0]}; delete it and "
                                   f"re-run {WRITER_RULE[PARSE_SHARD_KIND]}")
        return flat.reshape(h, w)

    def __getitem__(self, imgname: str) -> np.ndarray | None:
        if imgname not in self.index:
            raise KeyError(f"{self.path}: no image {imgname!r} in this shard")
        return self.read(self.index[imgname])

    def __iter__(self) -> Iterator[tuple[str, np.ndarray | None]]:
        for i, name in enumerate(self.imgnames):
            yield name, self.read(i)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ParseShardSet:
    """Several shards joined by ``imgname``; keeps at most ``max_open`` files open (least recently used closed).

    Raises:
        StoreFormatError: an image listed in two shards (naming both files).
    """

    def __init__(self, paths: Iterable[str | Path], max_open: int = 8) -> None:
        self.paths = [Path(p) for p in paths]
        self.max_open = max_open
        self.where: dict[str, tuple[int, int]] = {}
        self.status: dict[str, int] = {}
        self.attrs: list[dict[str, Any]] = []
        for k, path in enumerate(self.paths):
            with ParseShard(path) as shard:
                self.attrs.append(shard.attrs)
                for i, name in enumerate(shard.imgnames):
                    if name in self.where:
                        other = self.paths[self.where[name][0]]
                        raise StoreFormatError(f"{path}: image {name!r} is also in {other}; shards must not overlap "
                                               "(re-run parse_images)")
                    self.where[name] = (k, i)
                    self.status[name] = int(shard.status[i])
        self._open: dict[int, ParseShard] = {}

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, imgname: object) -> bool:
        return imgname in self.where

    def get(self, imgname: str) -> np.ndarray | None:
        """(H, W) uint8 label map, or None when the image is in no shard or was not parsed."""
        loc = self.where.get(imgname)
        if loc is None:
            return None
        k, i = loc
        shard = self._open.pop(k, None)
        if shard is None:
            shard = ParseShard(self.paths[k])
            if len(self._open) >= self.max_open:
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
        self._open[k] = shard  # most recently used last
        return shard.read(i)

    def close(self) -> None:
        for shard in self._open.values():
            shard.close()
        self._open.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# cleaned mask store


@dataclass
class MaskRecord:
    """One sample of the mask store (shapes as in the module doc; R = resolution, C = classes)."""

    imgname: str
    center: np.ndarray  # (2,) float64 px
    scale: float
    mask_c: np.ndarray  # (R, R) uint8 class ids
    mask_mc: np.ndarray  # (R, R) uint8 {0, 1}
    valid_mc: np.ndarray  # (5,) bool
    mc_pixels: np.ndarray  # (5,) int
    class_pixels: np.ndarray  # (C,) int
    crop_transform: np.ndarray  # (2, 3) float64, original -> crop
    image_hw: np.ndarray  # (2,) int (H, W)
    valid: bool
    invalid_reason: int = 0


class MaskStoreWriter(_AtomicWriterMixin):
    """Write the cleaned mask store sample by sample (in dataset order), atomically.

    Args:
        path: the target ``.h5``.
        resolution: R, side of the crop masks.
        class_names: the DSR-C classes (C).
        attrs: provenance attributes (non-scalars are stored as JSON strings).
        expected: if given, :meth:`close` fails unless exactly this many samples were written.
    """

    def __init__(self, path: str | Path, *, resolution: int, class_names: Sequence[str],
                 attrs: Mapping[str, Any] | None = None, expected: int | None = None) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        self.resolution = int(resolution)
        self.class_names = tuple(class_names)
        self.expected = expected
        self._file = _AtomicH5(path)
        h5 = self._file.h5
        h5.attrs["kind"] = MASK_STORE_KIND
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["resolution"] = self.resolution
        h5.attrs["class_names"] = json.dumps(list(self.class_names))
        h5.attrs["mc_labels"] = json.dumps(list(MC_LABELS))
        for key, value in (attrs or {}).items():
            h5.attrs[key] = _attr_value(value)
        r = self.resolution
        self._masks = {name: h5.create_dataset(name, shape=(0, r, r), maxshape=(None, r, r), dtype=np.uint8,
                                               chunks=(1, r, r), compression=COMPRESSION,
                                               compression_opts=COMPRESSION_LEVEL)
                       for name in ("mask_c", "mask_mc")}
        self._block: dict[str, list[np.ndarray]] = {"mask_c": [], "mask_mc": []}
        self._meta: dict[str, list[Any]] = {k: [] for k in _MASK_DATASETS if k not in self._block}
        self._written = 0

    def __len__(self) -> int:
        return len(self._meta["imgname"])

    def write(self, rec: MaskRecord) -> None:
        """Append one sample (raises ValueError naming the field on a shape mismatch)."""
        r, c = self.resolution, len(self.class_names)
        checks = {"mask_c": (rec.mask_c, (r, r)), "mask_mc": (rec.mask_mc, (r, r)),
                  "valid_mc": (rec.valid_mc, (NUM_MC,)),
                  "mc_pixels": (rec.mc_pixels, (NUM_MC,)), "class_pixels": (rec.class_pixels, (c,)),
                  "crop_transform": (rec.crop_transform, (2, 3)), "center": (rec.center, (2,)),
                  "image_hw": (rec.image_hw, (2,))}
        for key, (value, shape) in checks.items():
            if np.shape(value) != shape:
                raise ValueError(f"{self._file.path}: sample {len(self)} ({rec.imgname}) field {key!r} has shape "
                                 f"{np.shape(value)}, expected {shape}")
        self._block["mask_c"].append(np.asarray(rec.mask_c, dtype=np.uint8))
        self._block["mask_mc"].append(np.asarray(rec.mask_mc, dtype=np.uint8))
        for key in self._meta:
            self._meta[key].append(getattr(rec, key))
        if len(self._block["mask_c"]) >= MASK_WRITE_BLOCK:
            self._flush()

    def _flush(self) -> None:
        n = len(self._block["mask_c"])
        if not n:
            return
        for name, ds in self._masks.items():
            ds.resize((self._written + n, self.resolution, self.resolution))
            ds[self._written:] = np.stack(self._block[name])
            self._block[name] = []
        self._written += n

    def close(self) -> None:
        """Write the per-sample arrays and the counts, then move the file into place."""
        n = len(self)
        if self.expected is not None and n != self.expected:
            self.abort()
            raise ValueError(f"{self._file.path}: {n} samples written, expected {self.expected}; nothing was saved")
        self._flush()
        m = self._meta
        h5 = self._file.h5
        h5.create_dataset("imgname", data=np.array(m["imgname"], dtype=object), dtype=_STR)
        arrays = {
            "center": np.array(m["center"], dtype=np.float64).reshape(n, 2),
            "scale": np.array(m["scale"], dtype=np.float64).reshape(n),
            "valid_mc": np.array(m["valid_mc"], dtype=bool).reshape(n, NUM_MC),
            "mc_pixels": np.array(m["mc_pixels"], dtype=np.int32).reshape(n, NUM_MC),
            "class_pixels": np.array(m["class_pixels"], dtype=np.int32).reshape(n, len(self.class_names)),
            "crop_transform": np.array(m["crop_transform"], dtype=np.float64).reshape(n, 2, 3),
            "image_hw": np.array(m["image_hw"], dtype=np.int32).reshape(n, 2),
            "valid": np.array(m["valid"], dtype=bool).reshape(n),
            "invalid_reason": np.array(m["invalid_reason"], dtype=np.uint8).reshape(n),
        }
        for key, value in arrays.items():
            h5.create_dataset(key, data=value)
        reason = arrays["invalid_reason"]
        h5.attrs["counts"] = json.dumps({
            "samples": n, "valid": int(arrays["valid"].sum()),
            "no_keypoints": int(((reason & INVALID_NO_KEYPOINTS) > 0).sum()),
            "no_parse_map": int(((reason & INVALID_NO_PARSE) > 0).sum()),
        })
        self._file.commit()



class MaskStore:
    """Read the cleaned mask store: ``store[i]`` -> :class:`MaskRecord`.

    Small per-sample arrays are loaded on open (:attr:`meta`); masks are read per sample. The HDF5 handle is
    opened lazily and dropped on pickling, so a store can be handed to DataLoader workers (each reopens).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        h5 = _open(self.path, MASK_STORE_KIND, _MASK_DATASETS)
        try:
            self.attrs: dict[str, Any] = {k: _decode_attr(v) for k, v in h5.attrs.items()}
            self.meta: dict[str, np.ndarray] = {k: h5[k][()] for k in _MASK_DATASETS if k not in ("mask_c", "mask_mc")}
            self.meta["imgname"] = np.array([n.decode() if isinstance(n, bytes) else str(n)
                                             for n in self.meta["imgname"]], dtype=str)
        except _DAMAGED_H5_ERRORS as exc:
            raise _damaged(self.path, MASK_STORE_KIND, exc) from exc
        finally:
            h5.close()
        self.resolution: int = int(self.attrs["resolution"])
        self.class_names: tuple[str, ...] = tuple(json.loads(self.attrs["class_names"]))
        self.mc_labels: tuple[str, ...] = tuple(json.loads(self.attrs["mc_labels"]))
        self.counts: dict[str, int] = json.loads(self.attrs["counts"])
        self._h5: h5py.File | None = None

    def json_attr(self, key: str) -> Any:
        """A provenance attribute decoded from JSON (e.g. ``mapping``, ``settings``, ``config``)."""
        if key not in self.attrs:
            raise KeyError(f"{self.path}: no attribute {key!r}; present: {sorted(self.attrs)}")
        value = self.attrs[key]
        return json.loads(value) if isinstance(value, str) else value

    def __len__(self) -> int:
        return len(self.meta["imgname"])

    def _file(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = _open_h5(self.path, MASK_STORE_KIND)
        return self._h5

    def masks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mask_c, mask_mc)`` of sample i, each (R, R) uint8."""
        h5 = self._file()
        try:
            return h5["mask_c"][i], h5["mask_mc"][i]
        except _DAMAGED_H5_ERRORS as exc:  # a chunk that does not inflate
            raise _damaged(self.path, MASK_STORE_KIND, exc, f"sample {i}: ") from exc

    def __getitem__(self, i: int) -> MaskRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: sample {i} out of range ({len(self)} samples)")
        mask_c, mask_mc = self.masks(i)
        m = self.meta
        return MaskRecord(imgname=str(m["imgname"][i]), center=m["center"][i], scale=float(m["scale"][i]),
                          mask_c=mask_c, mask_mc=mask_mc, valid_mc=m["valid_mc"][i], mc_pixels=m["mc_pixels"][i],
                          class_pixels=m["class_pixels"][i], crop_transform=m["crop_transform"][i],
                          image_hw=m["image_hw"][i], valid=bool(m["valid"][i]),
                          invalid_reason=int(m["invalid_reason"][i]))

    def check_aligned(self, imgname: np.ndarray, center: np.ndarray, source: str | Path = "the dataset",
                      atol: float = 1e-6) -> None:
        """Raise :class:`StoreFormatError` unless row i of the store is sample i of the dataset."""
        imgname = np.asarray(imgname).astype(str)
        if len(imgname) != len(self):
            raise StoreFormatError(f"{self.path}: {len(self)} samples but {source} has {len(imgname)}; the mask store "
                                   "is stale: re-run clean_masks")
        bad = np.flatnonzero((imgname != self.meta["imgname"])
                             | ~np.isclose(np.asarray(center), self.meta["center"], atol=atol).all(1))
        if len(bad):
            i = int(bad[0])
            raise StoreFormatError(f"{self.path}: sample {i} is {str(self.meta['imgname'][i])!r} at "
                                   f"{self.meta['center'][i].tolist()} but {source} has {str(imgname[i])!r} at "
                                   f"{np.asarray(center)[i].tolist()} ({len(bad)} mismatching samples); the mask "
                                   "store is stale: re-run clean_masks")

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None
        return state
