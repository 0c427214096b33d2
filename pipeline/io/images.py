"""Label-map PNGs in the Graphonomy/CIHP palette, and small image helpers.

Label maps are (H, W) uint8 CIHP-20 ids (:mod:`pipeline.parsing.labels`). They are written as palette PNGs
(mode ``P``: the pixel values *are* the ids, the palette only colours them for viewers). Reading accepts
what parsers and other projects write:

* mode ``P`` / ``L``: pixel values are the ids (values >= 20 are an error);
* mode ``RGB`` / ``RGBA``: colour PNGs such as Graphonomy's own ``*_vis.png`` or DSR's ``grph_sequences``;
  each colour is looked up in the CIHP palette and colours not in it become Background (the official DSR
  loader's rule), counted in :func:`rgb_to_labels`'s return value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.io.damaged import describe_unreadable
from pipeline.parsing.labels import BACKGROUND, NUM_LABELS, PALETTE

#: Entries of a PNG palette.
PALETTE_SIZE: int = 256
#: Modes whose pixel values are label ids.
INDEX_MODES: tuple[str, ...] = ("P", "L")
#: Colour modes decoded through the palette.
COLOUR_MODES: tuple[str, ...] = ("RGB", "RGBA")


class LabelImageError(ValueError):
    """A label-map or image file is missing, unreadable or holds values outside the vocabulary."""


def png_palette() -> list[int]:
    """The 768-entry flat RGB palette of a CIHP label PNG (labels 0..19 coloured, the rest black)."""
    pal = np.zeros((PALETTE_SIZE, 3), dtype=np.uint8)
    pal[:NUM_LABELS] = PALETTE
    return pal.ravel().tolist()


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write a (H, W) label map of CIHP ids as a palette PNG (mode P), atomically.

    Raises:
        ValueError: ``labels`` is not 2-D or holds ids outside [0, 20).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: label map must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        raise ValueError(f"{path}: label ids must lie in [0, {NUM_LABELS}), got [{labels.min()}, {labels.max()}]")
    img = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P with the same values
    img.putpalette(png_palette())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rgb_to_labels(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Decode a CIHP-palette colour image.

    Args:
        rgb: (H, W, 3) uint8.

    Returns:
        ``(labels, unmatched)``: (H, W) uint8 ids, and the number of pixels whose colour is not in the palette
        (set to Background).
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal_code = (PALETTE[:, 0].astype(np.int32) << 16) | (PALETTE[:, 1].astype(np.int32) << 8) | PALETTE[:, 2]
    order = np.argsort(pal_code)
    pos = np.clip(np.searchsorted(pal_code[order], code), 0, NUM_LABELS - 1)
    ids = order[pos]
    matched = pal_code[ids] == code
    labels = np.where(matched, ids, BACKGROUND).astype(np.uint8)
    return labels, int((~matched).sum())


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG (palette, greyscale or CIHP-colour) as (H, W) uint8 CIHP ids.

    Raises:
        LabelImageError: the file is missing/unreadable, has an unsupported mode, or holds ids >= 20.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in INDEX_MODES:
                labels = np.asarray(img, dtype=np.uint8).copy()
            elif mode in COLOUR_MODES:
                labels, _ = rgb_to_labels(np.asarray(img.convert("RGB")))
            else:
                raise LabelImageError(f"{path}: label PNG has mode {mode!r}; expected one of "
                                      f"{list(INDEX_MODES + COLOUR_MODES)}")
    except FileNotFoundError as exc:
        raise LabelImageError(f"{path}: cannot read the label map (not found); re-run the parsing stage") from exc
    except (UnidentifiedImageError, OSError) as exc:
        what = describe_unreadable(path, exc, "a PNG image")
        raise LabelImageError(f"{path}: cannot read the label map: {what}; delete it and re-run the parsing "
                              "stage") from exc
    if mode in INDEX_MODES and labels.size and labels.max() >= NUM_LABELS:
        raise LabelImageError(f"{path}: label id {int(labels.max())} outside the CIHP vocabulary [0, {NUM_LABELS}); "
                              "is this a label map written by another parser?")
    return labels


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB (EXIF orientation is *not* applied, as in SPIN's cv2 loader).

    Raises:
        LabelImageError: missing, empty, truncated or corrupt file (the message says which, and what to do).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise LabelImageError(f"{path}: cannot read the image (not found); check the dataset's image root in "
                              "the config") from exc
    except (UnidentifiedImageError, OSError) as exc:  # decoders report truncation and bad data as OSError
        what = describe_unreadable(path, exc, "an image")
        raise LabelImageError(f"{path}: cannot read the image: {what}; re-download or re-extract the dataset's "
                              "images (open world: delete the folder and re-run the make_images_* rule)") from exc


def label_png_name(imgname: str) -> str:
    """The label PNG's relative path for an image's relative path (``train2014/a.jpg`` -> ``train2014/a.png``)."""
    return str(Path(imgname).with_suffix(".png"))


def tile_images(tiles: list[list[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile a grid of equally sized (h, w, 3) uint8 images (rows of columns) with ``pad`` px gaps.

    Returns:
        (rows·(h+pad)+pad, cols·(w+pad)+pad, 3) uint8.
    """
    if not tiles or not tiles[0]:
        raise ValueError("tile_images needs at least one row with one tile")
    h, w = tiles[0][0].shape[:2]
    rows, cols = len(tiles), max(len(r) for r in tiles)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (h, w):
                raise ValueError(f"tile ({r}, {c}) has shape {tile.shape[:2]}, expected {(h, w)}")
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y:y + h, x:x + w] = tile[..., :3]
    return out
