"""Parser-noise model: identity at level 0, rates, locality of jitter, determinism, config handling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy import ndimage

from pipeline.parsing.labels import LABEL_ID as L
from pipeline.world.parser_noise import ParserNoise, apply_parser_noise

ROOT = Path(__file__).resolve().parent.parent
#: Every mechanism switched off; tests switch on one at a time.
OFF: dict[str, float] = {
    "boundary_jitter_px": 0.0, "coat_upper_swap_prob": 0.0, "dress_skirt_swap_prob": 0.0,
    "partial_confusion_prob": 0.0, "small_part_drop_prob": 0.0, "background_blob_rate": 0.0,
}


def _person(h: int = 96, w: int = 64) -> np.ndarray:
    """A blocky person: hair, face with sunglasses, coat over upper clothes, arms, pants, shoes."""
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (32, 14), (8, 9), 0, 0, 360, L["Face"], -1)
    cv2.ellipse(m, (32, 7), (9, 4), 0, 0, 360, L["Hair"], -1)
    cv2.rectangle(m, (24, 12), (28, 13), L["Sunglasses"], -1)  # 10 px: a small part
    cv2.rectangle(m, (20, 24), (44, 55), L["Coat"], -1)
    cv2.rectangle(m, (27, 24), (37, 50), L["UpperClothes"], -1)
    cv2.rectangle(m, (12, 24), (19, 58), L["RightArm"], -1)
    cv2.rectangle(m, (45, 24), (52, 58), L["LeftArm"], -1)
    cv2.rectangle(m, (21, 56), (31, 86), L["Pants"], -1)
    cv2.rectangle(m, (33, 56), (43, 86), L["Pants"], -1)
    cv2.rectangle(m, (21, 87), (31, 90), L["RightShoe"], -1)
    cv2.rectangle(m, (33, 87), (43, 90), L["LeftShoe"], -1)
    return m


def test_level_zero_and_all_zero_config_return_the_exact_map() -> None:
    m = _person()
    rng = np.random.default_rng(0)
    for noise in (ParserNoise(level=0.0), ParserNoise(**OFF), ParserNoise(level=0.0, boundary_jitter_px=9.0)):
        assert noise.is_identity
        out = apply_parser_noise(m, noise, rng)
        assert out.dtype == np.uint8 and out is not m
        np.testing.assert_array_equal(out, m)


def test_default_noise_changes_the_map_deterministically_by_seed() -> None:
    m = _person()
    noise = ParserNoise()
    a = apply_parser_noise(m, noise, np.random.default_rng(7))
    b = apply_parser_noise(m, noise, np.random.default_rng(7))
    c = apply_parser_noise(m, noise, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert (a != m).any() and (a != c).any()
    assert a.shape == m.shape and a.max() < 20


@pytest.mark.parametrize(("prob", "level"), [(0.3, 1.0), (0.2, 2.0)])
def test_whole_region_swaps_happen_at_the_configured_rate(prob: float, level: float) -> None:
    m = _person()
    m[m == L["UpperClothes"]] = L["Coat"]  # only Coat present: count Coat -> UpperClothes swaps
    m[70:80, 22:30] = L["Dress"]  # and a Dress region that may become Skirt
    noise = ParserNoise(**{**OFF, "coat_upper_swap_prob": prob, "dress_skirt_swap_prob": prob}, level=level)
    coat, dress = m == L["Coat"], m == L["Dress"]
    n, swaps, dress_swaps = 600, 0, 0
    for seed in range(n):
        out = apply_parser_noise(m, noise, np.random.default_rng(seed))
        if (out[coat] == L["UpperClothes"]).all():
            swaps += 1
        else:
            assert (out[coat] == L["Coat"]).all()  # whole-region: all or nothing
        dress_swaps += int((out[dress] == L["Skirt"]).all())
        np.testing.assert_array_equal(out[~coat & ~dress], m[~coat & ~dress])  # nothing else changes
    expected = min(1.0, prob * level)
    tol = 4.0 * np.sqrt(expected * (1 - expected) / n)
    assert abs(swaps / n - expected) < tol
    assert abs(dress_swaps / n - expected) < tol


def test_partial_blotches_relabel_part_of_a_region_as_its_partner() -> None:
    m = _person()
    noise = ParserNoise(**{**OFF, "partial_confusion_prob": 1.0})
    out = apply_parser_noise(m, noise, np.random.default_rng(1))
    coat = m == L["Coat"]
    changed = out != m
    assert changed.any()
    assert (out[coat & changed] == L["UpperClothes"]).all()
    assert (out[coat] == L["Coat"]).any()  # partial, not the whole region
    assert np.isin(m[changed], [L["Coat"], L["UpperClothes"]]).all()


def test_boundary_jitter_changes_only_pixels_near_boundaries() -> None:
    m = _person(192, 128)
    amp = 3.0
    noise = ParserNoise(**{**OFF, "boundary_jitter_px": amp})
    k = int(np.ceil(amp))
    near_boundary = ndimage.maximum_filter(m, size=2 * k + 1) != ndimage.minimum_filter(m, size=2 * k + 1)
    for seed in range(5):
        out = apply_parser_noise(m, noise, np.random.default_rng(seed))
        changed = out != m
        assert changed.sum() > 50
        assert not (changed & ~near_boundary).any()
    # Largest displacement equals the amplitude: some pixel exactly `k` away from a boundary changes.
    inner = ndimage.maximum_filter(m, size=2 * k - 1) != ndimage.minimum_filter(m, size=2 * k - 1)
    changed_any = np.zeros_like(m, bool)
    for seed in range(20):
        changed_any |= apply_parser_noise(m, noise, np.random.default_rng(seed)) != m
    assert (changed_any & ~inner).any()


def test_small_parts_are_dropped_into_the_surrounding_label() -> None:
    m = _person()
    glasses = m == L["Sunglasses"]
    out = apply_parser_noise(m, ParserNoise(**{**OFF, "small_part_drop_prob": 1.0, "small_part_area_px": 20}),
                             np.random.default_rng(0))
    assert (out[glasses] == L["Face"]).all()
    np.testing.assert_array_equal(out[~glasses], m[~glasses])  # big parts (shoes: 44 px) are kept
    # With the threshold below the part's size nothing is dropped.
    out = apply_parser_noise(m, ParserNoise(**{**OFF, "small_part_drop_prob": 1.0, "small_part_area_px": 5}),
                             np.random.default_rng(0))
    np.testing.assert_array_equal(out, m)
    # Drop probability: ~half of the seeds drop it at p = 0.5.
    noise = ParserNoise(**{**OFF, "small_part_drop_prob": 0.5, "small_part_area_px": 20})
    drops = sum(int((apply_parser_noise(m, noise, np.random.default_rng(s))[glasses] == L["Face"]).all())
                for s in range(300))
    assert abs(drops / 300 - 0.5) < 4 * np.sqrt(0.25 / 300)


def test_background_blobs_only_paint_background_with_plausible_labels() -> None:
    m = _person()
    noise = ParserNoise(**{**OFF, "background_blob_rate": 3.0})
    allowed = {L[name] for name in noise.blob_labels}
    n_with_blobs = 0
    for seed in range(40):
        out = apply_parser_noise(m, noise, np.random.default_rng(seed))
        changed = out != m
        assert (m[changed] == 0).all()
        assert set(np.unique(out[changed]).tolist()) <= allowed
        n_with_blobs += int(changed.any())
    assert n_with_blobs >= 30  # P(no blob) = e^-3 ≈ 5 %


def test_config_round_trip_and_errors() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["open_world"]["parser_noise"]
    noise = ParserNoise.from_config(cfg)
    assert noise.level == cfg["level"] and noise.boundary_jitter_px == cfg["boundary_jitter_px"]
    assert ParserNoise.from_config(None) == ParserNoise()
    with pytest.raises(ValueError, match="unknown parser_noise key"):
        ParserNoise.from_config({"boundary_jiter_px": 2.0})
    with pytest.raises(ValueError, match="coat_upper_swap_prob"):
        ParserNoise(coat_upper_swap_prob=1.5)
    with pytest.raises(ValueError, match="unknown CIHP label"):
        ParserNoise(blob_labels=("Shirt",))
    with pytest.raises(ValueError, match="label map"):
        apply_parser_noise(np.full((4, 4), 25, np.uint8), ParserNoise(), np.random.default_rng(0))
    eff = ParserNoise(level=3.0, coat_upper_swap_prob=0.5, boundary_jitter_px=2.0).effective()
    assert eff.coat_upper_swap_prob == 1.0 and eff.boundary_jitter_px == 6.0 and eff.level == 1.0
