"""The released DSR code's choices as switches (issue #17 item 4): each changes the loss the way the official code
does, on small hand-checked tensors; the ``official`` and Table 1 DSR-FB variants resolve, round-trip through
the fingerprint, and ``results/train/official/checkpoints/final.pt`` is buildable (dry run)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.losses.dsr import (
    dsr_c_loss,
    dsr_mc_loss,
    official_class_ratio_weights,
    official_min_pixels,
)
from pipeline.masks.mappings import MC_FLIP_PERMUTATION, resolve_mapping
from pipeline.render.soft import (
    BACKGROUND_EPS,
    DEFAULT_FAR,
    DEFAULT_NEAR,
    SOFTRAS_KERNEL_EPS,
    render_semantics,
)
from pipeline.train.crop import crop_affine, index_affine
from pipeline.train.data import SampleSource
from pipeline.train.runs import OFFICIAL_SWITCHES, variant_options
from pipeline.train.settings import TrainSettings, settings_from_config
from tests.conftest import ROOT, copy_workflow
from tests.test_soft_renderer import F64, FOCAL, SIZE, single_face

F32 = torch.float32


# ---------------------------------------------------------------------------------------------- the losses
def test_rowwise_iou_is_the_mean_over_all_rows_not_the_image_iou() -> None:
    """A perfect render of a 2-row object in a 4-row image: image-level soft IoU loss 0; the official row-wise
    loss 1 − (1 + 1 + 0 + 0)/4 = 0.5 (empty rows count as IoU 0)."""
    mask = torch.zeros(1, 4, 4)
    mask[0, 1:3, 1:3] = 1.0
    valid = torch.ones(1, dtype=torch.bool)
    image, _ = dsr_mc_loss(mask.clone(), mask, valid)
    rowwise, _ = dsr_mc_loss(mask.clone(), mask, valid, rowwise=True)
    assert float(image) == pytest.approx(0.0, abs=1e-5)
    assert float(rowwise) == pytest.approx(0.5, abs=1e-5)
    # half coverage of one row: image IoU 3/4·… vs rows (0.5 + 1)/4
    half = mask.clone()
    half[0, 1, 2] = 0.0
    image, _ = dsr_mc_loss(half, mask, valid)
    rowwise, _ = dsr_mc_loss(half, mask, valid, rowwise=True)
    assert float(image) == pytest.approx(1 - 3 / 4, abs=1e-5)
    assert float(rowwise) == pytest.approx(1 - (0.5 + 1.0) / 4, abs=1e-5)


def test_ce_on_probs_is_log_softmax_of_the_rendered_probabilities() -> None:
    """The official ``nn.CrossEntropyLoss(weight=w)(R, Y)``: ``−log softmax(R)_y``, weighted mean over pixels."""
    rendered = torch.tensor([[[[0.9, 0.0]], [[0.1, 0.0]], [[0.0, 0.0]]]], dtype=torch.float64)  # (1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])
    known = torch.ones(1, 1, 2, dtype=torch.bool)
    loss, n = dsr_c_loss(rendered, target, known, ce_on_probs=True)
    by_hand = (-math.log(math.exp(0.9) / (math.exp(0.9) + math.exp(0.1) + 1.0)) + math.log(3.0)) / 2
    assert float(loss) == pytest.approx(by_hand, rel=1e-12) and int(n) == 1
    weights = torch.tensor([0.2, 1.0, 0.5], dtype=torch.float64)
    loss_w, _ = dsr_c_loss(rendered, target, known, class_weights=weights, ce_on_probs=True)
    reference = torch.nn.functional.cross_entropy(rendered, target, weight=weights)
    assert float(loss_w) == pytest.approx(float(reference), rel=1e-12)
    # Eq. 4 (ours) normalises the rendered values instead: a different, much larger loss off the prior's class
    ours, _ = dsr_c_loss(rendered, target, known)
    assert float(ours) != pytest.approx(float(loss), rel=1e-2)


def test_class_ratio_weights_match_get_class_ratio() -> None:
    """Counts (100, 70, 30, 0) with the 60-px threshold: kept classes 0 and 1, min 70 -> weights (0.7, 1, 0, 0)."""
    counts = [100, 70, 30, 0]
    class_map = torch.tensor(np.repeat(np.arange(4), counts)).reshape(1, 10, 20)
    weights = official_class_ratio_weights(class_map, 4, min_pixels=60)
    np.testing.assert_allclose(weights.numpy(), [[0.7, 1.0, 0.0, 0.0]], rtol=1e-6)
    # unknown pixels are not counted: hiding 20 Background pixels makes class 0 the smallest kept one
    known = torch.ones(1, 10, 20, dtype=torch.bool)
    known.view(-1)[:35] = False
    np.testing.assert_allclose(official_class_ratio_weights(class_map, 4, known, 60).numpy(),
                               [[1.0, 65 / 70, 0.0, 0.0]], rtol=1e-6)
    assert official_min_pixels(224) == 60 and official_min_pixels(64) == pytest.approx(60 * (64 / 224) ** 2)


def test_softras_background_weight_is_exp_two_eps_over_gamma() -> None:
    """Inside a face the colour is ``t·e^{ẑ/γ} / (B + e^{ẑ/γ})``; SoftRas' kernel has ``B = exp(2·eps/γ)``."""
    depth, gamma, colour = 50.0, 0.1, 0.7  # DSR's distance: the background weight matters (≈1 % of a face's)
    args = (single_face(depth=depth), torch.tensor([[0, 1, 2]]), torch.full((1, 1, 1), colour, dtype=F64),
            torch.zeros(1, 3, dtype=F64), FOCAL, SIZE)
    ours, _ = render_semantics(*args, gamma=gamma)
    kernel, _ = render_semantics(*args, gamma=gamma, eps=SOFTRAS_KERNEL_EPS)
    face = math.exp((DEFAULT_FAR - depth) / (DEFAULT_FAR - DEFAULT_NEAR) / gamma)
    c = SIZE // 2
    assert SOFTRAS_KERNEL_EPS == 2 * BACKGROUND_EPS
    assert float(ours[0, 0, c, c]) == pytest.approx(colour * face / (math.exp(BACKGROUND_EPS / gamma) + face),
                                                    abs=1e-12)
    assert float(kernel[0, 0, c, c]) == pytest.approx(
        colour * face / (math.exp(2 * BACKGROUND_EPS / gamma) + face), abs=1e-12)
    assert float(ours[0, 0, c, c]) - float(kernel[0, 0, c, c]) > 1e-5


def _fake_source(swap: bool) -> tuple[SampleSource, np.ndarray]:
    """A SampleSource over one stored official8 mask (no files): a LeftArm block on the left, valid LeftArm."""
    mapping = resolve_mapping("official8")
    res = 16
    mask_c = np.zeros((res, res), np.uint8)
    mask_c[4:12, 2:6] = mapping.classes.index("LeftArm")
    affine = crop_affine(np.array([8.0, 8.0]), res / 200.0, res)
    store = SimpleNamespace(
        meta={"valid": np.array([True]), "crop_transform": index_affine(affine)[None],
              "valid_mc": np.array([[True, False, False, False, False]])},
        masks=lambda i: (mask_c, (mask_c > 0).astype(np.uint8)))
    src = object.__new__(SampleSource)
    src.image_size, src.render_size, src.store = res, res, store
    src.class_flip, src.swap_lr_on_flip = mapping.flip_permutation(), swap
    return src, affine


def test_no_flip_swap_mirrors_masks_without_swapping_left_and_right() -> None:
    mapping = resolve_mapping("official8")
    left, right = mapping.classes.index("LeftArm"), mapping.classes.index("RightArm")
    for swap in (True, False):
        src, affine = _fake_source(swap)
        plain = src._masks(0, affine, flip=False)
        mirrored = src._masks(0, crop_affine(np.array([8.0, 8.0]), 16 / 200.0, 16, flip=True), flip=True)
        spatial = plain["mask_c"][:, ::-1]
        if swap:  # ours: the mirrored left arm is the right arm
            np.testing.assert_array_equal(mirrored["mask_c"], mapping.flip_permutation()[spatial])
            np.testing.assert_array_equal(mirrored["valid_mc"], plain["valid_mc"][MC_FLIP_PERMUTATION])
            assert (mirrored["mask_c"] == right).sum() == 32 and not (mirrored["mask_c"] == left).any()
        else:  # official: still labelled LeftArm, LeftArm still the valid MC label
            np.testing.assert_array_equal(mirrored["mask_c"], spatial)
            np.testing.assert_array_equal(mirrored["valid_mc"], plain["valid_mc"])
            assert (mirrored["mask_c"] == left).sum() == 32


# ------------------------------------------------------------------------------------------ the variants
def _settings(run: str, **train: object) -> TrainSettings:
    cfg = load_config(ROOT / "config" / "config.yaml")
    cfg["train"].update(train)
    stores = {n: f"results/masks/{n}.h5" for n in cfg["masks"]["datasets"]}
    return settings_from_config(cfg["train"], cfg["assets"]["train_datasets"], stores, run, master_seed=0,
                                device="cpu", masks_mapping=cfg["masks"]["mapping"])


def test_official_variant_settings_round_trip_through_the_fingerprint() -> None:
    official, dsr = _settings("official"), _settings("dsr")
    assert official.official == OFFICIAL_SWITCHES and official.dsr_terms == dsr.dsr_terms
    assert official.loss_weights["dsr_mc"] == official.loss_weights["dsr_c"] == 0.1
    assert [d.masks for d in official.datasets] == [f"results/masks/official8/{d.name}.h5" for d in official.datasets]
    rebuilt = TrainSettings.from_dict(official.params_dict(), device="cpu")
    assert rebuilt.official == official.official and rebuilt.fingerprint() == official.fingerprint()
    assert official.fingerprint() != dsr.fingerprint()
    # one switch less is another run
    fewer = dataclasses.replace(official, official=official.official[1:])
    assert fewer.fingerprint() != official.fingerprint()
    # the default runs' params are unchanged by the new settings (no rerun of existing results)
    assert "official" not in dsr.params_dict() and "sigma_px" not in dsr.params_dict()["renderer"]
    assert dsr.params_dict()["renderer"]["sigma"] == 1e-5
    # sigma_px replaces sigma in the params
    blur = _settings("dsr", renderer={"backend": "pairs", "sigma": 1e-5, "gamma": 0.1, "sigma_px": 0.354})
    assert blur.params_dict()["renderer"] == {"backend": "pairs", "gamma": 0.1, "sigma_px": 0.354}


def test_table1_dsr_fb_rows_and_variant_options() -> None:
    assert _settings("dsr_fb_bce").fb_metric == "bce"
    assert _settings("dsr_fb_distm").fb_metric == "soft_distm"
    assert _settings("dsr_fb").fb_metric == "soft_iou"  # train.fb_metric
    # a user variant toggling one switch; {} drops the built-in options
    custom = _settings("only_rowwise", variants={"only_rowwise": ["dsr_mc"], "official": ["dsr_mc", "dsr_c"]},
                       variant_options={"only_rowwise": {"official": ["rowwise_iou"]}, "official": {}})
    assert custom.official == ("rowwise_iou",) and custom.datasets[0].masks == "results/masks/h36m.h5"
    assert _settings("official", variant_options={"official": {}}).official == ()
    with pytest.raises(ValueError, match="unknown switch.*allowed: rowwise_iou"):
        variant_options("x", {"x": {"official": ["row_wise"]}})
    with pytest.raises(ValueError, match="unknown option.*allowed: official"):
        variant_options("x", {"x": {"sigma": 1.0}})


def test_dry_run_builds_the_official_run(tmp_path: Path) -> None:
    clone = copy_workflow(tmp_path / "clone")
    snakemake = Path(sys.executable).parent / "snakemake"
    res = subprocess.run([str(snakemake), "-n", "results/train/official/checkpoints/final.pt", "--quiet", "rules"],
                         cwd=clone, capture_output=True, text=True, timeout=300, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "clean_masks_mapped" in out and "train_regressor" in out


def test_dsr_terms_apply_the_switches(tmp_path: Path) -> None:
    """The training step's DSR terms follow the run's switches: with all of them the terms equal the official
    formulas on the same render (row-wise IoU, cross-entropy on probabilities with ratio weights, kernel eps)."""
    from pipeline.losses.dsr import official_rowwise_soft_iou_loss
    from pipeline.render.camera import CROP_SIZE as CROP
    from pipeline.render.camera import FOCAL_LENGTH, scale_focal_length
    from pipeline.train.loop import PriorTextures, dsr_terms
    from tests.test_soft_renderer import triangle_soup

    vertices, faces, _, cam_t = triangle_soup(3, 2, 12, dtype=F32, well_shaped=True)
    cam_t[:, 2] = 40.0  # SPIN-like distance for the 5000-px focal
    mapping = resolve_mapping("official8")
    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(12, 20, generator=gen)
    np.savez(tmp_path / "prior.npz", face_prob=(prob / prob.sum(1, keepdim=True)).numpy())
    prior = PriorTextures(tmp_path / "prior.npz", 12, mapping.matrix(), torch.device("cpu"))
    r = 24
    batch = {"valid_mc": torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 0, 0]], dtype=torch.bool),
             "has_masks": torch.ones(2, dtype=torch.bool), "mask_known": torch.ones(2, r, r, dtype=torch.bool),
             "mask_mc": (torch.rand(2, r, r, generator=gen) > 0.5).float(),
             "mask_c": torch.randint(0, 8, (2, r, r), generator=gen)}
    base = _settings("official")
    ours = dataclasses.replace(base, official=(), render_size=r)
    official = dataclasses.replace(base, render_size=r)
    terms_ours, _ = dsr_terms(ours, prior, vertices, faces, cam_t, batch)
    terms_off, _ = dsr_terms(official, prior, vertices, faces, cam_t, batch)
    textures, where = prior.textures(("dsr_mc", "dsr_c"), batch["valid_mc"])
    images, _ = render_semantics(vertices, faces, textures, cam_t, scale_focal_length(FOCAL_LENGTH, CROP, r), r,
                                 eps=SOFTRAS_KERNEL_EPS)
    expected_mc = official_rowwise_soft_iou_loss(images[:, where["mc"]][:, 0], batch["mask_mc"]).mean()
    weights = official_class_ratio_weights(batch["mask_c"], 8, None, official_min_pixels(r))
    expected_c = torch.stack([
        torch.nn.functional.cross_entropy(images[i:i + 1, where["c"]], batch["mask_c"][i:i + 1], weight=weights[i])
        for i in range(2)]).mean()
    assert float(terms_off["dsr_mc"]) == pytest.approx(float(expected_mc), rel=1e-5)
    assert float(terms_off["dsr_c"]) == pytest.approx(float(expected_c), rel=1e-5)
    # without the switches: Eq. 3 and Eq. 4 on the render with SoftRas' documented eps
    plain, _ = render_semantics(vertices, faces, textures, cam_t, scale_focal_length(FOCAL_LENGTH, CROP, r), r)
    mc = plain[:, where["mc"]][:, 0]
    iou = (mc * batch["mask_mc"]).sum((1, 2)) / ((mc + batch["mask_mc"] - mc * batch["mask_mc"]).sum((1, 2)) + 1e-6)
    assert float(terms_ours["dsr_mc"]) == pytest.approx(float((1 - iou).mean()), rel=1e-5)
    expected_ours_c, _ = dsr_c_loss(plain[:, where["c"]], batch["mask_c"], batch["mask_known"])
    assert float(terms_ours["dsr_c"]) == pytest.approx(float(expected_ours_c), rel=1e-5)
    assert abs(float(terms_ours["dsr_mc"]) - float(terms_off["dsr_mc"])) > 1e-4
    assert abs(float(terms_ours["dsr_c"]) - float(terms_off["dsr_c"])) > 0.05


def test_schema_defaults_list_the_built_in_variants() -> None:
    from pipeline.train.runs import DEFAULT_VARIANT_OPTIONS, DEFAULT_VARIANTS

    cfg = load_config(ROOT / "config" / "config.yaml")
    assert cfg["train"]["variants"] == {k: list(v) for k, v in DEFAULT_VARIANTS.items()}
    assert set(DEFAULT_VARIANT_OPTIONS) <= set(DEFAULT_VARIANTS)
