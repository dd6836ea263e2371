"""Model name -> class. Models register themselves explicitly with ``@register``; nothing is discovered."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from lmrec.errors import ConfigError

T = TypeVar("T", bound=type)

MODELS: dict[str, type] = {}


def register(cls: T) -> T:
    """Class decorator: make a model available by its ``name``."""
    name = cls.name  # type: ignore[attr-defined]
    if name in MODELS and MODELS[name] is not cls:
        raise ValueError(f"model name {name!r} is registered twice")
    MODELS[name] = cls
    return cls


def model_class(name: str) -> type:
    _load_builtin_models()
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(sorted(MODELS))}"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return MODELS[name]


def create(name: str, **params: Any) -> Any:
    """A new, unfitted model by registered name, with its config built from ``params``."""
    return model_class(name)(**params)


def _load_builtin_models() -> None:
    # Importing the package runs each module's explicit @register line.
    import lmrec.models  # noqa: F401
