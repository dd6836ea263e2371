"""LC-Rec / TIGER JSON format: ``NAME.inter.json`` ({user: [items in time order]}) + ``NAME.item.json``."""

from __future__ import annotations

import json
from pathlib import Path

from lmrec.data.dataset import Dataset, ordinal_interactions
from lmrec.data.idmap import IdMap
from lmrec.data.items import ItemTable
from lmrec.data.readers._io import decode, read_bytes, require_file
from lmrec.data.split import leave_one_out
from lmrec.errors import DataError

TEXT_FIELDS = ("title", "description", "brand", "categories")


def _load_json(path: Path) -> object:
    require_file(path)
    try:
        return json.loads(decode(path, read_bytes(path), "utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None


def read_lcrec(folder: Path, name: str, dataset_name: str | None = None) -> Dataset:
    """Read the LC-Rec pair of JSON files; sequences are chronological (order only, no timestamps)."""
    folder = Path(folder)
    inter_path, item_path = folder / f"{name}.inter.json", folder / f"{name}.item.json"
    inter_raw = _load_json(inter_path)
    item_raw = _load_json(item_path)
    if not isinstance(inter_raw, dict) or not all(isinstance(v, list) for v in inter_raw.values()):
        raise DataError(f"{inter_path}: expected an object mapping each user id to a list of item ids")
    if not isinstance(item_raw, dict) or not all(isinstance(v, dict) for v in item_raw.values()):
        raise DataError(f"{item_path}: expected an object mapping each item id to an object of text fields")
    item_ids = sorted(item_raw, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    items = IdMap(item_ids, name="item")
    fields = sorted({f for v in item_raw.values() for f in v}, key=lambda f: (TEXT_FIELDS.index(f) if f in TEXT_FIELDS else len(TEXT_FIELDS), f))
    table = ItemTable(items, {f: [item_raw[i].get(f) for i in item_ids] for f in fields})
    users = list(inter_raw)
    seqs = [[str(i) for i in inter_raw[u]] for u in users]
    inter = ordinal_interactions(seqs, users, items, where=str(inter_path))
    return Dataset(
        dataset_name or name, inter, table, None, {"lcrec": lambda: leave_one_out(inter, name="lcrec")},
        source_files=[inter_path, item_path],
    )
