"""Configuration loading and validation against ``workflow/schemas/config.schema.yaml``.

Snakemake's own ``validate()`` prints the whole schema on failure; this module gives one line naming the
key, what is wrong and the allowed values, and fills schema defaults into the config in place.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The schema file, relative to the workflow root (the repository root).
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value is missing, misspelt or out of range."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _fill_defaults(instance: Any, schema: dict[str, Any]) -> None:
    """Insert the schema's ``default`` for every missing property, recursively (in place)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    props = schema.get("properties", {})
    for key, sub in props.items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in props:
                _fill_defaults(value, extra)


#: Strings read as a null / a boolean where the schema wants one (YAML's spellings).
_NULL_STRINGS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL_STRINGS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?\d+")


def _schema_types(schema: dict[str, Any]) -> list[str]:
    types = schema.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _from_string(text: str, types: list[str]) -> Any:
    """``text`` as the first of the schema's types it reads as, else unchanged."""
    stripped = text.strip()
    for kind in types:
        if kind == "integer" and _INT_RE.fullmatch(stripped):
            return int(stripped)
        if kind == "number":
            try:
                number = float(stripped)
            except ValueError:
                continue
            if math.isfinite(number):
                return number
        if kind == "boolean" and stripped in _BOOL_STRINGS:
            return _BOOL_STRINGS[stripped]
        if kind == "null" and stripped in _NULL_STRINGS:
            return None
    return text


def _coerce(instance: Any, schema: dict[str, Any]) -> Any:
    """``instance`` with scalars in the schema's types (containers changed in place).

    A string where the schema wants no string becomes the number, boolean or null it spells: Snakemake's
    ``--config 'masks={"min_label_pixels": 80}'`` reads nested values as strings. An integer where the schema
    wants a ``number`` becomes a float, so ``5`` and ``5.0`` are one value (rule params compare by ``repr``).
    """
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _coerce(value, sub)
        return instance
    if isinstance(instance, list):
        items = schema.get("items")
        if isinstance(items, dict):
            instance[:] = [_coerce(v, items) for v in instance]
        return instance
    types = _schema_types(schema)
    if isinstance(instance, str) and types and "string" not in types:
        instance = _from_string(instance, types)
    if isinstance(instance, int) and not isinstance(instance, bool) and "number" in types and "integer" not in types:
        return float(instance)
    return instance


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" under '{key}'" if error.absolute_path else ""
        bad = ", ".join(
            f"'{key}.{e}'" if error.absolute_path else f"'{e}'" for e in extra
        )
        return f"unknown config key {bad}{where}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"config key '{key}' = {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator == "required":
        return f"config key '{key}' is missing {error.message.split(' is a required')[0]}"
    return f"config key '{key}' = {error.instance!r}: {error.message}"


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill defaults into ``config`` (in place), read scalars in the schema's types (:func:`_coerce`) and
    validate it.

    Raises:
        ConfigError: one line naming the offending key, the problem and the allowed keys/values.
    """
    schema = load_schema(schema_path)
    _fill_defaults(config, schema)
    _coerce(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    return config


def load_config(*paths: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load YAML files (later ones update earlier ones, recursively), apply overrides, validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as fh:
            deep_update(merged, yaml.safe_load(fh) or {})
    if overrides:
        deep_update(merged, overrides)
    return validate_config(merged)


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``new`` into ``base`` (in place), as Snakemake merges config files."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base
