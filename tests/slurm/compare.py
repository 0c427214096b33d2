"""Products of two workdirs are equal: every .npz array bit for bit, every .json value exactly.

Usage: compare.py LOCAL_WORKDIR SLURM_WORKDIR RELPATH...  (exit 1 naming the first difference).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def differences(a: Path, b: Path) -> list[str]:
    """Human-readable differences between two product files of the same type (empty when equal)."""
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            if sorted(x.files) != sorted(y.files):
                return [f"keys {sorted(x.files)} != {sorted(y.files)}"]
            return [f"array {k!r} differs" for k in x.files if not np.array_equal(x[k], y[k])]
    if a.suffix == ".json":
        return [] if json.loads(a.read_text()) == json.loads(b.read_text()) else ["JSON content differs"]
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]


def main(local: str, slurm: str, *paths: str) -> int:
    bad = 0
    for rel in paths:
        diff = differences(Path(local) / rel, Path(slurm) / rel)
        print(f"  {rel}: {'equal' if not diff else '; '.join(diff)}")
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
