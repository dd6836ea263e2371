"""Rerankers by name: the CTR models (like / dislike, need labels) and the relevance reranker (trained on
a retriever's candidates, any dataset)."""

from __future__ import annotations

from typing import Any

from lmrec.ctr.models import CTR_MODELS, CTRModel
from lmrec.ctr.relevance import RelevanceMLP
from lmrec.errors import ConfigError

RERANKERS: dict[str, type[CTRModel] | type[RelevanceMLP]] = {**CTR_MODELS, RelevanceMLP.name: RelevanceMLP}


def create_reranker(name: str, **params: Any) -> CTRModel | RelevanceMLP:
    """A reranker by name (``id-fm``, ``frozen-mlp``, ``cross-encoder``, ``relevance-mlp``) with config overrides."""
    if name not in RERANKERS:
        raise ConfigError(f"unknown reranker {name!r}; choose one of {', '.join(RERANKERS)}")
    return RERANKERS[name](**params)
