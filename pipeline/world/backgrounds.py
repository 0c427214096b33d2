"""Procedural image backgrounds for the open world (textured, never a flat colour).

Every generator is vectorised numpy/OpenCV and draws its randomness only from the ``rng`` it is given, so a
background is a pure function of ``(height, width, rng state)``. Scalar fields are float32 in [0, 1] of shape
(H, W); colour images are uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

#: Colour stops per random palette (inclusive range).
PALETTE_STOPS: tuple[int, int] = (2, 5)
#: Value-noise octaves (inclusive range) and the coarsest grid, in cells across the longer side.
NOISE_OCTAVES: tuple[int, int] = (2, 5)
NOISE_BASE_CELLS: tuple[int, int] = (2, 6)
#: Stripe / checker periods as a fraction of the longer image side.
PERIOD_RANGE: tuple[float, float] = (0.03, 0.25)
#: Number of blurred shapes (inclusive range) and their size as a fraction of the longer side.
SHAPE_COUNT: tuple[int, int] = (3, 12)
SHAPE_SIZE: tuple[float, float] = (0.05, 0.35)
#: Gaussian blur sigma of the shape layer, as a fraction of the longer side.
SHAPE_BLUR: tuple[float, float] = (0.0, 0.03)
#: Standard deviation of the per-pixel grain added to every background (0–255 units).
GRAIN_STD: tuple[float, float] = (0.0, 6.0)
#: Probability of overlaying shapes / a second pattern on the base pattern.
OVERLAY_SHAPES_PROB: float = 0.5
OVERLAY_PATTERN_PROB: float = 0.35


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) HSV in [0, 1] -> RGB in [0, 1] (vectorised)."""
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h).astype(np.int64) % 6
    fpart = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * fpart), v * (1 - s * (1 - fpart))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(hsv.shape, dtype=np.float64)
    for k, (r, g, b) in enumerate(choices):
        m = i == k
        out[..., 0] = np.where(m, r, out[..., 0])
        out[..., 1] = np.where(m, g, out[..., 1])
        out[..., 2] = np.where(m, b, out[..., 2])
    return out


def random_palette(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """A random harmonious palette: (n, 3) float32 RGB in [0, 255].

    Hues follow one of: analogous (close hues), complementary (two opposite families) or triadic; saturation
    and value vary per stop so palettes range from muted indoor tones to saturated posters.
    """
    n = int(rng.integers(PALETTE_STOPS[0], PALETTE_STOPS[1] + 1)) if n is None else n
    base = rng.random()
    scheme = int(rng.integers(3))
    if scheme == 0:
        hues = base + rng.uniform(-0.08, 0.08, n)
    elif scheme == 1:
        hues = base + 0.5 * rng.integers(0, 2, n) + rng.uniform(-0.04, 0.04, n)
    else:
        hues = base + rng.integers(0, 3, n) / 3.0 + rng.uniform(-0.04, 0.04, n)
    sat = rng.uniform(0.05, 0.9, n) * rng.uniform(0.4, 1.0)
    val = rng.uniform(0.2, 1.0, n)
    hsv = np.stack([hues % 1.0, sat, val], axis=1)
    return (_hsv_to_rgb(hsv) * 255.0).astype(np.float32)


def apply_palette(field: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map a scalar field (H, W) in [0, 1] through a colour ramp (n, 3) -> (H, W, 3) float32 in [0, 255]."""
    n = len(palette)
    if n == 1:
        return np.broadcast_to(palette[0], field.shape + (3,)).astype(np.float32)
    x = np.clip(field, 0.0, 1.0) * (n - 1)
    i = np.minimum(x.astype(np.int64), n - 2)
    w = (x - i)[..., None].astype(np.float32)
    return palette[i] * (1.0 - w) + palette[i + 1] * w


def _normalise(field: np.ndarray) -> np.ndarray:
    lo, hi = float(field.min()), float(field.max())
    return ((field - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def value_noise(height: int, width: int, rng: np.random.Generator, octaves: int | None = None,
                base_cells: int | None = None, persistence: float = 0.55) -> np.ndarray:
    """Fractal value noise (sum of bicubically upsampled random grids), (H, W) float32 normalised to [0, 1].

    Args:
        octaves: number of octaves, each with twice the cells of the previous one.
        base_cells: cells across the longer side at the coarsest octave.
        persistence: amplitude ratio between successive octaves.
    """
    octaves = int(rng.integers(NOISE_OCTAVES[0], NOISE_OCTAVES[1] + 1)) if octaves is None else octaves
    cells = int(rng.integers(NOISE_BASE_CELLS[0], NOISE_BASE_CELLS[1] + 1)) if base_cells is None else base_cells
    longer = max(height, width)
    total = np.zeros((height, width), np.float32)
    amp = 1.0
    for _ in range(octaves):
        gh = max(2, int(np.ceil(cells * height / longer)) + 1)
        gw = max(2, int(np.ceil(cells * width / longer)) + 1)
        grid = rng.random((gh, gw)).astype(np.float32)
        total += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
        cells *= 2
        if cells > longer:
            break
    return _normalise(total)


def _rotated_coords(height: int, width: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return x * c + y * s, -x * s + y * c


def stripes(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Parallel stripes at a random angle/period, sine or square profile, (H, W) float32 in [0, 1]."""
    u, _ = _rotated_coords(height, width, rng.uniform(0, np.pi))
    period = rng.uniform(*PERIOD_RANGE) * max(height, width)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:
        wave = (wave > rng.uniform(0.3, 0.7)).astype(np.float32)
    return wave.astype(np.float32)


def checkers(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (possibly rotated) checkerboard or tiling, (H, W) float32 in {0, 1} (slightly softened)."""
    u, v = _rotated_coords(height, width, rng.uniform(0, np.pi / 2) if rng.random() < 0.5 else 0.0)
    period = rng.uniform(*PERIOD_RANGE) * max(height, width)
    board = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    return cv2.GaussianBlur(board, (0, 0), 0.6)


def gradient(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A linear or radial gradient, (H, W) float32 in [0, 1]."""
    if rng.random() < 0.5:
        u, _ = _rotated_coords(height, width, rng.uniform(0, 2 * np.pi))
        return _normalise(u)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(-0.2, 1.2) * height, rng.uniform(-0.2, 1.2) * width
    return _normalise(np.sqrt((x - cx) ** 2 + (y - cy) ** 2))


def blurred_shapes(height: int, width: int, rng: np.random.Generator, palette: np.ndarray,
                   canvas: np.ndarray) -> np.ndarray:
    """Draw random ellipses/rectangles/lines in palette colours onto ``canvas`` (H, W, 3) float32, then blur
    the layer; returns the new canvas (float32, [0, 255])."""
    layer = canvas.copy()
    longer = max(height, width)
    for _ in range(int(rng.integers(SHAPE_COUNT[0], SHAPE_COUNT[1] + 1))):
        colour = tuple(float(c) for c in palette[int(rng.integers(len(palette)))])
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        a = max(1, int(rng.uniform(*SHAPE_SIZE) * longer))
        b = max(1, int(rng.uniform(*SHAPE_SIZE) * longer))
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.ellipse(layer, (cx, cy), (a, b), float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 1:
            cv2.rectangle(layer, (cx - a, cy - b), (cx + a, cy + b), colour, -1)
        else:
            cv2.line(layer, (cx - a, cy - b), (cx + a, cy + b), colour, max(1, b // 6))
    sigma = rng.uniform(*SHAPE_BLUR) * longer
    if sigma > 0.5:
        layer = cv2.GaussianBlur(layer, (0, 0), sigma)
    return layer


#: Base scalar patterns a background is built from.
PATTERNS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "noise": value_noise,
    "stripes": stripes,
    "checkers": checkers,
    "gradient": gradient,
}


def random_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random textured background: a base pattern (noise/stripes/checkers/gradient) through a random
    palette, optionally modulated by noise, overlaid with a second pattern and/or blurred shapes, plus grain.

    Args:
        height, width: image size, pixels.
        rng: the only source of randomness.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"random_background size must be positive; got {height}x{width}")
    names = list(PATTERNS)
    palette = random_palette(rng)
    base = PATTERNS[names[int(rng.integers(len(names)))]](height, width, rng)
    if rng.random() < 0.5:  # irregular, less synthetic-looking modulation
        base = np.clip(base * 0.7 + 0.3 * value_noise(height, width, rng, octaves=3), 0.0, 1.0)
    img = apply_palette(base, palette)
    if rng.random() < OVERLAY_PATTERN_PROB:
        mask = PATTERNS[names[int(rng.integers(len(names)))]](height, width, rng)[..., None]
        alpha = rng.uniform(0.2, 0.6)
        img = img * (1 - alpha * mask) + apply_palette(mask[..., 0], random_palette(rng)) * (alpha * mask)
    if rng.random() < OVERLAY_SHAPES_PROB:
        img = blurred_shapes(height, width, rng, palette, img.astype(np.float32))
    grain = rng.uniform(*GRAIN_STD)
    if grain > 0:
        img = img + rng.normal(0.0, grain, size=(height, width, 1)).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
