"""The ``Evaluator``: any scorer on one part of a split, full ranking by default.

Evaluation is honest by default: every user is ranked against **all** items, the items in the user's
history (train, plus valid when scoring test) are masked, and the split is checked for leakage.
Sampled evaluation exists only as an explicitly labelled mode. Top-k lives in ``lmrec.eval.topk``,
results and paired tests in ``lmrec.eval.results``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from lmrec.data.interactions import Interactions, events_key
from lmrec.data.queries import Queries
from lmrec.data.split import Split, is_subset
from lmrec.errors import ConfigError
from lmrec.eval import metrics as M
from lmrec.eval.results import EvalResult
from lmrec.eval.topk import Scorer, count_true, mask_items, top_k
from lmrec.progress import progress

# Score matrices are processed in chunks of users so that one chunk stays near this many bytes.
CHUNK_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class Sampled:
    """Sampled evaluation: rank the held-out items against ``n`` sampled negatives (labelled mode)."""

    n: int = 100
    distribution: Literal["uniform", "popularity"] = "uniform"
    seed: int = 0

    @property
    def label(self) -> str:
        return f"sampled-{self.n}-{self.distribution}"


# While a hyperparameter search runs, nothing in the process may evaluate on test: the search must choose on
# validation alone. A process-wide count (not a context variable): parallel trials run in other threads.
_test_locks: list[str] = []
_test_lock_guard = threading.Lock()


@contextmanager
def lock_test_part(reason: str) -> Iterator[None]:
    """Within this block, building an ``Evaluator`` on the test part raises ``ConfigError`` naming ``reason``."""
    with _test_lock_guard:
        _test_locks.append(reason)
    try:
        yield
    finally:
        with _test_lock_guard:
            _test_locks.remove(reason)


class Evaluator:
    """Evaluates any ``Recommender`` on one part of a ``Split``.

    For the ``test`` part the user's input history is train + valid (+ cold-user context); for
    ``valid`` it is train (+ context). History items are masked. A held-out item the user already had
    in the history (a repeat purchase) is masked too and counts as a miss, as in RecBole.
    Metrics: recall, hit, precision, ndcg, mrr, map at each k; auc; novelty and average popularity;
    intra-list diversity when ``item_vectors`` are given; coverage (aggregate).
    """

    def __init__(self, split: Split, part: str = "test", ks: tuple[int, ...] = (10, 20), batch_size: int = 2048,
                 sampled: Sampled | None = None, item_vectors: np.ndarray | None = None,
                 check_leakage: bool = True, users: np.ndarray | None = None):
        if part not in ("valid", "test"):
            raise ConfigError(f"evaluate on 'valid' or 'test', not {part!r}")
        if part == "test" and _test_locks:
            raise ConfigError(f"the test part is locked while {_test_locks[0]}: a search chooses on validation "
                              "only, and test is evaluated once, for the chosen model")
        if not ks or min(ks) < 1:
            raise ConfigError(f"ks must be positive cut-offs, got {ks}")
        if check_leakage:
            split.assert_no_leakage()
        self.split, self.part, self.ks = split, part, tuple(sorted(ks))
        self.batch_size, self.sampled, self.item_vectors = batch_size, sampled, item_vectors
        target_events = getattr(split, part)
        if target_events.label is not None:  # CTR data: only positives are items to retrieve
            target_events = target_events.select(target_events.label == 1)
        if users is not None:  # a subset of the part's users (e.g. a cheaper validation during training)
            target_events = target_events.select(np.isin(target_events.user, users))
        if len(target_events) == 0:
            raise ConfigError(f"the {part} part of split {split.name!r} has no held-out events to evaluate")
        history_parts = [split.train] + ([split.valid] if part == "test" else [])
        if split.context is not None:
            history_parts.append(split.context)
        history = Interactions.concat(history_parts)
        if history.label is not None:
            history = history.select(history.label == 1)
        self.history = history
        self.users = target_events.user_ids()
        self.targets = target_events.to_csr("binary")[self.users].tocsr()  # [U, n_items]
        self.queries = Queries.from_interactions(history, self.users)
        train_pos = split.train if split.train.label is None else split.train.select(split.train.label == 1)
        self.item_popularity = np.bincount(train_pos.item, minlength=split.n_items).astype(np.float64)
        self.n_train_users = len(train_pos.user_ids())
        self.allowed_fit_keys = {events_key(split.train)}
        if part == "test":
            self.allowed_fit_keys.add(events_key(Interactions.concat([split.train, split.valid])))

    def allow_fit_on(self, subset: Interactions) -> None:
        """Accept models fitted on ``subset`` of the split's training events (e.g. a share of its users).

        Refused unless every event of ``subset`` is a training event: the guard against fitting on
        held-out data stays intact."""
        if not is_subset(subset, self.split.train):
            raise ConfigError("allow_fit_on: the subset holds events that are not in the split's training data")
        self.allowed_fit_keys.add(events_key(subset))

    def evaluate(self, model: Scorer, name: str | None = None, allow_fit_data: bool = False) -> EvalResult:
        """Score every evaluated user in memory-bounded chunks and compute per-user metrics."""
        name = str(name or getattr(model, "name", type(model).__name__))
        fit_key = getattr(model, "fit_key_", None)
        if fit_key is not None and fit_key not in self.allowed_fit_keys and not allow_fit_data:
            raise ConfigError(
                f"model {name!r} was fitted on data other than this split's training data; scoring it on "
                f"the {self.part} part could reward memorised answers (pass allow_fit_data=True if intended)"
            )
        started = time.perf_counter()
        n_items = self.split.n_items
        kmax = max(self.ks)
        chunk = max(1, min(self.batch_size, CHUNK_BYTES // (4 * n_items)))
        hits, tops, aucs, n_rel = [], [], [], []
        for start in progress(range(0, len(self.users), chunk), desc=f"evaluate {name}",
                              total=-(-len(self.users) // chunk)):
            q = self.queries.slice(start, start + chunk)
            tgt = self.targets[start:start + chunk]
            scores = torch.as_tensor(np.asarray(model.score(q), dtype=np.float32))
            if scores.shape != (len(q), n_items):
                raise ConfigError(f"model {name!r} returned scores of shape {tuple(scores.shape)}, "
                                  f"expected {(len(q), n_items)}")
            mask_items(scores, q.history)
            if self.sampled is None:
                top = top_k(scores, min(kmax, n_items)).numpy()
                aucs.append(_auc(scores, tgt, n_items - q.history.getnnz(axis=1)))
            else:
                top = self._sampled_top(scores, tgt, start, kmax)
            hits.append(_hits(top, tgt))
            tops.append(top)
            n_rel.append(np.asarray(tgt.sum(1)).ravel())
        hit = np.concatenate(hits)
        top_items = np.concatenate(tops)
        rel = np.concatenate(n_rel).astype(np.int64)
        per_user = self._metrics(hit, rel, top_items)
        if self.sampled is None:
            per_user["auc"] = np.concatenate(aucs)
        aggregate = {f"coverage@{k}": M.coverage_at_k(np.where(top_items >= 0, top_items, 0), n_items, k)
                     for k in self.ks if self.sampled is None}
        return EvalResult(name, self.part, self.sampled.label if self.sampled else "full", self.users,
                          per_user, aggregate, self._user_info(), seconds=time.perf_counter() - started)

    def _metrics(self, hit: np.ndarray, rel: np.ndarray, top: np.ndarray) -> dict[str, np.ndarray]:
        suffix = f"/{self.sampled.label}" if self.sampled else ""
        out: dict[str, np.ndarray] = {}
        for k in self.ks:
            kk = min(k, hit.shape[1])
            out[f"recall@{k}{suffix}"] = M.recall_at_k(hit, rel, kk)
            out[f"hit@{k}{suffix}"] = M.hit_rate_at_k(hit, kk)
            out[f"precision@{k}{suffix}"] = M.precision_at_k(hit, kk) * kk / k
            out[f"ndcg@{k}{suffix}"] = M.ndcg_at_k(hit, rel, kk)
            out[f"mrr@{k}{suffix}"] = M.mrr_at_k(hit, kk)
            out[f"map@{k}{suffix}"] = M.map_at_k(hit, rel, kk)
        if not self.sampled:
            k = self.ks[0]
            out[f"novelty@{k}"] = M.novelty_at_k(top, self.item_popularity, self.n_train_users, k)
            out[f"avg_popularity@{k}"] = M.average_popularity_at_k(top, self.item_popularity, k)
            if self.item_vectors is not None and k >= 2:
                out[f"diversity@{k}"] = M.intra_list_diversity_at_k(top, self.item_vectors, k)
        return out

    def _sampled_top(self, scores: torch.Tensor, tgt: sp.csr_matrix, start: int, kmax: int) -> np.ndarray:
        """Top items among (held-out items + n sampled negatives); other slots are -1."""
        assert self.sampled is not None
        rng = np.random.default_rng([self.sampled.seed, start])
        n_items = scores.shape[1]
        p = None
        if self.sampled.distribution == "popularity":
            p = (self.item_popularity + 1.0) / (self.item_popularity + 1.0).sum()
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for r in range(scores.shape[0]):
            pos = tgt.indices[tgt.indptr[r]:tgt.indptr[r + 1]]
            allowed = torch.isfinite(scores[r]).numpy()
            allowed[pos] = False
            cand = np.flatnonzero(allowed)
            w = None if p is None else p[cand] / p[cand].sum()
            neg = rng.choice(cand, size=min(self.sampled.n, len(cand)), replace=False, p=w)
            keep[r, torch.as_tensor(np.concatenate([pos, neg]), dtype=torch.long)] = True
        masked = torch.where(keep, scores, torch.tensor(-torch.inf))
        top = top_k(masked, min(kmax, n_items))
        ids = top.numpy().copy()
        ids[~torch.isfinite(masked.gather(1, top)).numpy()] = -1
        return ids

    def _user_info(self) -> dict[str, np.ndarray]:
        hist_len = np.asarray(self.queries.history.sum(1)).ravel()
        train_items = np.zeros(self.split.n_items, dtype=bool)
        train_items[self.split.train.item] = True
        cold = np.array([not train_items[self.targets.indices[self.targets.indptr[r]:self.targets.indptr[r + 1]]].all()
                         for r in range(len(self.users))])
        pop = np.array([self.item_popularity[self.targets.indices[self.targets.indptr[r]:self.targets.indptr[r + 1]]].mean()
                        for r in range(len(self.users))])
        return {"history_length": hist_len, "cold_target": cold, "target_popularity": pop}


def _auc(scores: torch.Tensor, tgt: sp.csr_matrix, n_candidates: np.ndarray) -> np.ndarray:
    """Full-catalogue AUC per user; masked (history) items are not candidates, ties count half.

    ``n_candidates[u]`` is the number of unmasked items of row ``u``.
    """
    coo = tgt.tocoo()
    rows = torch.as_tensor(coo.row, dtype=torch.long)
    pos_scores = scores[rows, torch.as_tensor(coo.col, dtype=torch.long)]
    reachable = torch.isfinite(pos_scores)
    rows, pos_scores = rows[reachable], pos_scores[reachable]
    if len(rows) == scores.shape[0] and bool((rows == torch.arange(len(rows))).all()):
        row_scores = scores  # one reachable held-out item per user (leave-one-out): no copy needed
    else:
        row_scores = scores[rows]
    above = count_true(row_scores > pos_scores[:, None])
    at_least = count_true(row_scores >= pos_scores[:, None])
    ranks = above + 0.5 * (at_least - above - 1)
    per_user: list[np.ndarray] = [np.zeros(0)] * scores.shape[0]
    r_np = rows.numpy()
    order = np.argsort(r_np, kind="stable")
    bounds = np.searchsorted(r_np[order], np.arange(scores.shape[0] + 1))
    for u in range(scores.shape[0]):
        if bounds[u + 1] > bounds[u]:
            per_user[u] = ranks[order[bounds[u]:bounds[u + 1]]]
    return M.auc_from_ranks(per_user, n_candidates)




def _hits(top: np.ndarray, tgt: sp.csr_matrix) -> np.ndarray:
    """bool ``[B, K]``: whether each recommended item (``-1`` = empty slot) is a held-out item of its row."""
    n = tgt.shape[1]
    coo = tgt.tocoo()
    target_keys = coo.row.astype(np.int64) * n + coo.col
    top_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n + top
    return np.isin(top_keys, target_keys) & (top >= 0)
