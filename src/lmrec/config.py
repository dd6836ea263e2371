"""Typed configs: validation that turns pydantic errors into one-line ``ConfigError`` messages."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

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
