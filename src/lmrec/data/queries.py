"""``Queries``: what a recommender sees about the users it scores (index, history row, sequence)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lmrec.data.interactions import Interactions
from lmrec.errors import ConfigError


@dataclass
class Queries:
    """A batch of users to score.

    ``users``: int64 ``[B]`` user indices; ``history``: binary CSR ``[B, n_items]`` of what each user
    interacted with (the input a model may use); ``sequences``: each user's history items in time order.
    Popularity, CF, MF and sequence models all take this one type.
    """

    users: np.ndarray
    history: sp.csr_matrix
    sequences: list[np.ndarray]
    times: list[np.ndarray] | None = None  # times of ``sequences`` (unit: ``time_unit``)
    time_unit: str | None = None

    def __len__(self) -> int:
        return len(self.users)

    def slice(self, start: int, stop: int) -> Queries:
        times = self.times[start:stop] if self.times is not None else None
        return Queries(self.users[start:stop], self.history[start:stop], self.sequences[start:stop], times,
                       self.time_unit)

    def take(self, rows: np.ndarray) -> Queries:
        """The queries at these positions (in this order)."""
        rows = np.asarray(rows, dtype=np.int64)
        times = [self.times[r] for r in rows] if self.times is not None else None
        return Queries(self.users[rows], self.history[rows], [self.sequences[r] for r in rows], times,
                       self.time_unit)

    def weights(self, half_life: float | None = None, unit: str = "interactions") -> sp.csr_matrix:
        """``[B, n_items]`` weights of each user's history items, for profile-style models.

        ``half_life=None``: 1 per history item. Otherwise an item's weight is ``0.5 ** (age / half_life)``,
        its age counted in interactions (0 = most recent) or, with ``unit="seconds"``, in seconds before
        the user's latest interaction: older interests fade, recent ones dominate (interest drift).
        A repeated item sums its weights.
        """
        if half_life is None:
            return self.history.astype(np.float32)
        if unit not in ("interactions", "seconds"):
            raise ConfigError(f"half-life unit must be 'interactions' or 'seconds', got {unit!r}")
        if unit == "seconds" and (self.times is None or self.time_unit != "s"):
            raise ConfigError("a half-life in seconds needs real timestamps; this dataset only has an order "
                              "(use half_life_unit='interactions')")
        rows, cols, vals = [], [], []
        for r, seq in enumerate(self.sequences):
            if unit == "seconds":
                t = self.times[r]  # type: ignore[index]
                age = (t.max() - t).astype(np.float64) if len(t) else np.zeros(0)
            else:
                age = np.arange(len(seq))[::-1].astype(np.float64)
            rows.append(np.full(len(seq), r))
            cols.append(seq)
            vals.append(0.5 ** (age / half_life))
        if not rows:
            return self.history.astype(np.float32)
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=self.history.shape, dtype=np.float32)

    @classmethod
    def one(cls, history: np.ndarray, n_items: int, user: int, times: np.ndarray | None = None,
            time_unit: str | None = None) -> Queries:
        """The query of one user whose history is ``history`` (item indices, oldest first; a repeated item
        counts once in the binary history)."""
        history = np.asarray(history, dtype=np.int64)
        seen = sp.csr_matrix((np.ones(len(history), dtype=np.float32),
                              (np.zeros(len(history), dtype=np.int64), history)), shape=(1, n_items))
        seen.data[:] = 1.0
        return cls(np.array([user]), seen, [history], None if times is None else [np.asarray(times)], time_unit)

    @classmethod
    def from_interactions(cls, history: Interactions, users: np.ndarray | None = None) -> Queries:
        """Queries for ``users`` (default: every user of the id map) with ``history`` as their input."""
        users = np.arange(history.n_users) if users is None else np.asarray(users, dtype=np.int64)
        csr = history.to_csr("binary")[users]
        seqs = history.sequences()
        times = None
        if seqs.times is not None:
            times = [seqs.times[seqs.offsets[int(u)]:seqs.offsets[int(u) + 1]] for u in users]
        return cls(users, csr.tocsr(), [seqs[int(u)] for u in users], times, history.time_unit)
