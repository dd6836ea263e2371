"""RecBole atomic files (``.inter``, ``.item``, ``.text`` with typed headers such as ``item_id:token``).

Two layouts are understood:
- a plain ``NAME.inter`` (columns ``user_id``, ``item_id`` and optional ``rating``, ``timestamp``,
  ``label``) with optional ``NAME.item`` / ``NAME.text`` text;
- the UniSRec pre-split layout ``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter`` with an
  ``item_id_list`` history column, plus ``NAME.item2index`` / ``NAME.user2index`` raw-id maps.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.dataset import Dataset, ordinal_interactions
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.readers._io import decode, read_bytes, read_delimited, require_file
from lmrec.data.split import leave_one_out
from lmrec.errors import DataError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def read_atomic(path: Path) -> pd.DataFrame:
    """One atomic file as a DataFrame: ``token``/``token_seq`` columns as str, ``float`` as float64.

    The header names each column ``name:type``; a malformed header or row is reported with its line.
    """
    require_file(path)
    text = decode(path, read_bytes(path), "utf-8")
    header, _, _ = text.partition("\n")
    columns: list[tuple[str, str]] = []
    for field in header.rstrip("\r").split("\t"):
        name, sep, kind = field.partition(":")
        if not sep or kind not in ATOMIC_TYPES:
            raise DataError(
                f"{path}:1: header field {field!r} must be 'name:type' with type one of {', '.join(ATOMIC_TYPES)}"
            )
        columns.append((name, kind))
    frame = read_delimited(path, "\t", [(n, "float" if k == "float" else "str") for n, k in columns], header=True)
    return frame


def read_recbole(folder: Path, name: str, dataset_name: str | None = None) -> Dataset:
    """Read ``folder/name.*`` atomic files in whichever layout is present."""
    folder = Path(folder)
    if (folder / f"{name}.train.inter").is_file():
        return _read_unisrec(folder, name, dataset_name or name)
    return _read_plain(folder, name, dataset_name or name)


def _item_text(folder: Path, name: str, items: IdMap | None) -> tuple[IdMap, dict[str, np.ndarray]]:
    """Text fields from ``.item`` and ``.text`` files, aligned to ``items`` (or defining it)."""
    frames = [read_atomic(p) for p in (folder / f"{name}.item", folder / f"{name}.text") if p.is_file()]
    if items is None:
        ids: list[str] = []
        for f in frames:
            _need(f, "item_id", folder / name)
            ids.extend(f["item_id"])
        items = IdMap.from_values(ids, name="item")
    fields: dict[str, np.ndarray] = {}
    for f in frames:
        _need(f, "item_id", folder / name)
        loc = items.indices(f["item_id"], missing="-1")
        for col in f.columns:
            if col == "item_id":
                continue
            values = np.full(len(items), "", dtype=object)
            values[loc[loc >= 0]] = f[col].to_numpy(dtype=object)[loc >= 0]
            fields[col] = values
    return items, fields


def _read_plain(folder: Path, name: str, dataset_name: str) -> Dataset:
    inter_path = require_file(folder / f"{name}.inter", "RecBole interaction file")
    frame = read_atomic(inter_path)
    for col in ("user_id", "item_id"):
        _need(frame, col, inter_path)
    items, fields = _item_text(folder, name, None)
    items = items.extend(frame["item_id"])
    items, fields = _item_text(folder, name, items) if fields else (items, {})
    users = IdMap.from_values(frame["user_id"], name="user")
    time = frame["timestamp"].to_numpy().astype(np.int64) if "timestamp" in frame else None
    inter = Interactions(
        users.indices(frame["user_id"]), items.indices(frame["item_id"]), users, items,
        time=time,
        rating=frame["rating"].to_numpy() if "rating" in frame else None,
        label=frame["label"].to_numpy() if "label" in frame else None,
    ).sorted()
    files = [p for p in (inter_path, folder / f"{name}.item", folder / f"{name}.text") if p.is_file()]
    return Dataset(dataset_name, inter, ItemTable(items, fields), None, {}, source_files=files)


def _read_index_map(path: Path, what: str) -> IdMap | None:
    """``raw_id \\t index`` file -> IdMap ordered by index (or None if absent)."""
    if not path.is_file():
        return None
    f = read_delimited(path, "\t", [("raw", "str"), ("index", "int")])
    order = np.argsort(f["index"].to_numpy())
    idx = f["index"].to_numpy()[order]
    if not np.array_equal(idx, np.arange(len(idx))):
        raise DataError(f"{path}: indices must be exactly 0..{len(idx) - 1}")
    return IdMap(f["raw"].to_numpy()[order], name=what)


def _read_unisrec(folder: Path, name: str, dataset_name: str) -> Dataset:
    """Rebuild each user's full sequence from the pre-split files and verify it against all three.

    The train file lists every prefix -> next item (history capped at 50), so a sequence is the first
    item + all train targets + the valid target + the test target. The reconstruction is checked
    against the (capped) valid and test histories; any disagreement is an error, not a guess.
    """
    paths = {p: require_file(folder / f"{name}.{p}.inter") for p in ("train", "valid", "test")}
    item_raw = _read_index_map(folder / f"{name}.item2index", "item")
    user_raw = _read_index_map(folder / f"{name}.user2index", "user")
    lines = {p: _history_lines(path) for p, path in paths.items()}

    train_by_user: dict[str, list[tuple[list[str], str]]] = defaultdict(list)
    for user, hist, target in lines["train"]:
        train_by_user[user].append((hist, target))
    valid = {u: (h, t) for u, h, t in lines["valid"]}
    test = {u: (h, t) for u, h, t in lines["test"]}
    if set(valid) != set(test):
        raise DataError(f"{paths['valid']} and {paths['test']} must list the same users")
    seqs, users = [], []
    for user, (t_hist, t_target) in test.items():
        v_hist, v_target = valid[user]
        prefix = _chain(train_by_user.get(user, []), paths["train"], user) or list(v_hist)
        if prefix[-len(v_hist):] != v_hist:
            raise DataError(f"{paths['valid']}: user {user}: history disagrees with the train file's sequence")
        full = prefix + [v_target]
        if full[-len(t_hist):] != t_hist:
            raise DataError(f"{paths['test']}: user {user}: history disagrees with train + valid")
        seqs.append(full + [t_target])
        users.append(user)
    n_items = len(item_raw) if item_raw is not None else None
    item_index = IdMap([str(i) for i in range(n_items)], name="item") if n_items else IdMap.from_values(
        [i for s in seqs for i in s], name="item")
    user_index = IdMap(users, name="user") if user_raw is None else IdMap([str(i) for i in range(len(user_raw))])
    inter = ordinal_interactions(seqs, users, item_index, users=user_index, where=str(paths["test"]))
    # Swap integer indices for the raw ASIN / reviewer ids where the index files give them.
    items_ids = item_raw if item_raw is not None else item_index
    users_ids = user_raw if user_raw is not None else user_index
    inter = Interactions(inter.user, inter.item, users_ids, items_ids, time=inter.time, time_unit="order")
    _, fields = _item_text(folder, name, items_ids)
    files = [*paths.values()] + [p for p in (folder / f"{name}.text", folder / f"{name}.item",
                                             folder / f"{name}.item2index", folder / f"{name}.user2index")
                                 if p.is_file()]
    return Dataset(
        dataset_name, inter, ItemTable(items_ids, fields), None,
        {"unisrec": lambda: leave_one_out(inter, name="unisrec")}, source_files=files,
    )


def _chain(rows: list[tuple[list[str], str]], path: Path, user: str) -> list[str]:
    """Join one user's prefix -> target rows into the sequence they cover (empty if no rows).

    Rows may be listed oldest-first or newest-first (UniSRec writes newest-first); every row's history
    must equal the tail of the sequence built so far, which also proves the order was read right.
    """
    if not rows:
        return []
    if len(rows[0][0]) > len(rows[-1][0]):
        rows = rows[::-1]
    seq = list(rows[0][0])
    for hist, target in rows:
        if seq[-len(hist):] != hist:
            raise DataError(f"{path}: user {user}: the prefix rows do not form one sequence")
        seq.append(target)
    return seq


def _history_lines(path: Path) -> list[tuple[str, list[str], str]]:
    """(user, history, target) per row of a ``user_id / item_id_list / item_id`` file."""
    text = decode(path, read_bytes(path), "utf-8")
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    want = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
    if header != want:
        raise DataError(f"{path}:1: expected header {' '.join(want)!r}, got {' '.join(header or [])!r}")
    out = []
    for no, row in enumerate(reader, start=2):
        if len(row) != 3:
            raise DataError(f"{path}:{no}: expected 3 tab-separated fields, found {len(row)}")
        hist = row[1].split()
        if not hist:
            raise DataError(f"{path}:{no}: empty item_id_list")
        out.append((row[0], hist, row[2]))
    if not out:
        raise DataError(f"{path}: the file has no data rows")
    return out


def _need(frame: pd.DataFrame, column: str, path: Path) -> None:
    if column not in frame.columns:
        raise DataError(f"{path}: missing column {column!r}; columns are {list(frame.columns)}")
