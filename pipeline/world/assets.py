"""Which asset slots each world provides, and the DAG-build-time check of real (licensed) assets.

This module (with the rest of ``pipeline/world/``) is the only code that knows which world it runs in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.body.smpl_io import GENDERS, BodyModelFileError, find_model_file
from pipeline.io.eft_json import COCO_IMAGE_FOLDER
from pipeline.parsing.checkpoint import CHECKPOINT_FILE_NAME, CHECKPOINT_OBTAIN_HINT


class MissingAssetError(FileNotFoundError):
    """A licensed asset configured for the real world is missing or unusable."""


#: Bytes read from the head of an EFT JSON to see its first sample without parsing the whole file.
JSON_PEEK_BYTES: int = 1 << 16
SPIN_DATA_HINT = "SPIN's data folder (github.com/nkolot/SPIN, fetch_data.sh -> data/)"
#: Where each dataset of the paper's mix and test protocols comes from (by dataset name).
DATASET_SOURCES: dict[str, str] = {
    "coco_eft": "EFT fits COCO2014-All-ver01.json (github.com/facebookresearch/eft, scripts/download_eft.sh) and "
                "the COCO train2014 images (cocodataset.org) under images/train2014",
    "h36m": "h36m_train.npz made with SPIN's datasets/preprocess/h36m_train.py (MoSh parameters are not "
            "distributable) and the Human3.6M frames (vision.imar.ro/human3.6m)",
    "mpi_inf_3dhp": "SPIN's dataset_extras/mpi_inf_3dhp_train.npz (fetch_data.sh, with static fits) and the "
                    "MPI-INF-3DHP frames (vcai.mpi-inf.mpg.de/3dhp-dataset)",
    "3dpw": "SPIN's dataset_extras/3dpw_{train,test}.npz and the 3DPW imageFiles (virtualhumans.mpi-inf.mpg.de/3DPW)",
    "h36m_p1": "SPIN's dataset_extras/h36m_valid_protocol1.npz and the Human3.6M S9/S11 frames",
    "h36m_p2": "SPIN's dataset_extras/h36m_valid_protocol2.npz and the Human3.6M S9/S11 frames",
    "test_datasets.mpi_inf_3dhp": "SPIN's dataset_extras/mpi_inf_3dhp_valid.npz (fetch_data.sh) and the MPI-INF-3DHP "
                                  "test-set frames (vcai.mpi-inf.mpg.de/3dhp-dataset)",
}
SMPL_SOURCE = ("https://smpl.is.tue.mpg.de after registration ('SMPL for Python' v1.1.0; put its three "
               "basicmodel_*_lbs_10_207_0_v1.1.0.pkl files in the folder as they come)")


@dataclass(frozen=True)
class AssetSlot:
    """One licensed-asset slot: its config key, what is expected there and where a user obtains it.

    ``problem(path)`` returns what is wrong with ``path`` (None: usable); ``optional`` slots may be null.
    """

    key: str
    expected: str
    obtain: str
    problem: Callable[[Path], str | None]
    optional: bool = False


def _missing_file(path: Path) -> str | None:
    return None if path.is_file() else "no such file"


def _smpl_folder_problem(folder: Path) -> str | None:
    if not folder.is_dir():
        return "no such folder"
    missing = []
    for gender in GENDERS:
        try:
            find_model_file(folder, gender)
        except BodyModelFileError:
            missing.append(gender)
    return f"no {', '.join(missing)} model in it" if missing else None


def _scan_folder_problem(folder: Path) -> str | None:
    if not folder.is_dir():
        return "no such folder"
    if not any(p.with_suffix(".pkl").is_file() for p in folder.glob("*.obj")):
        return "no scan in it (a scan is {scan}.obj with its SMPL fit {scan}.pkl beside it)"
    return None


#: The real-world slots checked at DAG-build time (datasets are checked by :func:`dataset_problems`).
REAL_SLOTS: tuple[AssetSlot, ...] = (
    AssetSlot("assets.body_models", "the folder holding the SMPL download (basicmodel_{neutral,m,f}_lbs_10_207_0_"
              "v1.1.0.pkl or SMPL_{NEUTRAL,MALE,FEMALE}.pkl)", SMPL_SOURCE, _smpl_folder_problem),
    AssetSlot("assets.j_regressor_h36m", "SPIN's J_regressor_h36m.npy", SPIN_DATA_HINT, _missing_file),
    AssetSlot("assets.j_regressor_extra", "SPIN's J_regressor_extra.npy", SPIN_DATA_HINT, _missing_file),
    AssetSlot("assets.scans", "the folder of AGORA scans {scan}.obj with their SMPL fits {scan}.pkl",
              "fits from agora.is.tue.mpg.de (smpl_gt.zip), scans bought from the vendors (RenderPeople, 3DPeople, "
              "AXYZ, Human Alloy)", _scan_folder_problem),
    AssetSlot("assets.smpl_mean_params", "SPIN's smpl_mean_params.npz", SPIN_DATA_HINT, _missing_file, optional=True),
    AssetSlot("assets.pretrained_checkpoint", "SPIN's model_checkpoint.pt", SPIN_DATA_HINT, _missing_file,
              optional=True),
)


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _first_eft_image(path: Path) -> str | None:
    """``imageName`` of the first sample of an EFT JSON (from its head), or None when it has no sample."""
    with open(path, "rb") as fh:
        head = fh.read(JSON_PEEK_BYTES).decode("utf-8", errors="replace")
    data = head.find('"data"')
    match = re.search(r'"imageName"\s*:\s*"([^"]+)"', head[data:]) if data >= 0 else None
    return match.group(1) if match else None


def annotation_problem(annotations: Path, images: Path, fmt: str) -> str | None:
    """What makes a dataset unusable before any job runs: no annotation file, no sample in it, no image root,
    or its first sample's image missing (None: usable)."""
    if not annotations.is_file():
        return f"annotations {annotations}: no such file"
    if annotations.stat().st_size == 0:
        return f"annotations {annotations}: the file is empty"
    if not images.is_dir():
        return f"images {images}: no such folder"
    if fmt == "spin_npz":
        try:
            with np.load(annotations, allow_pickle=False) as npz:
                names = npz["imgname"] if "imgname" in npz.files else None
        except Exception as exc:  # any failure is an unreadable file, reported with its cause
            return f"annotations {annotations}: unreadable ({type(exc).__name__}: {exc})"
        if names is None:
            return f"annotations {annotations}: no 'imgname' array (not a SPIN npz)"
        if len(names) == 0:
            return f"annotations {annotations}: no sample in it"
        first = str(names[0])
    else:
        name = _first_eft_image(annotations)
        if name is None:
            return f"annotations {annotations}: no sample in it (no 'data' entry with an imageName)"
        first = f"{COCO_IMAGE_FOLDER}/{name}"
    if not (images / first).is_file():
        return f"images {images}: the first sample's image {first} is not there"
    return None


def dataset_problems(config: Mapping[str, Any]) -> list[str]:
    """One line per unusable dataset the run reads: training datasets in the mix (ratio > 0) or cleaned for
    masks, and every test dataset."""
    used = {name for name, ratio in config["train"]["datasets"].items() if float(ratio) > 0}
    used |= set(config["masks"]["datasets"])
    lines = []
    for group, names in (("train_datasets", sorted(used)), ("test_datasets", sorted(config["assets"]["test_datasets"]))):
        for name in names:
            entry = config["assets"][group][name]
            problem = annotation_problem(Path(entry["annotations"]), Path(entry["images"]), entry["format"])
            if problem:
                source = DATASET_SOURCES.get(f"{group}.{name}", DATASET_SOURCES.get(name, "the dataset's own site"))
                lines.append(f"config key assets.{group}.{name}: {problem}; obtain {source}")
    return lines


def check_real_assets(config: Mapping[str, Any]) -> None:
    """Raise :class:`MissingAssetError` listing every missing or unusable real asset in one message: the
    config key, the path, what was expected there and where to obtain it (no-op in the open world)."""
    if config.get("world", "open") != "real":
        return
    problems = []
    for slot in REAL_SLOTS:
        value = _lookup(config, slot.key)
        if value is None:
            if not slot.optional:
                problems.append(f"config key {slot.key} is not set: expected {slot.expected}; obtain {slot.obtain}")
            continue
        problem = slot.problem(Path(value))
        if problem:
            problems.append(f"config key {slot.key} = {str(value)!r}: {problem}; expected {slot.expected}; "
                            f"obtain {slot.obtain}")
    parsers = (config["prior"]["parser"]["backend"], config["masks"]["parser"]["backend"])
    if "rendered" in parsers:
        problems.append("prior.parser.backend / masks.parser.backend: the rendered backend reads the open world's "
                        "label maps; set both to graphonomy in the real world")
    if "graphonomy" in parsers:
        checkpoint = config["assets"]["graphonomy_checkpoint"]
        if checkpoint is None or not Path(checkpoint).is_file():
            problems.append(f"config key assets.graphonomy_checkpoint = {checkpoint!r}: no such file; expected "
                            f"Graphonomy's Universal model {CHECKPOINT_FILE_NAME}; obtain {CHECKPOINT_OBTAIN_HINT}")
    problems += dataset_problems(config)
    if problems:
        raise MissingAssetError(f"world: real, but {len(problems)} asset slot(s) are missing or unusable:\n  "
                                + "\n  ".join(problems))


def scan_names(count: int) -> list[str]:
    """Names of the generated open-world scans (``scan_0000`` ...)."""
    return [f"scan_{i:04d}" for i in range(count)]


def scan_ids(config: dict[str, Any]) -> list[str]:
    """Scan names the prior stage fans out over.

    Open world: the generated ``scan_0000`` ... names (known before they exist). Real world: every
    ``{scan}.obj`` in ``assets.scans`` that has a ``{scan}.pkl`` fit beside it.
    """
    if config.get("world", "open") == "open":
        return scan_names(int(config["open_world"]["scans"]["count"]))
    folder = Path(config["assets"]["scans"])
    return sorted(p.stem for p in folder.glob("*.obj") if p.with_suffix(".pkl").is_file())
