"""Prior stage on generated scans: view rendering with exact visibility, rendered parsing, accumulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.body.model import BodyModel
from pipeline.parsing.labels import LABEL_ID
from pipeline.prior.accumulate import CleaningRule, build_prior
from pipeline.prior.parse import ParserSettings, parse_scan_views
from pipeline.prior.views import ViewSettings, render_scan_views
from pipeline.world.assets import scan_names
from pipeline.world.parser_noise import ParserNoise
from pipeline.world.prior_quality import prior_quality
from pipeline.world.scans import make_scans

SETTINGS = ViewSettings(count=4, image_size=256)


@pytest.fixture(scope="module")
def prior_run(open_model, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder, _ = open_model
    root = tmp_path_factory.mktemp("prior")
    names = scan_names(3)
    make_scans(folder, root / "scans", names, seed=1)
    body = BodyModel(folder)
    counts, summaries = [], []
    for k, name in enumerate(names):
        views = root / f"{name}.views.npz"
        summaries.append(render_scan_views(root / "scans" / f"{name}.obj", root / "scans" / f"{name}.pkl", folder,
                                           views, root / f"{name}.png", SETTINGS, seed=k))
        parse_scan_views(views, root / f"{name}.parse.npz", root / f"{name}.counts.npz", body.num_faces,
                         ParserSettings("rendered"), seed=k, scan_obj=str(root / "scans" / f"{name}.obj"),
                         scan_labels=str(root / "scans" / f"{name}.labels.npy"), noise=ParserNoise(level=0.0))
        counts.append(np.load(root / f"{name}.counts.npz")["face_counts"])
    return {"root": root, "names": names, "summaries": summaries, "counts": counts, "body": body}


def test_views_file_contract_and_visibility(prior_run: dict) -> None:
    with np.load(prior_run["root"] / "scan_0000.views.npz") as npz:
        assert npz["rgb"].shape == (4, 256, 256, 3) and npz["rgb"].dtype == np.uint8
        assert npz["face_id"].shape == (4, 256, 256) and npz["face_id"].dtype == np.int32
        assert npz["K"].shape == (4, 3, 3) and npz["R"].shape == (4, 3, 3) and npz["t"].shape == (4, 3)
        assert npz["face_id"].min() == -1 and npz["face_id"].max() < prior_run["body"].num_faces
    agreements = [s["visibility_agreement"] for s in prior_run["summaries"]]
    print("visibility agreement with ray casting (raw, modulo edge ties):",
          [(round(s["visibility_agreement_raw"], 4), round(s["visibility_agreement"], 4)) for s in prior_run["summaries"]])
    assert min(agreements) >= 0.995


def test_exact_parsing_gives_ground_truth_labels_on_visible_faces(prior_run: dict) -> None:
    """With noise 0, a visible body face's label is the scan's label of that face for most pixels."""
    root = prior_run["root"]
    agree, total = 0, 0
    for name, counts in zip(prior_run["names"], prior_run["counts"]):
        truth = np.load(root / "scans" / f"{name}.labels.npy")
        seen = counts.sum(1) > 0
        agree += int((counts[seen].argmax(1) == truth[seen]).sum())
        total += int(seen.sum())
    print(f"visible faces whose majority label equals the scan's own label: {agree}/{total}")
    assert agree / total > 0.9


def test_prior_rows_and_body_sides(prior_run: dict) -> None:
    body = prior_run["body"]
    counts = sum(prior_run["counts"])
    rules = [CleaningRule("legs_not_arms", ("L_Knee", "R_Knee"), ("LeftArm", "RightArm"))]
    prior = build_prior(counts, body.faces.numpy(), body.vertex_part.numpy(), background_prob=0.01, rules=rules)
    np.testing.assert_allclose(prior.vertex_prob.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(prior.face_prob.sum(1), 1.0, atol=1e-6)
    part = body.vertex_part.numpy()
    left_forearm, right_forearm = part == 18, part == 19  # L_Elbow / R_Elbow parts
    p_left = prior.vertex_prob[:, LABEL_ID["LeftArm"]]
    p_right = prior.vertex_prob[:, LABEL_ID["RightArm"]]
    assert p_left[left_forearm].mean() > p_right[left_forearm].mean()
    assert p_right[right_forearm].mean() > p_left[right_forearm].mean()


def test_noise_free_prior_matches_garment_ground_truth(prior_run: dict) -> None:
    """Noise 0: the prior's top-1 label agrees with the scans' garments on ≥ 90 % of vertices seen ≥ 3 times.

    (The issue asks for this at the default world size; 3 scans × 4 views keeps the test fast, and the
    default-size figure is written by the DAG to results/prior/prior_quality.json.)
    """
    body = prior_run["body"]
    counts = sum(prior_run["counts"])
    prior = build_prior(counts, body.faces.numpy(), body.vertex_part.numpy(), background_prob=0.01, rules=[])
    files = [prior_run["root"] / "scans" / f"{n}.labels.npy" for n in prior_run["names"]]
    report = prior_quality(prior.vertex_prob, prior.vertex_counts, body.faces.numpy(), files)
    print(f"top-1 agreement {report['top1_agreement']:.4f} over {report['vertices_seen']} vertices")
    assert report["vertices_seen"] > 3000 and report["top1_agreement"] >= 0.90


def test_graphonomy_backend_parses_scan_views(prior_run: dict, tmp_path: Path) -> None:
    """The graphonomy backend behind the same interface (random weights: labels are arbitrary but valid)."""
    from pipeline.parsing.graphonomy import write_random_checkpoint

    ckpt = tmp_path / "universal_trained.pth"
    write_random_checkpoint(ckpt, seed=0)
    root, body = prior_run["root"], prior_run["body"]
    small = {k: v[:1] for k, v in np.load(root / "scan_0000.views.npz").items() if k in ("rgb", "face_id", "K", "R", "t")}
    small["rgb"], small["face_id"] = small["rgb"][:, ::4, ::4], small["face_id"][:, ::4, ::4]
    np.savez(tmp_path / "views.npz", **small)
    summary = parse_scan_views(tmp_path / "views.npz", tmp_path / "p.npz", tmp_path / "c.npz", body.num_faces,
                               ParserSettings("graphonomy", scales=(1.0,), flip=True), seed=0, checkpoint=str(ckpt))
    labels = np.load(tmp_path / "p.npz")["labels"]
    assert labels.shape == (1, 64, 64) and labels.max() < 20
    assert summary["labelled_face_pixels"] == int((small["face_id"] >= 0).sum())
