"""A reranker trained on which of a retriever's candidates the user picks next, not on like / dislike.

Why: a CTR model learns which *watched* items were liked, while a retriever's candidates are mostly items the
user never watched; ordering them by like-probability loses to the retriever's own order (measured in
docs/benchmarks.md). The reranking task is "which of these k candidates comes next", so ``RelevanceMLP`` is
trained on exactly that, from the retriever's own candidate lists; it needs no labels, so it reranks on any
dataset.

Training lists without leakage (``candidate_lists``): each user's last ``holdout`` training events are held
out and a fresh copy of the retriever (same class and config) is fitted on the remaining events. For each
held-out event the retriever, given the user's events before it, proposes its top ``k`` (those events
excluded); when the held-out item is among them the list is one training example whose answer is that
item. The retriever never saw the answers, so its ranks in these lists are as informative as on new users'
next items. At serving time ``Reranked`` takes the candidates from the retriever fitted on all training
events, as usual.

Features of a (history, candidate) pair: frozen language-model vectors of the history (mean) and of the
candidate, their product and cosine, the candidate's log popularity among the events the retriever was
fitted on, and the retriever's rank of the candidate (so the model learns what to add to the retriever's
order). Loss: softmax cross-entropy over each list (listwise); early stopping on the lists of a held-out
share of users (NDCG of the answer within its list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lmrec.ctr.data import CTRExamples
from lmrec.ctr.models import RowBatches, TensorBatch, _padded
from lmrec.ctr.rerank import top_candidates
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Model, load_module_state, module_state
from lmrec.nn.losses import ListwiseSoftmax
from lmrec.progress import logger
from lmrec.text.backbone import DEFAULT_ENCODER
from lmrec.text.encoder import load_encoder
from lmrec.text.texts import item_vectors
from lmrec.train import TrainConfig, Trainer, TrainResult


@dataclass
class CandidateLists:
    """Lists of ``size`` candidates each, stored row by row in ``examples`` (list ``j`` is rows
    ``j * size ... (j + 1) * size - 1``, in the retriever's order, ``examples.ranks`` 0 = its best);
    exactly one row per list has label 1: the item the user picked next."""

    examples: CTRExamples
    size: int

    @property
    def n_lists(self) -> int:
        return len(self.examples) // self.size

    def lists(self, which: np.ndarray) -> CandidateLists:
        rows = (np.asarray(which, dtype=np.int64)[:, None] * self.size + np.arange(self.size)).ravel()
        return CandidateLists(self.examples.take(rows), self.size)


@dataclass
class ListStats:
    """How the training lists came about: held-out events, lists kept (answer in the top k), k."""

    held_out: int
    lists: int
    k: int

    @property
    def hit_rate(self) -> float:
        return self.lists / max(self.held_out, 1)


def candidate_lists(make_retriever: Callable[[], Any], train: Interactions, items: ItemTable | None, k: int,
                    holdout: int = 3, max_history: int = 20, batch: int = 1024,
                    ) -> tuple[CandidateLists, np.ndarray, ListStats]:
    """Training lists for a relevance reranker (see the module docstring): ``(lists, counts, stats)`` where
    ``counts`` is each item's number of events the retriever copy was fitted on. ``make_retriever()``
    returns an unfitted retriever. Only positive events count when ``train`` is labelled."""
    if holdout < 1:
        raise ConfigError(f"holdout must be at least 1, got {holdout}")
    events = train.positives().sorted()
    seqs = events.sequences()  # events are sorted, so seqs.items == events.item
    position = np.arange(len(events)) - seqs.offsets[events.user]
    length = seqs.lengths[events.user]
    held = (position >= length - holdout) & (position >= 1)  # a held-out event always has a history
    if not held.any():
        raise ConfigError("no user has two or more training events: a relevance reranker needs each held-out "
                          "event to have a history before it")
    prefix = events.select(~held)
    retriever = make_retriever()
    retriever.fit(prefix, items)
    k = min(k, events.n_items)
    targets = np.flatnonzero(held)
    users, items_, labels, histories, ranks = [], [], [], [], []
    for start in range(0, len(targets), batch):
        rows = targets[start:start + batch]
        hist = [seqs.items[seqs.offsets[events.user[r]]:r] for r in rows]  # the user's events before the target
        csr = sp.csr_matrix((np.ones(sum(map(len, hist)), dtype=np.float32),
                             (np.repeat(np.arange(len(rows)), [len(h) for h in hist]), np.concatenate(hist))),
                            shape=(len(rows), events.n_items))
        csr.data[:] = 1.0  # a repeated item counts once, as in Queries.from_interactions
        scores = np.asarray(retriever.score(Queries(events.user[rows], csr, hist)), dtype=np.float32).copy()
        scores[csr.nonzero()] = -np.inf  # candidates never include the history
        top = top_candidates(scores, k)
        hit = top == events.item[rows][:, None]
        for j in np.flatnonzero(hit.any(1)):
            users.append(np.full(k, events.user[rows[j]]))
            items_.append(top[j])
            labels.append(hit[j].astype(np.float32))
            histories += [np.asarray(hist[j][-max_history:], dtype=np.int64)] * k
            ranks.append(np.arange(k))
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    examples = CTRExamples(cat(users, np.int64), cat(items_, np.int64), cat(labels, np.float32), histories,
                           events.n_users, ranks=cat(ranks, np.int64))
    counts = np.bincount(prefix.item, minlength=events.n_items)
    return CandidateLists(examples, k), counts, ListStats(len(targets), len(labels), k)


class RelevanceConfig(TrainConfig):
    encoder: str = DEFAULT_ENCODER
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(32, ge=1, description="candidate lists per step")
    epochs: int = Field(50, ge=1)
    patience: int = Field(5, ge=1)
    monitor: str = "list_ndcg"
    holdout: int = Field(3, ge=1, description="each user's last training events that become training lists")
    max_history: int = Field(20, ge=1, description="history items the features read, most recent")
    valid_share: float = Field(0.1, ge=0, lt=1, description="share of users whose lists decide early stopping")


class _RelevanceNet(nn.Module):
    def __init__(self, vectors: np.ndarray, counts: np.ndarray, hidden: int, dropout: float):
        super().__init__()
        padded = np.vstack([np.zeros((1, vectors.shape[1])), vectors])  # row 0 = history padding
        self.register_buffer("vectors", torch.as_tensor(padded, dtype=torch.float32), persistent=False)
        self.register_buffer("log_popularity", torch.zeros(len(counts)), persistent=False)
        self.set_popularity(counts)
        d = vectors.shape[1]
        self.mlp = nn.Sequential(nn.Linear(3 * d + 3, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def set_popularity(self, counts: np.ndarray) -> None:
        self.log_popularity.copy_(torch.as_tensor(np.log1p(counts), dtype=torch.float32))

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = t["history_mask"].unsqueeze(-1).float()
        hist = (self.vectors[t["history"]] * mask).sum(1) / mask.sum(1).clamp(min=1)
        cand = self.vectors[t["items"] + 1]
        scalars = torch.stack([F.cosine_similarity(hist, cand, dim=-1), self.log_popularity[t["items"]],
                               torch.log1p(t["ranks"].float())], -1)
        return self.mlp(torch.cat([hist, cand, hist * cand, scalars], -1)).squeeze(-1)


class RelevanceMLP(Model):
    """Reranks a retriever's top k by what users pick next (module docstring). ``fit(retriever, train,
    items, k)`` with the retriever already fitted on ``train``; ``predict(examples)`` returns scores for
    candidate rows that carry the retriever's ranks (``Reranked`` fills them)."""

    name: ClassVar[str] = "relevance-mlp"
    kind: ClassVar[str] = "reranker"
    Config: ClassVar[type[RelevanceConfig]] = RelevanceConfig

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net_: _RelevanceNet | None = None
        self.inputs_: dict[str, np.ndarray] = {}
        self.train_result_: TrainResult | None = None
        self.list_stats_: ListStats | None = None
        self.trainable_params_ = 0
        self.k_ = 0

    def fit(self, retriever: Any, train: Interactions, items: ItemTable, k: int = 100) -> RelevanceMLP:
        c = self.config
        if not hasattr(retriever, "config"):
            raise ConfigError(f"retriever {getattr(retriever, 'name', retriever)!r} has no config to make the "
                              "unfitted copy the training lists need")
        torch.manual_seed(c.seed)
        lists, counts, stats = candidate_lists(lambda: type(retriever)(**retriever.config.model_dump()), train, items,
                                               k, c.holdout, c.max_history)
        self.list_stats_, self.k_ = stats, lists.size
        logger.info("%s: %d training lists of %d candidates (the retriever's top %d held the next item for %.1f%% "
                    "of %d held-out events)", self.name, stats.lists, lists.size, lists.size, 100 * stats.hit_rate,
                    stats.held_out)
        if stats.lists < 2:
            raise ConfigError(f"only {stats.lists} of {stats.held_out} held-out events were in the retriever's "
                              f"top {lists.size}: too few training lists; raise k or holdout")
        fit_lists, check = self._split_users(lists)
        vectors, _ = item_vectors(items, load_encoder(c.encoder))
        self.inputs_ = {"vectors": vectors, "counts": counts}
        self.net_ = _RelevanceNet(vectors, counts, c.hidden, c.dropout)
        self.trainable_params_ = sum(p.numel() for p in self.net_.parameters() if p.requires_grad)
        data = RowBatches(fit_lists.n_lists, c.batch_size, c.seed, lambda which: self._batch(fit_lists.lists(which)))
        self.train_result_ = Trainer(c).fit(self.net_, ListwiseSoftmax(lists.size), data,
                                            (lambda: self.evaluate(check)) if check is not None else None)
        # at serving time the candidates come from the retriever fitted on all of train: its popularity
        self.inputs_["counts"] = np.bincount(train.positives().item, minlength=train.n_items)
        self.net_.set_popularity(self.inputs_["counts"])
        return self

    def _check_fitted(self) -> None:
        if self.net_ is None:
            raise ConfigError(f"reranker {self.name!r} is not fitted; call fit() first")

    def _meta(self) -> dict[str, Any]:
        return {"k_": self.k_}

    def _state(self) -> dict[str, Any]:
        assert self.net_ is not None
        return {**{f"inputs.{k}": v for k, v in self.inputs_.items()}, **module_state(self.net_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.inputs_ = {k[len("inputs."):]: v for k, v in state.items() if k.startswith("inputs.")}
        self.net_ = _RelevanceNet(self.inputs_["vectors"], self.inputs_["counts"], self.config.hidden,
                                  self.config.dropout)
        load_module_state(self.net_, state)
        self.net_.eval()

    def _split_users(self, lists: CandidateLists) -> tuple[CandidateLists, CandidateLists | None]:
        """Training lists and the held-out users' lists for early stopping (None when there are too few)."""
        owner = lists.examples.users[::lists.size]
        users = np.unique(owner)
        n_valid = int(round(self.config.valid_share * len(users)))
        if n_valid < 1 or n_valid >= len(users):
            return lists, None
        valid_users = np.random.default_rng(self.config.seed).choice(users, n_valid, replace=False)
        is_valid = np.isin(owner, valid_users)
        return lists.lists(np.flatnonzero(~is_valid)), lists.lists(np.flatnonzero(is_valid))

    def _batch(self, lists: CandidateLists) -> TensorBatch:
        ex = lists.examples
        return TensorBatch({**self._tensors(ex, np.arange(len(ex))), "labels": torch.as_tensor(ex.labels)})

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        if ex.ranks is None:
            raise ConfigError(f"{self.name} scores a retriever's candidates and needs their ranks "
                              "(use it through Reranked)")
        hist, mask = _padded(ex.histories, rows)
        return {"items": torch.as_tensor(ex.items[rows]), "ranks": torch.as_tensor(ex.ranks[rows]), "history": hist,
                "history_mask": mask}

    @torch.no_grad()
    def predict(self, ex: CTRExamples, batch_size: int = 4096) -> np.ndarray:
        """Scores of candidate rows (higher = more likely picked next); only their order matters."""
        self._check_fitted()
        assert self.net_ is not None
        if ex.ranks is not None and len(ex.ranks) and ex.ranks.max() >= self.k_:
            raise ConfigError(f"{self.name} was trained on top-{self.k_} lists and cannot rank a candidate at "
                              f"retriever rank {int(ex.ranks.max())}; rerank at most {self.k_} candidates")
        net = self.net_.eval()
        device = next(net.parameters()).device
        out = [net({k: v.to(device) for k, v in self._tensors(ex, np.arange(s, min(s + batch_size, len(ex)))).items()})
               for s in range(0, len(ex), batch_size)]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, dtype=np.float32)

    def evaluate(self, lists: CandidateLists) -> dict[str, float]:
        """NDCG and reciprocal rank of each list's answer within its list (mean over lists)."""
        scores = self.predict(lists.examples).reshape(-1, lists.size)
        answer = lists.examples.labels.reshape(-1, lists.size).argmax(1)
        mine = scores[np.arange(len(scores)), answer][:, None]
        rank = (scores > mine).sum(1) + 0.5 * ((scores == mine).sum(1) - 1)  # ties count half
        return {"list_ndcg": float(np.mean(1.0 / np.log2(rank + 2))), "list_mrr": float(np.mean(1.0 / (rank + 1)))}
