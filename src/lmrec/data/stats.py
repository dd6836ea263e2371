"""Dataset statistics: sizes, density, text coverage, sequence lengths, time range."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable

PERCENTILES = (0, 25, 50, 75, 90, 99, 100)
LISTED_RATINGS = 20


def interaction_stats(inter: Interactions, items: ItemTable | None = None, users: UserTable | None = None) -> dict[str, Any]:
    """Statistics of a set of interactions (and the text of the items it uses)."""
    n = len(inter)
    used_users = inter.user_ids()
    ratings = None
    if inter.rating is not None and n:
        ratings = rating_stats(*np.unique(inter.rating, return_counts=True))
    return assemble_stats(
        interactions=n, catalogue_items=inter.n_items, used_items=inter.item_ids(),
        lengths=np.bincount(inter.user, minlength=inter.n_users)[used_users],
        distinct_pairs=_distinct_pairs(inter) if n else 0,
        time_range=(int(inter.time.min()), int(inter.time.max())) if inter.time is not None and n else None,
        time_unit=inter.time_unit, ratings=ratings,
        positive_share=float(inter.label.mean()) if inter.label is not None and n else None,
        items=items, users=users,
    )


def assemble_stats(
    *, interactions: int, catalogue_items: int, used_items: np.ndarray, lengths: np.ndarray, distinct_pairs: int,
    time_range: tuple[int, int] | None, time_unit: str | None,
    ratings: dict[str, Any] | None, positive_share: float | None,
    items: ItemTable | None, users: UserTable | None,
) -> dict[str, Any]:
    """The statistics dictionary from aggregates, however they were computed (numpy here, SQL out of core).

    ``used_items``: sorted item indices that occur; ``lengths``: events per user that occurs; ``ratings``:
    ``rating_stats`` of the ratings (``None`` without ratings).
    """
    n = interactions
    out: dict[str, Any] = {
        "users": int(len(lengths)),
        "items": int(len(used_items)),
        "catalogue_items": int(catalogue_items),
        "interactions": int(n),
        # distinct user-item pairs: repeated events (re-purchases, re-watches) must not push it past 100%
        "density": float(distinct_pairs / (len(lengths) * len(used_items))) if n else 0.0,
        "sequence_length": {
            **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
            "mean": float(lengths.mean()),
        } if n else {},
    }
    if time_range is not None:
        lo, hi = time_range
        if time_unit == "s":
            iso = lambda t: datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")  # noqa: E731
            out["time"] = {"unit": "unix seconds", "min": lo, "max": hi, "from": iso(lo), "to": iso(hi)}
        else:
            out["time"] = {"unit": "order only (position in each user's sequence)"}
    else:
        out["time"] = {"unit": "none"}
    if ratings is not None:
        out["ratings"] = ratings
    if positive_share is not None:
        out["positive_share"] = positive_share
    if items is not None:
        sub = items.subset(used_items) if len(used_items) else items
        out["text_coverage"] = {f: round(c, 6) for f, c in sub.coverage().items()}
        out["items_with_text"] = int(items.has_text()[used_items].sum()) if items.fields else 0
    if users is not None:
        out["user_fields"] = users.fields
    return out


def rating_stats(values: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """Count per rating value (distinct ``values``, sorted) when there are at most ``LISTED_RATINGS`` of them,
    else min / max / mean."""
    if len(values) <= LISTED_RATINGS:
        return {f"{v:g}": int(c) for v, c in zip(values, counts)}
    return {"min": float(values.min()), "max": float(values.max()),
            "mean": float((values.astype(np.float64) * counts).sum() / counts.sum())}


def _distinct_pairs(inter: Interactions) -> int:
    return int(len(np.unique(inter.user.astype(np.int64) * inter.n_items + inter.item)))
