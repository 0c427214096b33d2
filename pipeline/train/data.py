"""Training data: per-dataset samples (SPIN crop + augmentation + DSR masks) and the seeded dataset mix.

One item (all numpy, collated into tensors by the DataLoader):

============== ===================== =====================================================================
key            shape / dtype         meaning
============== ===================== =====================================================================
img            (3, S, S) float32     ImageNet-normalised crop (S = ``image_size``)
keypoints      (49, 3) float32       SPIN's 49 ``(x, y, conf)`` (25 OpenPose, 24 GT), normalised crop coords
pose           (72,) float32         SMPL axis-angle (camera frame, augmented); ``has_smpl``
betas          (10,) float32
joints_3d      (24, 4) float32       ``S`` (metres, camera frame, augmented) + confidence; ``has_pose_3d``
mask_c         (R, R) int64          DSR-C class ids at the render resolution R (0 where unknown)
mask_mc        (R, R) float32        DSR-MC binary mask
mask_known     (R, R) bool           pixels whose target is known (inside the stored crop)
valid_mc       (5,) bool             kept MC labels (mirrored with the image)
has_masks      () bool               the sample has a cleaned mask
source         () int64              index of the dataset in the mix
============== ===================== =====================================================================

Determinism: the item at flat position ``p`` of step ``k`` is a pure function of ``(seed, k, p)`` — source
choice, sample index and augmentation all come from ``numpy.random.default_rng([seed, k, p])`` — so data
order does not depend on the number of loader workers, and resuming at step ``k`` reproduces the rest of the
run exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.io.images import read_image_rgb
from pipeline.io.masks_h5 import MaskStore
from pipeline.io.spin_npz import PersonDataset
from pipeline.masks.clean import warp_nearest
from pipeline.masks.mappings import ClassMapping, flip_valid_mc, mapping_from_json
from pipeline.masks.parse_images import read_dataset
from pipeline.train.augment import (
    IDENTITY,
    Augmentation,
    AugmentSettings,
    augment_targets,
    flip_class_map,
    flip_keypoints_labels,
    sample_augmentation,
)
from pipeline.train.crop import (
    crop_affine,
    normalize_image,
    pixels_to_normalized,
    store_to_crop_index,
    transform_points,
    warp_image,
)
from pipeline.train.settings import SourceSpec

log = logging.getLogger(__name__)

#: Fill value marking mask pixels that fall outside the stored crop (unknown target).
UNKNOWN: int = 255
NUM_MC: int = 5


class SampleSource:
    """Samples of one dataset, cropped and augmented (module doc).

    Args:
        spec: where the dataset lives.
        image_size: crop side S.
        render_size: side R of the mask targets (the renderer's resolution).
        exclude: sample indices held out (validation); never drawn for training.
        swap_lr_on_flip: a mirror swaps the masks' left/right labels (False: the official code's omission,
            the ``no_flip_swap`` switch of the ``official`` variant).
    """

    def __init__(self, spec: SourceSpec, image_size: int, render_size: int,
                 exclude: Sequence[int] = (), swap_lr_on_flip: bool = True) -> None:
        self.spec = spec
        self.swap_lr_on_flip = swap_lr_on_flip
        self.image_size = image_size
        self.render_size = render_size
        self.data: PersonDataset = read_dataset(spec.annotations, spec.fmt)
        self.data.check(spec.annotations)
        self.image_root = Path(spec.images)
        n = len(self.data)
        if n == 0:
            raise ValueError(f"{spec.annotations}: dataset {spec.name!r} has no samples; remove it from "
                             "train.datasets or regenerate it")
        keep = np.ones(n, dtype=bool)
        keep[np.asarray(exclude, dtype=np.int64)] = False
        self.train_index = np.flatnonzero(keep)
        if not len(self.train_index):
            raise ValueError(f"dataset {spec.name!r}: every sample is held out for validation; lower "
                             "train.validation.fraction")
        self.has_3d = self.data.has_3d
        self.store: MaskStore | None = None
        self.class_flip: np.ndarray | None = None
        if spec.masks is not None:
            self.store = MaskStore(spec.masks)
            self.store.check_aligned(self.data.imgname, self.data.center, source=spec.annotations)
            self.mapping: ClassMapping | None = mapping_from_json(json.dumps(self.store.json_attr("mapping")))
            self.class_flip = self.mapping.flip_permutation()
        else:
            self.mapping = None

    def __len__(self) -> int:
        return len(self.train_index)

    def image(self, i: int) -> np.ndarray:
        path = self.image_root / str(self.data.imgname[i])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of sample {i} of {self.spec.annotations} is missing; check "
                                    f"assets.train_datasets.{self.spec.name}.images")
        return read_image_rgb(path)

    def item(self, i: int, aug: Augmentation = IDENTITY) -> dict[str, Any]:
        """Sample ``i`` (index into the dataset file) under ``aug``."""
        d, s = self.data, self.image_size
        affine = crop_affine(d.center[i], float(d.scale[i]), s, rot=aug.rot, zoom=aug.zoom, flip=aug.flip)
        img = normalize_image(warp_image(self.image(i), affine, s), np.asarray(aug.pixel_noise))
        kp = np.concatenate([d.openpose[i], d.part[i]]).astype(np.float64)
        kp[:, :2] = pixels_to_normalized(transform_points(kp[:, :2], affine), s)
        pose, joints_3d = augment_targets(d.pose[i], d.S[i], aug)
        if aug.flip:
            kp = flip_keypoints_labels(kp)
        out: dict[str, Any] = {
            "img": img,
            "keypoints": kp.astype(np.float32),
            "pose": pose.astype(np.float32),
            "betas": np.asarray(d.shape[i], dtype=np.float32),
            "has_smpl": bool(d.has_smpl[i]),
            "joints_3d": joints_3d.astype(np.float32),
            "has_pose_3d": bool(self.has_3d[i]),
        }
        out.update(self._masks(i, affine, aug.flip))
        return out

    def _masks(self, i: int, affine: np.ndarray, flip: bool) -> dict[str, Any]:
        r = self.render_size
        store = self.store
        if store is None or not bool(store.meta["valid"][i]):
            return {"mask_c": np.zeros((r, r), np.int64), "mask_mc": np.zeros((r, r), np.float32),
                    "mask_known": np.zeros((r, r), bool), "valid_mc": np.zeros(NUM_MC, bool),
                    "has_masks": False}
        to_crop = store_to_crop_index(store.meta["crop_transform"][i], affine, r, self.image_size)
        mask_c, mask_mc = store.masks(i)
        c = warp_nearest(mask_c, to_crop, (r, r), fill=UNKNOWN)
        mc = warp_nearest(mask_mc, to_crop, (r, r), fill=UNKNOWN)
        known = c != UNKNOWN
        c = np.where(known, c, 0).astype(np.int64)
        valid_mc = np.asarray(store.meta["valid_mc"][i], dtype=bool)
        if flip and self.swap_lr_on_flip:
            c = flip_class_map(c, self.class_flip)
            valid_mc = flip_valid_mc(valid_mc)
        return {"mask_c": c, "mask_mc": (mc == 1).astype(np.float32), "mask_known": known,
                "valid_mc": valid_mc, "has_masks": True}


class MixedDataset(Dataset):
    """The seeded dataset mix, indexed by flat position ``step · batch_size + p`` (module doc).

    Args:
        sources: the datasets.
        ratios: sampling probability of each source (normalised here).
        batch_size: samples per step.
        seed: the run's seed.
        augment: augmentation settings.
    """

    def __init__(self, sources: Sequence[SampleSource], ratios: Sequence[float], batch_size: int, seed: int,
                 augment: AugmentSettings) -> None:
        if len(sources) != len(ratios) or not sources:
            raise ValueError(f"{len(sources)} sources but {len(ratios)} ratios")
        p = np.asarray(ratios, dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"dataset ratios must be >= 0 with a positive sum, got {list(ratios)}")
        self.sources = list(sources)
        self.ratios = p / p.sum()
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:  # positions are generated on demand; the sampler decides the range
        return 2**62

    def draw(self, step: int, position: int) -> tuple[int, int, Augmentation]:
        """(source, sample index, augmentation) at a step and batch position."""
        rng = np.random.default_rng([self.seed, step, position])
        src = int(rng.choice(len(self.sources), p=self.ratios))
        source = self.sources[src]
        index = int(source.train_index[rng.integers(len(source))])
        return src, index, sample_augmentation(rng, self.augment)

    def __getitem__(self, flat: int) -> dict[str, Any]:
        step, position = divmod(int(flat), self.batch_size)
        src, index, aug = self.draw(step, position)
        item = self.sources[src].item(index, aug)
        item["source"] = src
        return item


class StepRange(torch.utils.data.Sampler[int]):
    """Flat positions of steps ``start`` … ``stop − 1`` in order (batched by the DataLoader).

    ``shard = (rank, world_size)``: only worker ``rank``'s share of each step's batch, the contiguous positions
    ``rank·b … (rank+1)·b − 1`` with ``b = batch_size / world_size`` (:mod:`pipeline.train.distributed`; batch the
    DataLoader by ``b``); the shares of all workers are the whole batch, in order.
    """

    def __init__(self, start: int, stop: int, batch_size: int, shard: tuple[int, int] = (0, 1)) -> None:
        rank, world = shard
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(f"StepRange: shard {shard} does not split a batch of {batch_size}")
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.rank, self.world_size = rank, world

    def __iter__(self):  # type: ignore[no-untyped-def]
        if self.world_size == 1:
            return iter(range(self.start * self.batch_size, self.stop * self.batch_size))
        share = self.batch_size // self.world_size
        offset = self.rank * share
        return (k * self.batch_size + offset + i for k in range(self.start, self.stop) for i in range(share))

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch_size // self.world_size


def validation_indices(data: PersonDataset, fraction: float) -> np.ndarray:
    """Held-out samples of a dataset: every ``round(1/fraction)``-th sample that has 3D joints."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(data.has_3d)
    stride = max(1, round(1.0 / fraction))
    return candidates[::stride]


def to_tensors(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Move a collated batch to ``device`` (non-blocking where pinned)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
