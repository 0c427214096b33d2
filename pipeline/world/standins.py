"""Stand-ins of every licensed file, in the real formats and under the real file names, from an open world.

For the real-world end-to-end test (and anyone who wants to try ``config/real.example.yaml`` without the
licensed files): :func:`write_real_standins` lays out, under one root, what the example config expects under
``/data`` (README, "Real assets"):

============================================================ =================================================
``smpl/models/basicmodel_{neutral,m,f}_lbs_10_207_0_v1.1.0.pkl`` SMPL pickles as the official ones: protocol 2,
                                                              chumpy ``Ch`` objects (written with a stand-in
                                                              ``chumpy`` module, absent when read), a
                                                              ``scipy.sparse.csc`` J_regressor
``spin/data/J_regressor_h36m.npy``, ``J_regressor_extra.npy``  SPIN's regressors (the open model's rows)
``spin/data/smpl_mean_params.npz``                             ``pose`` (144,) 6D, ``shape`` (10,), ``cam`` (3,)
``spin/data/model_checkpoint.pt``                              SPIN's layout, ResNet-50 HMR, random weights
``graphonomy/universal_trained.pth``                           the 781 official keys, random weights
``agora/scans/{scan}.obj`` + ``.pkl``                          the open world's scans and AGORA fits
``eft/eft_fit/COCO2014-All-ver01.json`` + ``coco/train2014/``  EFT JSON and its images
``spin/data/dataset_extras/*.npz`` + image roots               SPIN npz files of the training and test splits
============================================================ =================================================

Everything is written from the files of a finished open-world run (``resources/``); nothing here is read by
the pipeline, which cannot tell these files from the licensed ones.
"""

from __future__ import annotations

import pickle
import shutil
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from pipeline.body.smpl_io import load_smpl_arrays
from pipeline.model.geometry import rotmat_to_rot6d
from pipeline.model.hmr import HMR
from pipeline.parsing.graphonomy import write_random_checkpoint

#: Official SMPL v1.1.0 file name of each gender.
SMPL_DOWNLOAD_NAMES: dict[str, str] = {
    "neutral": "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
    "male": "basicmodel_m_lbs_10_207_0_v1.1.0.pkl",
    "female": "basicmodel_f_lbs_10_207_0_v1.1.0.pkl",
}
#: Dataset files of the example config, relative to the stand-in root: (group, name) -> (annotations,
#: image root, the open world's split folder under resources/datasets).
DATASET_LAYOUT: dict[tuple[str, str], tuple[str, str, str]] = {
    ("train", "coco_eft"): ("eft/eft_fit/COCO2014-All-ver01.json", "coco", "coco_eft"),
    ("train", "h36m"): ("spin/data/dataset_extras/h36m_train.npz", "h36m", "h36m_train"),
    ("train", "mpi_inf_3dhp"): ("spin/data/dataset_extras/mpi_inf_3dhp_train.npz", "mpi_inf_3dhp",
                                "mpi_inf_3dhp_train"),
    ("train", "3dpw"): ("spin/data/dataset_extras/3dpw_train.npz", "3dpw", "3dpw_train"),
    ("test", "3dpw"): ("spin/data/dataset_extras/3dpw_test.npz", "3dpw", "3dpw_test"),
    ("test", "h36m_p1"): ("spin/data/dataset_extras/h36m_valid_protocol1.npz", "h36m", "h36m_valid_protocol1"),
    ("test", "h36m_p2"): ("spin/data/dataset_extras/h36m_valid_protocol2.npz", "h36m", "h36m_valid_protocol2"),
    ("test", "mpi_inf_3dhp"): ("spin/data/dataset_extras/mpi_inf_3dhp_valid.npz", "mpi_inf_3dhp",
                               "mpi_inf_3dhp_valid"),
}
#: SPIN's ``smpl_mean_params.npz`` camera (weak-perspective scale, translation).
MEAN_CAM: tuple[float, float, float] = (0.9, 0.0, 0.0)


def write_chumpy_smpl_pickle(arrays: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write an SMPL model like the official ``basicmodel_*.pkl``: a protocol-2 pickle whose arrays are chumpy
    ``Ch`` objects and whose ``J_regressor`` is a ``scipy.sparse.csc.csc_matrix`` (SciPy's old module path).

    A throw-away ``chumpy.ch`` module provides the class while pickling and is removed afterwards, so readers
    must cope without chumpy, as on Python 3.11.
    """
    path = Path(path)
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # chumpy.ch.Ch as pickled: the value lives in the ``x`` term of the state
        def __init__(self, x: np.ndarray) -> None:
            self.x = np.asarray(x)
            self._dirty_vars: set[str] = set()

        def __getstate__(self) -> dict[str, object]:
            return {"x": self.x, "_dirty_vars": self._dirty_vars}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch  # type: ignore[attr-defined]
    package = types.ModuleType("chumpy")
    package.ch = ch_mod  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = package, ch_mod
    try:
        data: dict[str, object] = {
            "v_template": Ch(arrays["v_template"]), "shapedirs": Ch(arrays["shapedirs"]),
            "posedirs": Ch(arrays["posedirs"]), "weights": Ch(arrays["weights"]),
            "J": Ch(np.asarray(arrays["J_regressor"]) @ np.asarray(arrays["v_template"])),
            "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
            "kintree_table": np.asarray(arrays["kintree_table"]), "f": np.asarray(arrays["f"], dtype=np.uint32),
            "bs_style": "lbs", "bs_type": "lrotmin", "vert_sym_idxs": np.arange(len(arrays["v_template"])),
        }
        raw = pickle.dumps(data, protocol=2)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    # SciPy < 1.8 pickled sparse matrices under scipy.sparse.csc, as the official files hold them
    raw = raw.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def write_spin_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """SPIN's ``model_checkpoint.pt`` layout (``model``, ``optimizer``, ``epoch``, ``batch_idx``, ``batch_size``,
    ``total_step_count``) around a randomly initialised ResNet-50 HMR."""
    path = Path(path)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = HMR(backbone="resnet50")
    finally:
        torch.random.set_rng_state(state)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 0, "batch_idx": 0,
                "batch_size": 64, "total_step_count": 0}, path)
    return path


def write_mean_params(path: str | Path, num_betas: int = 10) -> Path:
    """SPIN's ``smpl_mean_params.npz``: ``pose`` (144,) 6D of the zero pose, ``shape`` zeros, ``cam``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pose = rotmat_to_rot6d(torch.eye(3).expand(24, 3, 3)).reshape(-1).numpy().astype(np.float64)
    np.savez(path, pose=pose, shape=np.zeros(num_betas), cam=np.asarray(MEAN_CAM))
    return path


def _copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, dirs_exist_ok=True)


def write_real_standins(open_root: str | Path, out: str | Path, *, graphonomy: bool = True) -> dict[str, Path]:
    """Lay out stand-ins of every licensed file under ``out`` (the example config's ``/data``).

    Args:
        open_root: a finished open-world work folder (its ``resources/`` body models, scans and datasets).
        out: the stand-in root (created).
        graphonomy: also write the random Graphonomy checkpoint (~160 MB).

    Returns:
        What was written, by the example config's ``assets`` key (datasets as ``<group>/<name>``).
    """
    open_root, out = Path(open_root), Path(out)
    resources = open_root / "resources"
    written: dict[str, Path] = {}
    smpl_dir = out / "smpl" / "models"
    for gender, name in SMPL_DOWNLOAD_NAMES.items():
        arrays = load_smpl_arrays(resources / "body_models" / f"SMPL_{gender.upper()}.npz")
        write_chumpy_smpl_pickle(arrays, smpl_dir / name)
    written["body_models"] = smpl_dir
    spin = out / "spin" / "data"
    spin.mkdir(parents=True, exist_ok=True)
    with np.load(resources / "body_models" / "joint_regressors.npz") as regs:
        np.save(spin / "J_regressor_h36m.npy", regs["h36m"])
        np.save(spin / "J_regressor_extra.npy", regs["extra"])
    written["j_regressor_h36m"], written["j_regressor_extra"] = spin / "J_regressor_h36m.npy", spin / "J_regressor_extra.npy"
    written["smpl_mean_params"] = write_mean_params(spin / "smpl_mean_params.npz")
    written["pretrained_checkpoint"] = write_spin_checkpoint(spin / "model_checkpoint.pt")
    if graphonomy:
        written["graphonomy_checkpoint"] = write_random_checkpoint(out / "graphonomy" / "universal_trained.pth")
    scans = out / "agora" / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    for obj in sorted((resources / "scans").glob("*.obj")):
        for ext in (".obj", ".pkl"):
            shutil.copy2(obj.with_suffix(ext), scans / obj.with_suffix(ext).name)
    written["scans"] = scans
    for (group, name), (ann_rel, images, split) in DATASET_LAYOUT.items():
        src = resources / "datasets" / split
        ann_src = src / Path(ann_rel).name  # the open world writes the real file names
        if not ann_src.is_file():
            raise FileNotFoundError(f"{ann_src}: the open world's {split} annotations are missing; run its DAG first")
        (out / ann_rel).parent.mkdir(parents=True, exist_ok=True)
        if ann_src.suffix == ".npz":
            # splits share an image root (as 3DPW's train and test sequences do): each under its own folder
            with np.load(ann_src, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            arrays["imgname"] = np.array([f"{split}/{n}" for n in arrays["imgname"]])
            np.savez(out / ann_rel, **arrays)
            _copy_tree(src / "images", out / images / split)
        else:
            shutil.copy2(ann_src, out / ann_rel)
            _copy_tree(src / "images", out / images)
        written[f"{group}/{name}"] = out / ann_rel
    return written
