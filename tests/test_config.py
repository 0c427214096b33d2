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


def test_strings_from_the_command_line_take_the_schema_types() -> None:
    """`--config 'masks={"min_label_pixels": 80}'` reaches the config as strings (Snakemake reads nested values
    with YAML's BaseLoader): each is read as the type its key wants, and an integer for a number is a float."""
    cfg = validate_config({
        "masks": {"min_label_pixels": "80", "crop_margin": "2", "parser": {"flip": "false", "scales": ["1", "0.5"]}},
        "open_world": {"images": {"azimuth_std_deg": "null", "focal_range": [1, "1.5"]}},
        "prior": {"views": {"distance_m": 3}},
        "train": {"runs": ["sd"], "variants": {"sd": []}},
    })
    assert cfg["masks"]["min_label_pixels"] == 80 and type(cfg["masks"]["min_label_pixels"]) is int
    assert cfg["masks"]["crop_margin"] == 2.0 and type(cfg["masks"]["crop_margin"]) is float
    assert cfg["masks"]["parser"]["flip"] is False and cfg["masks"]["parser"]["scales"] == [1.0, 0.5]
    assert cfg["open_world"]["images"]["azimuth_std_deg"] is None
    assert [type(v) for v in cfg["open_world"]["images"]["focal_range"]] == [float, float]
    assert repr(cfg["prior"]["views"]["distance_m"]) == "3.0"
    # strings stay strings where the schema wants one, and a word is not a number
    assert cfg["train"]["runs"] == ["sd"]
    with pytest.raises(ConfigError, match="masks.min_label_pixels' = 'eighty'"):
        validate_config({"masks": {"min_label_pixels": "eighty"}})
    with pytest.raises(ConfigError, match="masks.min_label_pixels' = '80.5'"):
        validate_config({"masks": {"min_label_pixels": "80.5"}})


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
