"""``Interactions``: who interacted with what (and when, how much), as parallel integer arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.data.idmap import IdMap
from lmrec.errors import DataError

TimeUnit = Literal["s", "order"]


@dataclass(frozen=True)
class Sequences:
    """Per-user item sequences in ragged form: user ``u`` has ``items[offsets[u]:offsets[u+1]]``.

    Every user of the id map has an entry (possibly empty), in time order with ties kept in row order.
    """

    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [n_interactions]
    times: np.ndarray | None  # int64 [n_interactions] or None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for u in range(len(self)):
            yield self[u]

    @property
    def lengths(self) -> np.ndarray:
        """Sequence length per user, int64 [n_users]."""
        return np.diff(self.offsets)


class Interactions:
    """Interaction events as parallel arrays over one pair of id maps.

    Arrays (all length ``n``): ``user``, ``item`` (int64 indices into ``users`` / ``items``) and the
    optional ``time`` (int64; unix seconds when ``time_unit == "s"``, or the position in the user's
    chronological sequence when ``time_unit == "order"`` for datasets that only give an order),
    ``rating`` (float32, explicit feedback) and ``label`` (int8, 1 = positive / 0 = negative, CTR data).
    Row order is meaningful: among equal times, earlier rows come first.
    """

    def __init__(
        self,
        user: np.ndarray,
        item: np.ndarray,
        users: IdMap,
        items: IdMap,
        time: np.ndarray | None = None,
        rating: np.ndarray | None = None,
        label: np.ndarray | None = None,
        time_unit: TimeUnit | None = None,
    ):
        self.user = np.ascontiguousarray(user, dtype=np.int64)
        self.item = np.ascontiguousarray(item, dtype=np.int64)
        self.users = users
        self.items = items
        self.time = None if time is None else np.ascontiguousarray(time, dtype=np.int64)
        self.rating = None if rating is None else np.ascontiguousarray(rating, dtype=np.float32)
        self.label = None if label is None else np.ascontiguousarray(label, dtype=np.int8)
        if self.time is not None and time_unit is None:
            time_unit = "s"
        self.time_unit: TimeUnit | None = time_unit if self.time is not None else None
        self._validate()

    def _validate(self) -> None:
        n = len(self.user)
        for name in ("item", "time", "rating", "label"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"interaction column {name!r} has {len(arr)} values, expected {n}")
        if n:
            if self.user.min() < 0 or self.user.max() >= len(self.users):
                raise DataError("user indices fall outside the user id map")
            if self.item.min() < 0 or self.item.max() >= len(self.items):
                raise DataError("item indices fall outside the item id map")

    # --- size -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        """Size of the user id map (not only users present here)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Size of the item id map (the catalogue), not only items present here."""
        return len(self.items)

    def user_ids(self) -> np.ndarray:
        """Sorted distinct user indices that occur here."""
        return np.unique(self.user)

    def item_ids(self) -> np.ndarray:
        """Sorted distinct item indices that occur here."""
        return np.unique(self.item)

    def __repr__(self) -> str:
        extra = [c for c in ("time", "rating", "label") if getattr(self, c) is not None]
        return (
            f"Interactions(n={len(self)}, users={self.n_users}, items={self.n_items}, "
            f"columns={['user', 'item', *extra]})"
        )

    # --- derived views ------------------------------------------------------------------------------
    def select(self, rows: np.ndarray) -> Interactions:
        """Rows by boolean mask or index array, same id maps."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Interactions(
            self.user[rows], self.item[rows], self.users, self.items,
            time=pick(self.time), rating=pick(self.rating), label=pick(self.label), time_unit=self.time_unit,
        )

    def positives(self) -> Interactions:
        """The positive events: those labelled 1 in CTR data, all of them when there are no labels."""
        return self.select(self.label == 1) if self.label is not None else self

    def chronological_order(self) -> np.ndarray:
        """Row permutation sorting by user, then time, ties in row order (stable)."""
        if self.time is None:
            return np.argsort(self.user, kind="stable")
        return np.lexsort((np.arange(len(self)), self.time, self.user))

    def sorted(self) -> Interactions:
        """The same events ordered by user, then time (stable)."""
        return self.select(self.chronological_order())

    def sequences(self) -> Sequences:
        """Time-ordered item sequence of every user in the id map (ties keep row order)."""
        order = self.chronological_order()
        counts = np.bincount(self.user, minlength=self.n_users)
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        times = None if self.time is None else self.time[order]
        return Sequences(offsets=offsets, items=self.item[order], times=times)

    def to_csr(self, values: Literal["binary", "count", "rating"] = "binary") -> sp.csr_matrix:
        """Sparse user x item matrix ``[n_users, n_items]``.

        ``binary``: 1 where the user interacted at least once; ``count``: number of interactions;
        ``rating``: the rating (the last one by row order where a pair repeats).
        """
        shape = (self.n_users, self.n_items)
        if values == "rating":
            if self.rating is None:
                raise DataError("these interactions have no ratings; use values='binary' or 'count'")
            key = self.user * self.n_items + self.item
            _, last = np.unique(key[::-1], return_index=True)
            rows = len(self) - 1 - last
            return sp.csr_matrix((self.rating[rows], (self.user[rows], self.item[rows])), shape=shape)
        data = np.ones(len(self), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.user, self.item)), shape=shape)
        mat.sum_duplicates()
        if values == "binary":
            mat.data[:] = 1.0
        return mat

    def to_frame(self, raw_ids: bool = False) -> pd.DataFrame:
        """A DataFrame with columns user, item and the optional ones (raw ids if asked)."""
        cols: dict[str, np.ndarray] = {
            "user": self.users.raws(self.user) if raw_ids else self.user,
            "item": self.items.raws(self.item) if raw_ids else self.item,
        }
        for name in ("time", "rating", "label"):
            arr = getattr(self, name)
            if arr is not None:
                cols[name] = arr
        return pd.DataFrame(cols)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, users: IdMap, items: IdMap, time_unit: TimeUnit | None = None
    ) -> Interactions:
        """Inverse of ``to_frame(raw_ids=False)``."""
        get = lambda c: frame[c].to_numpy() if c in frame.columns else None  # noqa: E731
        return cls(
            frame["user"].to_numpy(), frame["item"].to_numpy(), users, items,
            time=get("time"), rating=get("rating"), label=get("label"), time_unit=time_unit,
        )

    @classmethod
    def concat(cls, parts: Sequence[Interactions]) -> Interactions:
        """Rows of several interaction sets over the same id maps, in the given order."""
        if not parts:
            raise ValueError("concat needs at least one part")
        first = parts[0]
        for p in parts[1:]:
            if p.users is not first.users and p.users != first.users:
                raise DataError("cannot concatenate interactions over different user id maps")
            if p.items is not first.items and p.items != first.items:
                raise DataError("cannot concatenate interactions over different item id maps")

        def cat_required(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        def cat(name: str) -> np.ndarray | None:
            arrs = [getattr(p, name) for p in parts]
            if all(a is None for a in arrs):
                return None
            if any(a is None for a in arrs):
                raise DataError(f"cannot concatenate: column {name!r} is missing from some parts")
            return np.concatenate(arrs)

        return cls(
            cat_required("user"), cat_required("item"), first.users, first.items,
            time=cat("time"), rating=cat("rating"), label=cat("label"), time_unit=first.time_unit,
        )

    def equals(self, other: Interactions) -> bool:
        """Exact equality of arrays, id maps and time unit."""
        same = lambda a, b: (a is None and b is None) or (  # noqa: E731
            a is not None and b is not None and np.array_equal(a, b)
        )
        return (
            self.users == other.users and self.items == other.items and self.time_unit == other.time_unit
            and all(same(getattr(self, c), getattr(other, c)) for c in ("user", "item", "time", "rating", "label"))
        )


def events_key(inter: Interactions) -> str:
    """Order-independent fingerprint of a set of events (user, item, time): which data a model was fitted on."""
    cols = [inter.user, inter.item] + ([inter.time] if inter.time is not None else [])
    order = np.lexsort(cols[::-1])
    h = hashlib.sha256()
    for c in cols:
        h.update(np.ascontiguousarray(c[order]).tobytes())
    h.update(f"{inter.n_users}x{inter.n_items}".encode())
    return h.hexdigest()
