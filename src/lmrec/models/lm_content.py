"""LMContent: language-model item vectors; an item's score sums its text similarity to each history item.

With ``power`` 1 a user is the recency-weighted mean of their history's vectors (the score is an inner product,
servable from a vector index). Above 1 each history item's cosine to the candidate is raised to that power
before the weighted sum, so a candidate very close to one history item outranks one loosely close to all of
them: a text item-kNN. On the validation parts of MovieLens-100K, Amazon Scientific, Office and Arts, power 8
beat the mean by 15%, 10%, 23% and 44% NDCG@10 (docs/benchmarks.md, "Language-model recommenders")."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender
from lmrec.models.text_query import TextQuery, TextServing
from lmrec.text.encoder import DEFAULT_ENCODER, TextEncoder, load_encoder
from lmrec.text.texts import item_vectors, matching_encoder


class LMContentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoder: str = Field(DEFAULT_ENCODER, description="minilm, hash[:dim], st:NAME, or a Hugging Face id / folder")
    template: str | None = Field(None, description="item text template; default: the dataset's descriptive fields")
    # 1 interaction: chosen on the validation parts of MovieLens-100K and Amazon-Beauty, where it beat equal
    # weights by far (docs/benchmarks.md, "Language-model recommenders"): recent interests dominate.
    half_life: float | None = Field(1.0, gt=0, description="recency half-life (interest drift); None = equal weights")
    half_life_unit: Literal["interactions", "seconds"] = "interactions"
    power: float = Field(8.0, ge=1.0, le=64.0,
                         description="exponent on each history item's cosine to the candidate (negatives count as 0); "
                                     "1 = the mean history vector's inner product")
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8, description="tokens per item text (longer texts are truncated)")


# Bytes of history-by-catalogue similarities held at once while scoring with power > 1.
SIMILARITY_BYTES = 256 * 2**20


class LMContent(TextServing, Recommender):
    """score(u, i) = sum over history items h of w(u, h) * max(0, cos(h, i)) ** power, or with power 1
    <user vector, item vector>, over every item with text, including items nobody has interacted with yet
    (cold-start items). Item vectors come from the embedding cache."""

    name = "lmcontent"
    Config = LMContentConfig
    options_absent_from_old_saves = {"power": 1.0}  # saved before the option existed: the mean-vector model

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        if items is None or not items.fields:
            raise ConfigError(f"{self.name} needs item text: pass the dataset's item table to fit()")
        c = self.config
        encoder = load_encoder(c.encoder, batch_size=c.batch_size, max_length=c.max_length)
        vectors, has_text = item_vectors(items, encoder, c.template)
        self.item_vectors_ = np.ascontiguousarray(vectors, dtype=np.float32)
        self.has_text_ = has_text
        self.encoder_fingerprint_ = np.array(encoder.fingerprint)
        self._unit_vectors = None

    @property
    def linear(self) -> bool:
        """Whether the score is the mean history vector's inner product (power 1)."""
        return self.config.power == 1.0

    def user_vectors(self, queries: Queries) -> np.ndarray:
        """``[B, dim]`` L2-normalised recency-weighted means of the history item vectors."""
        w = queries.weights(self.config.half_life, self.config.half_life_unit)
        return _unit_rows(np.asarray(w @ self.item_vectors_, dtype=np.float32))

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        if self.linear:
            return self.user_vectors(queries) @ self.item_vectors_.T
        # float32 weights: each chunk's product stays float32 ([B, n_items] float64 would double the memory)
        w = queries.weights(self.config.half_life, self.config.half_life_unit).astype(np.float32).tocsc()
        history = np.flatnonzero(np.diff(w.indptr))  # the distinct history items of the batch
        out = np.zeros((len(queries), len(self.item_vectors_)), dtype=np.float32)
        step = max(1, SIMILARITY_BYTES // (4 * max(1, len(self.item_vectors_))))
        for start in range(0, len(history), step):
            chunk = history[start:start + step]
            out += w[:, chunk] @ self.similarities(self.item_vectors_[chunk])
        return out

    def similarities(self, vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """``[len(vectors), n_items]`` (or ``[len(vectors), len(items)]``): ``max(0, cos) ** power`` of each
        vector to every item's (to those ``items``')."""
        unit = self._unit() if items is None else self._unit()[items]
        sims = _unit_rows(vectors) @ unit.T
        np.maximum(sims, 0.0, out=sims)
        return np.power(sims, np.float32(self.config.power), out=sims)

    def _unit(self) -> np.ndarray:
        if getattr(self, "_unit_vectors", None) is None:
            self._unit_vectors = _unit_rows(self.item_vectors_)
        return self._unit_vectors

    # --- retrieval: with power 1 the scores are inner products of these ---------------------------------------
    def retrieval_items(self) -> np.ndarray | None:
        return self.item_vectors_ if self.linear else None

    def retrieval_queries(self, queries: Queries) -> np.ndarray | None:
        return self.user_vectors(queries) if self.linear else None

    # --- explanations: the score is a sum over the history (power 1: before the user vector's norm) -----------
    def history_terms(self, queries: Queries, item: int) -> tuple[np.ndarray, np.ndarray]:
        w = queries.weights(self.config.half_life, self.config.half_life_unit)[0]
        distinct = w.indices
        if not self.linear:
            sims = self.similarities(self.item_vectors_[distinct], np.array([item]))[:, 0]
            return distinct, (w.data * sims).astype(np.float32)
        norm = float(np.linalg.norm(w @ self.item_vectors_))
        terms = w.data * (self.item_vectors_[distinct] @ self.item_vectors_[item])
        return distinct, (terms / norm if norm > 0 else np.zeros_like(terms)).astype(np.float32)

    def score_item_texts(self, queries: Queries, texts: list[str]) -> np.ndarray:
        """Scores of items that would have these texts, for the one user of ``queries``."""
        return self._encoder().encode(texts) @ self.user_vectors(queries)[0]

    def score_with_history_texts(self, queries: Queries, history_item: int, texts: list[str], item: int) -> np.ndarray:
        """``item``'s score for the one user of ``queries`` if ``history_item`` read each of ``texts``."""
        w = queries.weights(self.config.half_life, self.config.half_life_unit)[0]
        weight = float(w[0, history_item])
        if not self.linear:
            distinct, terms = self.history_terms(queries, item)  # the score is their sum
            rest = float(terms[distinct != history_item].sum())
            texts_sims = self.similarities(self._encoder().encode(texts), np.array([item]))[:, 0]
            return (rest + weight * texts_sims).astype(np.float32)
        base = np.asarray(w @ self.item_vectors_, dtype=np.float32)[0] - weight * self.item_vectors_[history_item]
        users = base[None, :] + weight * self._encoder().encode(texts)
        norms = np.linalg.norm(users, axis=1, keepdims=True)
        users = np.divide(users, norms, out=np.zeros_like(users), where=norms > 0)
        return users @ self.item_vectors_[item]

    # --- serving: new items and free text, read by the encoder the model was fitted with ---------------------
    def _encoder(self) -> TextEncoder:
        if getattr(self, "_text_encoder", None) is None:
            c = self.config
            self._text_encoder = matching_encoder(c.encoder, str(self.encoder_fingerprint_),
                                                  batch_size=c.batch_size, max_length=c.max_length)
        return self._text_encoder

    def add_items(self, items: ItemTable, new: np.ndarray, vectors: np.ndarray) -> None:
        self._check_added(items, new, vectors)
        assert self.n_items_ is not None
        self.item_vectors_ = np.concatenate([self.item_vectors_, vectors])
        self.has_text_ = np.concatenate([self.has_text_, np.ones(len(new), dtype=bool)])
        self.n_items_ += len(new)
        self._unit_vectors = None

    def score_text(self, queries: Queries, texts: list[str]) -> np.ndarray:
        """The text as a ``TextQuery`` (negated phrases push items down), mixed half and half with the
        history's mean vector when there is a history (whatever the power: a query is one vector)."""
        self._check_fitted()
        if len(texts) != len(queries):
            raise ConfigError(f"{len(texts)} texts for {len(queries)} queries")
        query = TextQuery(self.query_encoder(), self.item_vectors_)
        users = self.user_vectors(queries)
        return np.stack([query.scores(text, u, 0.5 if np.any(u) else 0.0) for text, u in zip(texts, users)])

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_vectors_": self.item_vectors_, "has_text_": self.has_text_,
                "encoder_fingerprint_": self.encoder_fingerprint_}


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 copies of ``vectors`` scaled to length 1 (zero rows, items without text, stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
