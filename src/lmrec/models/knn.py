"""Neighbourhood collaborative filtering: ItemKNN and UserKNN (cosine / Pearson, shrinkage, top-k)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.models.base import Recommender


def top_k_per_row(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties broken by column order)."""
    sim = sim.tocsr()
    sim.eliminate_zeros()
    rows, cols, vals = [], [], []
    for r in range(sim.shape[0]):
        start, end = sim.indptr[r], sim.indptr[r + 1]
        if end == start:
            continue
        v = sim.data[start:end]
        keep = np.argsort(-v, kind="stable")[:k]
        rows.append(np.full(len(keep), r))
        cols.append(sim.indices[start:end][keep])
        vals.append(v[keep])
    if not rows:
        return sp.csr_matrix(sim.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=sim.shape, dtype=np.float32)


def shrunk_cosine(x: sp.csr_matrix, shrink: float) -> sp.csr_matrix:
    """Row-by-row cosine similarity of ``x`` ``[n, d]`` with shrinkage: dot / (|a||b| + shrink), no self."""
    x = x.astype(np.float32).tocsr()
    dots = (x @ x.T).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    dots = dots.tocoo()
    denom = norms[dots.row] * norms[dots.col] + shrink
    vals = np.divide(dots.data, denom, out=np.zeros_like(dots.data), where=denom > 0)
    vals[dots.row == dots.col] = 0.0
    return sp.csr_matrix((vals, (dots.row, dots.col)), shape=dots.shape)


class ItemKNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(100, ge=1, description="neighbours kept per item")
    shrink: float = Field(10.0, ge=0)


class ItemKNN(Recommender):
    """Item-item cosine similarity with shrinkage; score(u, j) = sum over history items i of sim(i, j)."""

    name = "itemknn"
    Config = ItemKNNConfig

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        x = train.to_csr("binary")
        sim = shrunk_cosine(x.T.tocsr(), self.config.shrink)
        self.similarity_ = top_k_per_row(sim, self.config.k).T.tocsr()  # column j: neighbours of item j

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        return np.asarray((queries.history @ self.similarity_).todense(), dtype=np.float32)

    def history_terms(self, queries: Queries, item: int) -> tuple[np.ndarray, np.ndarray]:
        distinct = queries.history[0].indices  # the score is sum over these of sim(j, item)
        return distinct, np.asarray(self.similarity_[distinct, item].todense(), dtype=np.float32).ravel()

    def _state(self) -> dict[str, sp.csr_matrix]:
        return {"similarity_": self.similarity_}


class UserKNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(50, ge=1, description="neighbours used per user")
    shrink: float = Field(10.0, ge=0)
    similarity: Literal["cosine", "pearson"] = "cosine"


class UserKNN(Recommender):
    """User-user similarity between the query's history and every training user; the top-k neighbours'
    histories, weighted by similarity, give the scores. Works for users unseen in training too."""

    name = "userknn"
    Config = UserKNNConfig

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        self.user_items_ = train.to_csr("binary").astype(np.float32)

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        q = queries.history.astype(np.float32).tocsr()
        r = self.user_items_
        dots = (q @ r.T).toarray().astype(np.float32)  # [B, n_users]; float32 halves the memory
        n = r.shape[1]
        q_cnt = np.asarray(q.sum(1)).ravel()[:, None]
        r_cnt = np.asarray(r.sum(1)).ravel()[None, :]
        if self.config.similarity == "pearson":
            # binary vectors: cov = dot - |a||b|/n ; var = |a| - |a|^2/n
            cov = dots - q_cnt * r_cnt / n
            denom = np.sqrt(np.maximum(q_cnt - q_cnt**2 / n, 0)) * np.sqrt(np.maximum(r_cnt - r_cnt**2 / n, 0))
        else:
            cov = dots
            denom = np.sqrt(q_cnt) * np.sqrt(r_cnt)
        sim = cov / (denom + self.config.shrink)
        # a query user never counts as their own neighbour
        own = queries.users[queries.users < r.shape[0]]
        rows = np.flatnonzero(queries.users < r.shape[0])
        sim[rows, own] = 0.0
        k = min(self.config.k, sim.shape[1])
        if k < sim.shape[1]:
            cut = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            weights = np.zeros_like(sim)
            np.put_along_axis(weights, cut, np.take_along_axis(sim, cut, 1), 1)
        else:
            weights = sim
        weights = np.maximum(weights, 0.0)  # negative (Pearson) neighbours would push items down, not up
        return np.asarray(r.T.dot(weights.T).T, dtype=np.float32)

    def _state(self) -> dict[str, sp.csr_matrix]:
        return {"user_items_": self.user_items_}
