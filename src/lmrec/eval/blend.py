"""The validation metric of many weighted sums of the same score sources, fast and exact: the fusion's weight
search tries hundreds of weight vectors, and ranking every item for every one of them was most of its time
(40 minutes for nine models on Amazon Beauty).

Each user's shortlist is the union of every source's top ``depth`` items (history masked). For an item off the
shortlist every source's score is at most that source's ``depth``-th best, so its weighted sum is at most the
same sum over those thresholds (float sums of non-negative terms are monotone in each term). Where the k-th
best weighted sum on the shortlist lies strictly above that bound, the top k over the shortlist is the top k
over the whole catalogue, ties included (both break ties by the lower item index). The other users, few in
practice, are ranked over the whole catalogue; their full score rows are kept once scored. The metric equals
``Evaluator.evaluate`` of the same weighted sum to the last bit (tested), for the top-k metrics
(recall, hit, precision, ndcg, mrr, map at k <= depth); others go through ``Evaluator.evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lmrec.data.queries import Queries
from lmrec.eval import metrics as M
from lmrec.eval.ranking import CHUNK_BYTES, Evaluator, _hits
from lmrec.eval.results import _nanmean
from lmrec.eval.topk import mask_items, top_k
from lmrec.models.fusion import weighted_sum
from lmrec.progress import progress

Source = Callable[[Queries], np.ndarray]
_PER_USER: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "recall": M.recall_at_k,
    "hit": lambda hit, rel, k: M.hit_rate_at_k(hit, k),
    "precision": lambda hit, rel, k: M.precision_at_k(hit, k),
    "ndcg": M.ndcg_at_k,
    "mrr": lambda hit, rel, k: M.mrr_at_k(hit, k),
    "map": M.map_at_k,
}


def shortlist_cutoff(metric: str, depth: int, n_items: int) -> int | None:
    """The k of a top-k metric this module computes exactly (``ndcg@10`` -> 10), else None."""
    family, _, k = metric.partition("@")
    if family not in _PER_USER or not k.isdigit():
        return None
    cutoff = int(k)
    return cutoff if 1 <= cutoff <= min(depth, n_items) else None


class ShortlistBlend:
    """``value(weights)``: ``metric`` of ``weighted_sum(weights, [source(q) for source in sources])`` over the
    evaluator's users, as ``evaluator.evaluate`` would compute it (module docstring)."""

    def __init__(self, evaluator: Evaluator, sources: Sequence[Source], metric: str, depth: int = 200):
        n_items = evaluator.split.n_items
        k = shortlist_cutoff(metric, depth, n_items)
        if k is None or evaluator.sampled is not None:
            raise ValueError(f"a shortlist computes full-ranking top-k metrics at k <= depth ({depth}), not {metric!r}")
        self.sources, self.k = list(sources), k
        self.per_user = _PER_USER[metric.partition("@")[0]]
        self.queries, self.targets = evaluator.queries, evaluator.targets
        self.n_relevant = np.asarray(self.targets.sum(1)).ravel().astype(np.int64)
        self.depth = min(depth, n_items)
        self.full_rows: dict[int, np.ndarray] = {}  # user row -> [n_sources, n_items], masked
        self.ranked_in_full = 0  # users the last ``value`` had to rank over the catalogue
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # start, items, scores, bounds
        chunk = max(1, min(evaluator.batch_size, CHUNK_BYTES // (4 * n_items)))
        for start in progress(range(0, len(self.queries), chunk), desc="shortlists",
                              total=-(-len(self.queries) // chunk)):
            self.chunks.append((start, *self._shortlist(self.queries.slice(start, start + chunk))))

    def _masked(self, queries: Queries) -> list[torch.Tensor]:
        out = []
        for source in self.sources:
            scores = torch.as_tensor(np.array(source(queries), dtype=np.float32))
            mask_items(scores, queries.history)
            out.append(scores)
        return out

    def _shortlist(self, queries: Queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's shortlist (item ids ascending, padded with ``n_items``), every source's score on it
        (``-inf`` in the padding) and every source's ``depth``-th best score (the bound off the shortlist)."""
        scores = self._masked(queries)
        n_items = scores[0].shape[1]
        tops = [torch.topk(s, self.depth, dim=1) for s in scores]
        ids = torch.sort(torch.cat([t.indices for t in tops], dim=1), dim=1).values
        repeated = torch.zeros_like(ids, dtype=torch.bool)
        repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
        ids = torch.sort(torch.where(repeated, n_items, ids), dim=1).values
        width = int((ids < n_items).sum(1).max())
        ids = ids[:, :width]
        padding = ids == n_items
        safe = torch.where(padding, 0, ids)
        on_list = np.stack([torch.where(padding, -torch.inf, s.gather(1, safe)).numpy() for s in scores])
        bounds = np.stack([t.values[:, -1].numpy() for t in tops])
        return ids.numpy(), on_list, bounds

    def value(self, weights: np.ndarray) -> float:
        return _nanmean(self.per_user_values(weights))

    def per_user_values(self, weights: np.ndarray) -> np.ndarray:
        """The metric of each user (NaN for a user without a relevant item), in the evaluator's user order."""
        self.ranked_in_full = 0
        tops = [self._top(start, ids, on_list, bounds, weights) for start, ids, on_list, bounds in self.chunks]
        hit = _hits(np.concatenate(tops), self.targets)
        return self.per_user(hit, self.n_relevant, self.k)

    def _top(self, start: int, ids: np.ndarray, on_list: np.ndarray, bounds: np.ndarray,
             weights: np.ndarray) -> np.ndarray:
        """Top-k item ids of one chunk's rows: from the shortlist where the bound certifies it, else in full."""
        summed = torch.as_tensor(weighted_sum(weights, on_list))
        bound = torch.as_tensor(weighted_sum(weights, bounds[:, :, None])[:, 0])
        at = top_k(summed, self.k)
        top = np.take_along_axis(ids, at.numpy(), axis=1)
        unsure = np.flatnonzero(~(summed.gather(1, at[:, -1:])[:, 0] > bound).numpy())
        self.ranked_in_full += len(unsure)
        if len(unsure):
            rows = self._full_rows(start + unsure)
            top[unsure] = top_k(torch.as_tensor(weighted_sum(weights, rows)), self.k).numpy()
        return top

    def _full_rows(self, rows: np.ndarray) -> np.ndarray:
        """``[n_sources, len(rows), n_items]`` masked scores of these users, scored once and kept."""
        new = [int(r) for r in rows if int(r) not in self.full_rows]
        if new:
            queries = self.queries.take(np.asarray(new))
            scored = np.stack([s.numpy() for s in self._masked(queries)], axis=1)
            self.full_rows.update(zip(new, scored))
        return np.stack([self.full_rows[int(r)] for r in rows], axis=1)
