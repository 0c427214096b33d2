"""Where the open world keeps what it writes beside a dataset's images (one small module, so that the stages
reading those files do not depend on the image generator's code)."""

from __future__ import annotations

from pathlib import Path


def label_root(image_root: str | Path, exact: bool = False) -> Path:
    """Where the open world keeps the parser-like label maps of an image root (``labels`` / ``labels_gt``)."""
    return Path(image_root).parent / ("labels_gt" if exact else "labels")
