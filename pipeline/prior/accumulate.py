"""Semantic prior (paper Sup. Mat. B): per-face / per-vertex label distributions of the body surface.

For every view of every scan, each visible face of the scan's fitted body takes the parsed label at its
pixels. Counting those over views and scans gives ``face_counts`` (F, 20); the probability of a label is its
count over all non-background counts, then a small background probability is mixed in. Part-cleaning rules
(data, from config) zero labels that are implausible for a body part (a leg vertex whose most likely label
is an arm label). Vertices never observed get the average of their observed neighbours (diffusion over the
mesh); mesh components never seen at all (eyes, mouth interior) get their body part's mean, never a
silent zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from pipeline.body.joints import SMPL_JOINT_NAMES
from pipeline.parsing.labels import BACKGROUND, CIHP_LABELS, NUM_LABELS, label_ids

log = logging.getLogger(__name__)

#: Maximum diffusion sweeps used to fill unobserved vertices.
MAX_DIFFUSION_ITERS = 500


@dataclass(frozen=True)
class CleaningRule:
    """If a vertex of one of ``parts`` has its most likely label in ``labels``, zero those labels there."""

    name: str
    parts: tuple[str, ...]
    labels: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "CleaningRule":
        unknown = [p for p in cfg["parts"] if p not in SMPL_JOINT_NAMES]
        if unknown:
            raise ValueError(f"cleaning rule {cfg['name']!r}: unknown parts {unknown}; allowed: {list(SMPL_JOINT_NAMES)}")
        label_ids(cfg["labels"])  # validates the names
        return cls(name=cfg["name"], parts=tuple(cfg["parts"]), labels=tuple(cfg["labels"]))


def count_visible_labels(face_id: np.ndarray, labels: np.ndarray, num_faces: int) -> np.ndarray:
    """Label occurrences per body face over views.

    Args:
        face_id: (V, H, W) int32 visible body face per pixel (−1 = none).
        labels: (V, H, W) uint8 parsed CIHP labels of the same views.
        num_faces: F.

    Returns:
        (F, 20) int64 counts (background included; it is excluded later from the denominator).
    """
    if face_id.shape != labels.shape:
        raise ValueError(f"face_id {face_id.shape} and labels {labels.shape} must have the same shape")
    sel = face_id >= 0
    flat = face_id[sel].astype(np.int64) * NUM_LABELS + labels[sel].astype(np.int64)
    return np.bincount(flat, minlength=num_faces * NUM_LABELS).reshape(num_faces, NUM_LABELS)


def face_to_vertex_counts(face_counts: np.ndarray, faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Each face's counts credited to its three vertices, (V, 20) int64."""
    out = np.zeros((num_vertices, face_counts.shape[1]), dtype=np.int64)
    for k in range(3):
        np.add.at(out, faces[:, k], face_counts)
    return out


def _normalise(counts: np.ndarray, background_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from counts (background excluded from the denominator) and the observed mask."""
    fg = counts.astype(np.float64).copy()
    fg[:, BACKGROUND] = 0.0
    total = fg.sum(1, keepdims=True)
    observed = total[:, 0] > 0
    prob = np.divide(fg, total, out=np.zeros_like(fg), where=total > 0) * (1.0 - background_prob)
    prob[observed, BACKGROUND] = background_prob
    return prob, observed


def vertex_adjacency(faces: np.ndarray, num_vertices: int) -> scipy.sparse.csr_matrix:
    """Symmetric vertex adjacency (V, V) of a triangle mesh."""
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adj = scipy.sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(num_vertices, num_vertices)).tocsr()
    adj.data[:] = 1.0
    return adj


def diffuse_unobserved(prob: np.ndarray, observed: np.ndarray, adjacency: scipy.sparse.csr_matrix) -> tuple[np.ndarray, int]:
    """Fill unobserved rows with the mean of already-known neighbours, sweeping outwards.

    Returns:
        prob with every row filled (rows unreachable from observed vertices stay 0 and are reported), and the
        number of sweeps used.
    """
    prob = prob.copy()
    known = observed.copy()
    sweeps = 0
    while not known.all() and sweeps < MAX_DIFFUSION_ITERS:
        sums = adjacency @ (prob * known[:, None])
        n_known = adjacency @ known.astype(np.float64)
        newly = (~known) & (n_known > 0)
        if not newly.any():
            break
        prob[newly] = sums[newly] / n_known[newly, None]
        known |= newly
        sweeps += 1
    return prob, sweeps


def fill_by_part(prob: np.ndarray, filled: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows still empty after diffusion (mesh components never seen, e.g. eyes or mouth interior) get the mean
    of the filled rows of the same body part (or of all filled rows). Returns the prob and how many rows."""
    prob = prob.copy()
    empty = ~filled
    for p in np.unique(part[empty]):
        rows = empty & (part == p)
        donors = filled & (part == p)
        prob[rows] = prob[donors].mean(0) if donors.any() else prob[filled].mean(0)
    return prob, int(empty.sum())


def apply_cleaning(prob: np.ndarray, part: np.ndarray, rules: list[CleaningRule], background_prob: float) -> tuple[np.ndarray, dict[str, int]]:
    """Zero implausible labels per part (rows renormalised to 1 − background_prob); counts per rule."""
    prob = prob.copy()
    touched: dict[str, int] = {}
    argmax = prob[:, 1:].argmax(1) + 1
    for rule in rules:
        part_ids = [SMPL_JOINT_NAMES.index(p) for p in rule.parts]
        lab = label_ids(list(rule.labels))
        rows = np.isin(part, part_ids) & np.isin(argmax, lab) & (prob[:, 1:].sum(1) > 0)
        prob[np.ix_(rows, lab)] = 0.0
        touched[rule.name] = int(rows.sum())
    fg = prob[:, 1:].sum(1, keepdims=True)
    ok = fg[:, 0] > 0
    prob[ok, 1:] *= (1.0 - background_prob) / fg[ok]
    return prob, touched


@dataclass
class SemanticPrior:
    """The accumulated prior (all arrays float64 / int64)."""

    face_counts: np.ndarray  # (F, 20)
    vertex_counts: np.ndarray  # (V, 20)
    face_prob: np.ndarray  # (F, 20), rows sum to 1
    vertex_prob: np.ndarray  # (V, 20), rows sum to 1
    report: dict[str, Any]


def build_prior(
    face_counts: np.ndarray,
    faces: np.ndarray,
    vertex_part: np.ndarray,
    *,
    background_prob: float,
    rules: list[CleaningRule],
) -> SemanticPrior:
    """Counts -> cleaned, gap-filled per-vertex and per-face probabilities."""
    num_vertices = len(vertex_part)
    vertex_counts = face_to_vertex_counts(face_counts, faces, num_vertices)
    vprob, vobs = _normalise(vertex_counts, background_prob)
    vprob, vtouched = apply_cleaning(vprob, vertex_part, rules, background_prob)
    vprob, sweeps = diffuse_unobserved(vprob, vobs, vertex_adjacency(faces, num_vertices))
    vprob, by_part = fill_by_part(vprob, vprob.sum(1) > 0, vertex_part)
    fprob, fobs = _normalise(face_counts, background_prob)
    face_part = np.array([np.bincount(p, minlength=24).argmax() for p in vertex_part[faces]])
    fprob, ftouched = apply_cleaning(fprob, face_part, rules, background_prob)
    fprob[~fobs] = vprob[faces[~fobs]].mean(1)  # unobserved faces: mean of their (filled) vertices
    report = {
        "num_faces": int(len(faces)),
        "num_vertices": int(num_vertices),
        "observed_vertices": int(vobs.sum()),
        "observed_faces": int(fobs.sum()),
        "diffusion_sweeps": sweeps,
        "filled_by_part_mean": by_part,
        "cleaning_vertices_touched": vtouched,
        "cleaning_faces_touched": ftouched,
        "background_prob": background_prob,
        "label_mass": {CIHP_LABELS[k]: float(v) for k, v in enumerate(vprob.mean(0))},
    }
    return SemanticPrior(face_counts, vertex_counts, fprob, vprob, report)


def save_prior(prior: SemanticPrior, path: str | Path, provenance: dict[str, Any]) -> None:
    """Write ``semantic_prior.npz`` (arrays + label names + provenance JSON), atomically."""
    import json

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(
        tmp,
        face_counts=prior.face_counts,
        vertex_counts=prior.vertex_counts,
        face_prob=prior.face_prob.astype(np.float32),
        vertex_prob=prior.vertex_prob.astype(np.float32),
        labels=np.array(CIHP_LABELS),
        provenance=np.array(json.dumps({**provenance, **prior.report})),
    )
    tmp.replace(path)
