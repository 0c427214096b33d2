"""Pseudo-ground-truth cleaning: raw CIHP-20 label maps -> DSR-MC and DSR-C targets in the SPIN crop frame.

Per person sample, in **original image coordinates** (paper Sup. Mat. A.2, DESIGN §4.7):

1. **Keypoint box**: all keypoints (SPIN's 49 = 25 OpenPose + 24 GT) with confidence > 0.3; box =
   ``[floor(min − 30), ceil(max + 30)]`` px in x and y, clamped to the image; every pixel outside is set to
   Background (Graphonomy labels every person in the image; the box keeps the sample's own person).
   Pixel ``(x, y)`` is the pixel with column x and row y (pixel centres at integer coordinates), so with a
   keypoint at x = 100 the pixel at 130 is kept and the pixel at 131 is zeroed.
2. **DSR-MC**: for each of LeftArm, RightArm, LeftShoe, RightShoe, Face, the label is kept ("valid") when it
   covers at least ``min_label_pixels`` (60) pixels inside the box; the binary mask is 1 on kept labels.
   (The official code counts ``> 60`` in the augmented 224 crop; we count ``>= 60`` once, in the original
   image, so the decision does not depend on the random augmentation.)
3. **DSR-C**: class ids through the configured :class:`~pipeline.masks.mappings.ClassMapping` (Table I).
4. Both are resampled with **nearest neighbour** into the SPIN crop frame: the square of side
   ``scale · 200 · crop_margin`` px around ``center``, at ``crop_resolution`` px, with the affine
   ``crop = A @ [x, y, 1]``, ``A = [[s, 0, R/2 − s·cx], [0, s, R/2 − s·cy]]``, ``s = R / (scale·200·margin)``
   (SPIN's ``get_transform`` without rotation, enlarged by the margin). A crop pixel takes the label of the
   source pixel ``round(A⁻¹ [u, v, 1])`` (ties round up, as ``floor(x + 0.5)``); crop pixels whose source lies
   outside the image are Background (0). Nearest neighbour never creates a label that is not in the source,
   and training augmentations (flip, rotation, scale) composed with ``A`` stay exact.

Defaults ``crop_margin = 1.75``, ``crop_resolution = 392 = 224 · 1.75``: the un-augmented 224 training crop is
the central 224² of the stored crop at the same pixel density (an integer-offset copy), and SPIN's
augmentation extremes (scale 1.25, rotation 30°) need a half-side of 0.88 box units, just covered by 0.875.

The implementation maps the raw labels once into the crop and then applies the box and the label lookups there
(:func:`clean_sample`); nearest-neighbour resampling commutes with per-pixel lookups, so this equals doing the
steps literally in the image frame and warping the results (:func:`clean_in_image` + :func:`warp_nearest`;
tested), at a fraction of the cost. Pixel counts (for the 60-px rule and ``class_pixels``) are taken in the
original image.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.io.images import LabelImageError, read_image_rgb, tile_images
from pipeline.io.masks_h5 import (
    INVALID_NO_KEYPOINTS,
    INVALID_NO_PARSE,
    MaskRecord,
    MaskStore,
    MaskStoreWriter,
    ParseShardSet,
)
from pipeline.io.spin_npz import SPIN_BOX_PX, PersonDataset
from pipeline.masks.mappings import ClassMapping
from pipeline.params import canonical
from pipeline.parsing.labels import (
    BACKGROUND,
    LABEL_ID,
    MC_LABELS,
    NUM_LABELS,
    colorize,
)

log = logging.getLogger(__name__)

KEYPOINT_CONF_THRESHOLD: float = 0.3
KEYPOINT_MARGIN_PX: int = 30
MIN_LABEL_PIXELS: int = 60
DEFAULT_CROP_MARGIN: float = 1.75
DEFAULT_CROP_RESOLUTION: int = 392
#: CIHP ids of the DSR-MC labels, in ``valid_mc`` order.
MC_IDS: np.ndarray = np.array([LABEL_ID[n] for n in MC_LABELS], dtype=np.int64)
MC_ON: int = 1
#: Display colours of DSR-C classes (class 0 = Background is black).
CLASS_COLOURS: np.ndarray = np.array([
    (0, 0, 0), (255, 85, 0), (0, 85, 255), (85, 200, 85), (220, 40, 160), (255, 220, 0), (0, 200, 200),
    (150, 90, 40), (140, 140, 255), (255, 140, 140), (120, 120, 0), (0, 120, 120), (120, 0, 120), (200, 200, 200),
    (60, 60, 60), (255, 255, 255)], dtype=np.uint8)
CONTACT_SHEET_SAMPLES: int = 16
CONTACT_SHEET_TILE: int = 128
CONTACT_SHEET_SAMPLES_PER_ROW: int = 2
QC_HISTOGRAM_BINS: int = 10
#: Box as inclusive pixel indices ``(x0, y0, x1, y1)``.
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CleanSettings:
    """Cleaning thresholds and the crop frame (config section ``masks``).

    Attributes:
        keypoint_conf_threshold: keypoints with confidence strictly above this define the box.
        keypoint_margin_px: box margin around the keypoints, original-image pixels.
        min_label_pixels: an MC label is kept when it covers at least this many pixels in the box.
        crop_margin: stored crop side = ``scale · 200 · crop_margin``.
        crop_resolution: stored crop side in pixels (R).
    """

    keypoint_conf_threshold: float = KEYPOINT_CONF_THRESHOLD
    keypoint_margin_px: int = KEYPOINT_MARGIN_PX
    min_label_pixels: int = MIN_LABEL_PIXELS
    crop_margin: float = DEFAULT_CROP_MARGIN
    crop_resolution: int = DEFAULT_CROP_RESOLUTION

    def __post_init__(self) -> None:
        if self.keypoint_margin_px < 0 or self.min_label_pixels < 0:
            raise ValueError(f"keypoint_margin_px and min_label_pixels must be >= 0, got {self}")
        if not self.crop_margin > 0 or self.crop_resolution < 1:
            raise ValueError(f"crop_margin must be > 0 and crop_resolution >= 1, got {self}")

    @classmethod
    def from_config(cls, masks_cfg: Mapping[str, Any]) -> CleanSettings:
        """Build from the config's ``masks`` section (keys named like the fields; others are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in masks_cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cleaning_params(masks_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of the config's ``masks`` section that change a mask store, as rule clean_masks' params (keys
    sorted): the :class:`CleanSettings` fields and ``mapping``. Not the parser, the shard count or the dataset
    list: the parse shards, its inputs, carry the first two, and each store is one dataset's."""
    keys = [*(f.name for f in fields(CleanSettings)), "mapping"]
    return canonical({k: masks_cfg[k] for k in keys})


@dataclass
class CleanedSample:
    """The cleaned targets of one sample.

    Attributes:
        mask_c: (R, R) uint8 class ids, crop frame.
        mask_mc: (R, R) uint8 {0, 1}, crop frame.
        valid_mc: (5,) bool kept MC labels (``MC_LABELS`` order).
        mc_pixels: (5,) int64 MC label pixels inside the box, image frame.
        class_pixels: (C,) int64 class pixels, image frame (Background includes everything outside the box).
        crop_transform: (2, 3) float64 image -> crop.
        box: the keypoint box (inclusive pixel indices), image frame.
    """

    mask_c: np.ndarray
    mask_mc: np.ndarray
    valid_mc: np.ndarray
    mc_pixels: np.ndarray
    class_pixels: np.ndarray
    crop_transform: np.ndarray
    box: Box


# ----------------------------------------------------------------------------------------------------------
# geometry


def keypoint_box(keypoints: np.ndarray, image_hw: tuple[int, int], *,
                 conf_threshold: float = KEYPOINT_CONF_THRESHOLD, margin_px: float = KEYPOINT_MARGIN_PX) -> Box | None:
    """The keypoint box of one person.

    Args:
        keypoints: (K, 3) float (x, y, confidence), original-image pixels (e.g. SPIN's 49).
        image_hw: (H, W) of the label map.
        conf_threshold: keypoints with confidence > this count.
        margin_px: margin added on every side.

    Returns:
        ``(x0, y0, x1, y1)`` inclusive pixel indices, clamped to the image; None when no keypoint passes
        the threshold or the box lies entirely outside the image.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    kp = kp[(kp[:, 2] > conf_threshold) & np.isfinite(kp[:, :2]).all(1)]
    if not len(kp):
        return None
    h, w = image_hw
    x0 = max(math.floor(kp[:, 0].min() - margin_px), 0)
    y0 = max(math.floor(kp[:, 1].min() - margin_px), 0)
    x1 = min(math.ceil(kp[:, 0].max() + margin_px), w - 1)
    y1 = min(math.ceil(kp[:, 1].max() + margin_px), h - 1)
    if x0 > x1 or y0 > y1:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def apply_box(labels: np.ndarray, box: Box) -> np.ndarray:
    """Copy of ``labels`` (H, W) with every pixel outside the inclusive ``box`` set to Background."""
    out = np.zeros_like(labels)
    x0, y0, x1, y1 = box
    out[y0:y1 + 1, x0:x1 + 1] = labels[y0:y1 + 1, x0:x1 + 1]
    return out


def crop_transform(center: np.ndarray, scale: float, resolution: int,
                   margin: float = DEFAULT_CROP_MARGIN) -> np.ndarray:
    """(2, 3) float64 affine, original image pixels -> crop pixels (module doc).

    Args:
        center: (2,) box centre (x, y) px.
        scale: SPIN scale (box side / 200).
        resolution: crop side R in pixels.
        margin: crop side = ``scale · 200 · margin``.
    """
    side = float(scale) * SPIN_BOX_PX * float(margin)
    if not (np.isfinite(side) and side > 0 and np.isfinite(center).all()):
        raise ValueError(f"invalid person box: center {np.asarray(center).tolist()}, scale {scale}")
    s = resolution / side
    cx, cy = float(center[0]), float(center[1])
    return np.array([[s, 0.0, resolution / 2 - s * cx], [0.0, s, resolution / 2 - s * cy]])


def invert_affine(transform: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine, as (2, 3)."""
    full = np.vstack([np.asarray(transform, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _nearest(coord: np.ndarray) -> np.ndarray:
    """Nearest pixel index of a continuous coordinate (ties round up)."""
    return np.floor(coord + 0.5).astype(np.int64)


def _source_indices(transform: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel indices (ix, iy) of every output pixel; (out_w,)/(out_h,) for axis-aligned transforms,
    else (out_h, out_w) each."""
    inv = invert_affine(transform)
    h, w = out_hw
    u, v = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    if inv[0, 1] == 0.0 and inv[1, 0] == 0.0:
        return _nearest(inv[0, 0] * u + inv[0, 2]), _nearest(inv[1, 1] * v + inv[1, 2])
    uu, vv = np.meshgrid(u, v)
    return (_nearest(inv[0, 0] * uu + inv[0, 1] * vv + inv[0, 2]),
            _nearest(inv[1, 0] * uu + inv[1, 1] * vv + inv[1, 2]))


def warp_nearest(src: np.ndarray, transform: np.ndarray, out_hw: tuple[int, int], fill: int = BACKGROUND,
                 box: Box | None = None) -> np.ndarray:
    """Nearest-neighbour resampling of a label image.

    Args:
        src: (H, W) label image (any integer dtype).
        transform: (2, 3) affine mapping *source* pixel coordinates to *output* pixel coordinates
            (cv2.warpAffine's convention without WARP_INVERSE_MAP).
        out_hw: (h, w) of the output.
        fill: value of output pixels whose source lies outside ``src`` (or outside ``box``).
        box: optional inclusive source box ``(x0, y0, x1, y1)``; sources outside it also get ``fill``.

    Returns:
        (h, w) array of ``src.dtype``; every value is a value of ``src`` or ``fill``.
    """
    src = np.asarray(src)
    h, w = src.shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, w - 1, h - 1)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    ix, iy = _source_indices(transform, out_hw)
    in_x = (ix >= x0) & (ix <= x1)
    in_y = (iy >= y0) & (iy <= y1)
    ixc, iyc = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    if ix.ndim == 1:  # separable: gather rows, then columns, then blank the out-of-range rows/columns
        out = np.take(np.take(src, iyc, axis=0), ixc, axis=1)
        out[~in_y, :] = fill
        out[:, ~in_x] = fill
        return out
    out = src[iyc, ixc]
    out[~(in_x & in_y)] = fill
    return out


def uncrop(mask: np.ndarray, transform: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A crop-frame mask back in the original image frame (nearest neighbour, outside the crop = 0)."""
    return warp_nearest(mask, invert_affine(transform), image_hw)


# ----------------------------------------------------------------------------------------------------------
# label rules


def label_counts_in_box(labels: np.ndarray, box: Box) -> np.ndarray:
    """(20,) int64 pixel count per CIHP label after zeroing outside ``box`` (outside counts as Background)."""
    x0, y0, x1, y1 = box
    inner = labels[y0:y1 + 1, x0:x1 + 1]
    counts = np.bincount(inner.ravel(), minlength=NUM_LABELS).astype(np.int64)
    if len(counts) > NUM_LABELS:
        bad = int(np.flatnonzero(counts)[-1])
        raise ValueError(f"label id {bad} outside the CIHP vocabulary [0, {NUM_LABELS}); the parse maps must hold "
                         "CIHP-20 ids")
    counts[BACKGROUND] += labels.size - inner.size
    return counts


def valid_mc_labels(label_counts: np.ndarray, min_pixels: int = MIN_LABEL_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """``(valid_mc (5,) bool, mc_pixels (5,) int64)``: MC labels covering at least ``min_pixels`` pixels."""
    mc_pixels = np.asarray(label_counts, dtype=np.int64)[MC_IDS]
    return mc_pixels >= min_pixels, mc_pixels


def mc_lookup(valid_mc: np.ndarray) -> np.ndarray:
    """(20,) uint8 lookup: 1 for the kept MC labels, else 0 (``mask_mc = lookup[labels]``)."""
    lut = np.zeros(NUM_LABELS, dtype=np.uint8)
    lut[MC_IDS[np.asarray(valid_mc, dtype=bool)]] = MC_ON
    return lut


def mc_mask(labels: np.ndarray, min_pixels: int = MIN_LABEL_PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DSR-MC binary mask of an (already box-cleaned) label map.

    Returns:
        ``(mask (H, W) uint8 {0, 1}, valid_mc (5,) bool, mc_pixels (5,) int64)``.
    """
    counts = np.bincount(np.asarray(labels).ravel(), minlength=NUM_LABELS)[:NUM_LABELS]
    valid, pixels = valid_mc_labels(counts, min_pixels)
    return mc_lookup(valid)[labels], valid, pixels


def class_map(labels: np.ndarray, mapping: ClassMapping) -> np.ndarray:
    """(H, W) uint8 DSR-C class ids of a CIHP label map."""
    return mapping.lut()[labels]


def _apply_lut(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``lut[labels]`` for uint8 maps and a (20,) uint8 lookup, via cv2.LUT (several times faster)."""
    table = np.zeros(256, dtype=np.uint8)
    table[:len(lut)] = lut
    return cv2.LUT(np.ascontiguousarray(labels, dtype=np.uint8), table)


def clean_in_image(labels: np.ndarray, keypoints: np.ndarray, mapping: ClassMapping,
                   settings: CleanSettings = CleanSettings()) -> tuple[np.ndarray, np.ndarray, np.ndarray, Box] | None:
    """The cleaning steps literally, in the original image frame (reference for :func:`clean_sample`).

    Returns:
        ``(class_map (H, W) uint8, mc_mask (H, W) uint8, valid_mc (5,) bool, box)``, or None without keypoints.
    """
    box = keypoint_box(keypoints, labels.shape, conf_threshold=settings.keypoint_conf_threshold,
                       margin_px=settings.keypoint_margin_px)
    if box is None:
        return None
    boxed = apply_box(labels, box)
    mask, valid, _ = mc_mask(boxed, settings.min_label_pixels)
    return class_map(boxed, mapping), mask, valid, box


def clean_sample(labels: np.ndarray, keypoints: np.ndarray, center: np.ndarray, scale: float,
                 mapping: ClassMapping, settings: CleanSettings = CleanSettings()) -> CleanedSample | None:
    """Clean one sample (module doc) and resample it into its crop frame.

    Args:
        labels: (H, W) uint8 CIHP ids, original image.
        keypoints: (K, 3) (x, y, confidence), original-image pixels.
        center, scale: the sample's SPIN box.
        mapping: the DSR-C mapping.
        settings: thresholds and crop frame.

    Returns:
        the cleaned sample, or None when no keypoint passes the confidence threshold inside the image.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be (H, W), got shape {labels.shape}")
    box = keypoint_box(keypoints, labels.shape, conf_threshold=settings.keypoint_conf_threshold,
                       margin_px=settings.keypoint_margin_px)
    if box is None:
        return None
    counts = label_counts_in_box(labels, box)
    valid, mc_pixels = valid_mc_labels(counts, settings.min_label_pixels)
    lut = mapping.lut()
    class_pixels = np.bincount(lut, weights=counts, minlength=mapping.num_classes).astype(np.int64)
    transform = crop_transform(center, scale, settings.crop_resolution, settings.crop_margin)
    r = settings.crop_resolution
    crop = warp_nearest(labels.astype(np.uint8, copy=False), transform, (r, r), box=box)
    return CleanedSample(mask_c=_apply_lut(lut, crop), mask_mc=_apply_lut(mc_lookup(valid), crop), valid_mc=valid,
                         mc_pixels=mc_pixels, class_pixels=class_pixels, crop_transform=transform, box=box)


# ----------------------------------------------------------------------------------------------------------
# dataset stage


def _write_json(path: str | Path, doc: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _stats(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "p90": 0.0}
    p10, med, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(values.mean()), "median": float(med), "p10": float(p10), "p90": float(p90)}


def mask_qc(store: MaskStore, min_label_pixels: int) -> dict[str, Any]:
    """Quality summary of a mask store (what ``mask_qc.json`` holds).

    Keys: ``samples``, ``valid``, ``valid_fraction``, ``invalid`` (no_keypoints, no_parse_map, both);
    ``mc``: per MC label ``present_fraction`` (any pixel in the box, among valid samples), ``kept_fraction``,
    ``drop_rate`` (present but under ``min_label_pixels``, among present), ``pixels`` (stats among present);
    ``any_mc_kept_fraction``; ``classes``: per class ``present_fraction``, ``pixel_fraction`` stats and a
    ``histogram`` of its share of the image pixels (``bin_edges``, ``counts``), over valid samples.
    """
    m = store.meta
    valid = m["valid"]
    reason = m["invalid_reason"]
    nk, npm = (reason & INVALID_NO_KEYPOINTS) > 0, (reason & INVALID_NO_PARSE) > 0
    n, nv = len(valid), int(valid.sum())
    mc_pixels, valid_mc = m["mc_pixels"][valid], m["valid_mc"][valid]
    mc: dict[str, Any] = {}
    for j, name in enumerate(store.mc_labels):
        present = mc_pixels[:, j] > 0
        kept = valid_mc[:, j]
        mc[name] = {
            "present_fraction": float(present.mean()) if nv else 0.0,
            "kept_fraction": float(kept.mean()) if nv else 0.0,
            "drop_rate": float((present & ~kept).sum() / present.sum()) if present.any() else 0.0,
            "pixels": _stats(mc_pixels[present, j].astype(np.float64)),
        }
    area = np.maximum(m["image_hw"][valid].prod(1), 1).astype(np.float64)
    edges = np.linspace(0.0, 1.0, QC_HISTOGRAM_BINS + 1)
    classes: dict[str, Any] = {}
    for k, name in enumerate(store.class_names):
        frac = m["class_pixels"][valid, k] / area
        classes[name] = {
            "present_fraction": float((frac > 0).mean()) if nv else 0.0,
            "pixel_fraction": _stats(frac),
            "histogram": {"bin_edges": edges.round(6).tolist(), "counts": np.histogram(frac, edges)[0].tolist()},
        }
    return {
        "samples": n, "valid": nv, "valid_fraction": nv / n if n else 0.0,
        "invalid": {"no_keypoints": int(nk.sum()), "no_parse_map": int(npm.sum()), "both": int((nk & npm).sum())},
        "min_label_pixels": int(min_label_pixels),
        "mc": mc,
        "any_mc_kept_fraction": float(valid_mc.any(1).mean()) if nv else 0.0,
        "classes": classes,
    }


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an (R, R[, 3]) image to a (size, size, 3) uint8 tile."""
    r = img.shape[0]
    idx = np.minimum((np.arange(size) * r) // size, r - 1)
    out = img[np.ix_(idx, idx)]
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def write_contact_sheet(store: MaskStore, shards: ParseShardSet, out_png: str | Path, *,
                        image_root: str | Path | None = None, n: int = CONTACT_SHEET_SAMPLES, seed: int = 0,
                        tile: int = CONTACT_SHEET_TILE) -> list[int]:
    """PNG of random valid samples: image crop | raw parse crop | DSR-C class map | DSR-MC mask.

    Images come from ``image_root / imgname`` when given and readable (grey otherwise). Two samples per row.

    Returns:
        the sample indices shown.
    """
    valid = np.flatnonzero(store.meta["valid"])
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(valid, size=min(n, len(valid)), replace=False)) if len(valid) else np.zeros(0, int)
    r = store.resolution
    blocks: list[list[np.ndarray]] = []
    grey = np.full((tile, tile, 3), 128, np.uint8)
    for i in chosen:
        rec = store[int(i)]
        img_tile = grey
        if image_root is not None:
            try:
                img = read_image_rgb(Path(image_root) / rec.imgname)
                img_tile = _tile(cv2.warpAffine(img, rec.crop_transform, (r, r), flags=cv2.INTER_LINEAR), tile)
            except LabelImageError:
                pass
        raw = shards.get(rec.imgname)
        raw_tile = grey if raw is None else _tile(colorize(warp_nearest(raw, rec.crop_transform, (r, r))), tile)
        c_tile = _tile(CLASS_COLOURS[rec.mask_c % len(CLASS_COLOURS)], tile)
        mc_tile = _tile((rec.mask_mc > 0).astype(np.uint8) * 255, tile)
        blocks.append([img_tile, raw_tile, c_tile, mc_tile])
    if not blocks:
        blocks = [[grey] * 4]
    per_row = CONTACT_SHEET_SAMPLES_PER_ROW
    rows = [[t for block in blocks[k:k + per_row] for t in block] for k in range(0, len(blocks), per_row)]
    sheet = tile_images(rows)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.partial.png")
    try:
        Image.fromarray(sheet).save(tmp, format="PNG")
        os.replace(tmp, out_png)
    finally:
        tmp.unlink(missing_ok=True)
    return [int(i) for i in chosen]


def clean_dataset(
    dataset: PersonDataset,
    parse_shards: Sequence[str | Path],
    out_h5: str | Path,
    *,
    mapping: ClassMapping,
    settings: CleanSettings = CleanSettings(),
    dataset_name: str = "",
    qc_json: str | Path | None = None,
    contact_sheet: str | Path | None = None,
    image_root: str | Path | None = None,
    parser: str | None = None,
    config: Mapping[str, Any] | None = None,
    git_sha: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Clean every sample of a dataset into the HDF5 mask store (``clean_masks``).

    Samples are joined with the raw parse shards by ``imgname``. A sample without a keypoint above the
    threshold, or whose image is in no shard / was not parsed, is written with empty masks, ``valid`` False
    and its ``invalid_reason`` bits, and counted; it does not stop the run. The store is written atomically.

    Args:
        dataset: the annotation file's samples (store row i = sample i).
        parse_shards: the dataset's raw parse shards.
        out_h5: the mask store.
        mapping: DSR-C mapping.
        settings: thresholds and crop frame.
        dataset_name: stored as an attribute and used in the progress bar.
        qc_json: where to write :func:`mask_qc` (optional).
        contact_sheet: where to write :func:`write_contact_sheet` (optional).
        image_root: image folder for the contact sheet (optional).
        parser: parser name for the attributes (default: the shards' ``parser`` attributes).
        config: the resolved config, stored as a JSON string attribute.
        git_sha: code version (default: :func:`pipeline.runtime.git_sha`).
        seed: contact-sheet sample choice.
        progress: show a tqdm bar.

    Returns:
        the QC summary (also written to ``qc_json``).
    """
    if git_sha is None:
        from pipeline.runtime import git_sha as _git_sha

        git_sha = _git_sha()
    keypoints = dataset.keypoints49()
    with ParseShardSet(parse_shards) as shards:
        if parser is None:
            parser = ",".join(sorted({str(a.get("parser", "unknown")) for a in shards.attrs})) or "unknown"
        attrs = {
            "dataset": dataset_name, "mapping": mapping.to_dict(), "settings": settings.to_dict(),
            "parser": parser, "git_sha": git_sha, "config": dict(config or {}),
        }
        r, n_cls = settings.crop_resolution, mapping.num_classes
        empty = np.zeros((r, r), np.uint8)
        last_name, last_labels = None, None
        with MaskStoreWriter(out_h5, resolution=r, class_names=mapping.classes, attrs=attrs,
                             expected=len(dataset)) as writer:
            for i in tqdm(range(len(dataset)), desc=f"clean_masks {dataset_name}".strip(), unit="sample",
                          disable=not progress):
                name = str(dataset.imgname[i])
                if name != last_name:
                    last_name, last_labels = name, shards.get(name)
                labels = last_labels
                try:
                    transform = crop_transform(dataset.center[i], dataset.scale[i], r, settings.crop_margin)
                except ValueError as exc:
                    raise ValueError(f"sample {i} ({name}) of dataset {dataset_name!r}: {exc}") from exc
                reason = 0
                cleaned = None
                if labels is None:
                    reason |= INVALID_NO_PARSE
                    image_hw = np.zeros(2, np.int64)
                    if not (keypoints[i, :, 2] > settings.keypoint_conf_threshold).any():
                        reason |= INVALID_NO_KEYPOINTS
                else:
                    image_hw = np.array(labels.shape)
                    cleaned = clean_sample(labels, keypoints[i], dataset.center[i], dataset.scale[i], mapping,
                                           settings)
                    if cleaned is None:
                        reason |= INVALID_NO_KEYPOINTS
                if cleaned is None:
                    rec = MaskRecord(imgname=name, center=dataset.center[i], scale=float(dataset.scale[i]),
                                     mask_c=empty, mask_mc=empty, valid_mc=np.zeros(len(MC_LABELS), bool),
                                     mc_pixels=np.zeros(len(MC_LABELS), np.int64),
                                     class_pixels=np.zeros(n_cls, np.int64), crop_transform=transform,
                                     image_hw=image_hw, valid=False, invalid_reason=reason)
                else:
                    rec = MaskRecord(imgname=name, center=dataset.center[i], scale=float(dataset.scale[i]),
                                     mask_c=cleaned.mask_c, mask_mc=cleaned.mask_mc, valid_mc=cleaned.valid_mc,
                                     mc_pixels=cleaned.mc_pixels, class_pixels=cleaned.class_pixels,
                                     crop_transform=cleaned.crop_transform, image_hw=image_hw, valid=True)
                writer.write(rec)
        with MaskStore(out_h5) as store:
            qc = {"dataset": dataset_name, "mapping": mapping.name, "settings": settings.to_dict(),
                  **mask_qc(store, settings.min_label_pixels)}
            log.info("clean_masks %s: %d/%d samples valid (no keypoints %d, no parse map %d)", dataset_name,
                     qc["valid"], qc["samples"], qc["invalid"]["no_keypoints"], qc["invalid"]["no_parse_map"])
            if contact_sheet is not None:
                qc["contact_sheet_samples"] = write_contact_sheet(store, shards, contact_sheet,
                                                                  image_root=image_root, seed=seed)
            if qc_json is not None:
                _write_json(qc_json, qc)
    return qc
