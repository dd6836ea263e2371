"""``Dataset``: what a reader returns: interactions, item (and user) text, and any predefined splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.split import Split
from lmrec.errors import ConfigError, DataError


@dataclass
class Dataset:
    """A loaded dataset. ``interactions`` holds every event (all splits together, in time order per user).

    ``predefined`` maps a split name (e.g. ``u1`` for MovieLens-100K, ``unisrec``) to a function that
    builds it; the first entry is the dataset's default predefined split.
    """

    name: str
    interactions: Interactions
    items: ItemTable
    users: UserTable | None = None
    predefined: dict[str, Callable[[], Split]] = field(default_factory=dict)
    source_files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.items.ids != self.interactions.items:
            raise ValueError("the item table must use the interactions' item id map")
        if self.users is not None and self.users.ids != self.interactions.users:
            raise ValueError("the user table must use the interactions' user id map")

    def predefined_split(self, which: str | None = None) -> Split:
        """Build a predefined split by name (default: the dataset's first one)."""
        if not self.predefined:
            raise ConfigError(f"split: dataset {self.name!r} has no predefined split; use loo, temporal, random, ...")
        key = which or next(iter(self.predefined))
        if key not in self.predefined:
            raise ConfigError(
                f"dataset {self.name!r} has no predefined split {key!r}; it has: {', '.join(self.predefined)}"
            )
        return self.predefined[key]()

    def restrict_items(self, keep: np.ndarray, name: str) -> Dataset:
        """A view on the items where ``keep`` (bool ``[n_items]``) is True, with users and items renumbered.

        Events on other items disappear from the interactions and from every predefined split; users
        left with no event are dropped.
        """
        inter = self.interactions.select(keep[self.interactions.item])
        users_kept = inter.user_ids()
        items_kept = np.flatnonzero(keep)
        user_map = _renumber(self.interactions.n_users, users_kept)
        item_map = _renumber(self.interactions.n_items, items_kept)
        new_users = self.interactions.users.subset(users_kept)
        new_items = self.interactions.items.subset(items_kept)

        def remap(x: Interactions) -> Interactions:
            x = x.select(keep[x.item])
            x = x.select(user_map[x.user] >= 0)
            return Interactions(
                user_map[x.user], item_map[x.item], new_users, new_items,
                time=x.time, rating=x.rating, label=x.label, time_unit=x.time_unit,
            )

        def remap_split(make: Callable[[], Split]) -> Callable[[], Split]:
            def build() -> Split:
                s = make()
                ctx = remap(s.context) if s.context is not None else None
                return Split(remap(s.train), remap(s.valid), remap(s.test), ctx, name=s.name, notes=dict(s.notes))
            return build

        return Dataset(
            name=name,
            interactions=remap(self.interactions),
            items=self.items.subset(items_kept),  # type: ignore[arg-type]
            users=self.users.subset(users_kept) if self.users is not None else None,  # type: ignore[arg-type]
            predefined={k: remap_split(f) for k, f in self.predefined.items()},
            source_files=list(self.source_files),
        )


def _renumber(n: int, kept: np.ndarray) -> np.ndarray:
    """Old index -> new index (or -1 when dropped)."""
    out = np.full(n, -1, dtype=np.int64)
    out[kept] = np.arange(len(kept))
    return out


def ordinal_interactions(
    sequences: list[list[str]] | list[np.ndarray], user_raw: list[str], items: IdMap, users: IdMap | None = None,
    where: str = "",
) -> Interactions:
    """Interactions from per-user item sequences (raw item ids) of an order-only dataset.

    ``time`` becomes the position in the user's sequence (``time_unit="order"``).
    """
    users = users or IdMap(user_raw, name="user")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(s, dtype=object) for s in sequences]) if len(sequences) else np.array([])
    item_idx = items.indices(flat, missing="-1")
    if (item_idx < 0).any():
        bad = flat[np.flatnonzero(item_idx < 0)[0]]
        raise DataError(f"{where}: item {bad!r} is used in a sequence but has no row in the item file")
    user_idx = np.repeat(users.indices(user_raw), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    time = np.arange(len(flat)) - starts
    return Interactions(user_idx, item_idx, users, items, time=time, time_unit="order")
