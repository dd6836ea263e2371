"""Two-stage recommendation: a retriever proposes candidates, a CTR model reorders them.

``Reranked(retriever, reranker, k=100, weight=1.0)`` is a scorer the Evaluator takes like any model: for
each user the retriever's top ``k`` items (history excluded) are re-scored by the reranker (a fitted
``CTRModel``, e.g. the cross-encoder) and placed above every other item; the rest keep the retriever's
order below them. The candidates' order is a weighted rank fusion: ``weight * reranker rank + (1 - weight)
* retriever rank`` (ties to the retriever's order), so ``weight=1`` is the reranker's order alone and
``weight=0`` the retriever's. Why fuse: a CTR model trained on like / dislike labels knows which watched
items were liked, not which unwatched candidates get picked, and its order alone can lose to the
retriever's (measured in docs/benchmarks.md); ``fit_weight`` picks the weight on validation users.
``seconds_per_user`` measures the reranking cost added per user.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lmrec.ctr.data import CTRExamples
from lmrec.ctr.models import CTRModel
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0


class Reranked:
    def __init__(self, retriever: Any, reranker: CTRModel, k: int = 100, max_history: int = 20, weight: float = 1.0):
        if k < 1:
            raise ConfigError(f"rerank k must be positive, got {k}")
        self.retriever, self.reranker, self.k, self.max_history = retriever, reranker, k, max_history
        self.weight = _check_weight(weight)
        self.name = f"{getattr(retriever, 'name', 'retriever')}+{reranker.name}@{k}"
        self.fit_key_ = getattr(retriever, "fit_key_", None)  # the Evaluator's leakage check applies as usual
        self.rerank_seconds = 0.0
        self.users_reranked = 0
        # reranker probabilities by (user, history, candidates): trying several weights costs one pass
        self._probs: dict[tuple[int, bytes, bytes], np.ndarray] = {}

    @property
    def seconds_per_user(self) -> float:
        return self.rerank_seconds / max(self.users_reranked, 1)

    def score(self, queries: Queries) -> np.ndarray:
        scores = np.asarray(self.retriever.score(queries), dtype=np.float32).copy()
        masked = scores.copy()
        masked[queries.history.nonzero()] = -np.inf  # candidates never include the history
        k = min(self.k, scores.shape[1])
        top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
        # candidates in the retriever's order: column j holds the retriever's rank j
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(masked, top, 1), axis=1, kind="stable"), 1)
        probs = self._reranker_probs(queries, top)
        reranker_rank = np.argsort(np.argsort(-probs, axis=1, kind="stable"), axis=1)
        retriever_rank = np.broadcast_to(np.arange(k), top.shape)
        fused = self.weight * reranker_rank + (1 - self.weight) * retriever_rank
        order = np.lexsort((retriever_rank, fused), axis=1)  # by fused rank, ties to the retriever's order
        # candidates above everything else: the best fused rank gets base + k, the worst base + 1
        base = np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1, keepdims=True) + 1.0
        np.put_along_axis(scores, np.take_along_axis(top, order, 1), base + np.arange(k, 0, -1, dtype=np.float32), 1)
        return scores

    def fit_weight(self, validation: Any, grid: tuple[float, ...] = WEIGHT_GRID, metric: str = "ndcg@10") -> dict[float, float]:
        """Set ``weight`` to the grid value with the best ``metric`` on ``validation`` (an Evaluator on
        the valid part; ties go to the smaller weight, i.e. towards the retriever). The reranker runs
        once per user; returns each weight's validation value. Latency counters restart afterwards."""
        values = {}
        for w in grid:
            self.weight = _check_weight(w)
            means = validation.evaluate(self, name=f"{self.name} w={w} (valid)").means()
            if metric not in means:
                raise ConfigError(f"metric {metric!r} is not among the validation metrics ({', '.join(sorted(means))})")
            values[w] = float(means[metric])
        self.weight = max(values, key=lambda w: (values[w], -w))
        self._probs.clear()
        self.rerank_seconds, self.users_reranked = 0.0, 0
        return values

    def _reranker_probs(self, queries: Queries, top: np.ndarray) -> np.ndarray:
        """``[B, k]`` reranker probabilities of the candidates, computed for cache misses only (timed)."""
        histories = [np.asarray(queries.sequences[r][-self.max_history:]) for r in range(len(queries))]
        keys = [(int(u), h.tobytes(), t.tobytes()) for u, h, t in zip(queries.users, histories, top)]
        missing = [r for r, key in enumerate(keys) if key not in self._probs]
        if missing:
            started = time.perf_counter()
            k = top.shape[1]
            rows = np.repeat(missing, k)
            ex = CTRExamples(queries.users[rows], top[missing].ravel(), np.zeros(len(rows), dtype=np.float32),
                             [histories[r] for r in rows], int(queries.users.max()) + 1)
            probs = self.reranker.predict(ex).reshape(len(missing), k)
            for r, p in zip(missing, probs):
                self._probs[keys[r]] = p
            self.rerank_seconds += time.perf_counter() - started
            self.users_reranked += len(missing)
        return np.stack([self._probs[key] for key in keys]) if keys else np.zeros(top.shape, dtype=np.float32)


def _check_weight(weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"rerank weight must be between 0 (retriever order) and 1 (reranker order), got {weight}")
    return float(weight)
