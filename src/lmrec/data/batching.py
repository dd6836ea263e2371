"""The only place numpy becomes torch tensors: sequence batches for training and for scoring.

Convention for sequence models: item index ``i`` is token ``i + 1`` and token ``0`` is padding.
Sequences are **left**-padded, so the last position of every row is the most recent item and the state
there is the user's representation. Targets are item indices (``-1`` = no target at that position).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import torch

from lmrec.data.interactions import Sequences
from lmrec.errors import ConfigError

PAD = 0
NO_TARGET = -1
BUCKET_BATCHES = 32  # batches per length-sorted pool (see SequenceWindows.epoch)


@dataclass
class SequenceBatch:
    """``tokens`` int64 ``[B, L]`` (item + 1, 0 = padding, left-padded); ``targets`` int64 ``[B, L]``: the
    item that follows each position (``-1`` where there is none); ``users`` int64 ``[B]``."""

    tokens: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})

    @property
    def valid(self) -> torch.Tensor:
        """bool ``[B, L]``: positions holding an item."""
        return self.tokens != PAD

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def take_rows(batch: Any, index: int | slice | torch.Tensor) -> Any:
    """Rows of a batch dataclass whose fields are all tensors with the batch dimension first (one user's
    example for private training, one process's share in distributed training)."""
    if not is_dataclass(batch) or not all(isinstance(getattr(batch, f.name), torch.Tensor) for f in fields(batch)):
        raise ConfigError(f"{type(batch).__name__} is not a batch of tensors with one row per example")
    return type(batch)(**{f.name: getattr(batch, f.name)[index] for f in fields(batch)})


def _left_pad(rows: Sequence[np.ndarray], length: int, fill: int) -> np.ndarray:
    out = np.full((len(rows), length), fill, dtype=np.int64)
    for r, row in enumerate(rows):
        if len(row):
            out[r, length - len(row):] = row
    return out


def query_batch(sequences: Sequence[np.ndarray], max_len: int, users: np.ndarray | None = None) -> SequenceBatch:
    """A scoring batch: each user's most recent ``max_len`` items, left-padded to the longest row.
    Empty histories give all-padding rows (the model decides what to do with them)."""
    recent = [np.asarray(s[-max_len:], dtype=np.int64) + 1 for s in sequences]
    length = max(1, max((len(s) for s in recent), default=1))
    tokens = _left_pad(recent, length, PAD)
    users = np.arange(len(recent)) if users is None else np.asarray(users, dtype=np.int64)
    return SequenceBatch(torch.from_numpy(tokens), torch.full(tokens.shape, NO_TARGET, dtype=torch.long),
                         torch.from_numpy(users))


class SequenceWindows:
    """Next-item training examples from time-ordered user sequences, all positions at once.

    Each example is a window of up to ``max_len + 1`` consecutive items: the first ``max_len`` are the
    input and every position's target is the item after it, so one forward pass trains on every prefix
    of the window. ``windows="all"`` cuts long sequences into consecutive windows (ending at the last
    item, then ``max_len`` earlier, ...) so every event is a target once; ``"last"`` keeps only the most
    recent window per user (the SASRec paper's choice). Users with fewer than two items give no example.

    ``epoch(e)`` yields shuffled batches in an order fixed by ``(seed, e)``, which makes an interrupted
    and resumed training run see exactly the batches of an uninterrupted one.
    """

    def __init__(self, sequences: Sequences, max_len: int, batch_size: int, windows: str = "all", seed: int = 0):
        if max_len < 1 or batch_size < 1:
            raise ConfigError(f"max_len and batch_size must be positive, got {max_len} and {batch_size}")
        if windows not in ("all", "last"):
            raise ConfigError(f"windows must be 'all' or 'last', got {windows!r}")
        self.max_len, self.batch_size, self.seed = max_len, batch_size, seed
        starts, stops, users = [], [], []
        offsets = sequences.offsets
        for u in range(len(sequences)):
            lo, hi = int(offsets[u]), int(offsets[u + 1])
            end = hi
            while end - lo >= 2:
                start = max(lo, end - max_len - 1)
                starts.append(start)
                stops.append(end)
                users.append(u)
                if windows == "last":
                    break
                end = start + 1  # the next window's last item is this window's first input
        self._items = sequences.items
        self.starts, self.stops = np.asarray(starts, np.int64), np.asarray(stops, np.int64)
        self.users = np.asarray(users, np.int64)
        if len(self.users) == 0:
            raise ConfigError("no user has two or more interactions: nothing to train a sequence model on")

    def __len__(self) -> int:
        """Number of examples (windows)."""
        return len(self.users)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.batch_size)

    @property
    def n_targets(self) -> int:
        return int((self.stops - self.starts - 1).sum())

    def epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        """Shuffled batches of windows of similar length: windows are shuffled, cut into pools of
        ``BUCKET_BATCHES`` batches, sorted by length inside each pool, batched, and the batches shuffled.
        A batch is padded to its longest window, so mixing a 50-item window with 3-item ones would
        spend most of the compute on padding (on Amazon data, ~90% of positions)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.users))
        lengths = self.stops - self.starts
        pool = self.batch_size * BUCKET_BATCHES
        batches = []
        for p in range(0, len(order), pool):
            chunk = order[p:p + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[b:b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield self._batch(batches[i])

    def _batch(self, rows: np.ndarray) -> SequenceBatch:
        if len(rows) == 0:  # a user-sampled step nobody was drawn into (UserSampledWindows)
            empty = torch.zeros((0, 1), dtype=torch.long)
            return SequenceBatch(empty, empty.clone(), torch.zeros(0, dtype=torch.long))
        windows = [self._items[self.starts[r]:self.stops[r]] for r in rows]
        length = max(len(w) for w in windows) - 1
        tokens = _left_pad([w[:-1] + 1 for w in windows], length, PAD)
        targets = _left_pad([w[1:] for w in windows], length, NO_TARGET)
        return SequenceBatch(torch.from_numpy(tokens), torch.from_numpy(targets), torch.from_numpy(self.users[rows]))


@dataclass(frozen=True)
class UserSampling:
    """What a user-sampled batch source tells the privacy accountant: how many users, each one's chance per step."""

    n_users: int
    sample_rate: float


class UserSampledWindows:
    """User-level Poisson sampling for differentially private training (``lmrec.train.private``): at each
    step every user is in the batch independently with probability ``sample_rate = batch_size / users``,
    with one of their windows drawn uniformly, so one step touches at most one example of any user and
    the accountant can bound what training reveals about a user's whole history. Batch sizes vary (a
    step may even be empty); an epoch is ``ceil(users / batch_size)`` steps, one expected pass over users.
    Draws are fixed by ``(seed, epoch)``, like ``SequenceWindows``."""

    def __init__(self, windows: SequenceWindows, batch_size: int, seed: int = 0):
        self.windows, self.seed = windows, seed
        # SequenceWindows lists each user's windows together: first row and count per user
        users, self._first, self._count = np.unique(windows.users, return_index=True, return_counts=True)
        self.sampling = UserSampling(len(users), min(1.0, batch_size / len(users)))

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def n_targets(self) -> int:
        return self.windows.n_targets

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(1 / self.sampling.sample_rate)

    def epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        rng = np.random.default_rng([self.seed, epoch, 11])
        for _ in range(self.steps_per_epoch):
            chosen = np.flatnonzero(rng.random(self.sampling.n_users) < self.sampling.sample_rate)
            rows = self._first[chosen] + (rng.random(len(chosen)) * self._count[chosen]).astype(np.int64)
            yield self.windows._batch(rows)


class MaskedWindows:
    """Cloze examples for bidirectional models (BERT4Rec) from the same windows as ``SequenceWindows``: the
    whole window is the input, each item is replaced by ``mask_token`` with probability ``mask_prob`` (a row
    with none masked gets its last item masked: the case scoring asks about), and the targets are the
    masked items (``-1`` elsewhere). Which items are masked is fixed by ``(seed, epoch)``, like the order."""

    def __init__(self, windows: SequenceWindows, mask_token: int, mask_prob: float, seed: int = 0):
        if not 0 < mask_prob < 1:
            raise ConfigError(f"mask_prob must be between 0 and 1, got {mask_prob}")
        self.windows, self.mask_token, self.mask_prob, self.seed = windows, mask_token, mask_prob, seed
        self.sampling = getattr(windows, "sampling", None)  # user-level sampling passes through (private training)

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def steps_per_epoch(self) -> int:
        return self.windows.steps_per_epoch

    def epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        rng = np.random.default_rng([self.seed, epoch, 7])
        for batch in self.windows.epoch(epoch):
            # the window's items: the inputs and, after them, the last position's target
            full = torch.cat([batch.tokens, batch.targets[:, -1:] + 1], dim=1)
            present = full != PAD
            masked = torch.from_numpy(rng.random(tuple(full.shape)) < self.mask_prob) & present
            masked[:, -1] |= ~masked.any(1)
            targets = torch.where(masked, full - 1, torch.full_like(full, NO_TARGET))
            yield SequenceBatch(torch.where(masked, torch.full_like(full, self.mask_token), full), targets, batch.users)


class MultiDomainWindows:
    """Domain-balanced batches over several ``SequenceWindows`` (one per domain, item indices already
    in one shared index space), so a large domain does not drown a small one.

    ``mix="mixed"``: every batch holds an equal share of windows from each domain (in-batch negatives
    come from all domains). ``mix="single"``: every batch comes from one domain, the domains taking
    equal numbers of batches (in-batch negatives are the same domain's items: harder ones).
    An epoch has as many batches as the domains' windows fill; a small domain's windows are cycled
    (reshuffled each pass), a large domain's are sampled without repeats within the epoch. Order is
    fixed by ``(seed, epoch)`` like ``SequenceWindows``.
    """

    def __init__(self, domains: Sequence[SequenceWindows], batch_size: int, seed: int = 0, mix: str = "mixed"):
        if not domains:
            raise ConfigError("no domain to train on")
        if mix not in ("mixed", "single"):
            raise ConfigError(f"mix must be 'mixed' or 'single', got {mix!r}")
        if mix == "mixed" and batch_size < len(domains):
            raise ConfigError(f"batch_size {batch_size} is smaller than the number of domains ({len(domains)})")
        self.domains, self.batch_size, self.seed, self.mix = list(domains), batch_size, seed, mix
        base, extra = divmod(batch_size, len(domains))
        self.shares = [base + (d < extra) for d in range(len(domains))]

    def __len__(self) -> int:
        return sum(len(d) for d in self.domains)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self) // self.batch_size)

    @property
    def n_targets(self) -> int:
        return sum(d.n_targets for d in self.domains)

    def epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        if self.mix == "single":
            yield from self._single_domain_epoch(epoch)
            return
        rng = np.random.default_rng([self.seed, epoch, len(self.domains)])
        steps = self.steps_per_epoch
        per_domain = []
        for d, share in zip(self.domains, self.shares):
            per_domain.append(_draw_rows(d, steps * share, share, rng).reshape(steps, share))
        for step in rng.permutation(steps):
            parts = [d._batch(rows[step]) for d, rows in zip(self.domains, per_domain)]
            yield _concat_batches(parts)


    def _single_domain_epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        rng = np.random.default_rng([self.seed, epoch, len(self.domains), 1])
        steps = self.steps_per_epoch
        turns = np.resize(np.arange(len(self.domains)), steps)  # equal batches per domain (+-1)
        per_domain = {}
        for d_no, d in enumerate(self.domains):
            rows = _draw_rows(d, int((turns == d_no).sum()) * self.batch_size, self.batch_size, rng)
            per_domain[d_no] = iter(rows.reshape(-1, self.batch_size))
        for d_no in rng.permutation(turns):
            yield self.domains[d_no]._batch(next(per_domain[d_no]))


def _draw_rows(d: SequenceWindows, need: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``need`` window indices of ``d`` (reshuffled passes when it has fewer), sorted by length inside
    pools of ``BUCKET_BATCHES`` batches of size ``batch`` (see ``SequenceWindows.epoch``)."""
    passes = -(-need // len(d))
    rows = np.concatenate([rng.permutation(len(d)) for _ in range(passes)])[:need]
    lengths = d.stops - d.starts
    pool = batch * BUCKET_BATCHES
    for p in range(0, need, pool):
        chunk = rows[p:p + pool]
        rows[p:p + pool] = chunk[np.argsort(lengths[chunk], kind="stable")]
    return rows


def _concat_batches(parts: Sequence[SequenceBatch]) -> SequenceBatch:
    """Stack batches of different lengths (left padding keeps the most recent item last)."""
    length = max(p.tokens.shape[1] for p in parts)

    def pad(x: torch.Tensor, fill: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (length - x.shape[1], 0), value=fill)

    return SequenceBatch(torch.cat([pad(p.tokens, PAD) for p in parts]),
                         torch.cat([pad(p.targets, NO_TARGET) for p in parts]),
                         torch.cat([p.users for p in parts]))
