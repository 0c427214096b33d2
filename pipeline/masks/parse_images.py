"""Parse dataset images into raw label-map shards (stage 6, ``parse_images``).

The dataset's unique image names are split into ``num_shards`` contiguous blocks (fixed at DAG-build time,
so a cluster fans out one job per shard); every image of a block is parsed once, whatever the number of
people in it, and written to one HDF5 parse shard.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.io.eft_json import read_eft_json
from pipeline.io.images import read_image_rgb
from pipeline.io.masks_h5 import PARSE_IMAGE_MISSING, PARSE_OK, ParseShardWriter
from pipeline.io.spin_npz import PersonDataset, read_spin_npz
from pipeline.prior.parse import ParserSettings

log = logging.getLogger(__name__)


def read_dataset(path: str | Path, fmt: str) -> PersonDataset:
    """Read an annotation file in either supported format."""
    if fmt == "eft_json":
        return read_eft_json(path)
    if fmt == "spin_npz":
        return read_spin_npz(path)
    raise ValueError(f"unknown annotation format {fmt!r}; allowed: eft_json, spin_npz")


def shard_names(imgnames: np.ndarray, shard: int, num_shards: int) -> list[str]:
    """The unique image names (first-appearance order) of one of ``num_shards`` contiguous blocks."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} outside 0..{num_shards - 1}")
    unique = list(dict.fromkeys(str(n) for n in imgnames))
    bounds = np.linspace(0, len(unique), num_shards + 1).round().astype(int)
    return unique[bounds[shard] : bounds[shard + 1]]


def parse_image_shard(annotations: str | Path, fmt: str, image_root: str | Path, out_h5: str | Path, shard: int,
                      num_shards: int, settings: ParserSettings, *, checkpoint: str | None = None) -> dict[str, int]:
    """Parse one shard of a dataset's images with the configured backend into ``out_h5``."""
    names = shard_names(read_dataset(annotations, fmt).imgname, shard, num_shards)
    image_root = Path(image_root)
    if settings.backend == "rendered":
        from pipeline.world.rendered_parser import read_rendered_label_map

        def parse(name: str) -> np.ndarray:
            return read_rendered_label_map(image_root, name)
    else:
        from pipeline.parsing.infer import GraphonomyParser

        parser = GraphonomyParser(checkpoint, device=settings.device, scales=settings.scales, flip=settings.flip)

        def parse(name: str) -> np.ndarray:
            return parser.parse(read_image_rgb(image_root / name))

    counts = {"images": len(names), "missing": 0}
    attrs: dict[str, object] = {"parser": settings.backend, "shard": shard, "num_shards": num_shards}
    if settings.backend != "rendered":  # the rendered backend reads label maps: no scales, no flip
        attrs.update(scales=list(settings.scales), flip=settings.flip)
    with ParseShardWriter(out_h5, attrs) as writer:
        for name in tqdm(names, desc=f"parse_images shard {shard}", unit="img"):
            if not (image_root / name).is_file():
                writer.add(name, None, PARSE_IMAGE_MISSING)
                counts["missing"] += 1
                continue
            writer.add(name, parse(name), PARSE_OK)
    if counts["missing"]:
        log.warning("%d of %d images missing under %s", counts["missing"], len(names), image_root)
    return counts
