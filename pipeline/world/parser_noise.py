"""Parser-noise model: turns an exact CIHP label map into something that looks like a real parser's output.

Mistakes imitated (each scaled by ``level``; level 0 returns the map unchanged):
- boundary jitter: a smooth random displacement field resampled with nearest neighbour, so region edges
  wobble by up to ``boundary_jitter_px`` pixels;
- confusions of similar garments: Coat↔UpperClothes and Dress↔Skirt, whole regions swapped with a probability;
- missed small parts: connected regions under ``small_part_area_px`` dropped (filled by the surrounding
  label) with a probability;
- false positives: blobs with plausible labels on the background (``background_blob_rate`` per image).
The distractor person is labelled too: that happens upstream, because label maps render every person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.parsing.labels import LABEL_ID

SWAPS = {"coat_upper_swap_prob": ("Coat", "UpperClothes"), "dress_skirt_swap_prob": ("Dress", "Skirt")}
#: Labels real parsers hallucinate on clutter.
BLOB_LABELS = ("UpperClothes", "Pants", "Hair", "Face", "LeftArm", "RightArm", "Coat")


@dataclass(frozen=True)
class ParserNoise:
    """Noise amplitudes and probabilities (config ``open_world.parser_noise``)."""

    level: float = 1.0
    boundary_jitter_px: float = 2.0
    coat_upper_swap_prob: float = 0.15
    dress_skirt_swap_prob: float = 0.15
    small_part_area_px: int = 40
    small_part_drop_prob: float = 0.4
    background_blob_rate: float = 0.5

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ParserNoise":
        return cls(**cfg)


def _jitter(labels: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    h, w = labels.shape
    sigma = max(3.0, 2.5 * amplitude)
    field = [ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma) for _ in range(2)]
    field = [f / max(np.abs(f).max(), 1e-9) * amplitude for f in field]
    yy, xx = np.mgrid[0:h, 0:w]
    sy = np.clip(np.rint(yy + field[0]), 0, h - 1).astype(np.int64)
    sx = np.clip(np.rint(xx + field[1]), 0, w - 1).astype(np.int64)
    return labels[sy, sx]


def _drop_small_parts(labels: np.ndarray, area: int, prob: float, rng: np.random.Generator) -> np.ndarray:
    out = labels.copy()
    for lab in np.unique(labels):
        if lab == 0:
            continue
        comps, n = ndimage.label(labels == lab)
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        for k in np.nonzero(sizes < area)[0]:
            if rng.random() >= prob:
                continue
            region = comps == k + 1
            ring = ndimage.binary_dilation(region, iterations=2) & ~region
            around = labels[ring]
            around = around[around != lab]
            out[region] = np.bincount(around).argmax() if around.size else 0
    return out


def _blobs(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    out = labels.copy()
    h, w = labels.shape
    for _ in range(rng.poisson(rate)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.01, 0.05) * h, rng.uniform(0.01, 0.05) * w
        yy, xx = np.ogrid[0:h, 0:w]
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        out[blob & (labels == 0)] = LABEL_ID[str(rng.choice(BLOB_LABELS))]
    return out


def apply_parser_noise(labels: np.ndarray, noise: ParserNoise, rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of a (H, W) uint8 CIHP label map; deterministic given ``rng``."""
    if noise.level <= 0:
        return labels.copy()
    out = labels.copy()
    for key, (a, b) in SWAPS.items():
        if rng.random() < min(1.0, noise.level * getattr(noise, key)):
            ia, ib = LABEL_ID[a], LABEL_ID[b]
            sel_a, sel_b = out == ia, out == ib
            out[sel_a], out[sel_b] = ib, ia
    if noise.small_part_area_px > 0 and noise.small_part_drop_prob > 0:
        out = _drop_small_parts(out, noise.small_part_area_px, min(1.0, noise.level * noise.small_part_drop_prob), rng)
    amplitude = noise.level * noise.boundary_jitter_px
    if amplitude > 0:
        out = _jitter(out, amplitude, rng)
    if noise.background_blob_rate > 0:
        out = _blobs(out, noise.level * noise.background_blob_rate, rng)
    return out.astype(np.uint8)
