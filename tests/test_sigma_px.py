"""Render blur in pixels (issue #17 item 5): ``train.renderer.sigma_px`` keeps the paper's pixel-space blur at any
render size, whereas a fixed σ (NDC units²) blurs 3.5× fewer pixels at 64 px than at 224 px."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.render.soft import (
    render_semantics,
    resolve_sigma,
    sigma_from_pixels,
    sigma_to_pixels,
)
from tests.test_soft_renderer import F64, fronto_parallel_triangle

#: The paper's σ and render size.
PAPER_SIGMA, PAPER_SIZE = 1e-5, 224
#: The demo's render size.
DEMO_SIZE = 64


def _coverage_half_pixel_below_edge(size: int, sigma: float) -> float:
    """Silhouette of the pixel whose centre lies half a pixel below the bottom edge (NDC y = 0.5, a pixel
    boundary at sizes divisible by 4) of a large fronto-parallel triangle, in the centre column."""
    depth, focal = 3.0, float(size)  # NDC focal 2
    vertices = fronto_parallel_triangle((0.0, 0.0), 0.5, depth, 2.0 * focal / size, facing_camera=True)
    _, silhouette = render_semantics(vertices, torch.tensor([[0, 1, 2]]), torch.ones(1, 1, 1, dtype=F64),
                                     torch.zeros(1, 3, dtype=F64), focal, size, sigma=sigma)
    row = 3 * size // 4  # first row below NDC y = 0.5: centre at 0.5 + 1/size (half a pixel)
    assert (2 * row + 1) / size - 1 == pytest.approx(0.5 + 1 / size)
    return float(silhouette[0, row, size // 2])


def test_paper_sigma_in_pixels_and_at_the_demo_size() -> None:
    sigma_px = sigma_to_pixels(PAPER_SIGMA, PAPER_SIZE)
    assert sigma_px == pytest.approx(math.sqrt(1e-5) * 112, rel=1e-12) == pytest.approx(0.35418, abs=1e-5)
    assert sigma_from_pixels(sigma_px, PAPER_SIZE) == pytest.approx(PAPER_SIGMA, rel=1e-12)
    assert sigma_from_pixels(sigma_px, DEMO_SIZE) == pytest.approx(1e-5 * (224 / 64) ** 2, rel=1e-12)
    assert sigma_from_pixels(sigma_px, DEMO_SIZE) == pytest.approx(1.225e-4, rel=1e-9)
    assert sigma_to_pixels(PAPER_SIGMA, DEMO_SIZE) == pytest.approx(0.1012, abs=1e-4)
    assert resolve_sigma(PAPER_SIGMA, None, DEMO_SIZE) == PAPER_SIGMA
    assert resolve_sigma(PAPER_SIGMA, sigma_px, DEMO_SIZE) == sigma_from_pixels(sigma_px, DEMO_SIZE)
    with pytest.raises(ValueError, match="sigma_px and image_size must be positive"):
        sigma_from_pixels(0.0, 64)


def test_same_sigma_px_blurs_the_same_pixels_at_64_and_224() -> None:
    sigma_px = sigma_to_pixels(PAPER_SIGMA, PAPER_SIZE)
    expected = 1.0 / (1.0 + math.exp((0.5 / sigma_px) ** 2))  # sigmoid(−(d_px/σ_px)²) at d = 0.5 px
    assert expected == pytest.approx(0.1199, abs=1e-4)
    at_224 = _coverage_half_pixel_below_edge(PAPER_SIZE, sigma_from_pixels(sigma_px, PAPER_SIZE))
    at_64 = _coverage_half_pixel_below_edge(DEMO_SIZE, sigma_from_pixels(sigma_px, DEMO_SIZE))
    assert at_224 == pytest.approx(expected, rel=1e-7)
    assert at_64 == pytest.approx(expected, rel=1e-7)
    # the fixed NDC σ at 64 px: an almost hard edge. Its coverage there, 2.5e-11, is below SoftRas' cut-off
    # (1e-4), so the pixel half a pixel outside gets no coverage and no gradient at all
    analytic = 1.0 / (1.0 + math.exp(0.015625**2 / PAPER_SIGMA))
    assert 2e-11 < analytic < 3e-11
    assert _coverage_half_pixel_below_edge(DEMO_SIZE, PAPER_SIGMA) == 0.0


def test_dsr_sigma_px_variant_renders_with_the_paper_pixel_blur() -> None:
    from pipeline.config import load_config
    from pipeline.train.runs import PAPER_SIGMA_PX
    from pipeline.train.settings import settings_from_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "config" / "config.yaml")
    stores = {n: f"results/masks/{n}.h5" for n in cfg["masks"]["datasets"]}

    def settings(run: str):  # type: ignore[no-untyped-def]
        return settings_from_config(cfg["train"], cfg["assets"]["train_datasets"], stores, run, master_seed=0,
                                    device="cpu")

    blur, dsr = settings("dsr_sigma_px"), settings("dsr")
    assert PAPER_SIGMA_PX == pytest.approx(sigma_to_pixels(PAPER_SIGMA, PAPER_SIZE), rel=1e-15)
    assert blur.renderer["sigma_px"] == PAPER_SIGMA_PX and dsr.renderer["sigma_px"] is None
    r = blur.render_size
    assert resolve_sigma(blur.renderer["sigma"], blur.renderer["sigma_px"], r) == pytest.approx(
        1e-5 * (224 / r) ** 2, rel=1e-12)
    assert "sigma" not in blur.params_dict()["renderer"] and blur.fingerprint() != dsr.fingerprint()
    assert blur.seed == dsr.seed  # same initial weights and data order: only the blur differs
    # the training script rebuilds the settings from the rule's params, which leave the unused σ out
    from pipeline.train.settings import TrainSettings

    rebuilt = TrainSettings.from_dict(blur.params_dict(), device="cpu")
    assert "sigma" not in rebuilt.renderer
    assert resolve_sigma(rebuilt.renderer.get("sigma"), rebuilt.renderer.get("sigma_px"), r) == pytest.approx(
        1e-5 * (224 / r) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="set sigma .* or sigma_px"):
        resolve_sigma(None, None, r)
