"""Command line: parse images with the Graphonomy Universal model and write palette PNGs.

    python -m pipeline.parsing IMAGE [IMAGE ...] --checkpoint universal_trained.pth --out DIR \
        [--scales 0.5 0.75 1.0 1.5] [--device auto|cpu|cuda] [--no-flip] [--threads N]

Each ``IMAGE`` becomes ``DIR/<stem>.png``: a "P"-mode PNG whose pixel values are CIHP label ids (0..19) and
whose palette is Graphonomy's.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.parsing.checkpoint import check_checkpoint
from pipeline.parsing.infer import DEFAULT_SCALES, GraphonomyParser, save_label_png

LOGGER = logging.getLogger("pipeline.parsing")


def build_argument_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.parsing",
        description="Parse images into CIHP-20 label maps with Graphonomy's Universal model (palette PNGs).",
    )
    parser.add_argument("images", nargs="+", type=Path, help="input images (any format PIL reads)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="path to universal_trained.pth")
    parser.add_argument("--out", required=True, type=Path, help="output folder for <stem>.png label maps")
    parser.add_argument(
        "--scales",
        nargs="+",
        type=float,
        default=list(DEFAULT_SCALES),
        help="test-time scales (default: %(default)s); images above 1080 px use 1.0 only",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: %(default)s")
    parser.add_argument("--no-flip", action="store_true", help="skip the mirrored-image pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    return parser


def _output_paths(images: Sequence[Path], out: Path) -> list[Path]:
    """``out/<stem>.png`` per image; two inputs with the same stem would overwrite each other, so refuse."""
    outputs = [out / f"{image.stem}.png" for image in images]
    seen: dict[Path, Path] = {}
    for image, output in zip(images, outputs):
        if output in seen:
            raise SystemExit(f"error: {seen[output]} and {image} would both be written to {output}; rename one")
        seen[output] = image
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise SystemExit(f"error: input image(s) not found: {', '.join(missing)}")
    try:
        checkpoint = check_checkpoint(args.checkpoint, config_key="--checkpoint")
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    outputs = _output_paths(args.images, args.out)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    parser = GraphonomyParser(checkpoint, device=args.device, scales=args.scales, flip=not args.no_flip)
    LOGGER.info("device %s, scales %s, flip %s", parser.device, parser.scales, parser.flip)
    peak = 0
    for image_path, output in tqdm(list(zip(args.images, outputs)), desc="parsing", unit="img"):
        try:
            with Image.open(image_path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise SystemExit(f"error: cannot read image {image_path}: {error}") from error
        save_label_png(parser.parse(rgb), output)
        if parser.last_stats is not None:
            peak = max(peak, parser.last_stats.peak_memory_bytes)
    kind = parser.last_stats.peak_memory_kind if parser.last_stats is not None else "n/a"
    LOGGER.info("wrote %d label map(s) to %s; peak memory %.2f GB (%s)", len(outputs), args.out, peak / 1e9, kind)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
