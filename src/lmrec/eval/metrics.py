"""Pure per-user metric functions over top-K hit matrices.

Inputs share one shape convention:
- ``hits``: bool ``[n_users, K]``; ``hits[u, r]`` is True when the item ranked ``r`` (0-based) for
  user ``u`` is one of the user's relevant (held-out) items.
- ``n_relevant``: int ``[n_users]``, how many relevant items each user has (>= 1).
Every function returns float64 ``[n_users]``: one value per user; the mean is taken by the caller.

Recall@K vs HitRate@K: Recall@K is the *share* of a user's relevant items found in the top K
(``found / n_relevant``); HitRate@K is 1 if *at least one* relevant item is in the top K, else 0.
They are equal when every user has exactly one relevant item (leave-one-out) and differ otherwise:
a user with 4 relevant items of which 1 is in the top K has Recall 0.25 and HitRate 1.
"""

from __future__ import annotations

import numpy as np


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"k={k} must be in 1..{hits.shape[1]} (the length of the top-K lists)")
    return hits[:, :k].astype(np.float64)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of the user's relevant items that appear in the top K."""
    return _check(hits, k).sum(1) / np.maximum(n_relevant, 1)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if any relevant item appears in the top K, else 0."""
    return _check(hits, k).max(1)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Relevant items in the top K divided by K."""
    return _check(hits, k).sum(1) / k


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top K (gain 1 / log2(rank + 2)) over the ideal DCG of min(n_relevant, K) hits."""
    h = _check(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discounts
    ideal = np.cumsum(discounts)[np.minimum(np.maximum(n_relevant, 1), k) - 1]
    return dcg / ideal


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / (rank of the first relevant item), ranks from 1; 0 if none is in the top K."""
    h = _check(hits, k)
    first = h.argmax(1)
    return np.where(h.max(1) > 0, 1.0 / (first + 1), 0.0)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision at K: sum of precision@r at each hit rank r, over min(n_relevant, K)."""
    h = _check(hits, k)
    precision_at_r = np.cumsum(h, 1) / np.arange(1, k + 1)
    return (precision_at_r * h).sum(1) / np.minimum(np.maximum(n_relevant, 1), k)


def auc_from_ranks(pos_ranks: list[np.ndarray], n_candidates: np.ndarray) -> np.ndarray:
    """Full-catalogue AUC per user from the 0-based ranks of its relevant items among all candidates.

    ``pos_ranks[u]`` are the ranks (ties may be fractional) of user ``u``'s relevant items among its
    ``n_candidates[u]`` unmasked items (relevant ones included). AUC = share of (relevant, other) pairs
    ordered correctly; a user with no other candidate gets NaN.
    """
    out = np.full(len(pos_ranks), np.nan)
    for u, ranks in enumerate(pos_ranks):
        n_pos = len(ranks)
        n_neg = n_candidates[u] - n_pos
        if n_pos == 0 or n_neg <= 0:
            continue
        # others ranked above a relevant item = its rank minus the relevant items ranked above it
        above = np.sort(ranks) - np.arange(n_pos)
        out[u] = 1.0 - above.mean() / n_neg
    return out


def coverage_at_k(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue recommended to at least one user in the top K (an aggregate, not per user)."""
    return float(len(np.unique(top_items[:, :k])) / n_items)


def novelty_at_k(top_items: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Mean self-information -log2(p(i)) of the top K, p(i) = share of training users who had item i."""
    p = np.clip(item_popularity / max(n_users, 1), 1.0 / max(n_users, 1), 1.0)
    return (-np.log2(p))[top_items[:, :k]].mean(1)


def average_popularity_at_k(top_items: np.ndarray, item_popularity: np.ndarray, k: int) -> np.ndarray:
    """Mean training interaction count of the top K."""
    return item_popularity[top_items[:, :k]].astype(np.float64).mean(1)


def intra_list_diversity_at_k(top_items: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """Mean pairwise cosine distance (1 - cosine) between the top K items, from item vectors (e.g. genres)."""
    if k < 2:
        raise ValueError("intra-list diversity needs k >= 2")
    v = item_vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    lists = v[top_items[:, :k]]  # [U, k, d]
    sims = np.einsum("ukd,ujd->ukj", lists, lists)
    off_diagonal = sims.sum((1, 2)) - np.einsum("ukk->u", sims)
    return 1.0 - off_diagonal / (k * (k - 1))
