"""``Queries``: what a recommender sees about the users it scores (index, history row, sequence)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lmrec.data.interactions import Interactions


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

    def __len__(self) -> int:
        return len(self.users)

    def slice(self, start: int, stop: int) -> Queries:
        return Queries(self.users[start:stop], self.history[start:stop], self.sequences[start:stop])

    @classmethod
    def from_interactions(cls, history: Interactions, users: np.ndarray | None = None) -> Queries:
        """Queries for ``users`` (default: every user of the id map) with ``history`` as their input."""
        users = np.arange(history.n_users) if users is None else np.asarray(users, dtype=np.int64)
        csr = history.to_csr("binary")[users]
        seqs = history.sequences()
        return cls(users, csr.tocsr(), [seqs[int(u)] for u in users])
