"""Content-based TF-IDF recommender: items are TF-IDF vectors of their text; users are profiles."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender


class TfidfConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str | None = Field(None, description="item text template; default: every item field joined")
    min_df: int = Field(1, ge=1)
    max_features: int | None = Field(50_000, ge=1)
    ngram_max: int = Field(1, ge=1, le=3)
    recency_half_life: float | None = Field(
        None, gt=0, description="weight history items by 0.5 ** (age / half_life), age 0 = most recent; "
        "None = equal weights")


class TfidfContent(Recommender):
    """User profile = weighted sum of the L2-normalised TF-IDF vectors of the history items (equal
    weights, or decaying with recency); score = cosine between profile and item vectors.

    Scores every item that has text, including items never interacted with (cold-start items).
    """

    name = "tfidf"
    Config = TfidfConfig

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        if items is None or not items.fields:
            raise ConfigError("the tfidf model needs item text: pass the dataset's item table to fit()")
        template = self.config.template or " . ".join(f"{{{f}}}" for f in items.fields)
        texts = items.render(template)
        vectorizer = TfidfVectorizer(min_df=self.config.min_df, max_features=self.config.max_features,
                                     ngram_range=(1, self.config.ngram_max), sublinear_tf=True,
                                     dtype=np.float32)
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError as exc:  # e.g. every text empty
            raise ConfigError(f"tfidf: cannot build a vocabulary from the item text ({exc})") from None
        self.item_vectors_ = normalize(matrix).astype(np.float32).tocsr()  # [n_items, vocab]

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        profiles = normalize(queries.weights(self.config.recency_half_life) @ self.item_vectors_)  # [B, vocab]
        return np.asarray((profiles @ self.item_vectors_.T).todense(), dtype=np.float32)

    def _state(self) -> dict[str, sp.csr_matrix]:
        return {"item_vectors_": self.item_vectors_}
