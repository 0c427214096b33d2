"""The CIHP-20 label vocabulary (Graphonomy Universal target head) and DSR label groupings.

Label ids are the parser's output channels. "Left" and "right" are the person's own left and right.
"""

from __future__ import annotations

import numpy as np

#: CIHP-20 names in channel order. Label 10 is CIHP's "Torso-skin" (DSR calls it "Jumpsuits").
CIHP_LABELS: tuple[str, ...] = (
    "Background",
    "Hat",
    "Hair",
    "Glove",
    "Sunglasses",
    "UpperClothes",
    "Dress",
    "Coat",
    "Socks",
    "Pants",
    "Torso-skin",
    "Scarf",
    "Skirt",
    "Face",
    "LeftArm",
    "RightArm",
    "LeftLeg",
    "RightLeg",
    "LeftShoe",
    "RightShoe",
)
NUM_LABELS: int = len(CIHP_LABELS)
LABEL_ID: dict[str, int] = {name: i for i, name in enumerate(CIHP_LABELS)}
BACKGROUND: int = 0

#: Left/right pairs swapped under a horizontal flip (parser TTA and training augmentation).
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((14, 15), (16, 17), (18, 19))

#: The five DSR-MC ("minimal clothing") labels, in the order of the ``valid_mc`` flags.
MC_LABELS: tuple[str, ...] = ("LeftArm", "RightArm", "LeftShoe", "RightShoe", "Face")

#: Graphonomy / CIHP visualisation palette (RGB), one colour per label.
PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),
        (128, 0, 0),
        (255, 0, 0),
        (0, 85, 0),
        (170, 0, 51),
        (255, 85, 0),
        (0, 0, 85),
        (0, 119, 221),
        (85, 85, 0),
        (0, 85, 85),
        (85, 51, 0),
        (52, 86, 128),
        (0, 128, 0),
        (0, 0, 255),
        (51, 170, 221),
        (0, 255, 255),
        (85, 255, 170),
        (170, 255, 85),
        (255, 255, 0),
        (255, 170, 0),
    ],
    dtype=np.uint8,
)


def flip_permutation() -> np.ndarray:
    """Label permutation applied to a label map (or channel axis) under a horizontal flip.

    Returns:
        perm: (20,) int64; ``flipped_labels = perm[labels]`` and ``flipped_probs = probs[perm]``.
    """
    perm = np.arange(NUM_LABELS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def flip_label_map(labels: np.ndarray) -> np.ndarray:
    """Mirror a label map (..., H, W) horizontally and swap left/right labels."""
    return flip_permutation()[labels[..., ::-1]].astype(labels.dtype)


def label_ids(names: list[str] | tuple[str, ...]) -> list[int]:
    """Map label names to ids; unknown names raise ``ValueError`` listing the vocabulary."""
    unknown = [n for n in names if n not in LABEL_ID]
    if unknown:
        raise ValueError(f"unknown CIHP label(s) {unknown}; allowed: {list(CIHP_LABELS)}")
    return [LABEL_ID[n] for n in names]


def colorize(labels: np.ndarray) -> np.ndarray:
    """Label map (H, W) uint8 -> RGB image (H, W, 3) uint8 in the Graphonomy palette."""
    return PALETTE[np.clip(labels, 0, NUM_LABELS - 1)]
