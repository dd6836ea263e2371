"""Two-stage recommendation: a retriever proposes candidates, a second model reorders them.

``Reranked(retriever, reranker, k=100, weight=1.0)`` is a scorer the Evaluator takes like any model: for
each user the retriever's top ``k`` items (history excluded) are re-scored by the reranker (a fitted
``CTRModel`` such as the cross-encoder, or a ``RelevanceMLP`` trained on the retriever's own candidates,
see ``lmrec.ctr.relevance``) and placed above every other item; the rest keep the retriever's
order below them. The candidates' order is a weighted rank fusion: ``weight * reranker rank + (1 - weight)
* retriever rank`` (ties to the retriever's order), so ``weight=1`` is the reranker's order alone and
``weight=0`` the retriever's. Why fuse: a CTR model trained on like / dislike labels knows which watched
items were liked, not which unwatched candidates get picked, and its order alone can lose to the
retriever's (measured in docs/benchmarks.md); ``fit_weight`` picks the weight on validation users and
falls back to the retriever's order unless the reranker's gain there is significant.
``seconds_per_user`` measures the reranking cost added per user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lmrec.ctr.data import CTRExamples
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.eval import compare

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0


class CandidateScorer(Protocol):
    """What a reranker offers: a name and scores for candidate rows (only their order is used). Rows carry
    the user, candidate, recent history and the candidate's rank in the retriever's list."""

    name: str

    def predict(self, examples: CTRExamples) -> np.ndarray: ...


@dataclass
class WeightChoice:
    """What ``Reranked.fit_weight`` saw: validation metric per weight, the best grid weight, the paired
    t-test p-value of its gain over weight 0 (None when not tested), and the weight set."""

    curve: dict[float, float]
    best: float
    p_value: float | None
    weight: float


class Reranked:
    def __init__(self, retriever: Any, reranker: CandidateScorer, k: int = 100, max_history: int | None = None,
                 weight: float = 1.0):
        if k < 1:
            raise ConfigError(f"rerank k must be positive, got {k}")
        trained_k = getattr(reranker, "k_", 0)  # a relevance reranker knows ranks up to its training lists' size
        if trained_k and k > trained_k:
            raise ConfigError(f"reranker {reranker.name!r} was trained on the retriever's top {trained_k}; "
                              f"rerank k={k} would show it ranks it never saw (use k <= {trained_k})")
        if max_history is None:  # the history length the reranker was trained with (CTR rows: 20)
            max_history = getattr(getattr(reranker, "config", None), "max_history", 20)
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
        started = time.perf_counter()  # the second stage's cost: candidates, reranker, fusion
        masked = scores.copy()
        masked[queries.history.nonzero()] = -np.inf  # candidates never include the history
        k = min(self.k, scores.shape[1])
        top = top_candidates(masked, k)  # column j holds the retriever's rank j
        probs = self._reranker_probs(queries, top)
        reranker_rank = np.argsort(np.argsort(-probs, axis=1, kind="stable"), axis=1)
        retriever_rank = np.broadcast_to(np.arange(k), top.shape)
        fused = self.weight * reranker_rank + (1 - self.weight) * retriever_rank
        order = np.lexsort((retriever_rank, fused), axis=1)  # by fused rank, ties to the retriever's order
        # candidates above everything else: the best fused rank gets base + k, the worst base + 1
        base = np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1, keepdims=True) + 1.0
        np.put_along_axis(scores, np.take_along_axis(top, order, 1), base + np.arange(k, 0, -1, dtype=np.float32), 1)
        self.rerank_seconds += time.perf_counter() - started
        self.users_reranked += len(queries)
        return scores

    def fit_weight(self, validation: Any, grid: tuple[float, ...] = WEIGHT_GRID, metric: str = "ndcg@10",
                   significance: float | None = 0.05) -> WeightChoice:
        """Set ``weight`` from ``validation`` (an Evaluator on the valid part): the grid value with the
        best ``metric`` (ties to the smaller weight), kept only if its gain over weight 0 (the retriever's
        order) is significant in a paired t-test across the validation users at level ``significance``
        (None: no test); otherwise weight 0. The guard matters because a small validation set's best grid
        point can be noise, and a reranker that does not help should not reorder anything. The reranker
        runs once per user (its outputs are reused across weights); the latency counters restart
        afterwards, so they measure later scoring only."""
        if significance is not None and 0.0 not in grid:
            raise ConfigError("the weight grid must include 0 (the retriever's order) for the significance test")
        results = {}
        for w in grid:
            self.weight = _check_weight(w)
            results[w] = validation.evaluate(self, name=f"{self.name} w={w} (valid)")
            if metric not in results[w].means():
                raise ConfigError(f"metric {metric!r} is not among the validation metrics "
                                  f"({', '.join(sorted(results[w].means()))})")
        curve = {w: float(r.means()[metric]) for w, r in results.items()}
        best = max(curve, key=lambda w: (curve[w], -w))
        p_value = None
        if best != 0.0 and significance is not None:
            p_value = compare(results[best], results[0.0], metric)["t_p"]
        keep = best == 0.0 or p_value is None or p_value < significance  # type: ignore[operator]
        self.weight = best if keep else 0.0
        self._probs.clear()
        self.rerank_seconds, self.users_reranked = 0.0, 0
        return WeightChoice(curve, best, p_value, self.weight)

    def _reranker_probs(self, queries: Queries, top: np.ndarray) -> np.ndarray:
        """``[B, k]`` reranker probabilities of the candidates, computed for cache misses only."""
        histories = [np.asarray(queries.sequences[r][-self.max_history:]) for r in range(len(queries))]
        keys = [(int(u), h.tobytes(), t.tobytes()) for u, h, t in zip(queries.users, histories, top)]
        missing = [r for r, key in enumerate(keys) if key not in self._probs]
        if missing:
            k = top.shape[1]
            rows = np.repeat(missing, k)
            ex = CTRExamples(queries.users[rows], top[missing].ravel(), np.zeros(len(rows), dtype=np.float32),
                             [histories[r] for r in rows], int(queries.users.max()) + 1,
                             ranks=np.tile(np.arange(k), len(missing)))
            probs = self.reranker.predict(ex).reshape(len(missing), k)
            for r, p in zip(missing, probs):
                self._probs[keys[r]] = p
        return np.stack([self._probs[key] for key in keys]) if keys else np.zeros(top.shape, dtype=np.float32)


def top_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """``[B, k]`` item indices of each row's ``k`` best scores, best first, ties to the smaller index (the
    Evaluator's order, so weight 0 reproduces the retriever's ranking exactly). Rows need ``k`` finite
    scores for the candidates to exclude every ``-inf`` (masked) item."""
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above, tied = scores > kth, scores == kth
    need = k - above.sum(1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    rows, cols = np.nonzero(chosen)  # row-major: each row's k columns in index order
    cols = cols.reshape(len(scores), k)
    order = np.lexsort((cols, -np.take_along_axis(scores, cols, 1)), axis=1)
    return np.take_along_axis(cols, order, 1)


def _check_weight(weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"rerank weight must be between 0 (retriever order) and 1 (reranker order), got {weight}")
    return float(weight)
