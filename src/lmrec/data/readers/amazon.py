"""Raw Amazon review + metadata files as published by the McAuley lab.

Formats understood, line by line (``.gz`` or plain):
- 2014: reviews are JSON lines (``reviewerID, asin, overall, unixReviewTime, reviewText, summary``);
  metadata lines are Python dict literals ("loose JSON": ``{'asin': ..., 'categories': [[...]]}``).
- 2018: JSON lines; reviews as 2014, metadata with ``category`` / ``description`` lists.
- 2023: JSONL; reviews ``user_id, parent_asin, rating, timestamp`` (milliseconds), ``title``, ``text``;
  metadata ``parent_asin, title, main_category, categories, description, store``.
"""

from __future__ import annotations

import ast
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.readers._io import iter_lines, require_file
from lmrec.errors import DataError

# 2023 timestamps are milliseconds; anything above this is taken as ms (year 2286 in seconds).
_MS_THRESHOLD = 10_000_000_000


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, dict) for each non-empty line; JSON first, then a Python literal (2014 metadata)."""
    out = []
    for no, line in iter_lines(require_file(path)):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            try:
                rec = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                raise DataError(f"{path}:{no}: neither JSON nor a Python dict literal: {line[:60]!r}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{no}: expected an object per line, got {type(rec).__name__}")
        out.append((no, rec))
    if not out:
        raise DataError(f"{path}: the file has no records")
    return out


def _first(rec: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if rec.get(k) not in (None, "", []):
            return rec[k]
    return None


def _text(value: Any) -> str:
    """Flatten strings / (nested) lists into one clean string; HTML entities unescaped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = [_text(v) for v in value]
        return ", ".join(p for p in parts if p) if not any(isinstance(v, (list, tuple)) for v in value) \
            else " | ".join(p for p in parts if p)
    return " ".join(html.unescape(str(value)).split())


def read_amazon(reviews_path: Path, meta_path: Path | None = None, name: str | None = None) -> Dataset:
    """Read a reviews file (and optional metadata file) of any of the three releases.

    Items are those reviewed; users get a ``reviews`` field (their review texts, most recent first).
    Times are unix seconds (2023 milliseconds are converted).
    """
    reviews_path = Path(reviews_path)
    users_raw, items_raw, ratings, times, texts = [], [], [], [], []
    for no, rec in _records(reviews_path):
        user = _first(rec, "reviewerID", "user_id")
        item = _first(rec, "parent_asin", "asin")
        when = _first(rec, "unixReviewTime", "timestamp")
        if user is None or item is None or when is None:
            missing = [k for k, v in (("user (reviewerID/user_id)", user), ("item (asin/parent_asin)", item),
                                      ("time (unixReviewTime/timestamp)", when)) if v is None]
            raise DataError(f"{reviews_path}:{no}: review record lacks {', '.join(missing)}")
        try:
            t = int(when)
            rating = float(_first(rec, "overall", "rating") or np.nan)
        except (TypeError, ValueError):
            raise DataError(f"{reviews_path}:{no}: time and rating must be numbers") from None
        users_raw.append(str(user))
        items_raw.append(str(item))
        times.append(t // 1000 if t > _MS_THRESHOLD else t)
        ratings.append(rating)
        texts.append(" ".join(x for x in (_text(_first(rec, "summary", "title")), _text(_first(rec, "reviewText", "text"))) if x))

    users = IdMap.from_values(users_raw, name="user")
    items = IdMap.from_values(items_raw, name="item")
    rating_arr = np.asarray(ratings, dtype=np.float32)
    inter = Interactions(
        users.indices(users_raw), items.indices(items_raw), users, items,
        time=np.asarray(times, dtype=np.int64),
        rating=None if np.isnan(rating_arr).all() else rating_arr, time_unit="s",
    )
    order = inter.chronological_order()
    inter = inter.select(order)

    # user text: review texts, most recent first
    user_of_row = users.indices(users_raw)
    user_texts: list[list[str]] = [[] for _ in range(len(users))]
    for row in order[::-1]:
        if texts[row]:
            user_texts[user_of_row[row]].append(texts[row])
    user_table = UserTable(users, {"reviews": ["\n".join(t) for t in user_texts]})

    fields: dict[str, np.ndarray] = {
        k: np.full(len(items), "", dtype=object) for k in ("title", "brand", "categories", "description")
    }
    files = [reviews_path]
    if meta_path is not None:
        meta_path = Path(meta_path)
        files.append(meta_path)
        for no, rec in _records(meta_path):
            item = _first(rec, "parent_asin", "asin")
            if item is None:
                raise DataError(f"{meta_path}:{no}: metadata record has no asin / parent_asin")
            if str(item) not in items:
                continue  # metadata files cover the whole category; keep reviewed items only
            i = items.index(item)
            fields["title"][i] = _text(rec.get("title"))
            fields["brand"][i] = _text(_first(rec, "brand", "store"))
            fields["categories"][i] = _text(_first(rec, "categories", "category", "main_category"))
            fields["description"][i] = _text(rec.get("description"))
    return Dataset(name or reviews_path.name.split(".")[0], inter, ItemTable(items, fields), user_table, {},
                   source_files=files)
