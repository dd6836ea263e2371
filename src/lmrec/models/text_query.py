"""TextQuery: recommend from a natural-language description of what a person likes.

"sci-fi about time travel, not horror": the positive part is embedded and compared with every item;
each negated part ("not ...", "no ...", "without ...", "except ...") is embedded too and items close to
it are pushed down. An optional history blends the person's recent items into the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.data.items import ItemTable
from lmrec.errors import ConfigError
from lmrec.text.encoder import TextEncoder
from lmrec.text.texts import new_item_vectors

_NEGATION = re.compile(r"\b(?:not|no|without|except|but not)\s+([^,.;]+)", re.IGNORECASE)


def split_query(query: str) -> tuple[str, list[str]]:
    """``(positive text, [negated phrases])``; e.g. "sci-fi, not horror" -> ("sci-fi", ["horror"])."""
    negatives = [m.strip() for m in _NEGATION.findall(query) if m.strip()]
    positive = _NEGATION.sub(" ", query)
    positive = re.sub(r"\s*[,;]\s*(?=[,;.]|$)", "", positive)
    positive = " ".join(positive.replace(" ,", ",").split()).strip(" ,;.")
    return positive, negatives


@dataclass
class TextQuery:
    """Scores items against a free-text query. ``item_vectors`` are L2-normalised ``[n_items, dim]``
    vectors from the same ``encoder`` (e.g. ``LMContent.item_vectors_``)."""

    encoder: TextEncoder
    item_vectors: np.ndarray
    negation_weight: float = 1.0

    def scores(self, query: str, history_vector: np.ndarray | None = None, history_weight: float = 0.0) -> np.ndarray:
        """float32 ``[n_items]``: cosine to the positive part, minus ``negation_weight`` x the highest
        similarity to a negated part; with a history, the query vector is mixed with it first."""
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("the query must be a non-empty text describing what the person likes")
        if not 0.0 <= history_weight <= 1.0:
            raise ConfigError(f"history weight must be in [0, 1], got {history_weight}")
        positive, negatives = split_query(query)
        if not positive:
            raise ConfigError(f"the query {query!r} only says what to avoid; add what the person likes")
        vectors = self.encoder.encode([positive, *negatives])
        q = _unit(vectors[0])
        if history_vector is not None and history_weight > 0:
            q = _unit((1.0 - history_weight) * q + history_weight * _unit(history_vector))
        out = self.item_vectors @ q
        if negatives:
            neg = self.item_vectors @ np.stack([_unit(v) for v in vectors[1:]]).T  # [n_items, n_neg]
            out = out - self.negation_weight * np.maximum(neg.max(1), 0.0)
        return out.astype(np.float32)

    def recommend(self, query: str, k: int = 10, exclude: np.ndarray | None = None,
                  history_vector: np.ndarray | None = None, history_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(item indices [k], scores [k])``, best first; ``exclude`` lists items never to return."""
        s = self.scores(query, history_vector, history_weight)
        s[np.linalg.norm(self.item_vectors, axis=1) == 0] = -np.inf  # items without text
        if exclude is not None and len(exclude):
            s[np.asarray(exclude, dtype=np.int64)] = -np.inf
        k = min(k, int(np.isfinite(s).sum()))
        top = np.argsort(-s, kind="stable")[:k]
        return top, s[top]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class TextServing:
    """What a model that reads item text can do at serving time, given its ``_encoder()`` (the encoder it was
    fitted with, fingerprint checked): encode items added after training (``encode_new_items``), and read
    free-text queries, optionally with an int8 copy of that encoder (``int8_queries``; ``bench/query_int8.py``
    measures speed and quality). Item vectors always come from the float32 encoder."""

    # Mixed into a Recommender (first, so these override its refusals); it provides ``_new_rows``, ``config``
    # and ``n_items_``, the model ``_encoder()``.
    int8_queries: bool = False

    def encode_new_items(self, items: ItemTable, new: np.ndarray) -> np.ndarray:
        model: Any = self
        return new_item_vectors(items, model._new_rows(items, new), model._encoder(), model.config.template)

    def _check_added(self, items: ItemTable, new: np.ndarray, vectors: np.ndarray) -> None:
        n_items = getattr(self, "n_items_", None)
        assert n_items is not None
        if len(items) != n_items + len(new) or len(vectors) != len(new):
            raise ConfigError(f"{getattr(self, 'name', 'model')}: {len(vectors)} vectors for {len(new)} new items")

    def query_encoder(self) -> TextEncoder:
        model: Any = self
        if not self.int8_queries:
            return model._encoder()
        if getattr(self, "_int8_encoder", None) is None:
            encoder = model._encoder()
            if not hasattr(encoder, "int8_copy"):
                raise ConfigError(f"int8 queries need a Hugging Face encoder; {encoder!r} has no int8 form")
            self._int8_encoder = encoder.int8_copy()
        return self._int8_encoder
