"""Semantic-prior accumulation on hand-made views: counting, normalisation, cleaning, gap filling."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.parsing.labels import LABEL_ID
from pipeline.prior.accumulate import CleaningRule, build_prior, count_visible_labels, diffuse_unobserved, vertex_adjacency

# A strip of 4 triangles over 6 vertices: 0-1-2, 1-3-2, 2-3-4, 3-5-4.
FACES = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [3, 5, 4]])


def test_counts_follow_visible_faces() -> None:
    face_id = np.array([[[0, 0, 1], [-1, 2, 2]], [[0, 3, 3], [-1, -1, 1]]], dtype=np.int32)
    labels = np.array([[[5, 5, 9], [0, 0, 9]], [[5, 14, 14], [3, 3, 9]]], dtype=np.uint8)
    counts = count_visible_labels(face_id, labels, 4)
    assert counts[0, 5] == 3 and counts[1, 9] == 2 and counts[2, 0] == 1 and counts[2, 9] == 1
    assert counts[3, 14] == 2 and counts.sum() == 9  # pixels without a face are ignored


def test_background_excluded_from_denominator_then_mixed_in() -> None:
    counts = np.zeros((4, 20), dtype=np.int64)
    counts[:, 0] = 100  # lots of background must not dilute the labels
    counts[:, 5] = 3
    counts[:, 9] = 1
    part = np.zeros(6, dtype=np.int64)
    prior = build_prior(counts, FACES, part, background_prob=0.02, rules=[])
    np.testing.assert_allclose(prior.face_prob[:, 5], 0.98 * 0.75)
    np.testing.assert_allclose(prior.face_prob[:, 9], 0.98 * 0.25)
    np.testing.assert_allclose(prior.face_prob[:, 0], 0.02)
    np.testing.assert_allclose(prior.vertex_prob.sum(1), 1.0)


def test_cleaning_rule_zeroes_arm_label_on_leg() -> None:
    counts = np.zeros((4, 20), dtype=np.int64)
    counts[:, LABEL_ID["Pants"]] = 1
    counts[0, LABEL_ID["LeftArm"]] = 5  # a parser mistake on a leg face
    part = np.full(6, 4)  # L_Knee part: a leg
    rule = CleaningRule("leg_not_arm", ("L_Knee", "R_Knee"), ("LeftArm", "RightArm"))
    prior = build_prior(counts, FACES, part, background_prob=0.0, rules=[rule])
    assert prior.face_prob[0, LABEL_ID["LeftArm"]] == 0.0
    np.testing.assert_allclose(prior.face_prob[0, LABEL_ID["Pants"]], 1.0)
    assert prior.report["cleaning_faces_touched"]["leg_not_arm"] == 1
    assert prior.report["cleaning_vertices_touched"]["leg_not_arm"] == 3  # vertices 0, 1, 2


def test_unobserved_vertices_get_neighbour_average() -> None:
    prob = np.zeros((6, 20))
    prob[0, 5] = prob[1, 5] = 1.0
    observed = np.array([True, True, False, False, False, False])
    filled, sweeps = diffuse_unobserved(prob, observed, vertex_adjacency(FACES, 6))
    assert sweeps >= 2 and (filled.sum(1) > 0).all()
    np.testing.assert_allclose(filled[:, 5], 1.0)


def test_unknown_rule_names_rejected() -> None:
    with pytest.raises(ValueError, match="allowed"):
        CleaningRule.from_config({"name": "x", "parts": ["Leg"], "labels": ["LeftArm"]})
    with pytest.raises(ValueError, match="allowed"):
        CleaningRule.from_config({"name": "x", "parts": ["L_Knee"], "labels": ["Arm"]})
