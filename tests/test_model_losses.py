"""HMR regressor, rotation helpers, standard and DSR losses, composite weighting (values, not just shapes)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from pipeline.losses.composite import DSR_TERMS, LossWeights, total_loss
from pipeline.losses.dsr import (
    argmax_prior,
    distance_to_mask,
    dsr_c_loss,
    dsr_fb_loss,
    dsr_mc_loss,
    get_dsr_loss,
    hard_iou,
    mvp_loss,
    official_rowwise_soft_iou_loss,
    soft_distm_loss,
)
from pipeline.losses.standard import (
    betas_prior_loss,
    camera_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    smpl_param_loss,
)
from pipeline.model.geometry import (
    axis_angle_to_rotmat,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_rot6d,
)
from pipeline.model.hmr import HMR, load_pretrained, mean_params_from_dataset
from pipeline.model.resnet import ResNet

IMG = 64  # small crops keep the CPU tests fast


def _random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(n, 3, generator=g, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=torch.float64) * 3.0
    return axis_angle_to_rotmat(aa)


# ------------------------------------------------------------------------------------------- geometry
def test_rot6d_round_trip_and_spin_layout() -> None:
    rot = _random_rotations(50)
    six = rotmat_to_rot6d(rot)
    assert six.shape == (50, 6)
    # SPIN reads the 6 numbers with view(-1, 3, 2): even entries = first column, odd = second column.
    torch.testing.assert_close(six[:, 0::2], rot[:, :, 0])
    torch.testing.assert_close(six[:, 1::2], rot[:, :, 1])
    torch.testing.assert_close(rot6d_to_rotmat(six), rot)
    # Arbitrary 6D vectors map to proper rotations, and the first column is the normalised a1.
    x = torch.randn(20, 6, dtype=torch.float64)
    r = rot6d_to_rotmat(x)
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(20, 3, 3))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(20, dtype=torch.float64))
    a1 = x.reshape(20, 3, 2)[..., 0]
    torch.testing.assert_close(r[..., 0], a1 / a1.norm(dim=-1, keepdim=True))


def test_axis_angle_round_trip() -> None:
    aa = torch.tensor(
        [[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, math.pi / 2, 0.0], [1e-9, 0.0, 0.0]], dtype=torch.float64
    )
    rot = axis_angle_to_rotmat(aa)
    torch.testing.assert_close(rot[2], torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(rotmat_to_axis_angle(rot), aa)


# ------------------------------------------------------------------------------------------------ HMR
def _zero_decoders(model: HMR) -> None:
    with torch.no_grad():
        for dec in (model.decpose, model.decshape, model.deccam):
            dec.weight.zero_()
            dec.bias.zero_()


def test_hmr_shapes_and_mean_initialisation() -> None:
    torch.manual_seed(0)
    target = _random_rotations(24, seed=1).float()
    params = {
        "pose": rotmat_to_rot6d(target).reshape(-1).numpy(),
        "shape": np.linspace(-1, 1, 10),
        "cam": np.array([0.8, 0.1, -0.2]),
    }
    model = HMR(backbone="resnet18", n_iter=3, mean_params=params).eval()
    out = model(torch.randn(2, 3, IMG, IMG))
    assert out.pred_rotmat.shape == (2, 24, 3, 3)
    assert out.pred_betas.shape == (2, 10)
    assert out.pred_cam.shape == (2, 3)
    # Decoders are tiny (xavier gain 0.01) but not zero: the prediction moves a little away from the mean ...
    assert 0 < (out.pred_betas - torch.as_tensor(params["shape"], dtype=torch.float32)).abs().max() < 0.5
    _zero_decoders(model)
    out = model(torch.randn(2, 3, IMG, IMG))
    # ... and with zeroed decoders it is exactly the mean parameters.
    torch.testing.assert_close(out.pred_rotmat, target.expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pred_betas, torch.as_tensor(params["shape"], dtype=torch.float32).expand(2, -1))
    torch.testing.assert_close(out.pred_cam, torch.tensor([[0.8, 0.1, -0.2]]).expand(2, -1))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_backbone_is_torchvisions_resnet_draw_for_draw(arch: str) -> None:
    """pipeline.model.resnet builds torchvision's ResNet without importing it: the same module names in the same
    order, the same initial weights from the same seed, the random stream left in the same state (so every
    HMR made after it, and every run, starts as it did with torchvision), and the same output."""
    torch.manual_seed(7)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    rng_after_reference = torch.get_rng_state()
    torch.manual_seed(7)
    ours = ResNet(arch).eval()
    assert torch.equal(torch.get_rng_state(), rng_after_reference)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in reference.named_modules()]
    expected = reference.state_dict()
    assert list(ours.state_dict()) == list(expected)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(images), reference(images))
    # HMR's backbone is that network: its backbone weights are torchvision's from the same seed
    torch.manual_seed(7)
    hmr = HMR(backbone=arch)
    for key in hmr.backbone_state_keys():
        assert torch.equal(hmr.state_dict()[key], expected[key]), key
    with pytest.raises(ValueError, match="unknown ResNet 'resnet34'"):
        ResNet("resnet34")


def test_hmr_rejects_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="resnet50, resnet18"):
        HMR(backbone="vgg16")


def test_mean_params_from_dataset() -> None:
    # Two poses rotated ±0.4 rad about x per joint average to the identity; betas average arithmetically.
    poses = np.zeros((2, 72))
    poses[0, 0::3], poses[1, 0::3] = 0.4, -0.4
    shapes = np.stack([np.full(10, 1.0), np.full(10, 3.0)])
    params = mean_params_from_dataset(poses, shapes)
    assert params["pose"].shape == (144,) and params["pose"].dtype == np.float32
    rot = rot6d_to_rotmat(torch.from_numpy(params["pose"]).reshape(24, 6))
    torch.testing.assert_close(rot, torch.eye(3).expand(24, 3, 3), atol=1e-6, rtol=0)
    np.testing.assert_allclose(params["shape"], np.full(10, 2.0))
    np.testing.assert_allclose(params["cam"], [0.9, 0.0, 0.0])
    # A single pose is its own mean.
    single = np.random.default_rng(0).normal(scale=0.3, size=(1, 72))
    pose6d = mean_params_from_dataset(single, np.zeros((1, 10)))["pose"]
    rot = rot6d_to_rotmat(torch.from_numpy(pose6d).reshape(24, 6).double())
    torch.testing.assert_close(rot, axis_angle_to_rotmat(torch.from_numpy(single).reshape(24, 3)), atol=1e-6, rtol=0)


def test_spin_checkpoint_loads_strictly_and_corruption_is_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = HMR(backbone="resnet18")
    with torch.no_grad():
        source.init_cam.fill_(0.7)
        source.bn1.running_mean.uniform_()
    ckpt = tmp_path / "model_checkpoint.pt"
    torch.save({"model": source.state_dict(), "optimizer": {}, "epoch": 3, "total_step_count": 10}, ckpt)
    target = HMR(backbone="resnet18")
    assert load_pretrained(target, ckpt) == "full"
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, msg=key)

    # DSR/PARE Lightning layout: prefixes are stripped.
    lightning = tmp_path / "lightning.ckpt"
    prefixed = {
        ("model.head." if k.startswith(("fc", "dec", "init_")) else "model.backbone.") + k: v
        for k, v in source.state_dict().items()
    }
    torch.save({"state_dict": prefixed}, lightning)
    assert load_pretrained(HMR(backbone="resnet18"), lightning) == "full"

    bad = dict(source.state_dict())
    del bad["decpose.bias"]
    bad["extra_head.weight"] = torch.zeros(3)
    bad["deccam.weight"] = torch.zeros(5, 1024)
    corrupt = tmp_path / "corrupt.pt"
    torch.save({"model": bad}, corrupt)
    with pytest.raises(ValueError) as err:
        load_pretrained(HMR(backbone="resnet18"), corrupt)
    msg = str(err.value)
    assert "corrupt.pt" in msg and "decpose.bias" in msg and "extra_head.weight" in msg and "deccam.weight" in msg

    # A checkpoint of the other backbone is rejected with its key differences, not loaded half-way.
    with pytest.raises(ValueError, match="layer1.0.conv3.weight"):
        load_pretrained(HMR(backbone="resnet50"), ckpt)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained(target, tmp_path / "missing.pt")


def test_torchvision_resnet_state_dict_loads_into_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(resnet.state_dict(), path)
    model = HMR(backbone="resnet50")
    head_before = model.fc1.weight.clone()
    assert load_pretrained(model, path) == "backbone"
    torch.testing.assert_close(model.conv1.weight, resnet.conv1.weight)
    torch.testing.assert_close(model.layer4[2].bn3.running_var, resnet.layer4[2].bn3.running_var)
    torch.testing.assert_close(model.fc1.weight, head_before)  # the regressor head is untouched
    # ResNet-18 weights do not fit a ResNet-50 backbone: clear error naming the file.
    small = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), small)
    with pytest.raises(ValueError, match="resnet18.pth.*shape mismatches"):
        load_pretrained(model, small)


# --------------------------------------------------------------------------------------- standard losses
def test_standard_losses_hand_computed() -> None:
    pred2d = torch.zeros(1, 26, 2)
    gt2d = torch.zeros(1, 26, 3)
    gt2d[0, 0] = torch.tensor([1.0, 0.0, 1.0])  # an OpenPose joint: weight 0 by default
    gt2d[0, 25] = torch.tensor([0.5, -0.5, 0.8])  # a GT joint: 0.8 · (0.25 + 0.25) over 26·2 entries
    torch.testing.assert_close(keypoint_2d_loss(pred2d, gt2d), torch.tensor(0.8 * 0.5 / 52))
    torch.testing.assert_close(keypoint_2d_loss(pred2d, gt2d, openpose_weight=1.0), torch.tensor((1.0 + 0.4) / 52))

    gt3d = torch.zeros(2, 24, 4)
    gt3d[..., 3] = 1.0
    gt3d[:, 0, 0] = 0.3  # one joint off by 0.3 m in x
    pred3d = torch.zeros(2, 24, 3) + torch.tensor([5.0, -2.0, 40.0])  # a global offset is removed by centring
    expected = 0.09 / (24 * 3)
    torch.testing.assert_close(keypoint_3d_loss(pred3d, gt3d, torch.tensor([1, 0])), torch.tensor(expected))
    zero = keypoint_3d_loss(pred3d.requires_grad_(), gt3d, torch.tensor([0, 0]))
    assert zero.item() == 0.0
    zero.backward()  # still connected to the prediction

    aa = torch.randn(2, 72) * 0.3
    rot = axis_angle_to_rotmat(aa.reshape(2, 24, 3))
    betas = torch.randn(2, 10)
    lp, lb = smpl_param_loss(rot, betas, aa, betas, torch.tensor([1, 1]))
    assert lp.item() < 1e-10 and lb.item() == 0.0
    lp, lb = smpl_param_loss(rot, betas + 1.0, aa, betas, torch.tensor([True, False]))
    assert lb.item() == pytest.approx(1.0)
    expected_cam = torch.tensor((1.0 + math.exp(-2.0)) / 2)
    torch.testing.assert_close(camera_loss(torch.tensor([[0.0, 0, 0], [0.1, 0, 0]])), expected_cam)
    torch.testing.assert_close(betas_prior_loss(torch.full((2, 10), 2.0)), torch.tensor(4.0))


# -------------------------------------------------------------------------------------------- DSR-MC
def _valid(*flags: bool) -> torch.Tensor:
    return torch.tensor(flags)


def test_soft_iou_hand_computed() -> None:
    g = torch.zeros(1, 4, 4)
    g[:, :, :2] = 1  # left half, 8 px
    loss, n = dsr_mc_loss(g.clone(), g, _valid(True))
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and int(n) == 1
    loss, _ = dsr_mc_loss(1 - g, g, _valid(True))  # disjoint
    assert loss.item() == pytest.approx(1.0)
    top = torch.zeros(1, 4, 4)
    top[:, :2, :] = 1  # top half: intersection 4, union 12
    assert dsr_mc_loss(top, g, _valid(True))[0].item() == pytest.approx(1 - 4 / 12)
    # Soft values: P = 0.5 on the mask -> Σ P·G = 4, Σ (P + G − P·G) = 8 -> IoU 0.5.
    assert dsr_mc_loss(0.5 * g, g, _valid(True))[0].item() == pytest.approx(0.5)


def test_image_level_iou_differs_from_official_rowwise_bug() -> None:
    g = torch.zeros(1, 8, 8)
    g[:, 3:5, 2:6] = 1  # a 2-row object in an 8-row image
    image_level, _ = dsr_mc_loss(g.clone(), g, _valid(True))
    rowwise = official_rowwise_soft_iou_loss(g.clone(), g)
    assert image_level.item() == pytest.approx(0.0, abs=1e-6)
    # Six empty rows count as IoU 0 in the official version: 1 − 2/8 for a *perfect* render.
    assert rowwise.item() == pytest.approx(0.75, abs=1e-6)


def test_invalid_samples_contribute_zero_and_are_counted() -> None:
    g = torch.zeros(3, 4, 4)
    g[:, :, :2] = 1
    rendered = torch.stack([g[0], torch.full((4, 4), float("nan")), 1 - g[2]]).requires_grad_()
    loss, n = dsr_mc_loss(rendered, g, _valid(True, False, True))
    assert int(n) == 2
    assert loss.item() == pytest.approx((0.0 + 1.0) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(rendered.grad).all() and (rendered.grad[1] == 0).all()
    loss_b, _ = dsr_mc_loss(rendered, g, _valid(True, False, True), reduction="batch_mean")
    assert loss_b.item() == pytest.approx(1.0 / 3, abs=1e-6)
    none, n0 = dsr_mc_loss(g.clone().requires_grad_(), g, _valid(False, False, False))
    assert none.item() == 0.0 and int(n0) == 0
    # DSR-C: a sample flagged invalid or without valid pixels contributes 0 and is not counted.
    rc = torch.rand(3, 2, 4, 4)
    cls = torch.zeros(3, 4, 4, dtype=torch.long)
    pix = torch.ones(3, 4, 4, dtype=torch.bool)
    pix[2] = False
    full, _ = dsr_c_loss(rc[:1], cls[:1], pix[:1])
    loss_c, n_c = dsr_c_loss(rc, cls, pix, valid=_valid(True, False, True))
    assert int(n_c) == 1 and loss_c.item() == pytest.approx(full.item())


# --------------------------------------------------------------------------------------------- DSR-C
def test_dsr_c_nll_hand_computed_2x2() -> None:
    eps = 0.1
    rendered = torch.zeros(1, 2, 2, 2)
    rendered[0, :, 0, 0] = torch.tensor([0.8, 0.2])  # class 0: (0.8 + .1) / (1.0 + .2) = 3/4
    rendered[0, :, 0, 1] = torch.tensor([0.0, 0.0])  # off the body: uniform, class 1: 1/2
    rendered[0, :, 1, 0] = torch.tensor([0.3, 0.6])  # class 1: (0.6 + .1) / (0.9 + .2) = 7/11
    rendered[0, :, 1, 1] = torch.tensor([0.9, 0.0])  # unknown pixel: ignored
    class_map = torch.tensor([[[0, 1], [1, 0]]])
    valid_pixels = torch.tensor([[[True, True], [True, False]]])
    loss, n = dsr_c_loss(rendered, class_map, valid_pixels, eps=eps)
    expected = -(math.log(3 / 4) + math.log(1 / 2) + math.log(7 / 11)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6) and int(n) == 1
    # Official-style class weights: weighted mean Σ w_y·NLL / Σ w_y.
    w = torch.tensor([2.0, 1.0])
    loss_w, _ = dsr_c_loss(rendered, class_map, valid_pixels, eps=eps, class_weights=w)
    expected_w = -(2 * math.log(3 / 4) + math.log(1 / 2) + math.log(7 / 11)) / 4
    assert loss_w.item() == pytest.approx(expected_w, rel=1e-6)
    with pytest.raises(ValueError, match="outside"):
        dsr_c_loss(rendered, class_map + 1, valid_pixels)


def test_dsr_c_minimal_when_render_equals_class_map() -> None:
    torch.manual_seed(0)
    class_map = torch.randint(0, 4, (1, 6, 6))
    pix = torch.ones(1, 6, 6, dtype=torch.bool)
    onehot = torch.nn.functional.one_hot(class_map, 4).permute(0, 3, 1, 2).float()
    best, _ = dsr_c_loss(onehot, class_map, pix)
    for _ in range(5):
        other = torch.distributions.Dirichlet(torch.ones(4)).sample((1, 6, 6)).permute(0, 3, 1, 2)
        assert dsr_c_loss(other, class_map, pix)[0] > best
    assert best.item() < 0.01


# ---------------------------------------------------------------------------------------- gradients
def test_gradcheck_dsr_mc_and_dsr_c_float64() -> None:
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(2, 4, 5, generator=g) > 0.5).double()
    rendered = (0.1 + 0.8 * torch.rand(2, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    valid = _valid(True, True)
    assert torch.autograd.gradcheck(lambda r: dsr_mc_loss(r, mask, valid)[0], (rendered,))

    rendered_c = (0.05 + 0.9 * torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    cls = torch.randint(0, 3, (2, 4, 5), generator=g)
    pix = torch.rand(2, 4, 5, generator=g) > 0.2
    assert torch.autograd.gradcheck(lambda r: dsr_c_loss(r, cls, pix)[0], (rendered_c,))
    assert torch.autograd.gradcheck(lambda r: soft_distm_loss(r, mask, valid)[0], (rendered,))


# ----------------------------------------------------------------------------------------- ablations
def test_ablation_variants() -> None:
    mask = torch.zeros(1, 1, 5)
    mask[0, 0, 0] = 1
    rendered = torch.zeros(1, 1, 5)
    rendered[0, 0, 3] = 1.0  # 3 px right of the mask
    torch.testing.assert_close(distance_to_mask(mask)[0, 0], torch.tensor([0.0, 1, 2, 3, 4]))
    loss, _ = soft_distm_loss(rendered, mask, _valid(True))
    assert loss.item() == pytest.approx(3.0, rel=1e-5)  # Σ R·d / (Σ R)^1.5 = 3 / 1
    assert soft_distm_loss(mask.clone(), mask, _valid(True))[0].item() == 0.0  # inside the mask: free

    sil = torch.full((1, 1, 5), 0.5)
    bce, _ = dsr_fb_loss(sil, mask, _valid(True), metric="bce")
    assert bce.item() == pytest.approx(math.log(2.0), rel=1e-5)
    assert dsr_fb_loss(mask.clone(), mask, _valid(True))[0].item() == pytest.approx(0.0, abs=1e-6)

    prior = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    torch.testing.assert_close(argmax_prior(prior), torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    assert mvp_loss(1 - mask, mask, _valid(True))[0].item() == pytest.approx(1.0)
    iou = hard_iou(torch.tensor([[[0.9, 0.6, 0.2]]]), torch.tensor([[[1, 0, 0]]]))
    torch.testing.assert_close(iou, torch.tensor([0.5]))

    assert get_dsr_loss("dsr_c") is dsr_c_loss
    with pytest.raises(ValueError, match="dsr_mc, dsr_c, dsr_fb, soft_distm, mvp"):
        get_dsr_loss("dsr_xyz")
    with pytest.raises(ValueError, match="soft_iou, bce, soft_distm"):
        dsr_fb_loss(sil, mask, _valid(True), metric="dice")
    with pytest.raises(ValueError, match="valid_mean, batch_mean"):
        dsr_mc_loss(sil, mask, _valid(True), reduction="sum")


# ---------------------------------------------------------------------------------------- composite
def test_composite_enables_dsr_only_after_start_iter() -> None:
    terms = {
        "keypoint_2d": torch.tensor(1.0),
        "camera": torch.tensor(0.5),
        "dsr_mc": torch.tensor(2.0),
        "dsr_c": torch.tensor(3.0),
    }
    weights = LossWeights()
    before, log = total_loss(terms, weights, step=99, dsr_start_iter=100)
    assert before.item() == pytest.approx(60 * (5 * 1.0 + 1 * 0.5))
    assert log["dsr_enabled"].item() == 0.0 and log["dsr_mc"].item() == 2.0  # still logged
    after, log = total_loss(terms, weights, step=100, dsr_start_iter=100)
    assert after.item() == pytest.approx(60 * (5 * 1.0 + 0.5 + 0.01 * 2.0 + 0.01 * 3.0))
    assert log["dsr_enabled"].item() == 1.0 and log["total"].item() == pytest.approx(after.item())
    assert set(DSR_TERMS) >= {"dsr_mc", "dsr_c"}
    # A NaN in a zero-weight term does not leak into the total.
    nan_terms = {"keypoint_2d": torch.tensor(1.0), "vertices": torch.tensor(float("nan"))}
    assert math.isfinite(total_loss(nan_terms, weights)[0].item())
    with pytest.raises(ValueError, match="allowed names"):
        total_loss({"keypoints": torch.tensor(1.0)}, weights)
    with pytest.raises(ValueError, match="allowed keys"):
        LossWeights.from_dict({"dsr_mcc": 0.1})
    assert LossWeights.from_dict({"dsr_mc": 0.1}).dsr_mc == 0.1


def test_composite_log_stays_on_the_terms_device() -> None:
    """Every logged value lives where the terms do (a CPU value among CUDA ones breaks the DDP mean's stack)."""
    terms = {k: torch.tensor(1.0, device="meta") for k in ("keypoint_2d", "camera", "dsr_mc")}
    for step in (0, 10):
        total, log = total_loss(terms, LossWeights(), step=step, dsr_start_iter=5)
        assert total.device.type == "meta"
        assert {k: v.device.type for k, v in log.items()} == dict.fromkeys(log, "meta")
