"""Loading SMPL-format model files (official ``.pkl`` with chumpy objects, plain ``.pkl`` or ``.npz``).

The official SMPL pickles (Python 2, latin-1) store some arrays as chumpy ``Ch`` objects, and chumpy does
not import on Python 3.11. :func:`load_smpl_arrays` unpickles them with stand-in classes for every
``chumpy.*`` global and converts each plain ``Ch`` (a stored value) to its array, so chumpy is never
imported. A chumpy *expression* (``add``, ``multiply``, ``Select``, ...) is a formula over other chumpy
objects, not a stored array; evaluating it needs chumpy, so it is refused (naming the key) instead of being
replaced by one of its operands.

The same pickles name ``J_regressor``'s class ``scipy.sparse.csc.csc_matrix``, a module SciPy 1.8 deprecated
(a DeprecationWarning on every load, an error under ``-W error``) and SciPy 2.0 removes; the unpickler takes
such classes from ``scipy.sparse`` itself.

On load the arrays are checked against each other: ``weights`` (V, J) with J = the joints of
``kintree_table`` (24 for SMPL), non-negative rows summing to 1; ``posedirs`` (V, 3, 9·(J-1));
``J_regressor`` (J, V).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse

from pipeline.io.damaged import describe_unreadable

log = logging.getLogger(__name__)

#: Keys every SMPL-format model file must contain (what ``smplx.SMPL`` reads).
REQUIRED_KEYS: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
#: Gender names accepted everywhere and the file stem for each.
GENDERS: tuple[str, ...] = ("neutral", "male", "female")
SMPL_OBTAIN_HINT = (
    "SMPL is obtained from https://smpl.is.tue.mpg.de after registration (download 'SMPL for Python' "
    "v1.1.0 and unpack its basicmodel_{neutral,m,f}_lbs_10_207_0_v1.1.0.pkl into the folder, names as they "
    "come); the open world builds its own with `snakemake build_body_model`"
)
#: Joints of SMPL's kinematic tree (``kintree_table`` is (2, 24)).
NUM_SMPL_JOINTS: int = 24
#: Pose-corrective blend shapes per non-root joint: the 9 entries of (R - I).
POSE_BASIS_PER_JOINT: int = 9
#: Skinning-weight rows may sum to 1 within this (the official files hold float64 sums of 1 +- 1e-15;
#: float32 re-exports, 1 +- 1e-6).
WEIGHT_SUM_TOL: float = 1e-3
#: Skinning weights may dip below zero by this much (rounding), no further.
WEIGHT_NEG_TOL: float = 1e-6
#: The chumpy class that stores a value (its ``x`` term); every other chumpy class is an expression.
CHUMPY_VALUE_CLASS: str = "chumpy.ch.Ch"
#: Modules under which SciPy < 1.8 pickled sparse matrices (deprecated in 1.8, removed in 2.0); their classes
#: are public names of ``scipy.sparse``.
DEPRECATED_SPARSE_MODULES: frozenset[str] = frozenset(
    f"scipy.sparse.{m}" for m in ("base", "bsr", "compressed", "construct", "coo", "csc", "csr", "data", "dia",
                                  "dok", "extract", "lil", "sparsetools", "spfuncs", "sputils")
)


class BodyModelFileError(FileNotFoundError):
    """A body-model file is missing or unreadable; the message names the key, the path and the fix."""


class _ChumpyExpressionError(ValueError):
    """A chumpy object that is not a stored value (the caller adds the file and key)."""


class _ChumpyStandIn:
    """Receives the pickled state of a ``chumpy`` object without importing chumpy.

    One subclass per pickled chumpy class (:func:`_stand_in`) records that class in :attr:`chumpy_class`.
    """

    chumpy_class: ClassVar[str] = "chumpy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def terms(self) -> list[str]:
        """The object's own terms (chumpy's bookkeeping, ``_dirty_vars`` etc., left out)."""
        return sorted(k for k in self.__dict__ if not k.startswith("_"))

    def to_array(self) -> np.ndarray:
        """The stored value of a plain ``chumpy.ch.Ch``: its ``x`` term.

        Raises:
            _ChumpyExpressionError: any other chumpy class (an expression over operands, e.g. ``add`` with
                terms ``a`` and ``b``), or a ``Ch`` without ``x``.
        """
        if self.chumpy_class != CHUMPY_VALUE_CLASS:
            raise _ChumpyExpressionError(f"a chumpy expression {self.chumpy_class} (terms {self.terms()}), not a "
                                         f"stored array: its value is a formula that only chumpy can evaluate")
        if "x" not in self.__dict__:
            raise _ChumpyExpressionError(f"a chumpy Ch without its value 'x' (terms {self.terms()})")
        return np.asarray(_plain(self.__dict__["x"]))


@functools.cache
def _stand_in(module: str, name: str) -> type[_ChumpyStandIn]:
    """The stand-in class for the pickled chumpy class ``module.name``."""
    return type(name, (_ChumpyStandIn,), {"chumpy_class": f"{module}.{name}", "__module__": __name__})


class _NoChumpyUnpickler(pickle.Unpickler):
    """Chumpy classes become stand-ins; sparse classes pickled under deprecated SciPy modules come from
    ``scipy.sparse`` (no DeprecationWarning, and still loadable under SciPy 2.0)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in(module, name)
        if module in DEPRECATED_SPARSE_MODULES and name in scipy.sparse.__all__:
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _plain(value: Any) -> Any:
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    return value


def _read_pickle(path: Path, config_key: str) -> dict[str, Any]:
    """Unpickle an SMPL file; chumpy values become arrays (a chumpy expression under a required key is an
    error, under any other key it is dropped with a warning)."""
    try:
        with open(path, "rb") as fh:
            data = _NoChumpyUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # damaged bytes make the unpickler raise almost anything; re-raised below
        what = describe_unreadable(path, exc, "a pickle", pickled=True)
        raise BodyModelFileError(f"{config_key}: body model file {path} is corrupt or not an SMPL model: {what}. "
                                 f"{SMPL_OBTAIN_HINT}") from exc
    if not isinstance(data, dict):
        raise BodyModelFileError(f"{config_key}: body model file {path} holds a {type(data).__name__}, not an SMPL "
                                 f"model (a dict with keys {list(REQUIRED_KEYS)}). {SMPL_OBTAIN_HINT}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        try:
            out[key] = _plain(value)
        except _ChumpyExpressionError as exc:
            if key not in REQUIRED_KEYS:
                log.warning("%s: key %r is %s; it is not loaded (not needed)", path, key, exc)
                continue
            raise BodyModelFileError(
                f"{config_key}: body model file {path}: key {key!r} is {exc}. Re-download the official file, or "
                f"convert it once where chumpy runs (np.array(value) of every key, e.g. smplx's "
                f"tools/clean_ch.py). {SMPL_OBTAIN_HINT}"
            ) from exc
    return out


def _consistency_problems(out: dict[str, Any]) -> list[str]:
    """What is inconsistent between the arrays of a loaded model (empty: nothing).

    ``weights`` (V, J) against ``kintree_table`` (2, J) and ``v_template`` (V, 3), non-negative rows
    summing to 1; ``posedirs`` (V, 3, 9·(J-1)); ``J_regressor`` (J, V); ``shapedirs`` (V, 3, B); ``f``.
    """
    num_verts = out["v_template"].shape[0]
    kintree = out["kintree_table"]
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        return [f"key 'kintree_table' has shape {kintree.shape}, expected (2, J): parent and joint ids"]
    num_joints = kintree.shape[1]
    problems = []
    if num_joints != NUM_SMPL_JOINTS:
        problems.append(f"key 'kintree_table' has {num_joints} joints, SMPL has {NUM_SMPL_JOINTS} (an SMPL-H or "
                        "SMPL-X file?)")
    weights = out["weights"]
    if weights.shape != (num_verts, num_joints):
        problems.append(f"key 'weights' has shape {weights.shape}, expected {(num_verts, num_joints)} "
                        f"({num_verts} vertices of v_template, {num_joints} joints of kintree_table)")
    elif num_verts:
        sums = weights.sum(axis=1)
        if not np.isfinite(weights).all():
            problems.append(f"key 'weights' holds {int((~np.isfinite(weights)).sum())} NaN/inf entries")
        elif weights.min() < -WEIGHT_NEG_TOL:
            v = int(np.argmin(weights.min(axis=1)))
            problems.append(f"key 'weights' has negative entries (down to {weights.min():.3g}, vertex {v}); "
                            "skinning weights are non-negative")
        elif np.abs(sums - 1.0).max() > WEIGHT_SUM_TOL:
            v = int(np.argmax(np.abs(sums - 1.0)))
            problems.append(f"key 'weights' rows sum to {sums.min():.4g}..{sums.max():.4g} (vertex {v}: "
                            f"{sums[v]:.4g}), not 1 +- {WEIGHT_SUM_TOL:g}")
    posedirs_shape = (num_verts, 3, POSE_BASIS_PER_JOINT * (num_joints - 1))
    if out["posedirs"].shape != posedirs_shape:
        problems.append(f"key 'posedirs' has shape {out['posedirs'].shape}, expected {posedirs_shape} "
                        f"(9 x {num_joints - 1} non-root joints of kintree_table)")
    if out["J_regressor"].shape != (num_joints, num_verts):
        problems.append(f"key 'J_regressor' has shape {out['J_regressor'].shape}, expected "
                        f"{(num_joints, num_verts)}")
    if out["shapedirs"].ndim != 3 or out["shapedirs"].shape[:2] != (num_verts, 3):
        problems.append(f"key 'shapedirs' has shape {out['shapedirs'].shape}, expected ({num_verts}, 3, B)")
    f = out["f"]
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= num_verts)):
        problems.append(f"key 'f' has shape {f.shape}, expected (F, 3) vertex ids in [0, {num_verts})")
    return problems


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
        BodyModelFileError: missing, empty, truncated or corrupt file, a required key missing or held as a
            chumpy expression, or arrays inconsistent with each other or with the kinematic tree (the message
            names the config key, the path, the array key and how to obtain SMPL).
    """
    path = Path(path)
    if not path.is_file():
        raise BodyModelFileError(f"{config_key}: body model file {path} does not exist. {SMPL_OBTAIN_HINT}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                data: dict[str, Any] = {k: npz[k] for k in npz.files}
        except Exception as exc:  # any failure means a corrupt file; re-raised below
            what = describe_unreadable(path, exc, "an npz archive")
            raise BodyModelFileError(
                f"{config_key}: body model file {path} is corrupt or not an SMPL model: {what}. {SMPL_OBTAIN_HINT}"
            ) from exc
    else:
        data = _read_pickle(path, config_key)
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
    if out["v_template"].ndim != 2 or out["v_template"].shape[1] != 3:
        raise BodyModelFileError(f"{config_key}: body model file {path}: key 'v_template' has shape "
                                 f"{out['v_template'].shape}, expected (V, 3). {SMPL_OBTAIN_HINT}")
    problems = _consistency_problems(out)
    if problems:
        raise BodyModelFileError(
            f"{config_key}: body model file {path} has inconsistent arrays: {'; '.join(problems)}. The file is "
            f"damaged or not an SMPL model. {SMPL_OBTAIN_HINT}"
        )
    return out


#: File names of the official downloads, per gender, as they come (case-insensitive): SMPL for Python v1.1.0
#: and v1.0.0 (male/female), SMPLify's neutral model, and smplx's renamed ``SMPL_{GENDER}.pkl``.
OFFICIAL_NAME_PATTERNS: dict[str, tuple[str, ...]] = {
    "neutral": ("basicmodel_neutral_lbs_10_207_0_v1.*.pkl",),
    "male": ("basicmodel_m_lbs_10_207_0_v1.*.pkl",),
    "female": ("basicmodel_f_lbs_10_207_0_v1.*.pkl",),
}


def find_model_file(folder: str | Path, gender: str, config_key: str = "assets.body_models") -> Path:
    """Locate the ``gender`` model in ``folder``: ``SMPL_{GENDER}.npz`` or ``.pkl`` (npz preferred), else the
    official download's own name (:data:`OFFICIAL_NAME_PATTERNS`, e.g. ``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl``;
    the newest version when several are present)."""
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; allowed: {list(GENDERS)}")
    folder = Path(folder)
    for ext in ("npz", "pkl"):
        candidate = folder / f"SMPL_{gender.upper()}.{ext}"
        if candidate.is_file():
            return candidate
    if folder.is_dir():
        official = sorted((p for p in folder.iterdir() if p.is_file() and any(
            fnmatch.fnmatch(p.name.lower(), pattern) for pattern in OFFICIAL_NAME_PATTERNS[gender])),
            key=lambda p: p.name.lower())
        if official:
            return official[-1]
    raise BodyModelFileError(
        f"{config_key}: no SMPL_{gender.upper()}.npz / .pkl and no {OFFICIAL_NAME_PATTERNS[gender][0]} in {folder}. "
        f"{SMPL_OBTAIN_HINT}"
    )


def count_faces(folder: str | Path, gender: str = "neutral", config_key: str = "assets.body_models") -> int:
    """Number of mesh faces of the ``gender`` model in ``folder`` (:func:`find_model_file`), without building the
    model: an ``.npz`` is read for its ``f`` array alone (a job that only needs the count is spared torch, smplx and
    decompressing ~40 MB); a ``.pkl``, or an npz whose ``f`` is missing or unreadable, goes through
    :func:`load_smpl_arrays`, which checks the whole file and names what is wrong."""
    path = find_model_file(folder, gender, config_key)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                faces = npz["f"]
            if faces.ndim == 2 and faces.shape[1] == 3:
                return int(faces.shape[0])
        except Exception:  # a damaged file: the full reader below raises the message that says so
            pass
    return int(load_smpl_arrays(path, config_key)["f"].shape[0])


def save_smpl_pickle(arrays: dict[str, Any], path: str | Path) -> None:
    """Write plain arrays as an SMPL-style pickle that ``smplx.SMPL(model_path=...)`` reads unchanged."""
    plain = {k: (np.asarray(v) if not scipy.sparse.issparse(v) else v) for k, v in arrays.items()}
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(plain, fh, protocol=2)
    tmp.replace(path)
