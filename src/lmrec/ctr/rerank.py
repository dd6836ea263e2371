"""Two-stage recommendation: a retriever proposes candidates, a CTR model reorders them.

``Reranked(retriever, reranker, k=100)`` is a scorer the Evaluator takes like any model: for each user
the retriever's top ``k`` items (history excluded) are re-scored by the reranker (a fitted ``CTRModel``,
e.g. the cross-encoder) and placed above every other item in the reranker's order; the rest keep the
retriever's order below them. ``seconds_per_user`` measures the reranking cost added per user.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lmrec.ctr.data import CTRExamples
from lmrec.ctr.models import CTRModel
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError


class Reranked:
    def __init__(self, retriever: Any, reranker: CTRModel, k: int = 100, max_history: int = 20):
        if k < 1:
            raise ConfigError(f"rerank k must be positive, got {k}")
        self.retriever, self.reranker, self.k, self.max_history = retriever, reranker, k, max_history
        self.name = f"{getattr(retriever, 'name', 'retriever')}+{reranker.name}@{k}"
        self.fit_key_ = getattr(retriever, "fit_key_", None)  # the Evaluator's leakage check applies as usual
        self.rerank_seconds = 0.0
        self.users_reranked = 0

    @property
    def seconds_per_user(self) -> float:
        return self.rerank_seconds / max(self.users_reranked, 1)

    def score(self, queries: Queries) -> np.ndarray:
        scores = np.asarray(self.retriever.score(queries), dtype=np.float32).copy()
        started = time.perf_counter()
        masked = scores.copy()
        masked[queries.history.nonzero()] = -np.inf  # candidates never include the history
        k = min(self.k, scores.shape[1])
        top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(len(queries)), k)
        histories = [np.asarray(queries.sequences[r][-self.max_history:]) for r in range(len(queries))]
        ex = CTRExamples(queries.users[rows], top.ravel(), np.zeros(len(rows), dtype=np.float32),
                         [histories[r] for r in rows], int(queries.users.max()) + 1 if len(queries) else 0)
        probs = self.reranker.predict(ex).reshape(len(queries), k)
        # reranked candidates above everything else, in the reranker's order (probabilities are in [0, 1])
        base = np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1, keepdims=True) + 2.0
        np.put_along_axis(scores, top, base + probs.astype(np.float32), axis=1)
        self.rerank_seconds += time.perf_counter() - started
        self.users_reranked += len(queries)
        return scores
