"""Mixed precision (``train.precision: bf16``): the regressor's forward pass under bfloat16 autocast on the CPU.

The toy world of tests/test_ddp.py (60-vertex body, ResNet-18 at 32 px, 8 samples): 4 steps at fp32 and at bf16
from the same initialisation and batches. bf16 keeps 8 mantissa bits (relative rounding 2**-9 ≈ 2e-3 per value),
so the step-1 losses (same weights, same batch) agree to about 1e-3, not bit for bit. Measured: step-1 losses
within 1.4e-3 relative and gradient norm within 1.5e-2; over the 4 steps losses within 4.8e-3, gradient norm 7e-2.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline.train.loop import predict_body, train
from pipeline.train.settings import TrainSettings
from tests.test_ddp import _world

#: Relative tolerance of the step-1 losses, bf16 against fp32 (module doc).
STEP1_RTOL: float = 0.05


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision")
    settings, paths = _world(root / "inputs")
    out = {}
    for precision in ("fp32", "bf16"):
        train(dataclasses.replace(settings, precision=precision), paths, root / precision)
        out[precision] = root / precision
    return out


def test_bf16_losses_are_finite_and_close_to_fp32(runs: dict[str, Path]) -> None:
    fp32, bf16 = _rows(runs["fp32"]), _rows(runs["bf16"])
    assert len(fp32) == len(bf16) == 4
    terms = ["total", "keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas", "grad_norm"]
    for row in bf16:
        for t in terms:
            assert torch.isfinite(torch.tensor(float(row[t]))), (row["step"], t, row[t])
    for t in terms:
        a, b = float(fp32[0][t]), float(bf16[0][t])
        assert b == pytest.approx(a, rel=STEP1_RTOL), t
    # bf16 really ran: the losses are not fp32's to the last bit
    assert any(float(fp32[0][t]) != float(bf16[0][t]) for t in terms)


def test_bf16_output_is_float32_and_precision_only_in_params_when_not_fp32(runs: dict[str, Path]) -> None:
    from pipeline.body.model import BodyModel
    from pipeline.model.hmr import HMR

    settings, paths = _world(runs["fp32"].parent / "probe")
    body = BodyModel(paths.body_models, "neutral", joint_regressors=paths.joint_regressors)
    model = HMR(backbone="resnet18").eval()
    out, posed, cam_t = predict_body(model, body, torch.zeros(2, 3, 32, 32), "bf16")
    assert {t.dtype for t in (*out, posed.vertices, cam_t)} == {torch.float32}
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        predict_body(model, body, torch.zeros(2, 3, 32, 32), "fp16")
    assert "precision" not in settings.params_dict()
    bf16 = dataclasses.replace(settings, precision="bf16")
    assert bf16.params_dict()["precision"] == "bf16"
    assert bf16.fingerprint() != settings.fingerprint()
    assert TrainSettings.from_dict(bf16.params_dict()).precision == "bf16"


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import runtime

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert runtime.resolve_precision("auto", "cpu") == "bf16"
    # an explicit choice is kept whatever the hardware
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert runtime.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; allowed: auto, fp32, bf16"):
        runtime.resolve_precision("fp16", "cpu")


def test_an_auto_run_is_the_run_of_the_precision_it_resolves_to(runs: dict[str, Path]) -> None:
    """``auto`` trains exactly as the explicit setting it resolves to on this machine (same rows to the last
    digit) and records that setting, not ``auto``, in its checkpoint."""
    from pipeline.runtime import resolve_precision
    from pipeline.train.checkpoint import read_checkpoint

    root = runs["fp32"].parent
    settings, paths = _world(root / "auto_inputs")  # the same toy world as the fixture's
    train(dataclasses.replace(settings, precision="auto"), paths, root / "auto")
    resolved = resolve_precision("auto", "cpu")
    columns = ["total", "keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas", "grad_norm"]
    assert [[r[c] for c in columns] for r in _rows(root / "auto")] == \
        [[r[c] for c in columns] for r in _rows(runs[resolved])]
    recorded = read_checkpoint(root / "auto" / "checkpoints" / "final.pt")["settings"].get("precision", "fp32")
    assert recorded == resolved
