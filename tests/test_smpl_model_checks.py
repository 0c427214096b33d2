"""SMPL model files (issue #18.6): chumpy expressions refused, old SciPy sparse module paths loaded without
warnings, skinning weights and pose blend shapes checked against the kinematic tree at load time."""

from __future__ import annotations

import pickle
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from pipeline.body.smpl_io import (
    SMPL_OBTAIN_HINT,
    BodyModelFileError,
    load_smpl_arrays,
)


def _fake_chumpy_classes() -> tuple[type, type, dict[str, types.ModuleType]]:
    """Classes shaped like chumpy's ``ch.Ch`` (a stored value in ``x``) and ``ch_ops.add`` (an expression
    whose pickled state holds its operands ``a`` and ``b``), and the throw-away modules that pickle needs."""
    ch_mod, ops_mod = types.ModuleType("chumpy.ch"), types.ModuleType("chumpy.ch_ops")

    class Ch:
        def __init__(self, x: np.ndarray) -> None:
            self.x = x

        def __getstate__(self) -> dict:
            return {"x": self.x, "_dirty_vars": set(), "_itr": None}

    class add:  # chumpy's own (lower-case) class name
        def __init__(self, a: Ch, b: Ch) -> None:
            self.a, self.b = a, b

        def __getstate__(self) -> dict:
            return {"a": self.a, "b": self.b, "_dirty_vars": set(), "_itr": None}

    for cls, mod in ((Ch, ch_mod), (add, ops_mod)):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    pkg = types.ModuleType("chumpy")
    return Ch, add, {"chumpy": pkg, "chumpy.ch": ch_mod, "chumpy.ch_ops": ops_mod}


def _pickle_with_fake_chumpy(build: Callable[[type, type], dict], path: Path) -> None:
    ch, add, modules = _fake_chumpy_classes()
    sys.modules.update(modules)
    try:
        with open(path, "wb") as fh:
            pickle.dump(build(ch, add), fh, protocol=2)
    finally:
        for name in modules:
            del sys.modules[name]


def test_chumpy_expression_under_a_required_key_is_refused(tmp_path: Path, tiny_smpl: dict) -> None:
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    half = tiny_smpl["v_template"] / 2

    def build(ch: type, add: type) -> dict:
        return {**tiny_smpl, "v_template": add(ch(half), ch(half + 1.0))}  # the old loader returned operand a

    _pickle_with_fake_chumpy(build, path)
    assert b"chumpy.ch_ops" in path.read_bytes()
    with pytest.raises(BodyModelFileError) as err:
        load_smpl_arrays(path)
    msg = str(err.value)
    assert msg.startswith(f"assets.body_models: body model file {path}: key 'v_template' is a chumpy expression "
                          "chumpy.ch_ops.add (terms ['a', 'b']), not a stored array")
    assert "tools/clean_ch.py" in msg and "smpl.is.tue.mpg.de" in msg


def test_chumpy_expression_under_an_unused_key_is_dropped(tmp_path: Path, tiny_smpl: dict,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "SMPL_NEUTRAL.pkl"

    def build(ch: type, add: type) -> dict:
        return {**tiny_smpl, "shapedirs": ch(tiny_smpl["shapedirs"]), "J": add(ch(np.ones(3)), ch(np.ones(3)))}

    _pickle_with_fake_chumpy(build, path)
    arrays = load_smpl_arrays(path)
    assert "J" not in arrays and "key 'J' is a chumpy expression chumpy.ch_ops.add" in caplog.text
    np.testing.assert_array_equal(arrays["shapedirs"], tiny_smpl["shapedirs"])


def test_old_scipy_sparse_module_path_loads_without_warnings(tmp_path: Path, tiny_smpl: dict) -> None:
    """Official files name ``scipy.sparse.csc.csc_matrix``: deprecated in SciPy 1.8, gone in 2.0."""
    data = {**tiny_smpl, "J_regressor": scipy.sparse.csc_matrix(tiny_smpl["J_regressor"])}
    raw = pickle.dumps(data, protocol=2)  # protocol 2 names classes as text: "c<module>\n<name>\n"
    assert b"scipy.sparse._csc\ncsc_matrix\n" in raw
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(raw.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n"))
    with pytest.warns(DeprecationWarning, match="scipy.sparse.csc"):  # what a plain unpickler does today
        pickle.loads(path.read_bytes(), encoding="latin1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays = load_smpl_arrays(path)
    np.testing.assert_allclose(arrays["J_regressor"], tiny_smpl["J_regressor"])
    assert arrays["J_regressor"].shape == (24, tiny_smpl["v_template"].shape[0])


def _bad(tmp_path: Path, tiny_smpl: dict, **changes: np.ndarray) -> str:
    """The message of loading ``tiny_smpl`` with ``changes``."""
    path = tmp_path / "SMPL_MALE.npz"
    np.savez(path, **{**tiny_smpl, **changes})
    with pytest.raises(BodyModelFileError) as err:
        load_smpl_arrays(path)
    msg = str(err.value)
    assert msg.startswith(f"assets.body_models: body model file {path} has inconsistent arrays: ")
    assert msg.endswith("The file is damaged or not an SMPL model. " + SMPL_OBTAIN_HINT)
    return msg


def test_weights_checked_against_the_kinematic_tree(tmp_path: Path, tiny_smpl: dict) -> None:
    w = tiny_smpl["weights"]
    nv = w.shape[0]
    assert f"key 'weights' has shape ({nv}, 23), expected ({nv}, 24) ({nv} vertices of v_template, 24 joints of " \
           "kintree_table)" in _bad(tmp_path, tiny_smpl, weights=w[:, :23] / w[:, :23].sum(1, keepdims=True))
    doubled = _bad(tmp_path, tiny_smpl, weights=w * 2)
    assert "key 'weights' rows sum to 2..2 (vertex " in doubled and "not 1 +- 0.001" in doubled
    negative = w.copy()
    negative[7, :2] = (-0.25, negative[7, 1] + negative[7, 0] + 0.25)  # row still sums to 1
    assert "key 'weights' has negative entries (down to -0.25, vertex 7); skinning weights are non-negative" in \
        _bad(tmp_path, tiny_smpl, weights=negative)
    nan = w.copy()
    nan[3, 3] = np.nan
    assert "key 'weights' holds 1 NaN/inf entries" in _bad(tmp_path, tiny_smpl, weights=nan)


def test_posedirs_and_joint_count_checked(tmp_path: Path, tiny_smpl: dict) -> None:
    nv = tiny_smpl["v_template"].shape[0]
    assert f"key 'posedirs' has shape ({nv}, 3, 200), expected ({nv}, 3, 207) (9 x 23 non-root joints of " \
           "kintree_table)" in _bad(tmp_path, tiny_smpl, posedirs=np.zeros((nv, 3, 200)))
    kintree52 = np.stack([np.r_[-1, np.zeros(51, np.int64)], np.arange(52)])
    weights52 = np.full((nv, 52), 1 / 52)
    msg = _bad(tmp_path, tiny_smpl, kintree_table=kintree52, weights=weights52, posedirs=np.zeros((nv, 3, 459)),
               J_regressor=np.full((52, nv), 1 / nv))
    assert msg.count("key ") == 1 and "key 'kintree_table' has 52 joints, SMPL has 24 (an SMPL-H or SMPL-X file?)" in msg
    assert "key 'J_regressor' has shape (23, " in _bad(tmp_path, tiny_smpl, J_regressor=tiny_smpl["J_regressor"][:23])
