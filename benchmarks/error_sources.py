"""Where a run's 3DPW-style test error sits: shape, global orientation or body pose (issue #15).

Reads a finished demo (``results/eval/3dpw/<run>.predictions.npz`` and the open world's 3DPW-style test split)
and re-scores the run's predictions through the 3DPW protocol (gendered ground truth) with one part replaced by
the truth at a time:

- the true betas, given in the neutral model (:class:`pipeline.world.images.NeutralShapeFit` of the person's
  gendered betas, as the ungendered training labels are);
- the true global orientation (camera frame);
- the true body pose (the 23 joints below the root);
- orientation and betas together.

It also prints the floors of the neutral body with the *true* pose: the mean shape (zero betas), the gender's
mean shape, the fitted betas. Each line shows MPJPE / PA-MPJPE / PVE in mm. The last lines give the spread of
the predicted betas against the labels', and the mean global-orientation error in degrees.

Run: .venv/bin/python benchmarks/error_sources.py [--runs pretrained sd] [--results results]
     [--split resources/datasets/3dpw_test/3dpw_test.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.body.model import BodyModel
from pipeline.evaluate.protocols import evaluate_3dpw
from pipeline.io.spin_npz import read_spin_npz
from pipeline.world.images import NeutralShapeFit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["pretrained", "sd"])
    ap.add_argument("--results", default="results")
    ap.add_argument("--split", default="resources/datasets/3dpw_test/3dpw_test.npz")
    ap.add_argument("--body-models", default="resources/body_models")
    args = ap.parse_args()

    folder = Path(args.body_models)
    models = {g: BodyModel(folder, gender=g, joint_regressors=folder / "joint_regressors.npz")
              for g in ("male", "female", "neutral")}
    data = read_spin_npz(args.split)
    n = len(data)
    genders = ["male" if str(g).lower().startswith("m") else "female" for g in data.gender]
    fit = NeutralShapeFit(models["neutral"])
    fitted = np.stack([fit(models[g], b) for g, b in zip(genders, data.shape, strict=True)])
    gender_mean = np.stack([fit(models[g], np.zeros(data.shape.shape[1])) for g in genders])
    true_rot = torch.as_tensor(Rotation.from_rotvec(data.pose.reshape(-1, 3)).as_matrix().reshape(n, 24, 3, 3),
                               dtype=torch.float32)

    def score(label: str, rotmat: torch.Tensor, betas: np.ndarray | torch.Tensor) -> None:
        with torch.no_grad():
            v = models["neutral"](betas=torch.as_tensor(betas, dtype=torch.float32), body_pose=rotmat[:, 1:],
                                  global_orient=rotmat[:, :1], pose2rot=False).vertices
        r = evaluate_3dpw(v.numpy(), data.pose, data.shape, data.gender, models)
        print(f"{label:44s} {r.mpjpe_mm:6.1f} / {r.pa_mpjpe_mm:5.1f} / {r.pve_mm:6.1f}")

    print("true pose, neutral body (MPJPE / PA-MPJPE / PVE, mm)")
    score("  mean shape (zero betas)", true_rot, np.zeros_like(fitted))
    score("  the gender's mean shape", true_rot, gender_mean)
    score("  fitted betas", true_rot, fitted)
    for run in args.runs:
        pred = np.load(Path(args.results) / "eval" / "3dpw" / f"{run}.predictions.npz")
        rot, betas = torch.as_tensor(pred["rotmat"]), torch.as_tensor(pred["betas"])
        print(f"{run}")
        score("  as predicted", rot, betas)
        score("  with the true betas", rot, fitted)
        orient = rot.clone()
        orient[:, 0] = true_rot[:, 0]
        score("  with the true global orientation", orient, betas)
        body = true_rot.clone()
        body[:, 0] = rot[:, 0]
        score("  with the true body pose", body, betas)
        score("  with the true orientation and betas", orient, fitted)
        err = Rotation.from_matrix(pred["rotmat"][:, 0].astype(np.float64)).inv() * Rotation.from_rotvec(data.pose[:, :3])
        b = pred["betas"]
        print(f"  betas std {np.array2string(b.std(0), precision=2)} (labels {np.array2string(fitted.std(0), precision=2)}); "
              f"corr(beta0) {np.corrcoef(b[:, 0], fitted[:, 0])[0, 1]:.2f}; "
              f"global orientation error {np.degrees(err.magnitude()).mean():.1f} deg")


if __name__ == "__main__":
    main()
