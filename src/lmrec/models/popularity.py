"""Most popular items: the baseline every model must beat."""

from __future__ import annotations

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.models.base import Recommender


class Popularity(Recommender):
    """Score = number of training users who interacted with the item (same for everyone)."""

    name = "pop"

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        self.counts_ = np.asarray(train.to_csr("binary").sum(0), dtype=np.float32).ravel()

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.counts_, (len(queries), len(self.counts_))).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts_": self.counts_}
