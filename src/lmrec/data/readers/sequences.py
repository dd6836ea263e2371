"""Sequence text files (one line per user: ``user item item ...``) plus an items CSV with text columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lmrec.data.dataset import Dataset, ordinal_interactions
from lmrec.data.idmap import IdMap
from lmrec.data.items import ItemTable
from lmrec.data.readers._io import iter_lines, require_file
from lmrec.errors import DataError


def read_sequence_file(
    sequences_path: Path, items_path: Path, item_id_column: str = "item_id", name: str | None = None,
) -> Dataset:
    """Read ``user item item ...`` lines (whitespace-separated, chronological) and a CSV of item text.

    Every CSV column other than ``item_id_column`` becomes an item field. Every item used in a sequence
    must have a row in the CSV.
    """
    sequences_path, items_path = Path(sequences_path), Path(items_path)
    require_file(items_path, "items CSV")
    try:
        frame = pd.read_csv(items_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{items_path}: cannot be read as CSV ({' '.join(str(exc).split())})") from None
    if item_id_column not in frame.columns:
        raise DataError(f"{items_path}: missing column {item_id_column!r}; columns are {list(frame.columns)}")
    items = IdMap(frame[item_id_column], name="item")
    table = ItemTable(items, {c: frame[c] for c in frame.columns if c != item_id_column})

    users, seqs = [], []
    for no, line in iter_lines(require_file(sequences_path, "sequence file")):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise DataError(f"{sequences_path}:{no}: a line needs a user id followed by at least one item id")
        users.append(tokens[0])
        seqs.append(tokens[1:])
    if not users:
        raise DataError(f"{sequences_path}: the file has no data rows")
    if len(set(users)) != len(users):
        raise DataError(f"{sequences_path}: a user id appears on more than one line")
    inter = ordinal_interactions(seqs, users, items, where=str(sequences_path))
    return Dataset(name or sequences_path.stem, inter, table, None, {}, source_files=[sequences_path, items_path])
