"""CTR examples from a labelled split: each row with the user's liked items before it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.data.split import Split
from lmrec.errors import ConfigError


@dataclass
class CTRExamples:
    users: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n] candidate item
    labels: np.ndarray  # float32 [n], 1 = like
    histories: list[np.ndarray]  # per row: liked items strictly before the row's time, oldest first
    n_users: int  # size of the split's user id map
    ranks: np.ndarray | None = None  # int64 [n]: the candidate's rank in a retriever's list (0 = best), if any

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> CTRExamples:
        return CTRExamples(self.users[rows], self.items[rows], self.labels[rows], [self.histories[r] for r in rows],
                           self.n_users, None if self.ranks is None else self.ranks[rows])

    def sample(self, n: int | None, seed: int = 0) -> CTRExamples:
        """``n`` random rows (all when ``n`` is None or at least the size), keeping both labels present."""
        if n is None or n >= len(self):
            return self
        if n < 2:
            raise ConfigError(f"a CTR training sample needs at least 2 rows, got {n}")
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(self.labels == 1), np.flatnonzero(self.labels == 0)
        if not len(pos) or not len(neg):
            return self.take(np.sort(rng.choice(len(self), n, replace=False)))
        # stratified, so a 64-row sample keeps the label balance of the whole set
        n_pos = min(max(1, round(n * len(pos) / len(self))), n - 1)
        rows = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])
        return self.take(np.sort(rows))


def ctr_examples(split: Split, part: str, max_history: int = 20) -> CTRExamples:
    """Rows of ``part`` with, for each, the user's most recent ``max_history`` liked items strictly
    before the row's time, over all parts (past labels are known when a later row is predicted)."""
    rows: Interactions = split.parts()[part] if part in split.parts() else None  # type: ignore[assignment]
    if rows is None:
        raise ConfigError(f"split {split.name!r} has no part {part!r}")
    if rows.label is None or rows.time is None:
        raise ConfigError(f"split {split.name!r} has no labels or no times: CTR needs labelled, timed events")
    everything = Interactions.concat([p for p in split.parts().values()])
    liked = everything.select(everything.label == 1).sorted()
    seqs = liked.sequences()
    assert liked.time is not None and rows.time is not None
    times = liked.time
    histories = []
    for u, t in zip(rows.user, rows.time):
        lo, hi = int(seqs.offsets[u]), int(seqs.offsets[u + 1])
        cut = lo + int(np.searchsorted(times[lo:hi], t, side="left"))  # strictly before t
        histories.append(liked.item[max(lo, cut - max_history):cut].copy())
    return CTRExamples(rows.user.copy(), rows.item.copy(), rows.label.astype(np.float32), histories, rows.n_users)
