"""Typed configs: validation that turns pydantic errors into one-line ``ConfigError`` messages."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lmrec.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Mapping[str, Any], where: str = "") -> M:
    """Build ``model`` from ``data``; any problem becomes a ``ConfigError`` naming each bad key."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{where or model.__name__}: {describe(exc, model)}") from None


def describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """'key: problem' for each error, with the allowed keys when a key is unknown."""
    problems = []
    for e in exc.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(config)"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), list(model.model_fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"unknown key {key!r} ({hint}allowed: {', '.join(model.model_fields)})")
        else:
            problems.append(f"{key}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(problems)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> {key: value} (values parsed as YAML scalars); a dotted key sets an option of
    a nested section: ``privacy.epsilon=4`` -> {"privacy": {"epsilon": 4}}."""
    options: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"an option must look like option=value, got {item!r}")
        _set_nested(options, key.strip(), _scalar(value, item), item)
    return options


def _set_nested(options: dict[str, Any], key: str, value: Any, item: str) -> None:
    *sections, last = key.split(".")
    if not all(sections) or not last:
        raise ConfigError(f"an option must look like option=value or section.option=value, got {item!r}")
    for section in sections:
        inner = options.setdefault(section, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"{item!r}: {section!r} is given both as a value and as a section")
        options = inner
    options[last] = value


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``model.key=value`` strings -> {model: {key: value}} (values parsed as YAML scalars)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, value = item.partition("=")
        model, dot, key = target.partition(".")
        if not eq or not dot or not model or not key:
            raise ConfigError(f"a model option must look like model.option=value, got {item!r}")
        _set_nested(out.setdefault(model, {}), key, _scalar(value, item), item)
    return out


def _scalar(value: str, item: str) -> Any:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read the value of {item!r}: {' '.join(str(exc).split())}") from None
    if isinstance(parsed, str):  # YAML 1.1 reads 1e-5 (no dot) as text
        try:
            return float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf", "infinity") else parsed
        except ValueError:
            return parsed
    return parsed
