"""Which asset slots each world provides, and the DAG-build-time check of real (licensed) assets.

This module (with the rest of ``pipeline/world/``) is the only code that knows which world it runs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.body.smpl_io import GENDERS, SMPL_OBTAIN_HINT


class MissingAssetError(FileNotFoundError):
    """A licensed asset configured for the real world is not on disk."""


@dataclass(frozen=True)
class AssetSlot:
    """One licensed-asset slot: its config key, how to check it and where a user obtains it."""

    key: str
    exists: Callable[[Path], bool]
    obtain: str


def _has_smpl_models(folder: Path) -> bool:
    return all(any((folder / f"SMPL_{g.upper()}.{ext}").is_file() for ext in ("npz", "pkl")) for g in GENDERS)


#: The real-world slots checked at DAG-build time (later stages add theirs here).
REAL_SLOTS: tuple[AssetSlot, ...] = (
    AssetSlot(
        "assets.body_models",
        _has_smpl_models,
        "a folder with SMPL_NEUTRAL, SMPL_MALE and SMPL_FEMALE (.pkl or .npz); " + SMPL_OBTAIN_HINT,
    ),
    AssetSlot(
        "assets.joint_regressors",
        Path.is_file,
        "an npz with `h36m` [17,V], `extra` [9,V] and `vertex_joints` [11,V] vertex regressors, built from SPIN's "
        "J_regressor_h36m.npy / J_regressor_extra.npy (SPIN's fetch_data.sh, data/ folder)",
    ),
)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def check_real_assets(config: dict[str, Any]) -> None:
    """Raise :class:`MissingAssetError` naming every missing real asset (no-op in the open world)."""
    if config.get("world", "open") != "real":
        return
    problems = []
    for slot in REAL_SLOTS:
        value = _lookup(config, slot.key)
        if value is None or not slot.exists(Path(value)):
            problems.append(f"config key {slot.key} = {value!r} not found: expected {slot.obtain}")
    if problems:
        raise MissingAssetError("world: real, but licensed assets are missing:\n  " + "\n  ".join(problems))


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
