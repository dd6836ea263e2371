"""Dataset statistics: sizes, density, text coverage, sequence lengths, time range."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable

PERCENTILES = (0, 25, 50, 75, 90, 99, 100)


def interaction_stats(inter: Interactions, items: ItemTable | None = None, users: UserTable | None = None) -> dict[str, Any]:
    """Statistics of a set of interactions (and the text of the items it uses)."""
    used_users = inter.user_ids()
    used_items = inter.item_ids()
    n = len(inter)
    lengths = np.bincount(inter.user, minlength=inter.n_users)[used_users] if n else np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {
        "users": int(len(used_users)),
        "items": int(len(used_items)),
        "catalogue_items": int(inter.n_items),
        "interactions": int(n),
        # distinct user-item pairs: repeated events (re-purchases, re-watches) must not push it past 100%
        "density": float(_distinct_pairs(inter) / (len(used_users) * len(used_items))) if n else 0.0,
        "sequence_length": {
            **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
            "mean": float(lengths.mean()),
        } if n else {},
    }
    if inter.time is not None and n:
        lo, hi = int(inter.time.min()), int(inter.time.max())
        if inter.time_unit == "s":
            iso = lambda t: datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")  # noqa: E731
            out["time"] = {"unit": "unix seconds", "min": lo, "max": hi, "from": iso(lo), "to": iso(hi)}
        else:
            out["time"] = {"unit": "order only (position in each user's sequence)"}
    else:
        out["time"] = {"unit": "none"}
    if inter.rating is not None and n:
        values, counts = np.unique(inter.rating, return_counts=True)
        out["ratings"] = {f"{v:g}": int(c) for v, c in zip(values, counts)} if len(values) <= 20 else {
            "min": float(values.min()), "max": float(values.max()), "mean": float(inter.rating.mean())}
    if inter.label is not None and n:
        out["positive_share"] = float(inter.label.mean())
    if items is not None:
        sub = items.subset(used_items) if len(used_items) else items
        out["text_coverage"] = {f: round(c, 6) for f, c in sub.coverage().items()}
        out["items_with_text"] = int(items.has_text()[used_items].sum()) if items.fields else 0
    if users is not None:
        out["user_fields"] = users.fields
    return out


def _distinct_pairs(inter: Interactions) -> int:
    return int(len(np.unique(inter.user.astype(np.int64) * inter.n_items + inter.item)))
