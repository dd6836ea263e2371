"""The one registry: model name -> class, for rankers, CTR models and rerankers alike.

Every built-in model is listed here, explicitly; nothing is discovered by scanning modules. A new model
is added to ``BUILTIN`` (or, from outside lmrec, with ``register``). ``load_model`` reads any saved model
by the name in its ``model.json``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

from lmrec.ctr.models import CrossEncoderCTR, FrozenEncoderMLP, IdFM
from lmrec.ctr.relevance import RelevanceMLP
from lmrec.errors import ConfigError
from lmrec.eval.blend import ShortlistBlend
from lmrec.models import (
    ALS,
    BPR,
    EASE,
    BERT4Rec,
    Fusion,
    GRU4Rec,
    HybridNCF,
    ItemKNN,
    LightGCN,
    LMContent,
    MultVAE,
    Popularity,
    SASRec,
    TextSeqRec,
    TfidfContent,
    TwoTowerLM,
    UserKNN,
)
from lmrec.models.base import Model, read_model_meta

T = TypeVar("T", bound=type[Model])

BUILTIN: tuple[type[Model], ...] = (
    Popularity, ItemKNN, UserKNN, TfidfContent, EASE, BPR, ALS, LightGCN, MultVAE, LMContent, HybridNCF, SASRec, GRU4Rec,
    BERT4Rec, TextSeqRec, Fusion,
    TwoTowerLM, IdFM, FrozenEncoderMLP, CrossEncoderCTR, RelevanceMLP,
)
MODELS: dict[str, type[Model]] = {}

# What each kind is for, in error messages.
KINDS = {"ranker": "recommender", "ctr": "CTR model", "reranker": "reranker"}
RERANKER_KINDS = ("ctr", "reranker")  # a CTR model reranks by its like-probability


def register(cls: T) -> T:
    """Make a model class available by its ``name``."""
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} is registered twice")
    MODELS[cls.name] = cls
    return cls


for _cls in BUILTIN:
    register(_cls)


def names(kinds: tuple[str, ...] | None = None) -> list[str]:
    """Registered model names, optionally only those of ``kinds``."""
    return [n for n, c in MODELS.items() if kinds is None or c.kind in kinds]


def model_class(name: str, kinds: tuple[str, ...] | None = None) -> type[Model]:
    """The class registered as ``name``; with ``kinds``, it must be one of them. Unknown names get the
    closest known ones."""
    allowed = names(kinds)
    what = ("model" if kinds is None else "reranker" if set(kinds) == set(RERANKER_KINDS)
            else " or ".join(KINDS.get(k, k) for k in kinds))
    if name not in allowed:
        if name in MODELS:
            raise ConfigError(f"{name!r} is a {KINDS.get(MODELS[name].kind, MODELS[name].kind)}, not a {what}; "
                              f"choose one of {', '.join(allowed)}")
        close = difflib.get_close_matches(name, allowed, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(allowed))}"
        raise ConfigError(f"unknown {what} {name!r}{hint}")
    return MODELS[name]


def create(name: str, kinds: tuple[str, ...] | None = None, **params: Any) -> Any:
    """A new, unfitted model by registered name, with its config built from ``params``."""
    return model_class(name, kinds)(**params)


def load_model(path: str | Path) -> Any:
    """Any saved model (``Model.save``), as the class named in its ``model.json``."""
    meta = read_model_meta(Path(path))
    return model_class(meta["name"]).from_saved(Path(path), meta)


# Fusion fits and loads other models by name, and models cannot import the registry that imports them.
Fusion.create_model = staticmethod(lambda name, **params: create(name, ("ranker",), **params))
Fusion.load_saved = staticmethod(load_model)
Fusion.shortlist = ShortlistBlend
