"""Garments that dress any SMPL-format body (open or real) using its 24-part segmentation and geometry.

A clothed surface is the body's rest (shaped, zero-pose) mesh displaced along its vertex normals by the
thickness of the outermost garment at each vertex (plus looseness: skirts and dresses flare away from the
legs, coats are thicker). Each vertex gets a CIHP-20 label and a colour; each face the label of its
vertices (majority, ties to the outermost layer). The result is posed with the body's own skinning, so the
scan's SMPL fit is exactly the body underneath and clothing stays outside it.

Frame: SMPL rest pose (metres, y up, facing +z, x = the body's left).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.parsing.labels import LABEL_ID

# SMPL joint indices (also the part ids of the argmax-of-weights segmentation).
PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
L_FOOT, R_FOOT, NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER = range(10, 18)
L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HAND, R_HAND = range(18, 24)

TORSO_PARTS = (PELVIS, SPINE1, SPINE2, SPINE3, L_COLLAR, R_COLLAR)
UPPER_ARM = {"L": L_SHOULDER, "R": R_SHOULDER}
FOREARM = {"L": L_ELBOW, "R": R_ELBOW}
HAND_PARTS = {"L": (L_WRIST, L_HAND), "R": (R_WRIST, R_HAND)}
THIGH = {"L": L_HIP, "R": R_HIP}
SHANK = {"L": L_KNEE, "R": R_KNEE}
FOOT_PARTS = {"L": (L_ANKLE, L_FOOT), "R": (R_ANKLE, R_FOOT)}
# Joint that ends each limb segment, for the position along it (0 at the start joint, 1 at the end).
SEGMENT_END = {L_SHOULDER: L_ELBOW, R_SHOULDER: R_ELBOW, L_ELBOW: L_WRIST, R_ELBOW: R_WRIST,
               L_HIP: L_KNEE, R_HIP: R_KNEE, L_KNEE: L_ANKLE, R_KNEE: R_ANKLE}

UPPER_STYLES: tuple[str, ...] = ("tshirt_short", "tshirt_long", "shirt_coat", "dress", "sleeveless")
LOWER_STYLES: tuple[str, ...] = ("trousers", "shorts", "skirt")
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bun", "buzz")
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "dots")

#: Thickness (m) of each label's layer above the skin.
THICKNESS: dict[str, float] = {
    "Background": 0.0, "Face": 0.0, "LeftArm": 0.0, "RightArm": 0.0, "LeftLeg": 0.0, "RightLeg": 0.0,
    "Torso-skin": 0.0, "UpperClothes": 0.008, "Dress": 0.012, "Coat": 0.024, "Pants": 0.010,
    "Skirt": 0.012, "Socks": 0.003, "LeftShoe": 0.016, "RightShoe": 0.016, "Hair": 0.014, "Hat": 0.03,
    "Glove": 0.005, "Scarf": 0.028, "Sunglasses": 0.012,
}
SKIN_TONES = np.array([[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                       [141, 85, 36], [92, 56, 32]], dtype=np.float64)
HAIR_COLOURS = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [190, 150, 90], [140, 60, 30],
                         [150, 150, 150]], dtype=np.float64)


@dataclass
class Outfit:
    """What one person wears. ``lower`` is None with a dress; colours are RGB 0–255 per label name."""

    upper: str
    lower: str | None
    hair: str
    socks: bool
    hat: bool
    gloves: bool
    scarf: bool
    sunglasses: bool
    sleeve_length: float  # fraction of the arm (upper arm + forearm) covered by sleeves
    lower_length: float  # fraction of the leg (thigh + shank) covered by trousers/shorts/skirt/dress
    flare: float  # extra offset (m) at the hem of skirts/dresses
    skin_tone: np.ndarray = field(default_factory=lambda: SKIN_TONES[0])
    colours: dict[str, np.ndarray] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)


@dataclass
class ClothedBody:
    """Garments on one body, in the rest frame.

    offsets: (V,) metres along the rest normals; vertex_label / face_label: (V,) / (F,) uint8 CIHP ids;
    vertex_colors: (V, 3) uint8; rest_vertices: (V, 3) displaced rest vertices.
    """

    offsets: np.ndarray
    vertex_label: np.ndarray
    face_label: np.ndarray
    vertex_colors: np.ndarray
    rest_vertices: np.ndarray


def sample_outfit(rng: np.random.Generator, accessory_prob: float = 0.25) -> Outfit:
    """Draw an outfit: upper/lower style, hair, occasional hat/gloves/scarf/sunglasses, colours, patterns."""
    upper = str(rng.choice(UPPER_STYLES, p=[0.28, 0.2, 0.22, 0.14, 0.16]))
    lower = None if upper == "dress" else str(rng.choice(LOWER_STYLES, p=[0.5, 0.28, 0.22]))
    sleeve = {"tshirt_short": rng.uniform(0.2, 0.35), "tshirt_long": rng.uniform(0.85, 0.97),
              "shirt_coat": rng.uniform(0.88, 0.97), "dress": rng.uniform(0.0, 0.3),
              "sleeveless": 0.0}[upper]
    if upper == "dress" or lower == "skirt":
        length = rng.uniform(0.3, 0.62)
    elif lower == "shorts":
        length = rng.uniform(0.22, 0.45)
    else:
        length = rng.uniform(0.93, 1.0)
    outfit = Outfit(
        upper=upper,
        lower=lower,
        hair=str(rng.choice(HAIR_STYLES)),
        socks=bool(rng.random() < 0.6),
        hat=bool(rng.random() < accessory_prob),
        gloves=bool(rng.random() < accessory_prob * 0.6),
        scarf=bool(rng.random() < accessory_prob * 0.8),
        sunglasses=bool(rng.random() < accessory_prob),
        sleeve_length=float(sleeve),
        lower_length=float(length),
        flare=float(rng.uniform(0.02, 0.07)) if (upper == "dress" or lower == "skirt") else 0.0,
        skin_tone=SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05),
    )
    for name in ("UpperClothes", "Dress", "Coat", "Pants", "Skirt", "Socks", "LeftShoe", "Hat", "Glove",
                 "Scarf", "Sunglasses"):
        outfit.colours[name] = rng.uniform(20, 235, size=3)
        outfit.patterns[name] = str(rng.choice(PATTERNS, p=[0.55, 0.2, 0.15, 0.1]))
    outfit.colours["RightShoe"] = outfit.colours["LeftShoe"]
    outfit.patterns["RightShoe"] = outfit.patterns["LeftShoe"] = "plain"
    outfit.colours["Sunglasses"] = rng.uniform(0, 40, size=3)
    outfit.colours["Hair"] = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    outfit.patterns["Hair"] = "plain"
    return outfit


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def segment_coordinate(vertices: np.ndarray, vertex_part: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Position of each limb vertex along its bone: 0 at the proximal joint, 1 at the distal joint.

    Vertices of parts without a segment (torso, head, hands, feet) get NaN.
    """
    coord = np.full(len(vertices), np.nan)
    for start, end in SEGMENT_END.items():
        sel = vertex_part == start
        bone = joints[end] - joints[start]
        coord[sel] = (vertices[sel] - joints[start]) @ bone / (bone @ bone)
    return coord


def _pattern(kind: str, points: np.ndarray, scale: float) -> np.ndarray:
    """Multiplicative shading (N,) in [0.55, 1] for a procedural garment pattern in rest coordinates."""
    if kind == "plain":
        return np.ones(len(points))
    if kind == "stripes":
        return np.where(np.sin(points[:, 1] * 2 * np.pi / scale) > 0, 1.0, 0.6)
    if kind == "checks":
        cells = np.floor(points[:, 0] / scale) + np.floor(points[:, 1] / scale) + np.floor(points[:, 2] / scale)
        return np.where(cells.astype(int) % 2 == 0, 1.0, 0.65)
    if kind == "dots":
        frac = (points / scale) % 1.0 - 0.5
        return np.where(np.linalg.norm(frac[:, :2], axis=1) < 0.22, 0.55, 1.0)
    raise ValueError(f"unknown pattern {kind!r}; allowed: {list(PATTERNS)}")


def dress_body(
    rest_vertices: np.ndarray,
    faces: np.ndarray,
    vertex_part: np.ndarray,
    rest_joints: np.ndarray,
    outfit: Outfit,
    rng: np.random.Generator,
) -> ClothedBody:
    """Put ``outfit`` on a body.

    Args:
        rest_vertices: (V, 3) shaped body in zero pose (SMPL T-pose), metres.
        faces: (F, 3) int triangles.
        vertex_part: (V,) SMPL part id per vertex (argmax of skinning weights).
        rest_joints: (24, 3) SMPL joints of the same rest body.
        outfit: what to wear (``sample_outfit``).
        rng: random generator (colour jitter).

    Returns:
        ClothedBody with per-vertex offsets, labels and colours and per-face labels.
    """
    v, part, j = rest_vertices, vertex_part, rest_joints
    n = len(v)
    normals = vertex_normals(v, faces)
    seg = segment_coordinate(v, part, j)
    label = np.full(n, -1, dtype=np.int64)
    extra = np.zeros(n)  # looseness beyond the layer thickness

    def assign(mask: np.ndarray, name: str) -> None:
        label[mask] = LABEL_ID[name]

    side_label = {"L": ("LeftArm", "LeftLeg", "LeftShoe"), "R": ("RightArm", "RightLeg", "RightShoe")}
    # Limb position as a fraction of the whole arm (upper arm 0–0.5, forearm 0.5–1) and leg likewise.
    arm_pos = np.full(n, np.nan)
    leg_pos = np.full(n, np.nan)
    for s in "LR":
        arm_pos[part == UPPER_ARM[s]] = 0.5 * np.clip(seg[part == UPPER_ARM[s]], 0, 1)
        arm_pos[part == FOREARM[s]] = 0.5 + 0.5 * np.clip(seg[part == FOREARM[s]], 0, 1)
        leg_pos[part == THIGH[s]] = 0.5 * np.clip(seg[part == THIGH[s]], 0, 1)
        leg_pos[part == SHANK[s]] = 0.5 + 0.5 * np.clip(seg[part == SHANK[s]], 0, 1)
        arm = np.isin(part, (UPPER_ARM[s], FOREARM[s]))
        assign(arm, side_label[s][0])
        assign(np.isin(part, HAND_PARTS[s]), "Glove" if outfit.gloves else side_label[s][0])
        assign(np.isin(part, (THIGH[s], SHANK[s])), side_label[s][1])
        assign(np.isin(part, FOOT_PARTS[s]), side_label[s][2])

    # Heights in the rest frame that delimit garments.
    waist_y = j[PELVIS, 1] + 0.55 * (j[SPINE1, 1] - j[PELVIS, 1])
    neck_y = j[NECK, 1]
    torso = np.isin(part, TORSO_PARTS)
    upper_torso = torso & (v[:, 1] >= waist_y)
    lower_torso = torso & (v[:, 1] < waist_y)
    front = normals[:, 2] > 0.3
    chest_mid = np.abs(v[:, 0] - j[SPINE3, 0])

    # Upper body garment.
    if outfit.upper == "sleeveless":
        assign(upper_torso, "UpperClothes")
        neckline = upper_torso & front & (v[:, 1] > j[SPINE3, 1] - 0.02) & (chest_mid < 0.09)
        assign(neckline, "Torso-skin")
    elif outfit.upper == "dress":
        assign(upper_torso | lower_torso, "Dress")
        sleeves = ~np.isnan(arm_pos) & (arm_pos < outfit.sleeve_length)
        assign(sleeves, "Dress")
    else:
        assign(upper_torso, "UpperClothes")
        sleeves = ~np.isnan(arm_pos) & (arm_pos < outfit.sleeve_length)
        assign(sleeves, "UpperClothes")
        if outfit.upper == "shirt_coat":
            coat = (upper_torso | lower_torso | sleeves) & ~(front & (chest_mid < 0.06) & torso)
            assign(coat, "Coat")
            hem = ~np.isnan(leg_pos) & (leg_pos < 0.22)
            assign(hem, "Coat")
    if outfit.upper != "dress":
        if outfit.lower is None:
            raise ValueError("an outfit without a dress needs a lower garment")
        lower_name = {"trousers": "Pants", "shorts": "Pants", "skirt": "Skirt"}[outfit.lower]
        cover = ~np.isnan(leg_pos) & (leg_pos < outfit.lower_length)
        if outfit.upper == "shirt_coat":
            cover &= label != LABEL_ID["Coat"]
            assign(lower_torso & (label != LABEL_ID["Coat"]), lower_name)
        else:
            assign(lower_torso, lower_name)
        assign(cover, lower_name)
        if outfit.lower == "skirt":
            extra[cover] = outfit.flare * (leg_pos[cover] / max(outfit.lower_length, 1e-3))
    else:
        cover = ~np.isnan(leg_pos) & (leg_pos < outfit.lower_length)
        assign(cover, "Dress")
        extra[cover] = outfit.flare * (leg_pos[cover] / max(outfit.lower_length, 1e-3))

    # Socks above the shoes.
    if outfit.socks:
        sock = ~np.isnan(leg_pos) & (leg_pos > 0.88) & np.isin(label, (LABEL_ID["LeftLeg"], LABEL_ID["RightLeg"]))
        assign(sock, "Socks")

    # Head: face in front, hair on top/back, hat, sunglasses. Neck skin reads as torso skin in CIHP.
    head = part == HEAD
    head_top = v[head, 1].max() if head.any() else j[HEAD, 1] + 0.1
    assign(part == NECK, "Torso-skin")
    assign(head, "Face")
    rel = v[:, 1] - j[HEAD, 1]  # height above the head joint
    back = normals[:, 2] < -0.1
    hair_line = {"short": 0.04, "long": 0.0, "bun": 0.03, "buzz": 0.07}[outfit.hair]
    hair = head & ((rel > hair_line + 0.035 * (normals[:, 2] > 0.4)) | (back & (rel > hair_line - 0.06)))
    assign(hair, "Hair")
    if outfit.hair == "long":
        long_back = (np.isin(part, (NECK, SPINE3, L_COLLAR, R_COLLAR)) & back & (v[:, 1] > j[SPINE3, 1])
                     & (chest_mid < 0.13))
        assign(long_back, "Hair")
        extra[long_back] += 0.01
    if outfit.hair == "bun":
        bun = head & back & (rel > 0.05) & (rel < 0.11)
        extra[bun] += 0.03
    if outfit.scarf:
        scarf = (part == NECK) | (torso & (v[:, 1] > neck_y - 0.05) & (v[:, 1] < neck_y + 0.03))
        assign(scarf, "Scarf")
    if outfit.hat:
        assign(head & (v[:, 1] > head_top - 0.07), "Hat")
    if outfit.sunglasses:
        eyes = head & (normals[:, 2] > 0.55) & (np.abs(rel - 0.035) < 0.018) & (np.abs(v[:, 0] - j[HEAD, 0]) < 0.07)
        assign(eyes, "Sunglasses")

    unassigned = label < 0
    if unassigned.any():  # parts a real model might label differently: treat as torso skin
        label[unassigned] = LABEL_ID["Torso-skin"]

    thickness_by_id = np.zeros(max(LABEL_ID.values()) + 1)
    for name, t in THICKNESS.items():
        thickness_by_id[LABEL_ID[name]] = t
    offsets = thickness_by_id[label] + extra
    face_label = _face_labels(label, offsets, faces)

    colours = _vertex_colours(v, label, outfit, rng)
    rest = v + offsets[:, None] * normals
    return ClothedBody(offsets=offsets, vertex_label=label.astype(np.uint8), face_label=face_label,
                       vertex_colors=colours, rest_vertices=rest)


def _face_labels(vertex_label: np.ndarray, offsets: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Majority label of each face's vertices; with three different labels, the outermost one."""
    fl = vertex_label[faces]
    majority = np.where(fl[:, 1] == fl[:, 2], fl[:, 1], fl[:, 0])
    all_diff = (fl[:, 0] != fl[:, 1]) & (fl[:, 1] != fl[:, 2]) & (fl[:, 0] != fl[:, 2])
    outer = fl[np.arange(len(faces)), offsets[faces].argmax(axis=1)]
    return np.where(all_diff, outer, majority).astype(np.uint8)


def _vertex_colours(v: np.ndarray, label: np.ndarray, outfit: Outfit, rng: np.random.Generator) -> np.ndarray:
    colours = np.tile(outfit.skin_tone, (len(v), 1))
    for name, base in outfit.colours.items():
        sel = label == LABEL_ID[name]
        if not sel.any():
            continue
        shade = _pattern(outfit.patterns.get(name, "plain"), v[sel], scale=rng.uniform(0.03, 0.08))
        colours[sel] = base[None, :] * shade[:, None]
    face = label == LABEL_ID["Face"]
    colours[face] *= 1.0 + 0.04 * np.sin(v[face, 0] * 60)[:, None]  # mild shading variation
    noise = rng.normal(0, 4, size=colours.shape)
    return np.clip(colours + noise, 0, 255).astype(np.uint8)
