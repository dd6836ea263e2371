"""LightGCN (He et al., SIGIR 2020): embeddings smoothed over the user-item graph, trained with BPR.

The graph's nodes are users and items, plus, with ``attributes``, one node per distinct value of the named
item fields (brand, category, genre: the seeds' knowledge-graph fusion made concrete). An item is linked to
its values, so items that share a brand or a category pull each other's embeddings together, and an item
with no interactions at all still gets an embedding through its values (a cold-start item).

Each layer multiplies by the symmetrically normalised adjacency ``D^-1/2 A D^-1/2``; a node's final
embedding is the mean of its layer-0..K embeddings; score(u, i) = <e_u, e_i>. A user absent from training
is represented by the mean embedding of their history items.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, mean_rows
from lmrec.progress import progress


class LightGCNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = Field(64, ge=4, description="embedding size")
    layers: int = Field(3, ge=0, description="propagation layers (0: plain matrix factorisation with BPR)")
    lr: float = Field(1e-3, gt=0)
    l2: float = Field(1e-4, ge=0, description="L2 on the layer-0 embeddings of each batch (the paper's lambda)")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(2048, ge=1)
    attributes: list[str] = Field(default_factory=list, description="item fields whose values become graph nodes")
    separator: str = Field(r"[,;|]", description="regex splitting a field into several values")
    seed: int = 0


class LightGCN(Recommender):
    name = "lightgcn"
    Config = LightGCNConfig

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        c = self.config
        values = _attribute_links(items, c.attributes, c.separator, train.n_items)
        n_u, n_i, n_a = train.n_users, train.n_items, values.shape[1]
        seen = train.to_csr("binary")
        graph = _torch_csr(_normalised_adjacency(seen, values))
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        emb = torch.nn.Parameter(torch.randn(n_u + n_i + n_a, c.dim) * 0.1)
        opt = torch.optim.Adam([emb], lr=c.lr)
        users, pos = train.user, train.item
        # Negatives come from the items someone interacted with in training: an item absent from the log
        # (new to the catalogue, a cold-start item) is not one users passed over, and sampling it as a
        # negative would push it, and through it its attribute nodes, below every known item.
        pool = np.flatnonzero(np.bincount(pos, minlength=n_i) > 0)
        for _ in progress(range(c.epochs), desc=f"train {self.name}", total=c.epochs, unit="epoch"):
            perm = rng.permutation(len(users))
            for start in range(0, len(perm), c.batch_size):
                idx = perm[start:start + c.batch_size]
                u, i = users[idx], pos[idx]
                j = _negatives(seen, u, pool, rng)
                final = _propagate(graph, emb, c.layers)
                ut, it, jt = torch.as_tensor(u), torch.as_tensor(i + n_u), torch.as_tensor(j + n_u)
                diff = (final[ut] * final[it]).sum(1) - (final[ut] * final[jt]).sum(1)
                reg = (emb[ut].pow(2).sum() + emb[it].pow(2).sum() + emb[jt].pow(2).sum()) / (2 * len(idx))
                loss = -torch.nn.functional.logsigmoid(diff).mean() + c.l2 * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            final = _propagate(graph, emb, c.layers).numpy()
        self.user_emb_ = np.ascontiguousarray(final[:n_u], dtype=np.float32)
        self.item_emb_ = np.ascontiguousarray(final[n_u:n_u + n_i], dtype=np.float32)
        self.trained_users_ = np.bincount(users, minlength=n_u) > 0
        self.n_attribute_nodes_ = n_a

    def _user_vectors(self, queries: Queries) -> np.ndarray:
        """Trained users: their embedding; others: the mean embedding of their history items (zero if none)."""
        users = queries.users
        known = (users < len(self.trained_users_)) & self.trained_users_[np.minimum(users, len(self.trained_users_) - 1)]
        out = np.zeros((len(users), self.item_emb_.shape[1]), dtype=np.float32)
        out[known] = self.user_emb_[users[known]]
        if (~known).any():
            out[~known] = mean_rows(queries.history[np.flatnonzero(~known)], self.item_emb_)
        return out

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        return self._user_vectors(queries) @ self.item_emb_.T

    def retrieval_items(self) -> np.ndarray:
        return self.item_emb_

    def retrieval_queries(self, queries: Queries) -> np.ndarray:
        return self._user_vectors(queries)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_emb_": self.user_emb_, "item_emb_": self.item_emb_, "trained_users_": self.trained_users_}

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "n_attribute_nodes_": int(self.n_attribute_nodes_)}


def _attribute_links(items: ItemTable | None, fields: list[str], separator: str, n_items: int) -> sp.csr_matrix:
    """``[n_items, n_values]`` 0/1: which values of the named fields each item has (no columns without fields)."""
    if not fields:
        return sp.csr_matrix((n_items, 0), dtype=np.float32)
    if items is None:
        raise ConfigError("lightgcn: attributes need the dataset's item table")
    missing = [f for f in fields if f not in items]
    if missing:
        raise ConfigError(f"lightgcn: item field(s) {missing} do not exist; the fields are {', '.join(items.fields)}")
    try:
        split = re.compile(separator)
    except re.error as exc:
        raise ConfigError(f"lightgcn: separator {separator!r} is not a regular expression ({exc})") from None
    index: dict[str, int] = {}
    rows, cols = [], []
    for f in fields:
        for item, text in enumerate(items[f]):
            for value in {v.strip().lower() for v in split.split(str(text)) if v.strip()}:
                rows.append(item)
                cols.append(index.setdefault(f"{f}={value}", len(index)))
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_items, len(index)))


def _normalised_adjacency(ui: sp.csr_matrix, values: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` over users, items and attribute values (user-item and item-value edges)."""
    n_u, n_i = ui.shape
    n_a = values.shape[1]
    upper = sp.hstack([sp.csr_matrix((n_u, n_u)), ui, sp.csr_matrix((n_u, n_a))])
    middle = sp.hstack([ui.T, sp.csr_matrix((n_i, n_i)), values])
    lower = sp.hstack([sp.csr_matrix((n_a, n_u)), values.T, sp.csr_matrix((n_a, n_a))])
    adj = sp.vstack([upper, middle, lower]).tocsr().astype(np.float32)
    degree = np.asarray(adj.sum(1)).ravel()
    inv = np.zeros_like(degree)
    inv[degree > 0] = degree[degree > 0] ** -0.5
    d = sp.diags(inv)
    return (d @ adj @ d).tocsr()


def _torch_csr(adj: sp.csr_matrix) -> torch.Tensor:
    adj = adj.astype(np.float32)
    adj.sort_indices()
    with warnings.catch_warnings():  # torch calls its CSR support beta; sparse.mm with a dense matrix is tested here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(torch.from_numpy(adj.indptr.astype(np.int64)),
                                       torch.from_numpy(adj.indices.astype(np.int64)), torch.from_numpy(adj.data),
                                       adj.shape, check_invariants=True)


class _SymmetricProduct(torch.autograd.Function):
    """``graph @ x`` for a symmetric sparse ``graph``, whose gradient is ``graph @ grad`` again. Autograd
    through ``torch.sparse.mm`` would transpose the graph on every backward pass; this keeps the one CSR
    (propagation forward and backward 3x faster on this CPU at Amazon Beauty's size)."""

    @staticmethod
    def forward(ctx: Any, graph: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        return torch.sparse.mm(graph, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.graph, grad)


def _propagate(graph: torch.Tensor, emb: torch.Tensor, layers: int) -> torch.Tensor:
    """Mean of the layer-0..K embeddings (``graph``: the symmetric normalised adjacency as a torch CSR)."""
    total, current = emb, emb
    for _ in range(layers):
        current = _SymmetricProduct.apply(graph, current)
        total = total + current
    return total / (layers + 1)


def _negatives(seen: sp.csr_matrix, users: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item of ``pool`` per user that the user has not interacted with (uniform; a few redraws)."""
    out = pool[rng.integers(0, len(pool), len(users))]
    for _ in range(5):
        clash = np.asarray(seen[users, out]).ravel() > 0
        if not clash.any():
            break
        out[clash] = pool[rng.integers(0, len(pool), int(clash.sum()))]
    return out
