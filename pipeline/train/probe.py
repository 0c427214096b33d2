"""Can the regressor learn? Fit one fixed batch and watch its training-set error (issue #15's probe).

:func:`fit_fixed_batch` trains a model on the same samples for a number of steps with the run's standard
terms (dropout off, BatchNorm in training mode) and returns the batch's MPJPE / PA-MPJPE (mm, by the
Human3.6M test protocol on the batch's ``joints_3d``, network in eval mode) along the way. Without augmentation a working pipeline drives the
training-set error towards zero; ``tests/test_train.py`` keeps that as a guard and
``benchmarks/probe_learning.py`` runs it at demo size, with and without augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from pipeline.body.model import BodyModel
from pipeline.losses.composite import LossWeights, total_loss
from pipeline.model.hmr import HMR
from pipeline.evaluate.protocols import evaluate_h36m
from pipeline.train.loop import adam, predict_body, standard_terms

Batch = Mapping[str, torch.Tensor]


def batch_errors(model: HMR, body: BodyModel, batch: Batch) -> dict[str, float]:
    """MPJPE / PA-MPJPE (mm) of ``batch`` against its ``joints_3d`` (Human3.6M protocol), network in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, posed, _ = predict_body(model, body, batch["img"])
    model.train(was_training)
    result = evaluate_h36m(posed.joints_h36m.cpu().numpy(), batch["joints_3d"].cpu().numpy(), protocol=1)
    return {"mpjpe_mm": result.mpjpe_mm, "pa_mpjpe_mm": result.pa_mpjpe_mm}


def fit_fixed_batch(model: HMR, body: BodyModel, clean: Batch, *, steps: int, lr: float,
                    weights: LossWeights | None = None, every: int = 50,
                    draw: Callable[[int], Batch] | None = None,
                    on_first_step: Callable[[dict[str, torch.Tensor]], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` on one batch; its errors at step 0 and every ``every`` steps (and the last).

    Args:
        clean: the batch (un-augmented); errors are measured on it.
        draw: ``step -> batch`` of the same samples under a fresh augmentation (None: train on ``clean``).
        on_first_step: called with the first step's loss terms (e.g. to measure per-term gradients).
        weights: loss weights (None: SPIN's, :class:`LossWeights`).
    """
    weights = LossWeights() if weights is None else weights
    model.drop1.p = model.drop2.p = 0.0
    model.train()
    opt = adam(model.parameters(), lr=lr)
    history = [{"step": 0, **batch_errors(model, body, clean)}]
    for step in range(steps):
        batch = clean if draw is None else draw(step)
        out, posed, cam_t = predict_body(model, body, batch["img"], vertices=False)
        terms = standard_terms(out, posed, cam_t, batch)
        if step == 0 and on_first_step is not None:
            on_first_step(terms)
        loss, _ = total_loss(terms, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            history.append({"step": step + 1, **batch_errors(model, body, clean)})
    return history
