"""Pretraining (issue #15): rule pretrain_regressor writes SPIN's checkpoint layout on a pretraining set of its
own, and every run in train.runs starts from it; the learning-rate schedule and gradient clipping."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.body.model import BodyModel
from pipeline.evaluate.predict import evaluate_predictions, predict_split
from pipeline.io.spin_npz import read_spin_npz
from pipeline.model.hmr import HMR, load_pretrained
from pipeline.runtime import resolve_precision
from pipeline.train.data import SampleSource, validation_indices
from pipeline.train.loop import validate
from pipeline.train.settings import TrainSettings
from tests.conftest import run_snakemake

CHECKPOINT = "results/pretrain/model_checkpoint.pt"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pretrained_world(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny world whose runs start from the open world's own pretrained checkpoint."""
    work = tmp_path_factory.mktemp("pretrained") / "world"
    shutil.copytree(tiny_project, work, symlinks=True, ignore=shutil.ignore_patterns("results"))
    config = work / "config" / "config.yaml"
    config.write_text(f"assets:\n  pretrained_checkpoint: {CHECKPOINT}\n" + config.read_text())
    res = run_snakemake(work, "results/train/sd/checkpoints/final.pt")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return work


def test_pretraining_writes_spin_layout_on_its_own_set(pretrained_world: Path) -> None:
    """SPIN's keys, every weight of the model, the configured steps, and a pretraining set sharing no image
    or person with the fine-tuning splits."""
    state = torch.load(pretrained_world / CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "epoch", "batch_idx", "batch_size", "total_step_count"} <= set(state)
    assert state["total_step_count"] == 4 and state["batch_size"] == 4  # tests/config_tiny.yaml
    model = HMR(backbone="resnet18")
    assert load_pretrained(model, pretrained_world / CHECKPOINT) == "full"
    final = torch.load(pretrained_world / "results/pretrain/checkpoints/final.pt", map_location="cpu",
                       weights_only=True)
    for key, value in final["model"].items():
        assert torch.equal(value, state["model"][key]), key
    pretrain = [read_spin_npz(p) for p in sorted(pretrained_world.glob("resources/datasets/pretrain/shard_*/*.npz"))]
    assert [len(d) for d in pretrain] == [3, 3]  # 6 images over 2 shards
    assert all(not (pretrained_world / "resources/datasets/pretrain" / f"shard_{k}" / "labels").exists()
               for k in range(2))
    others = [read_spin_npz(p) for p in pretrained_world.glob("resources/datasets/*_train/*.npz")
              if not p.name.endswith(".truth.npz")]
    poses = np.concatenate([d.pose for d in others])
    for d in pretrain:
        assert d.has_smpl.all() and d.has_3d.all()
        assert not set(map(str, d.imgname)) & {str(n) for o in others for n in o.imgname}
        assert np.abs(d.pose[:, None] - poses[None]).sum(-1).min() > 1e-3  # no person reused
    metrics = _rows(pretrained_world / "results/pretrain/metrics.csv")
    val = [r for r in metrics if r["phase"] == "val"]
    assert [int(r["step"]) for r in val] == [0, 2, 4]
    train = [r for r in metrics if r["phase"] == "train"]
    assert all(float(r["grad_norm"]) > 0 for r in train) and all(float(r["lr"]) > 0 for r in train)
    # open_world.pretrain.precision: auto (the default) is resolved by the machine and logged
    resolved = resolve_precision("auto", "cpu")
    assert f"precision auto -> {resolved} on cpu" in (pretrained_world / "logs/world/pretrain_regressor.log").read_text()
    assert final["settings"].get("precision", "fp32") == resolved


def test_runs_start_from_the_pretrained_checkpoint(pretrained_world: Path) -> None:
    """Run sd's step-0 validation is the pretrained network's error on sd's held-out samples (computed here
    independently), and its log names the loaded checkpoint."""
    import yaml

    settings = TrainSettings.from_dict({k: v for k, v in yaml.safe_load(
        (pretrained_world / "results/train/sd/config.yaml").read_text()).items() if k != "git_sha"})
    spec = next(s for s in settings.datasets if s.name == settings.val_dataset)
    spec = type(spec)(**{**spec.__dict__, "annotations": str(pretrained_world / spec.annotations),
                         "images": str(pretrained_world / spec.images)})
    source = SampleSource(spec, settings.image_size, settings.render_size)
    index = validation_indices(source.data, settings.val_fraction)
    model = HMR(backbone=settings.backbone)
    load_pretrained(model, pretrained_world / CHECKPOINT)
    body = BodyModel(pretrained_world / "resources/body_models", "neutral",
                     joint_regressors=pretrained_world / "resources/body_models/joint_regressors.npz")
    gt_models = {g: BodyModel(pretrained_world / "resources/body_models", g,
                              joint_regressors=pretrained_world / "resources/body_models/joint_regressors.npz")
                 for g in ("male", "female", "neutral")}
    torch.set_num_threads(1)
    expected = validate(model, body, source, index, settings.batch_size, torch.device("cpu"), gt_models)
    step0 = next(r for r in _rows(pretrained_world / "results/train/sd/metrics.csv")
                 if r["phase"] == "val" and r["step"] == "0")
    assert set(expected) == {"val_mpjpe_mm", "val_pa_mpjpe_mm", "val_pve_mm"}
    for key, value in expected.items():
        assert float(step0[key]) == pytest.approx(value, rel=1e-4), key
    # the same numbers through the evaluation's own path (its crops, predict_split, the 3DPW protocol): the
    # validation curve starts at the test metric's definition (issue #18)
    held_out = source.data.subset(index)
    pred = predict_split(model, body, held_out, spec.images, image_size=settings.image_size, progress=False)
    result = evaluate_predictions(pred, held_out, "3dpw", gt_models)
    for key, value in (("val_mpjpe_mm", result.mpjpe_mm), ("val_pa_mpjpe_mm", result.pa_mpjpe_mm),
                       ("val_pve_mm", result.pve_mm)):
        assert float(step0[key]) == pytest.approx(value, rel=1e-3), key
    assert "(pretrained: full)" in (pretrained_world / "logs/train/sd.log").read_text()


def test_learning_rate_schedule_warms_up_then_decays_to_its_floor() -> None:
    s = TrainSettings(run="x", dsr_terms=(), seed=0, steps=110, batch_size=1, datasets=(), ratios=(), lr=1e-3,
                      warmup_steps=10, lr_final_factor=0.1)
    assert s.lr_at(0) == pytest.approx(1e-4) and s.lr_at(9) == pytest.approx(1e-3)
    assert s.lr_at(10) == pytest.approx(1e-3)
    assert s.lr_at(60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert s.lr_at(110) == pytest.approx(1e-4) and s.lr_at(500) == pytest.approx(1e-4)
    constant = TrainSettings(run="x", dsr_terms=(), seed=0, steps=110, batch_size=1, datasets=(), ratios=())
    assert {constant.lr_at(k) for k in (0, 50, 109)} == {5e-5}
    # a decaying schedule makes the step count part of the resume fingerprint; a constant one does not
    assert s.fingerprint() != TrainSettings(**{**s.__dict__, "steps": 200}).fingerprint()
    assert constant.fingerprint() == TrainSettings(**{**constant.__dict__, "steps": 200}).fingerprint()
