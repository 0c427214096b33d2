"""Benchmark: mask cleaning throughput (samples/s on one core, 640×480 label maps already in a parse shard,
into HDF5), HDF5 bytes per sample, and read throughput for the training loader.

Run: .venv/bin/python benchmarks/bench_masks.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.io.masks_h5 import MaskStore, ParseShardWriter
from pipeline.io.spin_npz import PersonDataset, empty_arrays
from pipeline.masks.clean import CleanSettings, clean_dataset
from pipeline.masks.mappings import resolve_mapping

N = 600
H, W = 480, 640


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"img_{i:05d}.jpg" for i in range(N)]
        with ParseShardWriter(root / "shard.h5") as writer:
            for name in names:
                labels = np.zeros((H, W), np.uint8)
                y0, x0 = rng.integers(20, 120), rng.integers(100, 300)
                labels[y0 : y0 + 300, x0 : x0 + 180] = 5
                labels[y0 + 150 : y0 + 300, x0 : x0 + 180] = 9
                labels[y0 : y0 + 40, x0 + 60 : x0 + 110] = 13
                labels[y0 + 60 : y0 + 200, x0 - 30 : x0] = 14
                labels[y0 + 290 : y0 + 310, x0 + 10 : x0 + 60] = 18
                writer.add(name, labels)
        arrays = empty_arrays(N)
        arrays["part"][:, :2] = [(250, 100, 1), (420, 400, 1)]
        data = PersonDataset(imgname=np.array(names), center=np.tile([320.0, 240.0], (N, 1)), scale=np.full(N, 2.0),
                             **arrays)
        out = root / "masks.h5"
        start = time.perf_counter()
        clean_dataset(data, [root / "shard.h5"], out, mapping=resolve_mapping("table1"), settings=CleanSettings(),
                      dataset_name="bench", git_sha="bench", progress=False)
        clean_s = time.perf_counter() - start
        size = out.stat().st_size
        with MaskStore(out) as store:
            start = time.perf_counter()
            for i in range(len(store)):
                store[i]
            read_s = time.perf_counter() - start
    print(f"clean_masks: {N / clean_s:.0f} samples/s ({W}x{H} label maps, one core, incl. shard read + HDF5 write)")
    print(f"HDF5 mask store: {size / N / 1024:.1f} KiB per sample at {CleanSettings().crop_resolution}²")
    print(f"reading the store: {N / read_s:.0f} samples/s")


if __name__ == "__main__":
    main()
