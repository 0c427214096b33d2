"""Parser-noise model: turns an exact CIHP-20 label map into something that looks like Graphonomy's output.

The open world has exact label maps (rendered from per-face garment labels); a real parser makes
characteristic mistakes, which this model imitates, in this order:

1. **Garment confusions** — Coat↔UpperClothes and Dress↔Skirt. Each confusable label present in the map is,
   with its pair's probability, relabelled as its partner *as a whole region* (decided on the input map, so
   the two directions are independent and a double swap exchanges the labels). With
   ``partial_confusion_prob`` a remaining confusable region instead gets a few elliptical *blotches* (radius
   ``blotch_radius_frac`` × √area) relabelled as the partner.
2. **Missed small parts** — every connected region (8-connectivity) of a non-background label smaller than
   ``small_part_area_px`` is, with ``small_part_drop_prob``, replaced by the most frequent label on its
   one-pixel outer ring (Background when it is isolated).
3. **False positives** — Poisson(``background_blob_rate``) elliptical blobs with a plausible label
   (``blob_labels``), painted only over background pixels, centred on a random background pixel.
4. **Boundary jitter** — a smooth random displacement field (bilinear interpolation of uniform noise on a
   grid of spacing ``jitter_scale_px``, rescaled so its largest component is ``boundary_jitter_px``) applied
   with nearest-neighbour resampling: every changed pixel lies within ``ceil(boundary_jitter_px)`` pixels
   (Chebyshev) of a label boundary of the map it is applied to.

``level`` multiplies every amplitude, probability and rate (probabilities are clipped to 1); level 0 or an
all-zero configuration returns the input exactly. The distractor person is labelled upstream: label maps
are rendered from every person in the scene. All randomness comes from the ``rng`` argument.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.parsing.labels import BACKGROUND, LABEL_ID, NUM_LABELS, label_ids

#: Config key of each confusion pair's probability -> the two labels it confuses.
CONFUSION_PAIRS: dict[str, tuple[str, str]] = {
    "coat_upper_swap_prob": ("Coat", "UpperClothes"),
    "dress_skirt_swap_prob": ("Dress", "Skirt"),
}
#: Labels a parser plausibly hallucinates on background clutter.
DEFAULT_BLOB_LABELS: tuple[str, ...] = (
    "UpperClothes", "Coat", "Pants", "Hair", "Face", "LeftArm", "RightArm", "Torso-skin",
)
#: Number of blotches per partially confused region (inclusive range).
BLOTCH_COUNT: tuple[int, int] = (1, 3)
#: Minor/major axis ratio range of blotches and blobs.
ELLIPSE_ASPECT: tuple[float, float] = (0.4, 1.0)
#: Fields that are probabilities (validated in [0, 1], clipped to 1 after level scaling).
_PROBABILITIES: tuple[str, ...] = (*CONFUSION_PAIRS, "partial_confusion_prob", "small_part_drop_prob")


@dataclass(frozen=True)
class ParserNoise:
    """Amplitudes and probabilities of the parser-noise model (config ``open_world.parser_noise``).

    Attributes:
        level: global multiplier of every amplitude, probability and rate (0 = exact maps).
        boundary_jitter_px: largest boundary displacement, pixels.
        jitter_scale_px: correlation length (grid spacing) of the displacement field, pixels.
        coat_upper_swap_prob: per present label, probability that all Coat (resp. UpperClothes) pixels are
            labelled UpperClothes (resp. Coat).
        dress_skirt_swap_prob: the same for Dress and Skirt.
        partial_confusion_prob: per confusable region not swapped, probability of partial blotches.
        blotch_radius_frac: blotch major radius as a fraction of √(region area).
        small_part_area_px: regions smaller than this (pixels) may be missed.
        small_part_drop_prob: probability of missing each small region.
        background_blob_rate: expected number of false-positive blobs per image.
        blob_radius_px: (min, max) blob major radius, pixels.
        blob_labels: label names the blobs are drawn from.
    """

    level: float = 1.0
    boundary_jitter_px: float = 2.0
    jitter_scale_px: float = 12.0
    coat_upper_swap_prob: float = 0.15
    dress_skirt_swap_prob: float = 0.15
    partial_confusion_prob: float = 0.3
    blotch_radius_frac: float = 0.3
    small_part_area_px: int = 40
    small_part_drop_prob: float = 0.4
    background_blob_rate: float = 0.5
    blob_radius_px: tuple[float, float] = (3.0, 12.0)
    blob_labels: tuple[str, ...] = DEFAULT_BLOB_LABELS

    def __post_init__(self) -> None:
        for name in ("level", "boundary_jitter_px", "blotch_radius_frac", "small_part_area_px",
                     "background_blob_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"parser_noise.{name} must be >= 0; got {getattr(self, name)}")
        if self.jitter_scale_px <= 0:
            raise ValueError(f"parser_noise.jitter_scale_px must be > 0; got {self.jitter_scale_px}")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"parser_noise.{name} must be in [0, 1]; got {getattr(self, name)}")
        lo, hi = self.blob_radius_px
        if not 0 < lo <= hi:
            raise ValueError(f"parser_noise.blob_radius_px must be 0 < min <= max; got {self.blob_radius_px}")
        object.__setattr__(self, "blob_radius_px", (float(lo), float(hi)))
        object.__setattr__(self, "blob_labels", tuple(self.blob_labels))
        label_ids(self.blob_labels)  # raises ValueError naming unknown labels
        if BACKGROUND in label_ids(self.blob_labels):
            raise ValueError("parser_noise.blob_labels must not contain Background")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ParserNoise:
        """Build from the ``open_world.parser_noise`` config mapping; missing keys take the defaults.

        Raises:
            ValueError: naming unknown keys and listing the allowed ones, or an out-of-range value.
        """
        cfg = dict(cfg or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(f"unknown parser_noise key(s) {unknown}; allowed: {allowed}")
        if "blob_radius_px" in cfg:
            cfg["blob_radius_px"] = tuple(cfg["blob_radius_px"])
        if "blob_labels" in cfg:
            cfg["blob_labels"] = tuple(cfg["blob_labels"])
        return cls(**cfg)

    def effective(self) -> ParserNoise:
        """The same model with ``level`` folded in (level 1): amplitudes and rates × level, probabilities
        × level clipped to 1."""
        lv = self.level
        changes: dict[str, Any] = {"level": 1.0, "boundary_jitter_px": lv * self.boundary_jitter_px,
                                   "background_blob_rate": lv * self.background_blob_rate}
        for name in _PROBABILITIES:
            changes[name] = min(1.0, lv * getattr(self, name))
        return dataclasses.replace(self, **changes)

    @property
    def is_identity(self) -> bool:
        """True when :func:`apply_parser_noise` returns its input unchanged."""
        e = self.effective()
        return (e.boundary_jitter_px == 0 and e.background_blob_rate == 0 and e.small_part_drop_prob == 0
                and e.partial_confusion_prob == 0 and all(getattr(e, k) == 0 for k in CONFUSION_PAIRS))


def _ellipse_mask(shape: tuple[int, int], centre: tuple[int, int], radius: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Boolean (H, W) mask of a filled ellipse with major radius ``radius`` px and random aspect/angle."""
    mask = np.zeros(shape, np.uint8)
    major = max(1, round(radius))
    minor = max(1, round(radius * rng.uniform(*ELLIPSE_ASPECT)))
    cv2.ellipse(mask, centre, (major, minor), float(rng.uniform(0.0, 180.0)), 0, 360, 1, -1)
    return mask.astype(bool)


def _random_pixel(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(x, y) of a uniformly chosen True pixel of ``mask``."""
    flat = np.flatnonzero(mask)
    idx = int(flat[rng.integers(len(flat))])
    return idx % mask.shape[1], idx // mask.shape[1]


def _confusions(labels: np.ndarray, e: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    counts = np.bincount(labels.ravel(), minlength=NUM_LABELS)
    lut = np.arange(NUM_LABELS, dtype=np.uint8)
    partial: list[tuple[int, int]] = []
    for key, (name_a, name_b) in CONFUSION_PAIRS.items():
        p_swap = getattr(e, key)
        a, b = LABEL_ID[name_a], LABEL_ID[name_b]
        for src, dst in ((a, b), (b, a)):
            r_swap, r_partial = rng.random(), rng.random()  # always drawn: the stream does not depend on data
            if counts[src] == 0:
                continue
            if r_swap < p_swap:
                lut[src] = dst
            elif r_partial < e.partial_confusion_prob:
                partial.append((src, dst))
    out = lut[labels]
    for src, dst in partial:
        region = labels == src
        radius = e.blotch_radius_frac * math.sqrt(int(counts[src]))
        for _ in range(int(rng.integers(BLOTCH_COUNT[0], BLOTCH_COUNT[1] + 1))):
            blotch = _ellipse_mask(labels.shape, _random_pixel(region, rng), radius * rng.uniform(0.5, 1.0), rng)
            out[blotch & region] = dst
    return out


def _drop_small_parts(labels: np.ndarray, e: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    out = labels.copy()
    H, W = labels.shape
    present = np.nonzero(np.bincount(labels.ravel(), minlength=NUM_LABELS))[0]
    for lab in present:
        if lab == BACKGROUND:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == lab).astype(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = stats[k]
            if area >= e.small_part_area_px or rng.random() >= e.small_part_drop_prob:
                continue
            y0, y1, x0, x1 = max(y - 1, 0), min(y + h + 1, H), max(x - 1, 0), min(x + w + 1, W)
            region = comp[y0:y1, x0:x1] == k
            ring = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~region
            around = out[y0:y1, x0:x1][ring]
            around = around[around != lab]
            fill = int(np.bincount(around, minlength=NUM_LABELS).argmax()) if around.size else BACKGROUND
            out[y0:y1, x0:x1][region] = fill
    return out


def _background_blobs(labels: np.ndarray, e: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    out = labels.copy()
    n_blobs = int(rng.poisson(e.background_blob_rate))
    ids = label_ids(e.blob_labels)
    for _ in range(n_blobs):
        background = out == BACKGROUND
        if not background.any():
            break
        blob = _ellipse_mask(labels.shape, _random_pixel(background, rng), rng.uniform(*e.blob_radius_px), rng)
        out[blob & background] = ids[int(rng.integers(len(ids)))]
    return out


def _boundary_jitter(labels: np.ndarray, e: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    H, W = labels.shape
    gh = math.ceil(H / e.jitter_scale_px) + 2
    gw = math.ceil(W / e.jitter_scale_px) + 2
    grids = rng.uniform(-1.0, 1.0, size=(2, gh, gw)).astype(np.float32)
    fields = [cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR) for g in grids]
    peak = max(float(np.abs(f).max()) for f in fields)
    scale = e.boundary_jitter_px / max(peak, 1e-9)
    yy, xx = np.mgrid[0:H, 0:W]
    sy = np.clip(np.rint(yy + fields[0] * scale), 0, H - 1).astype(np.intp)
    sx = np.clip(np.rint(xx + fields[1] * scale), 0, W - 1).astype(np.intp)
    return labels[sy, sx]


def apply_parser_noise(labels: np.ndarray, noise: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of an exact CIHP-20 label map (see the module docstring for the model).

    Args:
        labels: (H, W) integer label map with values in [0, 20).
        noise: the model; ``noise.level`` scales it.
        rng: the only source of randomness; the same rng state and input give the same output.

    Returns:
        (H, W) uint8 label map; equal to ``labels`` when ``noise.is_identity``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"apply_parser_noise needs an (H, W) integer label map; got {labels.shape} {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        raise ValueError(f"label map values must be in [0, {NUM_LABELS}); got [{labels.min()}, {labels.max()}]")
    out = labels.astype(np.uint8)
    e = noise.effective()
    if e.is_identity or out.size == 0:
        return out.copy()
    if any(getattr(e, k) > 0 for k in CONFUSION_PAIRS) or e.partial_confusion_prob > 0:
        out = _confusions(out, e, rng)
    if e.small_part_drop_prob > 0 and e.small_part_area_px > 0:
        out = _drop_small_parts(out, e, rng)
    if e.background_blob_rate > 0:
        out = _background_blobs(out, e, rng)
    if e.boundary_jitter_px > 0:
        out = _boundary_jitter(out, e, rng)
    return out
