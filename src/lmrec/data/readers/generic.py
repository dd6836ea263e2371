"""Generic CSV / TSV / Parquet / JSONL logs with a column mapping: the path for anyone's own data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import ArrowException
from pydantic import BaseModel, ConfigDict

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, template_over
from lmrec.data.readers._io import decode, read_bytes, require_file
from lmrec.errors import DataError
from lmrec.progress import logger


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


ENCODING_HINT = "save the file as {encoding}, or set 'encoding:' in the dataset's lmrec.yaml"
# Unix times beyond this (the year 3000) are not times: a typo, or a unit lmrec does not know
MAX_UNIX_SECONDS = 32_503_680_000
MS_THRESHOLD = 10_000_000_000  # unix seconds reach this in the year 2286; milliseconds passed it in 1970


def file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def where(path: Path, row: int) -> str:
    """``row`` (0-based data row) as a person finds it: the line in a text file (the header is line 1 of a
    delimited file), the row number in a Parquet file."""
    kind = file_kind(path)
    if kind in (".csv", ".tsv", ".txt", ".dat"):
        return f"{path}:{row + 2} (data row {row + 1})"
    if kind in (".jsonl", ".json", ".ndjson"):
        return f"{path}:{row + 1}"
    return f"{path}: row {row + 1}"


def read_frame(path: Path, sep: str | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """Any of .csv/.tsv/.txt (delimited), .parquet, .jsonl/.json (one object per line), as strings where textual.
    A byte-order mark before the first column's name is dropped."""
    path = require_file(Path(path))
    kind = file_kind(path)
    hint = ENCODING_HINT.format(encoding=encoding)
    try:
        if kind == ".parquet":
            frame = pd.read_parquet(path)
        elif kind in (".jsonl", ".json", ".ndjson"):
            text = decode(path, read_bytes(path), encoding, hint)  # names the line of a bad byte
            if not text.strip():
                raise DataError(f"{path}: the file is empty")
            frame = pd.read_json(io.StringIO(text.lstrip("\ufeff")), lines=True, dtype=False)
        elif kind in (".csv", ".tsv", ".txt", ".dat"):
            text = decode(path, read_bytes(path), encoding, hint)
            if not text.strip():
                raise DataError(f"{path}: the file is empty (it needs a header line and data rows)")
            delim = sep or ("\t" if kind == ".tsv" else None)
            frame = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), sep=delim,
                                engine="python" if delim is None else "c", dtype=str, keep_default_na=False)
        else:
            raise DataError(f"{path}: unknown file type {kind!r}; use .csv, .tsv, .parquet or .jsonl")
    except DataError:
        raise
    except (ValueError, OSError, ArrowException) as exc:  # pandas' and pyarrow's parse errors
        raise DataError(f"{path}: cannot be parsed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    frame.columns = [str(c).lstrip("\ufeff") for c in frame.columns]
    return frame


def missing_column(path: Path, name: str, columns: list[str], role: str) -> DataError:
    return DataError(f"{path}: missing {role} column {name!r}; columns are {columns} "
                     f"(map it in the dataset's lmrec.yaml)")


def _column(frame: pd.DataFrame, name: str, path: Path, role: str) -> pd.Series:
    if name not in frame.columns:
        raise missing_column(path, name, list(frame.columns), role)
    return frame[name]


def _numbers(col: pd.Series, path: Path, name: str) -> np.ndarray:
    nums = pd.to_numeric(col, errors="coerce")
    bad = nums.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where(path, row)}: column {name!r} must be a number, got {col.iloc[row]!r}")
    return nums.to_numpy(dtype=np.float64)


def _times(col: pd.Series, fmt: str, path: Path, name: str) -> np.ndarray:
    """Unix seconds from seconds, milliseconds or date strings."""
    numeric = pd.to_numeric(col, errors="coerce")
    if fmt in ("s", "ms") or (fmt == "auto" and numeric.notna().all()):
        secs = _numbers(col, path, name)
        if fmt == "auto":
            small, large = secs < MS_THRESHOLD, secs >= MS_THRESHOLD
            if small.any() and large.any():  # seconds rows would land in 1970 after dividing by 1000
                s_row, ms_row = int(np.flatnonzero(small)[0]), int(np.flatnonzero(large)[0])
                raise DataError(
                    f"{path}: column {name!r} mixes unix seconds and milliseconds ({where(path, s_row)}: "
                    f"{col.iloc[s_row]!r}; {where(path, ms_row)}: {col.iloc[ms_row]!r}); convert it to one unit, "
                    f"or set columns.time_format to s or ms in the dataset's lmrec.yaml")
        in_ms = fmt == "ms" or (fmt == "auto" and np.nanmax(secs) >= MS_THRESHOLD)
        if in_ms:
            secs = secs / 1000.0
        out_of_range = np.abs(secs) > MAX_UNIX_SECONDS
        if out_of_range.any():
            row = int(np.flatnonzero(out_of_range)[0])
            raise DataError(f"{where(path, row)}: column {name!r} holds {col.iloc[row]!r}, which is not a unix time "
                            f"in {'milliseconds' if in_ms else 'seconds'} before the year 3000")
        return secs.astype(np.int64)
    parsed = pd.to_datetime(col, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where(path, row)}: column {name!r} is not a time: {col.iloc[row]!r}")
    return (parsed.astype("datetime64[ns, UTC]").astype("int64") // 10**9).to_numpy()


def _ids(col: pd.Series, path: Path, role: str) -> pd.Series:
    """Ids as strings; an empty or missing id is an error naming its row (it used to become the id "")."""
    values = col.astype(str).str.strip()
    empty = (col.isna() | values.isin(["", "nan", "None", "NaN"])).to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)
        raise DataError(f"{where(path, int(rows[0]))}: empty {role} id ({len(rows)} row(s) have none); "
                        "fill them in or drop those rows")
    return values


def _normal_form(ids: np.ndarray) -> np.ndarray:
    """An id's spelling without the differences that often sneak in between two files: leading zeros, a
    trailing ".0" from a float column, surrounding spaces."""
    s = pd.Series(ids, dtype=str).str.strip().str.replace(r"\.0+$", "", regex=True).str.lstrip("0")
    return s.where(s != "", "0").to_numpy(dtype=str)  # strings, not objects: np.isin sorts them


def _check_item_ids_match(item_ids: np.ndarray, item_file_ids: np.ndarray, path: Path, ipath: Path) -> None:
    """Stop when the two files spell the same items differently (``3`` vs ``003``, ``2`` vs ``2.0``): the
    items would silently get no text. Warn when few interaction items have a row in the item file."""
    # both as fixed-width strings: np.isin of an object array against strings compares pair by pair (O(n m):
    # minutes at 100k items, hours at 1M), of two string arrays it sorts
    used = np.unique(np.asarray(item_ids, dtype=str))
    item_file_ids = np.asarray(item_file_ids, dtype=str)
    known = np.isin(used, item_file_ids)
    if known.all():
        return
    if np.isin(_normal_form(used[~known]), _normal_form(item_file_ids)).any():
        example = used[~known][np.isin(_normal_form(used[~known]), _normal_form(item_file_ids))][0]
        match = item_file_ids[_normal_form(item_file_ids) == _normal_form(np.array([example]))[0]][0]
        raise DataError(f"{path} and {ipath} spell item ids differently (e.g. {str(example)!r} vs {str(match)!r}): "
                        f"{int((~known).sum())} of {len(used)} items would get no text; write the ids the same way "
                        "in both files")
    share = known.mean()
    if share < 0.5:
        logger.warning("%s: only %.0f%% of the %d items in %s have a row there; the rest get no text",
                       ipath, 100 * share, len(used), path.name)


def item_table(interaction_items: np.ndarray, path: Path, items_path: Path | None = None,
               item_columns: ItemColumns | None = None, sep: str | None = None, encoding: str = "utf-8") -> ItemTable:
    """The item table of a generic log: the item file's rows in file order, then the items that only the
    interactions name, in order of first appearance (``interaction_items``: raw ids, repeats allowed)."""
    if items_path is None:
        return ItemTable(IdMap.from_values(interaction_items, name="item"))
    item_columns = item_columns or ItemColumns()
    ipath = Path(items_path)
    iframe = read_frame(ipath, sep, encoding)
    ids = _ids(_column(iframe, item_columns.id, ipath, "item id"), ipath, "item")
    _check_item_ids_match(interaction_items, ids.to_numpy(dtype=str), path, ipath)
    text_cols = item_columns.text or [c for c in iframe.columns if c != item_columns.id]
    for c in text_cols:
        _column(iframe, c, ipath, "text")
    if item_columns.title is not None and item_columns.title not in text_cols:
        raise DataError(f"{ipath}: item_columns.title {item_columns.title!r} is not one of the text columns "
                        f"{text_cols}")
    items = IdMap(ids, name="item").extend(interaction_items)
    table = ItemTable(items, template=template_over(text_cols) if text_cols else None,
                      title_field=item_columns.title or (text_cols[0] if text_cols else None))
    loc = items.indices(ids)
    for c in text_cols:
        values = np.full(len(items), "", dtype=object)
        values[loc] = iframe[c].to_numpy(dtype=object)
        table[c] = values
    return table


def read_generic(
    interactions_path: Path, columns: ColumnMap | None = None, items_path: Path | None = None,
    item_columns: ItemColumns | None = None, name: str | None = None, sep: str | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Interactions from any tabular file plus optional item text; rows keep their order for ties."""
    columns = columns or ColumnMap()
    item_columns = item_columns or ItemColumns()
    path = Path(interactions_path)
    frame = read_frame(path, sep, encoding)
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    user_col = _ids(_column(frame, columns.user, path, "user"), path, "user")
    item_col = _ids(_column(frame, columns.item, path, "item"), path, "item")
    table = item_table(item_col.to_numpy(dtype=str), path, items_path, item_columns, sep, encoding)
    items = table.ids
    files = [path] + ([Path(items_path)] if items_path is not None else [])
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
