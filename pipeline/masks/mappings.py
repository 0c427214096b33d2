"""DSR-C class mappings: which CIHP-20 labels form each DSR-C class, as data.

Named mappings (``masks.mapping`` in the config takes a name or an explicit mapping):

``table1`` (default) — the paper's Sup. Mat. Table I, 4 classes (DESIGN §5):
    Background ← {Background}; UpperClothes ← {UpperClothes, Dress, Coat, Torso-skin ("Jumpsuits")};
    LowerClothes ← {Pants, Skirt}; MinimalClothing ← every other label (Hat, Hair, Glove, Sunglasses, Socks,
    Scarf, Face, arms, legs, shoes). Same partition as the official code's unused ``CLOTHING_LABEL_MERGE``.
``official8`` — the released DSR code's ``GRPH_MERGE_MAP`` (../shared/reference/DSR_SPIN_EFT_NOTES.md A.4):
    Background, Head {Hat, Hair, Sunglasses, Scarf, Face}, UpperClothes {Glove, UpperClothes, Dress, Coat,
    Torso-skin}, Pants {Socks, Pants, Skirt}, LeftArm, RightArm, LeftLeg {LeftLeg, LeftShoe},
    RightLeg {RightLeg, RightShoe}.

An explicit mapping is ``{class name: [CIHP label names]}`` in class order. Rules (checked by
:func:`resolve_mapping`, errors name the offending label and the allowed ones): every CIHP label in exactly
one class; no empty class; the class holding ``Background`` comes first (class id 0), so that zero-filled
pixels (outside the keypoint box or the image) mean Background in every mapping; at most 255 classes (uint8).
``Jumpsuits`` (the paper's name) is accepted for ``Torso-skin``.

Flip: :meth:`ClassMapping.flip_permutation` gives the class permutation induced by the CIHP left/right swap
(identity for ``table1``; LeftArm↔RightArm, LeftLeg↔RightLeg for ``official8``); a mapping that splits a
left/right pair inconsistently (e.g. LeftArm alone but RightArm with the torso) is rejected, because flip
augmentation could not stay exact. :data:`MC_FLIP_PERMUTATION` does the same for the ``valid_mc`` flags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.parsing.labels import (
    CIHP_LABELS,
    LABEL_ID,
    MC_LABELS,
    NUM_LABELS,
    flip_permutation,
)

DEFAULT_MAPPING: str = "table1"
#: Alternative spellings accepted in user mappings.
LABEL_ALIASES: dict[str, str] = {"Jumpsuits": "Torso-skin"}
#: Class ids are stored as uint8.
MAX_CLASSES: int = 255
BACKGROUND_LABEL: str = "Background"

_TABLE1_UPPER = ("UpperClothes", "Dress", "Coat", "Torso-skin")
_TABLE1_LOWER = ("Pants", "Skirt")
NAMED_MAPPINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "table1": {
        "Background": ("Background",),
        "UpperClothes": _TABLE1_UPPER,
        "LowerClothes": _TABLE1_LOWER,
        "MinimalClothing": tuple(n for n in CIHP_LABELS if n not in ("Background", *_TABLE1_UPPER, *_TABLE1_LOWER)),
    },
    "official8": {
        "Background": ("Background",),
        "Head": ("Hat", "Hair", "Sunglasses", "Scarf", "Face"),
        "UpperClothes": ("Glove", "UpperClothes", "Dress", "Coat", "Torso-skin"),
        "Pants": ("Socks", "Pants", "Skirt"),
        "LeftArm": ("LeftArm",),
        "RightArm": ("RightArm",),
        "LeftLeg": ("LeftLeg", "LeftShoe"),
        "RightLeg": ("RightLeg", "RightShoe"),
    },
}



def _mc_flip_permutation() -> np.ndarray:
    perm = flip_permutation()
    return np.array([MC_LABELS.index(CIHP_LABELS[perm[LABEL_ID[n]]]) for n in MC_LABELS], dtype=np.int64)


#: ``valid_mc`` flag permutation under a horizontal flip (order of :data:`MC_LABELS`): (1, 0, 3, 2, 4).
MC_FLIP_PERMUTATION: np.ndarray = _mc_flip_permutation()


@dataclass(frozen=True)
class ClassMapping:
    """A partition of the 20 CIHP labels into DSR-C classes.

    Attributes:
        name: the mapping's name (``table1``, ``official8`` or ``custom``).
        classes: class names; the index is the class id stored in ``mask_c``.
        members: per class, its CIHP label names.
    """

    name: str
    classes: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def lut(self) -> np.ndarray:
        """(20,) uint8: CIHP label id -> class id (``class_map = lut[labels]``)."""
        out = np.zeros(NUM_LABELS, dtype=np.uint8)
        for k, names in enumerate(self.members):
            out[[LABEL_ID[n] for n in names]] = k
        return out

    def matrix(self) -> np.ndarray:
        """(20, C) float32 one-hot membership: ``class_prob = label_prob @ matrix`` sums each class's labels."""
        out = np.zeros((NUM_LABELS, self.num_classes), dtype=np.float32)
        out[np.arange(NUM_LABELS), self.lut()] = 1.0
        return out

    def flip_permutation(self) -> np.ndarray:
        """(C,) int64: ``flipped_class_map = perm[class_map]`` after mirroring the image."""
        return _class_flip(self.classes, self.members)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``{"name", "classes", "members"}``), e.g. for HDF5 attributes."""
        return {"name": self.name, "classes": list(self.classes), "members": {c: list(m) for c, m in
                                                                                zip(self.classes, self.members)}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _class_flip(classes: Sequence[str], members: Sequence[Sequence[str]]) -> np.ndarray:
    of_label = {n: k for k, names in enumerate(members) for n in names}
    perm = flip_permutation()
    out = np.arange(len(classes), dtype=np.int64)
    for k, names in enumerate(members):
        targets = {of_label[CIHP_LABELS[perm[LABEL_ID[n]]]] for n in names}
        if len(targets) != 1:
            raise ValueError(f"class {classes[k]!r} maps to classes {sorted(classes[t] for t in targets)} under a "
                             "horizontal flip; keep left/right labels either together in one class or in mirrored "
                             "classes (e.g. LeftArm and RightArm as two classes)")
        out[k] = targets.pop()
    if sorted(out.tolist()) != list(range(len(classes))):
        raise ValueError("the mapping's left/right classes do not mirror one-to-one under a horizontal flip")
    return out


def _label_name(name: Any, cls: str, source: str) -> str:
    if not isinstance(name, str):
        raise ValueError(  # noqa: TRY004 -- a bad config value, reported like every other config error
            f"{source}: class {cls!r} lists {name!r}, which is not a label name; allowed labels: {list(CIHP_LABELS)}"
        )
    name = LABEL_ALIASES.get(name, name)
    if name not in LABEL_ID:
        raise ValueError(f"{source}: class {cls!r} lists unknown label {name!r}; allowed labels: {list(CIHP_LABELS)}")
    return name


def validate_mapping(spec: Mapping[str, Sequence[str]], name: str = "custom",
                     source: str = "masks.mapping") -> ClassMapping:
    """Check an explicit ``{class: [labels]}`` mapping (rules in the module doc) and build it.

    Raises:
        ValueError: naming ``source``, the offending label or class, and the allowed values.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"{source}: expected a mapping {{class name: [CIHP label names]}} or one of "
                         f"{sorted(NAMED_MAPPINGS)}, got {spec!r}")
    if len(spec) > MAX_CLASSES:
        raise ValueError(f"{source}: {len(spec)} classes; at most {MAX_CLASSES} (stored as uint8)")
    owner: dict[str, str] = {}
    classes: list[str] = []
    members: list[tuple[str, ...]] = []
    for cls, names in spec.items():
        cls = str(cls)
        if isinstance(names, str):
            names = [names]
        if not names:
            raise ValueError(f"{source}: class {cls!r} has no labels; every class needs at least one of "
                             f"{list(CIHP_LABELS)}")
        resolved = []
        for raw in names:
            label = _label_name(raw, cls, source)
            if label in owner:
                raise ValueError(f"{source}: label {label!r} is in class {owner[label]!r} and in class {cls!r}; "
                                 "each label belongs to exactly one class")
            owner[label] = cls
            resolved.append(label)
        classes.append(cls)
        members.append(tuple(resolved))
    missing = [n for n in CIHP_LABELS if n not in owner]
    if missing:
        raise ValueError(f"{source}: label(s) {missing} are in no class; every one of {list(CIHP_LABELS)} must be "
                         "assigned to exactly one class")
    if BACKGROUND_LABEL not in members[0]:
        raise ValueError(f"{source}: label {BACKGROUND_LABEL!r} is in class {owner[BACKGROUND_LABEL]!r}, which is "
                         f"not the first class; put the class holding {BACKGROUND_LABEL!r} first (class id 0)")
    try:
        _class_flip(classes, members)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    return ClassMapping(name=name, classes=tuple(classes), members=tuple(members))


def resolve_mapping(spec: str | Mapping[str, Sequence[str]] | None = None,
                    source: str = "masks.mapping") -> ClassMapping:
    """The mapping for a config value: a name in :data:`NAMED_MAPPINGS`, an explicit mapping, or None (default).

    Raises:
        ValueError: unknown name (listing the allowed ones) or an invalid explicit mapping.
    """
    if spec is None:
        spec = DEFAULT_MAPPING
    if isinstance(spec, str):
        if spec not in NAMED_MAPPINGS:
            raise ValueError(f"{source}: unknown mapping {spec!r}; allowed: {sorted(NAMED_MAPPINGS)} or an explicit "
                             "{class name: [CIHP label names]} mapping")
        return validate_mapping(NAMED_MAPPINGS[spec], name=spec, source=source)
    return validate_mapping(spec, source=source)


def mapping_from_json(text: str) -> ClassMapping:
    """Inverse of :meth:`ClassMapping.to_json` (validated), e.g. from an HDF5 attribute."""
    doc = json.loads(text)
    return validate_mapping({c: doc["members"][c] for c in doc["classes"]}, name=doc["name"], source="stored mapping")


def flip_valid_mc(valid_mc: np.ndarray) -> np.ndarray:
    """(..., 5) ``valid_mc`` flags after a horizontal flip (LeftArm↔RightArm, LeftShoe↔RightShoe)."""
    return np.asarray(valid_mc)[..., MC_FLIP_PERMUTATION]
