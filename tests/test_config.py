"""Config schema: defaults, unknown keys, enum values, and every shipped config validates."""

from __future__ import annotations

import yaml
import pytest

from pipeline.config import ConfigError, load_config, load_schema, validate_config
from tests.conftest import ROOT


def test_defaults_are_filled() -> None:
    cfg = validate_config({})
    assert cfg["world"] == "open"
    assert cfg["assets"]["body_models"] is None and cfg["assets"]["j_regressor_h36m"] is None
    assert cfg["open_world"]["body_model"]["n_shape_samples"] == 400


def test_misspelt_key_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"assets": {"body_modles": "x"}})
    msg = str(err.value)
    assert "assets.body_modles" in msg
    assert "body_models" in msg  # the allowed keys are listed


def test_misspelt_top_level_key_is_named() -> None:
    with pytest.raises(ConfigError, match="'sed'"):
        validate_config({"sed": 1})


def test_enum_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"world": "opn"})
    assert "'world'" in str(err.value) and "['open', 'real']" in str(err.value)


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError, match="seed"):
        validate_config({"seed": "zero"})


def _walk(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    out = []
    for key, sub in schema.get("properties", {}).items():
        out.append((f"{path}{key}", sub))
        out.extend(_walk(sub, f"{path}{key}."))
    return out


def test_every_schema_key_has_description_and_default() -> None:
    missing = [k for k, sub in _walk(load_schema()) if "description" not in sub or "default" not in sub]
    assert missing == []


@pytest.mark.parametrize("name", ["config.yaml", "real.example.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    paths = [ROOT / "config" / "config.yaml"]
    if name != "config.yaml":
        paths.append(ROOT / "config" / name)
    cfg = load_config(*paths)
    assert cfg["world"] == ("open" if name == "config.yaml" else "real")


def test_default_config_keys_all_commented() -> None:
    """Every key line in config/config.yaml is preceded by a comment line (or carries one)."""
    lines = (ROOT / "config" / "config.yaml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        if ":" in stripped and "#" not in stripped and not lines[i - 1].strip().startswith("#"):
            uncommented.append(stripped)
    assert uncommented == []
    assert yaml.safe_load("\n".join(lines))["world"] == "open"
