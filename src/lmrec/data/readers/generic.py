"""Generic CSV / TSV / Parquet / JSONL logs with a column mapping: the path for anyone's own data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, template_over
from lmrec.data.readers._io import decode, read_bytes, require_file
from lmrec.errors import DataError


class ColumnMap(BaseModel):
    """Which columns of the interaction file hold what. ``time`` may be unix seconds, unix ms or dates."""

    model_config = ConfigDict(extra="forbid")
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None
    rating: str | None = None
    label: str | None = None
    time_format: str = "auto"  # auto | s | ms | datetime


class ItemColumns(BaseModel):
    """Which columns of the item file hold the id and the text fields (``None`` = every other column), and
    which text field names an item to a person (``title``; default: the first text field). Every text field
    goes into the default text template, in this order."""

    model_config = ConfigDict(extra="forbid")
    id: str = "item_id"
    text: list[str] | None = None
    title: str | None = None


def read_frame(path: Path, sep: str | None = None) -> pd.DataFrame:
    """Any of .csv/.tsv/.txt (delimited), .parquet, .jsonl/.json (one object per line), as strings where textual."""
    path = require_file(Path(path))
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    try:
        if kind == ".parquet":
            return pd.read_parquet(path)
        if kind in (".jsonl", ".json", ".ndjson"):
            decode(path, read_bytes(path), "utf-8")  # names the line of a bad byte
            return pd.read_json(path, lines=True, dtype=False)
        if kind in (".csv", ".tsv", ".txt", ".dat"):
            decode(path, read_bytes(path), "utf-8")
            delim = sep or ("\t" if kind == ".tsv" else None)
            return pd.read_csv(path, sep=delim, engine="python" if delim is None else "c", dtype=str,
                               keep_default_na=False)
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"{path}: cannot be parsed ({' '.join(str(exc).split())[:200]})") from None
    raise DataError(f"{path}: unknown file type {kind!r}; use .csv, .tsv, .parquet or .jsonl")


def _column(frame: pd.DataFrame, name: str, path: Path, role: str) -> pd.Series:
    if name not in frame.columns:
        raise DataError(
            f"{path}: missing {role} column {name!r}; columns are {list(frame.columns)} "
            f"(map it with --{role}-col or the dataset's lmrec.yaml)"
        )
    return frame[name]


def _numbers(col: pd.Series, path: Path, name: str) -> np.ndarray:
    nums = pd.to_numeric(col, errors="coerce")
    bad = nums.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {row + 1}: column {name!r} must be a number, got {col.iloc[row]!r}")
    return nums.to_numpy(dtype=np.float64)


def _times(col: pd.Series, fmt: str, path: Path, name: str) -> np.ndarray:
    """Unix seconds from seconds, milliseconds or date strings."""
    numeric = pd.to_numeric(col, errors="coerce")
    if fmt in ("s", "ms") or (fmt == "auto" and numeric.notna().all()):
        secs = _numbers(col, path, name)
        if fmt == "ms" or (fmt == "auto" and np.nanmax(secs) > 10_000_000_000):
            secs = secs / 1000.0
        return secs.astype(np.int64)
    parsed = pd.to_datetime(col, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {row + 1}: column {name!r} is not a time: {col.iloc[row]!r}")
    return (parsed.astype("datetime64[ns, UTC]").astype("int64") // 10**9).to_numpy()


def read_generic(
    interactions_path: Path, columns: ColumnMap | None = None, items_path: Path | None = None,
    item_columns: ItemColumns | None = None, name: str | None = None, sep: str | None = None,
) -> Dataset:
    """Interactions from any tabular file plus optional item text; rows keep their order for ties."""
    columns = columns or ColumnMap()
    item_columns = item_columns or ItemColumns()
    path = Path(interactions_path)
    frame = read_frame(path, sep)
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    user_col = _column(frame, columns.user, path, "user").astype(str)
    item_col = _column(frame, columns.item, path, "item").astype(str)
    table = None
    files = [path]
    if items_path is not None:
        ipath = Path(items_path)
        files.append(ipath)
        iframe = read_frame(ipath, sep)
        ids = _column(iframe, item_columns.id, ipath, "item id").astype(str)
        text_cols = item_columns.text or [c for c in iframe.columns if c != item_columns.id]
        for c in text_cols:
            _column(iframe, c, ipath, "text")
        if item_columns.title is not None and item_columns.title not in text_cols:
            raise DataError(f"{ipath}: item_columns.title {item_columns.title!r} is not one of the text columns "
                            f"{text_cols}")
        items = IdMap(ids, name="item").extend(item_col)
        table = ItemTable(items, template=template_over(text_cols) if text_cols else None,
                          title_field=item_columns.title or (text_cols[0] if text_cols else None))
        loc = items.indices(ids)
        for c in text_cols:
            values = np.full(len(items), "", dtype=object)
            values[loc] = iframe[c].to_numpy(dtype=object)
            table[c] = values
    else:
        items = IdMap.from_values(item_col, name="item")
        table = ItemTable(items)
    users = IdMap.from_values(user_col, name="user")
    time = _times(_column(frame, columns.time, path, "time"), columns.time_format, path, columns.time) \
        if columns.time else None
    rating = _numbers(_column(frame, columns.rating, path, "rating"), path, columns.rating) \
        if columns.rating else None
    label = None
    if columns.label:
        label = _numbers(_column(frame, columns.label, path, "label"), path, columns.label)
        if not np.isin(label, (0, 1)).all():
            raise DataError(f"{path}: column {columns.label!r} must hold 0/1 labels")
    inter = Interactions(users.indices(user_col), items.indices(item_col), users, items,
                         time=time, rating=rating, label=label, time_unit="s" if time is not None else None)
    return Dataset(name or path.stem, inter.sorted() if time is not None else inter, table, None, {},
                   source_files=files)
