"""URLLM cross-domain files: item lists with a domain each and ``train/valid/test_SUFFIX.txt``.

A data line is ``user \\t n \\t item|p|p \\t ...`` with n + 1 entries; the last entry is the target and
the first n the history. A user has several lines sharing one history (one target each). Users of
the train, valid and test files are disjoint, so valid/test users are cold-start users.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.readers._io import decode, iter_lines, read_bytes, require_file
from lmrec.data.split import Split
from lmrec.errors import DataError

PARTS = ("train", "valid", "test")


def read_urllm(
    folder: Path, item_files: Mapping[str, str], suffix: str = "F2", users_file: str | None = "Dualuser_dict.json",
    name: str = "urllm",
) -> Dataset:
    """Read a URLLM folder. ``item_files`` maps each item CSV to its domain name (e.g. ``"arts"``).

    Item CSVs have columns ``idBefore,item_title,idAfter,item_attribute``; ``idAfter`` is the global id
    used in the data lines. The predefined split ``urllm`` keeps the files' user-disjoint partition:
    train users' events are train; valid/test users' targets are valid/test, their histories context.
    """
    folder = Path(folder)
    frames = []
    for fname, domain in item_files.items():
        path = require_file(folder / fname, "item list")
        f = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in ("item_title", "idAfter", "item_attribute"):
            if col not in f.columns:
                raise DataError(f"{path}: missing column {col!r}; columns are {list(f.columns)}")
        frames.append(pd.DataFrame({"id": f["idAfter"], "title": f["item_title"],
                                    "attributes": f["item_attribute"], "domain": domain}))
    all_items = pd.concat(frames, ignore_index=True)
    items = IdMap(all_items["id"], name="item")
    table = ItemTable(items, {c: all_items[c] for c in ("title", "attributes", "domain")})

    user_names = None
    if users_file and (folder / users_file).is_file():
        path = folder / users_file
        user_names = json.loads(decode(path, read_bytes(path), "utf-8"))
        if not isinstance(user_names, list):
            raise DataError(f"{path}: expected a JSON list of user ids")

    per_part = {p: _read_lines(require_file(folder / f"{p}_{suffix}.txt")) for p in PARTS}
    user_order = [u for p in PARTS for u in per_part[p]]
    if len(set(user_order)) != len(user_order):
        raise DataError(f"{folder}: a user appears in more than one of the train/valid/test files")
    raw_users = [user_names[int(u)] if user_names is not None and u.isdigit() and int(u) < len(user_names) else u
                 for u in user_order]
    users = IdMap(raw_users, name="user")

    cols: dict[str, list[np.ndarray]] = {"item": [], "time": [], "role": []}
    lengths: list[int] = []
    for part_no, part in enumerate(PARTS):
        for hist, targets in per_part[part].values():
            n = len(hist)
            ev = np.asarray(hist + targets, dtype=object)
            lengths.append(len(ev))
            cols["item"].append(ev)
            cols["time"].append(np.concatenate([np.arange(n), np.full(len(targets), n)]))
            # role: 0 = history, 1 = target; part number kept to build the predefined split
            cols["role"].append(np.concatenate([np.zeros(n), np.ones(len(targets))]) + 2 * part_no)
    # users were added in user_order, so a user's events take that user's position as index
    user_idx = np.repeat(np.arange(len(user_order)), lengths)
    item_raw = np.concatenate(cols["item"])
    item_idx = items.indices(item_raw, missing="-1")
    if (item_idx < 0).any():
        raise DataError(f"{folder}: item {item_raw[np.flatnonzero(item_idx < 0)[0]]!r} is in a data file but in no item list")
    role = np.concatenate(cols["role"]).astype(np.int8)
    inter = Interactions(user_idx, item_idx, users, items, time=np.concatenate(cols["time"]), time_unit="order")

    def build() -> Split:
        is_target = (role % 2) == 1
        part = role // 2
        return Split(
            train=inter.select(part == 0),
            valid=inter.select((part == 1) & is_target),
            test=inter.select((part == 2) & is_target),
            context=inter.select((part > 0) & ~is_target),
            name="urllm",
        )

    files = [folder / f for f in item_files] + [folder / f"{p}_{suffix}.txt" for p in PARTS]
    if users_file and (folder / users_file).is_file():
        files.append(folder / users_file)
    return Dataset(name, inter, table, None, {"urllm": build}, source_files=files)


def _read_lines(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """user -> (history, targets); lines of one user must share the history."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for no, line in iter_lines(path):
        fields = line.rstrip("\t").split("\t")
        if not line.strip():
            continue
        if len(fields) < 3 or not fields[1].isdigit():
            raise DataError(f"{path}:{no}: expected 'user<TAB>n<TAB>item|p|p ...', got {line[:60]!r}")
        n = int(fields[1])
        entries = fields[2:]
        if len(entries) != n + 1:
            raise DataError(f"{path}:{no}: header says {n} history items + 1 target, found {len(entries)} entries")
        ids = [e.split("|", 1)[0] for e in entries]
        user, hist, target = fields[0], ids[:-1], ids[-1]
        if user in out:
            if out[user][0] != hist:
                raise DataError(f"{path}:{no}: user {user} has lines with different histories")
            out[user][1].append(target)
        else:
            out[user] = (hist, [target])
    if not out:
        raise DataError(f"{path}: the file has no data rows")
    return out
