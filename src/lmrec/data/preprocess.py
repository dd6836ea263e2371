"""Pure preprocessing functions: each takes ``Interactions`` and returns new ones (inputs untouched).

Filtering keeps the id maps (so indices stay comparable with the raw dataset); ``compact`` renumbers
to the users and items that remain when a smaller catalogue is wanted.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.errors import ConfigError, DataError


def sort_by_time(inter: Interactions) -> Interactions:
    """Events ordered by user, then time (ties keep their row order)."""
    return inter.sorted()


def dedup(inter: Interactions, keep: Literal["first", "last"] = "first") -> Interactions:
    """Keep one event per (user, item): the chronologically ``first`` or ``last`` one."""
    if keep not in ("first", "last"):
        raise ConfigError(f"dedup keep must be 'first' or 'last', got {keep!r}")
    s = inter.sorted()
    key = s.user * s.n_items + s.item
    if keep == "first":
        _, rows = np.unique(key, return_index=True)
    else:
        _, rev = np.unique(key[::-1], return_index=True)
        rows = len(key) - 1 - rev
    return s.select(np.sort(rows))


def to_implicit(inter: Interactions, min_rating: float | None = None) -> Interactions:
    """Keep positive events only: ``rating >= min_rating``, or ``label == 1`` for labelled data."""
    if min_rating is not None:
        if inter.rating is None:
            raise ConfigError("min_rating: needs ratings, and this dataset has none")
        out = inter.select(inter.rating >= min_rating)
    elif inter.label is not None:
        out = inter.select(inter.label == 1)
    else:
        return inter
    return _nonempty(out, f"keeping positives (min_rating={min_rating})")


def k_core(inter: Interactions, k_user: int = 5, k_item: int = 5) -> Interactions:
    """Iteratively drop users with < ``k_user`` and items with < ``k_item`` events until none remain."""
    if k_user < 1 or k_item < 1:
        raise ConfigError(f"k-core thresholds must be >= 1, got users={k_user}, items={k_item}")
    keep = np.ones(len(inter), dtype=bool)
    while True:
        u_counts = np.bincount(inter.user[keep], minlength=inter.n_users)
        i_counts = np.bincount(inter.item[keep], minlength=inter.n_items)
        ok = keep & (u_counts[inter.user] >= k_user) & (i_counts[inter.item] >= k_item)
        if ok.sum() == keep.sum():
            break
        keep = ok
    return _nonempty(inter.select(keep), f"{k_user}/{k_item}-core filtering (users/items)")


def drop_items_without_text(
    inter: Interactions, items: ItemTable, fields: list[str] | None = None
) -> Interactions:
    """Drop events whose item has no text in any of ``fields`` (default: all fields)."""
    has = items.has_text(fields)
    return _nonempty(inter.select(has[inter.item]), "dropping items without text")


def compact(
    inter: Interactions, items: ItemTable | None = None, users: UserTable | None = None
) -> tuple[Interactions, ItemTable | None, UserTable | None]:
    """Renumber to the users and items that occur in ``inter`` (tables are cut to match)."""
    u_keep = inter.user_ids()
    i_keep = inter.item_ids()
    u_new = np.full(inter.n_users, -1, dtype=np.int64)
    u_new[u_keep] = np.arange(len(u_keep))
    i_new = np.full(inter.n_items, -1, dtype=np.int64)
    i_new[i_keep] = np.arange(len(i_keep))
    out = Interactions(
        u_new[inter.user], i_new[inter.item], inter.users.subset(u_keep), inter.items.subset(i_keep),
        time=inter.time, rating=inter.rating, label=inter.label, time_unit=inter.time_unit,
    )
    new_items = items.subset(i_keep) if items is not None else None
    new_users = users.subset(u_keep) if users is not None else None
    return out, new_items, new_users  # type: ignore[return-value]


def _nonempty(inter: Interactions, step: str) -> Interactions:
    if len(inter) == 0:
        raise DataError(f"the dataset is empty after {step}; loosen the filter")
    return inter
