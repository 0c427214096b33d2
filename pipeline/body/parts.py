"""24-part vertex segmentation: the argmax of the skinning weights (one rule for real and open SMPL).

Part ``k`` is the region skinned mostly by SMPL joint ``k`` (names in
:data:`pipeline.body.joints.SMPL_JOINT_NAMES`), i.e. the same 24 parts as Meshcapade's
``smpl_vert_segmentation.json`` (hips, leftUpLeg, ...), without needing that file and for any topology.
"""

from __future__ import annotations

import numpy as np


def vertex_parts_from_weights(weights: np.ndarray) -> np.ndarray:
    """Part index of every vertex.

    Args:
        weights: (V, J) skinning weights, any float dtype (J = 24 for SMPL-format models).

    Returns:
        (V,) int64, the joint whose weight is largest; ties go to the lowest joint index.

    Raises:
        ValueError: ``weights`` is not a non-empty 2-D array.
    """
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[0] == 0 or weights.shape[1] == 0:
        raise ValueError(f"skinning weights must be a non-empty (V, J) array, got shape {weights.shape}")
    return weights.argmax(axis=1).astype(np.int64)
