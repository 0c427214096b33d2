"""Graphonomy Universal inference: Graphonomy's preprocessing and its multi-scale + flip test-time augmentation.

Per image (RGB uint8, H x W):

1. scales from config (default 0.5, 0.75, 1.0, 1.5); an image with a side above 1080 px uses 1.0 only;
2. per scale: PIL bilinear resize to ``(int(W s), int(H s))``, ``x * 2 / 255 - 1``, RGB -> BGR; the image and
   its horizontal mirror run through the network (as one batch of 2 on CUDA; as two batch-1 passes on CPU,
   which measured 1.3-1.5x faster there at 512 px, see ``benchmarks/bench_graphonomy.py``; the results are
   the same up to float rounding); the mirror's logits are mirrored back with the left/right
   channels swapped (14<->15, 16<->17, 18<->19) and averaged with the image's logits;
3. each scale's logits are upsampled (bilinear, ``align_corners=True``) to H x W and **summed** over scales
   (raw logits, as in Graphonomy's ``inference.py``); labels = argmax over the 20 channels.

Probabilities, when asked for, are the softmax of the scale-*averaged* fused logits (the sum divided by the
number of scales), so that their sharpness does not depend on how many scales ran; the argmax is the same.

Scales run one at a time to bound memory; :attr:`GraphonomyParser.last_stats` reports the peak memory of the
last call (``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.parsing.checkpoint import CHECKPOINT_CONFIG_KEY, check_checkpoint
from pipeline.parsing.graphonomy import GraphonomyUniversal, load_checkpoint
from pipeline.parsing.labels import NUM_LABELS, PALETTE, flip_permutation
from pipeline.runtime import atomic_path, resolve_device

#: Graphonomy test-time scales used by DSR (the config's ``prior.parser.scales`` default).
DEFAULT_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5)
#: Images with a side longer than this (pixels) are parsed at :data:`SINGLE_SCALE` only.
MAX_MULTISCALE_SIDE: int = 1080
SINGLE_SCALE: float = 1.0
#: Input normalisation of Graphonomy's ``Normalize_xception_tf``: ``x * 2 / 255 - 1``.
PIXEL_MAX: float = 255.0
#: RGB -> BGR channel order of the network input.
BGR_ORDER: tuple[int, int, int] = (2, 1, 0)

#: Bytes per unit of ``ru_maxrss`` (KiB on Linux, bytes on macOS).
_RU_MAXRSS_UNIT: int = 1 if sys.platform == "darwin" else 1024


def validate_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Scales as a tuple of positive floats; an empty list or a non-positive scale raises ``ValueError``."""
    values = tuple(float(s) for s in scales)
    if not values or any(not np.isfinite(s) or s <= 0 for s in values):
        raise ValueError(f"parser scales must be a non-empty list of positive numbers; got {list(scales)}")
    return values


def select_scales(
    height: int, width: int, scales: Sequence[float] = DEFAULT_SCALES, max_side: int = MAX_MULTISCALE_SIDE
) -> tuple[float, ...]:
    """The scales used for an image of ``height`` x ``width`` pixels.

    Returns ``(1.0,)`` when a side exceeds ``max_side`` (memory), else the configured scales.
    """
    values = validate_scales(scales)
    if max(height, width) > max_side:
        return (SINGLE_SCALE,)
    return values


def _check_image(image_rgb: np.ndarray) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8:
        kind = image_rgb.dtype if isinstance(image_rgb, np.ndarray) else type(image_rgb).__name__
        raise ValueError(f"expected an RGB image as a uint8 numpy array (H, W, 3); got {kind}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3); got {image_rgb.shape} "
            "(convert grey or RGBA images with PIL's .convert('RGB'))"
        )


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(int(H s), int(W s))`` as Graphonomy's ``Scale_only_img``; raises if a side would vanish."""
    size = (int(height * scale), int(width * scale))
    if min(size) < 1:
        raise ValueError(f"scale {scale} turns a {height}x{width} image into {size[0]}x{size[1]} pixels")
    return size


def preprocess(image_rgb: np.ndarray, scale: float = SINGLE_SCALE) -> torch.Tensor:
    """Graphonomy's network input for one image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        scale: resize factor; the image is resized with PIL bilinear (antialiased when shrinking).

    Returns:
        (1, 3, int(H s), int(W s)) float32, channels in **BGR** order, values ``x * 2 / 255 - 1`` in [-1, 1].
    """
    _check_image(image_rgb)
    height, width = image_rgb.shape[:2]
    new_height, new_width = scaled_size(height, width, scale)
    if (new_height, new_width) != (height, width):
        image_rgb = np.asarray(Image.fromarray(image_rgb).resize((new_width, new_height), Image.BILINEAR))
    normalised = image_rgb.astype(np.float32) * np.float32(2.0 / PIXEL_MAX) - np.float32(1.0)
    chw = normalised[:, :, list(BGR_ORDER)].transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))[None]


def merge_flip(logits: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Fuse the logits of an image and of its mirror.

    Args:
        logits: (2, C, h, w) for [image, horizontally mirrored image].
        permutation: (C,) int64 left/right channel swap (:func:`pipeline.parsing.labels.flip_permutation`).

    Returns:
        (C, h, w) = ``(logits[0] + mirror(swap(logits[1]))) / 2``.
    """
    return (logits[0] + logits[1].index_select(0, permutation).flip(-1)) / 2


@dataclass(frozen=True)
class ParseStats:
    """What one :meth:`GraphonomyParser.fused_logits` call did.

    ``peak_memory_bytes`` is ``torch.cuda.max_memory_allocated`` during the call on CUDA and the process's
    peak resident set size so far (``getrusage``; monotonic over the process) on CPU, as ``peak_memory_kind``
    says.
    """

    scales: tuple[float, ...]
    flip: bool
    seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str


def _cpu_peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * _RU_MAXRSS_UNIT


def _resolve(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device in ("auto", "cpu", "cuda"):
        return torch.device(resolve_device(device))
    return torch.device(device)


class GraphonomyParser:
    """Graphonomy Universal human parser with Graphonomy's multi-scale + flip test-time augmentation.

    Args:
        checkpoint: path to ``universal_trained.pth`` (checked with :func:`check_checkpoint` and loaded
            strictly), or an already built :class:`GraphonomyUniversal` (tests, benchmarks).
        device: ``auto`` | ``cpu`` | ``cuda`` | any torch device string.
        scales: test-time scales (see :func:`select_scales` for the large-image rule).
        flip: also run the mirrored image (left/right channels swapped back).
        flip_in_batch: run image and mirror as one batch of 2 (True) or as two passes (False); None = True on
            CUDA, False on CPU (faster and smaller there).
        max_multiscale_side: images with a longer side use scale 1.0 only.
        config_key: named in the error when the checkpoint is missing.
    """

    def __init__(
        self,
        checkpoint: str | Path | GraphonomyUniversal,
        device: str | torch.device = "auto",
        scales: Sequence[float] = DEFAULT_SCALES,
        flip: bool = True,
        flip_in_batch: bool | None = None,
        max_multiscale_side: int = MAX_MULTISCALE_SIDE,
        config_key: str = CHECKPOINT_CONFIG_KEY,
    ) -> None:
        self.device = _resolve(device)
        if isinstance(checkpoint, GraphonomyUniversal):
            model = checkpoint
        else:
            model = load_checkpoint(check_checkpoint(checkpoint, config_key), map_location="cpu")
        self.model = model.to(self.device).eval()
        self.scales = validate_scales(scales)
        self.flip = flip
        self.flip_in_batch = self.device.type == "cuda" if flip_in_batch is None else flip_in_batch
        self.max_multiscale_side = max_multiscale_side
        self._permutation = torch.as_tensor(flip_permutation(), dtype=torch.long, device=self.device)
        self.last_stats: ParseStats | None = None

    def scales_for(self, height: int, width: int) -> tuple[float, ...]:
        """The scales this parser uses for an image of the given size."""
        return select_scales(height, width, self.scales, self.max_multiscale_side)

    @torch.inference_mode()
    def fused_logits(self, image_rgb: np.ndarray) -> torch.Tensor:
        """Sum over scales of the (flip-fused) CIHP logits.

        Args:
            image_rgb: (H, W, 3) uint8 RGB.

        Returns:
            (20, H, W) float32 on :attr:`device`.
        """
        _check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        scales = self.scales_for(height, width)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        total = torch.zeros((NUM_LABELS, height, width), dtype=torch.float32, device=self.device)
        for scale in scales:
            image = preprocess(image_rgb, scale).to(self.device, non_blocking=True)
            if not self.flip:
                fused = self.model(image)[0]
            else:
                if self.flip_in_batch:
                    logits = self.model(torch.cat([image, image.flip(-1)], dim=0))
                else:
                    logits = torch.cat([self.model(image), self.model(image.flip(-1))], dim=0)
                fused = merge_flip(logits, self._permutation)
                del logits
            del image
            if fused.shape[-2:] != (height, width):
                fused = F.interpolate(fused[None], size=(height, width), mode="bilinear", align_corners=True)[0]
            total += fused
            del fused
        if cuda:
            torch.cuda.synchronize(self.device)
            peak, kind = int(torch.cuda.max_memory_allocated(self.device)), "cuda_max_allocated"
        else:
            peak, kind = _cpu_peak_rss_bytes(), "process_peak_rss"
        self.last_stats = ParseStats(scales, self.flip, time.perf_counter() - start, peak, kind)
        return total

    def parse(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> CIHP label map (H, W) uint8."""
        return self.fused_logits(image_rgb).argmax(0).to(torch.uint8).cpu().numpy()

    def parse_with_probs(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB -> (labels (H, W) uint8, probabilities (20, H, W) float32 summing to 1 per pixel).

        Probabilities are the softmax of the scale-averaged fused logits; ``labels`` is their argmax.
        """
        logits = self.fused_logits(image_rgb)
        num_scales = len(self.scales_for(*image_rgb.shape[:2]))
        probs = torch.softmax(logits / num_scales, dim=0)
        return probs.argmax(0).to(torch.uint8).cpu().numpy(), probs.cpu().numpy()


def label_image(labels: np.ndarray) -> Image.Image:
    """CIHP label map (H, W) uint8 -> palette ("P" mode) PIL image with the Graphonomy colours."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 label map; got {labels.shape} {labels.dtype}")
    if labels.size and int(labels.max()) >= NUM_LABELS:
        raise ValueError(f"label map holds label {int(labels.max())}; CIHP labels are 0..{NUM_LABELS - 1}")
    image = Image.fromarray(labels)
    image.putpalette(PALETTE.reshape(-1).tolist())
    return image


def save_label_png(labels: np.ndarray, path: str | Path) -> None:
    """Write a palette PNG (pixel values = label ids) atomically: a temp file in the folder, then rename."""
    with atomic_path(path) as temp:
        label_image(labels).save(temp, format="PNG")
