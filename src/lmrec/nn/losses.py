"""Training objectives as objects: ``loss(model, batch) -> scalar``.

Sequence losses (below) and the pointwise / listwise / two-tower ones at the end of this module.

A sequence model for these losses provides ``sequence_states(batch) -> [B, L, d]``,
``item_table(ids=None) -> [n_items or len(ids), d]`` and ``similarity(states [N, d], items [M, d]) ->
[N, M]`` logits and ``pair_similarity(states [N, d], items [N, d]) -> [N]``. Every loss trains all positions of every sequence in the batch at once; positions
without a target (padding) are left out.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lmrec.data.batching import SequenceBatch
from lmrec.errors import ConfigError


class SequenceScorer(Protocol):
    def sequence_states(self, batch: SequenceBatch) -> torch.Tensor: ...
    def item_table(self, ids: torch.Tensor | None = None) -> torch.Tensor: ...
    def similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor: ...
    def pair_similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor: ...


def history_mask(batch: SequenceBatch, column_of: torch.Tensor) -> torch.Tensor:
    """bool ``[N, C]`` over the positions that have a target (as ``_targeted``): the columns of the items
    already in that position's prefix (itself included), except the position's own target (a repeat stays
    learnable). ``column_of`` ``[n_items]`` maps an item to its logit column, -1 for items without one.

    Evaluation never ranks a user's history items, so a softmax that leaves them out trains the model on
    the choice it is tested on: among the items the user has not had yet."""
    has = batch.targets >= 0
    length = batch.tokens.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=batch.tokens.device).tril()  # [t, s]: s <= t
    prefix = (batch.tokens[:, None, :] * causal)[has]  # [N, L] item + 1 of each position's prefix, 0 = none
    columns = torch.where(prefix > 0, column_of[(prefix - 1).clamp(min=0)], -1)
    n_columns = int(column_of.max()) + 1
    mask = torch.zeros(len(prefix), n_columns + 1, dtype=torch.bool, device=prefix.device)
    mask.scatter_(1, torch.where(columns >= 0, columns, n_columns), True)  # -1 -> a spare last column
    own = column_of[batch.targets[has]]
    mask[torch.arange(len(own), device=own.device), own] = False
    return mask[:, :n_columns]


def _targeted(model: SequenceScorer, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """States ``[N, d]`` and target items ``[N]`` at the positions that have a target."""
    states = model.sequence_states(batch)
    has = batch.targets >= 0
    return states[has], batch.targets[has]


class FullSoftmaxCE:
    """Cross-entropy over the whole catalogue at every position (SASRec with CE; exact, no sampling).

    ``candidates`` (bool ``[n_items]``, default all) limits the softmax to the items known at training
    time. Items that never occur in training would otherwise only ever be pushed down, and a text-based
    model would learn to bury exactly the new items it exists to recommend. ``mask_history`` leaves each
    position's prefix items out of its softmax (see ``history_mask``).
    """

    name = "ce"

    def __init__(self, candidates: np.ndarray | None = None, mask_history: bool = False):
        self.keep = self.position = None
        self.mask_history = mask_history
        if candidates is not None and not np.all(candidates):
            candidates = np.asarray(candidates, dtype=bool)
            # the softmax runs over the candidates' columns only (a target's column is its position among
            # them): same loss as masking the others with -inf, without two more passes over the logits
            self.keep = torch.as_tensor(np.flatnonzero(candidates))
            position = np.full(len(candidates), -1, dtype=np.int64)
            position[candidates] = np.arange(int(candidates.sum()))
            self.position = torch.as_tensor(position)

    def _logits(self, model: SequenceScorer, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits over the candidate columns and ``column_of`` ``[n_items]`` (an item's column, -1 for none)."""
        if self.keep is None or self.position is None:
            logits = model.similarity(states, model.item_table()).float()
            return logits, torch.arange(logits.shape[1], device=states.device)
        logits = model.similarity(states, model.item_table(self.keep.to(states.device))).float()
        return logits, self.position.to(states.device)

    def __call__(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states, targets = _targeted(model, batch)
        logits, column_of = self._logits(model, states)
        if self.mask_history:
            logits = logits.masked_fill(history_mask(batch, column_of), float("-inf"))
        return F.cross_entropy(logits, column_of[targets])  # targets are training items

    @property
    def example(self) -> Any:
        """The loss of a one-row batch in a form ``torch.func.vmap`` can batch (private training's per-user
        gradients): every position is scored and the ones without a target weigh 0, instead of selecting
        positions (a data-dependent shape). None with ``mask_history``, whose mask selects positions."""
        return None if self.mask_history else self._example

    def _example(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states = model.sequence_states(batch)[0]  # [L, d]
        targets = batch.targets[0]
        has = targets >= 0
        logits, column_of = self._logits(model, states)
        column = torch.where(has, column_of[targets.clamp(min=0)], 0)  # padding: any valid column, weight 0
        per_position = F.cross_entropy(logits, column, reduction="none")
        return (per_position * has).sum() / has.sum().clamp(min=1)


class _Sampler:
    """Negative items drawn from ``probs`` (default uniform over the items seen in training)."""

    def __init__(self, n_items: int, probs: np.ndarray | None = None, negatives: int = 1):
        self.negatives = negatives
        if probs is None:
            probs = np.ones(n_items)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n_items,) or probs.min() < 0 or probs.sum() <= 0:
            raise ConfigError("negative-sampling probabilities must be non-negative, one per item, not all zero")
        self.probs = torch.as_tensor(probs / probs.sum(), dtype=torch.float32)

    def draw(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        n = int(np.prod(shape))
        return torch.multinomial(self.probs, n, replacement=True).view(shape).to(device)


class SampledSoftmax(_Sampler):
    """Softmax over the target and ``negatives`` items shared by the batch, with the logQ correction
    (subtract ``log q(item)``) that makes popularity-proportional sampling an unbiased estimate of the
    full softmax. A negative that equals the row's target is masked out."""

    name = "sampled_softmax"

    def __init__(self, n_items: int, negatives: int = 256, probs: np.ndarray | None = None):
        super().__init__(n_items, probs, negatives)

    def __call__(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states, targets = _targeted(model, batch)
        logits = self._logits(model, states, targets)
        return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=states.device))

    def _logits(self, model: SequenceScorer, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[N, 1 + negatives]``: each position's target first, then the negatives drawn for this call."""
        neg = self.draw((self.negatives,), states.device)
        log_q = torch.log(self.probs.to(states.device))
        pos_logit = (model.pair_similarity(states, model.item_table(targets)) - log_q[targets])[:, None]
        neg_logit = model.similarity(states, model.item_table(neg)) - log_q[neg][None, :]
        neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
        return torch.cat([pos_logit, neg_logit], dim=1).float()

    @property
    def example(self) -> Any:
        """The loss of a one-row batch in a form ``torch.func.vmap`` can batch (as ``FullSoftmaxCE.example``);
        under ``vmap(randomness="different")`` every example draws its own negatives."""
        return self._example

    def _example(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states = model.sequence_states(batch)[0]  # [L, d]
        targets = batch.targets[0]
        has = targets >= 0
        target = torch.where(has, targets, torch.argmax(self.probs).to(targets.device))  # padding: any drawable item
        per_position = F.cross_entropy(self._logits(model, states, target), torch.zeros_like(target), reduction="none")
        return (per_position * has).sum() / has.sum().clamp(min=1)


class BPRLoss(_Sampler):
    """``-log sigmoid(s(target) - s(negative))`` with one sampled negative per position."""

    name = "bpr"

    def __call__(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states, targets = _targeted(model, batch)
        neg = self.draw((len(targets),), states.device)
        pos = model.pair_similarity(states, model.item_table(targets))
        negs = model.pair_similarity(states, model.item_table(neg))
        return -F.logsigmoid((pos - negs).float()).mean()


class BCELoss(_Sampler):
    """Binary cross-entropy: the target is 1, ``negatives`` sampled items per position are 0 (SASRec paper)."""

    name = "bce"

    def __init__(self, n_items: int, negatives: int = 1, probs: np.ndarray | None = None):
        super().__init__(n_items, probs, negatives)

    def __call__(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states, targets = _targeted(model, batch)
        neg = self.draw((len(targets), self.negatives), states.device)
        pos = model.pair_similarity(states, model.item_table(targets))
        negs = model.pair_similarity(states.repeat_interleave(self.negatives, 0),
                                     model.item_table(neg.reshape(-1))).view(neg.shape)
        pos, negs = pos.float(), negs.float()
        return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(negs, torch.zeros_like(negs)))


class InBatchSoftmax:
    """Sequence-item contrastive loss (the UniSRec pretraining objective): each position's target
    competes with the other distinct targets of the batch. Cheap on large multi-domain catalogues,
    since only the batch's items are adapted; a batch mixing domains gives cross-domain negatives.

    ``seq_weight > 0`` adds the sequence-sequence contrastive term: two views of every sequence (a
    random ``item_drop`` share of its items removed, plus dropout) must recognise each other among the
    batch's other sequences (InfoNCE on the last states, at the model's similarity).
    ``mask_history`` leaves each position's prefix items out of its candidates (see ``history_mask``).
    """

    name = "inbatch"
    mixes_examples = True  # a user's loss depends on the batch's other users (private training refuses it)

    def __init__(self, seq_weight: float = 0.0, item_drop: float = 0.2, mask_history: bool = False):
        if seq_weight < 0 or not 0 <= item_drop < 1:
            raise ConfigError(f"seq_weight must be >= 0 and item_drop in [0, 1), got {seq_weight}, {item_drop}")
        self.seq_weight, self.item_drop, self.mask_history = seq_weight, item_drop, mask_history

    def __call__(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        states, targets = _targeted(model, batch)
        candidates, label = torch.unique(targets, return_inverse=True)
        logits = model.similarity(states, model.item_table(candidates)).float()
        if self.mask_history:
            # items of the batch that are no candidate have no column
            n_items = max(int(batch.tokens.max()), int(targets.max()) + 1)  # tokens hold item + 1
            column_of = torch.full((n_items,), -1, device=targets.device)
            column_of[candidates] = torch.arange(len(candidates), device=targets.device)
            logits = logits.masked_fill(history_mask(batch, column_of), float("-inf"))
        loss = F.cross_entropy(logits, label)
        if self.seq_weight > 0:
            loss = loss + self.seq_weight * self._seq_seq(model, batch)
        return loss

    def _seq_seq(self, model: SequenceScorer, batch: SequenceBatch) -> torch.Tensor:
        views = [model.sequence_states(self._drop_items(batch))[:, -1] for _ in range(2)]
        logits = model.similarity(views[0], views[1]).float()
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    def _drop_items(self, batch: SequenceBatch) -> SequenceBatch:
        # Dropped items become padding; the most recent item is always kept so no row is empty.
        drop = torch.rand(batch.tokens.shape, device=batch.tokens.device) < self.item_drop
        drop[:, -1] = False
        return SequenceBatch(batch.tokens.masked_fill(drop, 0), batch.targets, batch.users)


LOSSES = ("ce", "sampled_softmax", "bpr", "bce", "inbatch")


def make_loss(name: str, n_items: int, negatives: int, probs: np.ndarray | None = None, mask_history: bool = False):
    """The loss object for a config name. ``probs``: the negative-sampling distribution over items; its
    zeros mark items no loss may use as a negative (full softmax included). ``mask_history``: softmax losses
    leave each position's prefix items out (``history_mask``)."""
    if mask_history and name not in ("ce", "inbatch"):
        raise ConfigError(f"mask_history works with the softmax losses ce and inbatch, not {name!r}")
    if name == "ce":
        return FullSoftmaxCE(None if probs is None else probs > 0, mask_history)
    if name == "sampled_softmax":
        return SampledSoftmax(n_items, negatives, probs)
    if name == "bpr":
        return BPRLoss(n_items, probs)
    if name == "bce":
        return BCELoss(n_items, negatives, probs)
    if name == "inbatch":
        return InBatchSoftmax(mask_history=mask_history)
    raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


# --- pointwise, listwise and two-tower objectives -------------------------------------------------------------
class BinaryCrossEntropy:
    """Like / dislike: ``model(batch.tensors) -> [B]`` logits against ``batch.tensors["labels"]`` (0 / 1)."""

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch.tensors).float(), batch.tensors["labels"])


class ListwiseSoftmax:
    """Lists of ``size`` candidates stored row after row, exactly one labelled 1 per list (the item picked):
    softmax cross-entropy over each list's ``model(batch.tensors)`` logits."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        logits = model(batch.tensors).float().view(-1, self.size)
        return F.cross_entropy(logits, batch.tensors["labels"].view(-1, self.size).argmax(1))


class InBatchInfoNCE:
    """Two towers: each query's own item against every other item row of the batch; rows holding the same
    item as the query's target are not counted as negatives (duplicates in a batch are common for popular
    items). ``model`` has ``query_tower`` / ``item_tower`` (token ids, mask -> ``[N, d]``) and ``log_scale``;
    ``batch`` has ``query_ids``, ``query_mask``, ``item_ids``, ``item_mask``, ``items`` (item index of every
    item row: the ``n_targets`` targets first) and ``n_targets``.

    In-batch negatives are drawn in proportion to popularity, so the plain loss learns to push popular
    items down (on MovieLens this ranks below Popularity). With ``log_q`` (log of each item's share of the
    training targets) the logQ correction of Yi et al. (RecSys 2019) subtracts it from every column."""

    def __init__(self, log_q: torch.Tensor | None = None):
        self.log_q = log_q

    def __call__(self, model: Any, batch: Any) -> torch.Tensor:
        q = model.query_tower(batch.query_ids, batch.query_mask)
        i = model.item_tower(batch.item_ids, batch.item_mask)
        logits = (q @ i.T) * model.log_scale.exp()
        if self.log_q is not None:
            logits = logits - self.log_q.to(logits.device)[batch.items][None, :]
        n = batch.n_targets
        same = batch.items[None, :] == batch.items[:n, None]
        same[torch.arange(n), torch.arange(n)] = False
        logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits.float(), torch.arange(n, device=logits.device))
