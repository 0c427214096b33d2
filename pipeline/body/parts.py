"""24-part vertex segmentation: the argmax of the skinning weights (same rule for real and open SMPL)."""

from __future__ import annotations

import numpy as np


def vertex_parts_from_weights(weights: np.ndarray) -> np.ndarray:
    """Part index per vertex.

    Args:
        weights: (V, 24) skinning weights.

    Returns:
        (V,) int64, the SMPL joint whose weight is largest (ties -> lowest joint index).
    """
    return np.asarray(weights).argmax(axis=1).astype(np.int64)
