"""Loading SMPL-format model files (official ``.pkl`` with chumpy objects, plain ``.pkl`` or ``.npz``).

The official SMPL pickles (Python 2, latin-1) store some arrays as chumpy ``Ch`` objects, and chumpy does
not import on Python 3.11. :func:`load_smpl_arrays` unpickles them with stand-in classes for every
``chumpy.*`` global and converts each stand-in to its plain array, so chumpy is never imported.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

#: Keys every SMPL-format model file must contain (what ``smplx.SMPL`` reads).
REQUIRED_KEYS: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
#: Gender names accepted everywhere and the file stem for each.
GENDERS: tuple[str, ...] = ("neutral", "male", "female")
SMPL_OBTAIN_HINT = (
    "SMPL is obtained from https://smpl.is.tue.mpg.de after registration "
    "(download 'SMPL for Python', rename basicmodel_{neutral,m,f}_lbs_10_207_0_v1.1.0.pkl to "
    "SMPL_{NEUTRAL,MALE,FEMALE}.pkl); the open world builds its own with `snakemake build_body_model`"
)


class BodyModelFileError(FileNotFoundError):
    """A body-model file is missing or unreadable; the message names the key, the path and the fix."""


class _ChumpyStandIn:
    """Receives the pickled state of any ``chumpy`` object without importing chumpy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def to_array(self) -> np.ndarray:
        """The value of the chumpy object: its ``x`` term (``Ch``) or the first array-valued term."""
        for key in ("x", "a", "_state"):
            if key in self.__dict__:
                return np.asarray(_plain(self.__dict__[key]))
        arrays = [v for v in self.__dict__.values() if isinstance(v, np.ndarray)]
        if len(arrays) == 1:
            return arrays[0]
        raise ValueError(f"cannot convert chumpy object with terms {sorted(self.__dict__)} to an array")


class _NoChumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        return super().find_class(module, name)


def _plain(value: Any) -> Any:
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    return value


def _read_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data = _NoChumpyUnpickler(fh, encoding="latin1").load()
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict, found {type(data).__name__}")
    return {k: _plain(v) for k, v in data.items()}


def load_smpl_arrays(path: str | Path, config_key: str = "assets.body_models") -> dict[str, Any]:
    """Read an SMPL-format model file into plain numpy arrays.

    Args:
        path: ``.pkl`` (official, possibly with chumpy objects) or ``.npz``.
        config_key: the config key the path came from, named in errors.

    Returns:
        dict with ``v_template`` (V,3) float64 metres, ``shapedirs`` (V,3,B), ``posedirs`` (V,3,207),
        ``J_regressor`` (24,V) dense float64, ``weights`` (V,24), ``kintree_table`` (2,24) int64,
        ``f`` (F,3) int64, plus any other keys of the file.

    Raises:
        BodyModelFileError: missing, unreadable or incomplete file (names key, path, how to obtain SMPL).
    """
    path = Path(path)
    if not path.is_file():
        raise BodyModelFileError(f"{config_key}: body model file {path} does not exist. {SMPL_OBTAIN_HINT}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data: dict[str, Any] = {k: npz[k] for k in npz.files}
        else:
            data = _read_pickle(path)
    except Exception as exc:  # noqa: BLE001 - any failure means a corrupt file
        raise BodyModelFileError(
            f"{config_key}: body model file {path} is corrupt or not an SMPL model ({exc}). {SMPL_OBTAIN_HINT}"
        ) from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise BodyModelFileError(
            f"{config_key}: body model file {path} lacks keys {missing}. {SMPL_OBTAIN_HINT}"
        )
    out = dict(data)
    if scipy.sparse.issparse(out["J_regressor"]):
        out["J_regressor"] = out["J_regressor"].toarray()
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        out[key] = np.asarray(out[key], dtype=np.float64)
    out["kintree_table"] = np.asarray(out["kintree_table"], dtype=np.int64)
    out["f"] = np.asarray(out["f"], dtype=np.int64)
    num_verts = out["v_template"].shape[0]
    checks = {
        "shapedirs": out["shapedirs"].shape[:2] == (num_verts, 3),
        "posedirs": out["posedirs"].shape[:2] == (num_verts, 3),
        "J_regressor": out["J_regressor"].shape[1] == num_verts,
        "weights": out["weights"].shape[0] == num_verts,
        "f": out["f"].ndim == 2 and out["f"].shape[1] == 3 and out["f"].max() < num_verts,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise BodyModelFileError(
            f"{config_key}: body model file {path} has inconsistent shapes for {bad} "
            f"(v_template has {num_verts} vertices). {SMPL_OBTAIN_HINT}"
        )
    return out


def find_model_file(folder: str | Path, gender: str, config_key: str = "assets.body_models") -> Path:
    """Locate ``SMPL_{GENDER}.npz`` or ``.pkl`` in ``folder`` (npz preferred)."""
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; allowed: {list(GENDERS)}")
    folder = Path(folder)
    for ext in ("npz", "pkl"):
        candidate = folder / f"SMPL_{gender.upper()}.{ext}"
        if candidate.is_file():
            return candidate
    raise BodyModelFileError(
        f"{config_key}: no SMPL_{gender.upper()}.npz or .pkl in {folder}. {SMPL_OBTAIN_HINT}"
    )


def save_smpl_pickle(arrays: dict[str, Any], path: str | Path) -> None:
    """Write plain arrays as an SMPL-style pickle that ``smplx.SMPL(model_path=...)`` reads unchanged."""
    plain = {k: (np.asarray(v) if not scipy.sparse.issparse(v) else v) for k, v in arrays.items()}
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(plain, fh, protocol=2)
    tmp.replace(path)
