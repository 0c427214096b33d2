"""Killing a mask-cleaning job midway leaves no final file; the rerun equals an uninterrupted run byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.io.masks_h5 import partial_path

SCRIPT = r'''
import sys
from pathlib import Path
import numpy as np
from pipeline.io.masks_h5 import ParseShardWriter
from pipeline.io.spin_npz import PersonDataset, empty_arrays
from pipeline.masks.clean import CleanSettings, clean_dataset
from pipeline.masks.mappings import resolve_mapping

root, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
shard = root / "shard.h5"
names = [f"img_{i:05d}.jpg" for i in range(n)]
if not shard.exists():
    with ParseShardWriter(shard) as writer:
        for name in names:
            labels = np.zeros((240, 320), np.uint8)
            labels[40:200, 100:220] = rng.integers(1, 20)
            labels[40:60, 140:160] = 13
            writer.add(name, labels)
arrays = empty_arrays(n)
arrays["part"][:, :2] = [(120, 60, 1), (200, 180, 1)]
data = PersonDataset(imgname=np.array(names), center=np.tile([160.0, 120.0], (n, 1)), scale=np.full(n, 1.0), **arrays)
clean_dataset(data, [shard], out, mapping=resolve_mapping("table1"), settings=CleanSettings(crop_resolution=128),
              dataset_name="kill", git_sha="x", progress=False)
'''
N = 1500


def _run(root: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), str(out), str(N)], cwd=Path(__file__).parent.parent)


def test_killed_clean_masks_leaves_no_file_and_rerun_is_identical(tmp_path: Path) -> None:
    reference = tmp_path / "reference.h5"
    assert _run(tmp_path, reference).wait(timeout=600) == 0  # also writes the shared parse shard
    target = tmp_path / "killed.h5"
    proc = _run(tmp_path, target)
    deadline = time.time() + 300
    while not partial_path(target).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let it write part of the store
    assert proc.poll() is None, "the job finished before it could be killed; raise N"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()  # only the partial file may remain
    assert _run(tmp_path, target).wait(timeout=600) == 0
    assert target.read_bytes() == reference.read_bytes()
    assert not partial_path(target).exists()
