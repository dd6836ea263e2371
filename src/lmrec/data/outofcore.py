"""Out-of-core preparation of a user's own log: the prepared dataset ``prepare`` writes, computed by DuckDB.

The in-memory engine reads the whole log into numpy arrays; a log larger than RAM cannot go that way. This
engine runs every step as SQL over an on-disk DuckDB database under a memory limit: reading (CSV / TSV /
Parquet / JSONL, DuckDB's own readers), id maps, the implicit threshold, dedup, dropping items without text,
iterative k-core, compacting, the leave-one-out or temporal split, the leakage check, the statistics and the
Parquet output. It gives the same prepared dataset, row for row, as the in-memory engine (tested).

Why DuckDB rather than Polars' streaming engine or Arrow datasets: leave-one-out and dedup are window
functions over each user's or pair's whole history, and k-core is a loop of GROUP BY + semi-join until
nothing changes; DuckDB runs all three with spilling to disk (sorts, joins, aggregates and windows), reads
and writes Parquet itself, and is one dependency-free wheel. Polars' streaming engine falls back to memory
for windows over a partition; Arrow datasets have no out-of-core joins or windows.

What stays in memory: one row per distinct user and per distinct item (the id maps, the item text), never
one row per event.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from lmrec.data.idmap import IdMap
from lmrec.data.items import ItemTable
from lmrec.data.readers.generic import (
    MAX_UNIX_SECONDS,
    MS_THRESHOLD,
    ColumnMap,
    ItemColumns,
    file_kind,
    item_table,
    missing_column,
    where,
)
from lmrec.data.split import (
    TEMPORAL_NEEDS_TIMES,
    SplitMeta,
    check_fracs,
    leak_message,
    temporal_cut_note,
)
from lmrec.data.stats import LISTED_RATINGS, assemble_stats, rating_stats
from lmrec.errors import ConfigError, DataError
from lmrec.progress import logger

if TYPE_CHECKING:  # the config type only; prepared.py imports this module
    from lmrec.data.prepared import PrepareConfig

SPLITS = ("loo", "temporal")
# what pandas' str.strip() removes around an id, so both engines read ' 42\t' as '42'
_STRIP = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
_EMPTY_IDS = "('', 'nan', 'None', 'NaN')"


def prepare_out_of_core(
    interactions_path: Path, columns: ColumnMap, items_path: Path | None, item_columns: ItemColumns,
    config: PrepareConfig, out: Path, *, sep: str | None = None, encoding: str = "utf-8",
    memory_limit: str | None = None, threads: int | None = None, work_dir: Path | None = None,
) -> tuple[ItemTable, SplitMeta, dict[str, Any]]:
    """Preprocess and split a log on disk; write ``out/interactions.parquet`` (rows ordered by part, user, time,
    file row, as the in-memory engine writes them).

    Returns the item table, what ``meta.json`` needs of the split, and the statistics; the caller writes
    the remaining files. ``memory_limit`` (e.g. ``"2GB"``) caps DuckDB's buffers (default: DuckDB's, 80%
    of RAM); ``work_dir`` holds the temporary database and spill files (default: beside ``out``).
    """
    if config.split not in SPLITS:
        raise ConfigError(f"split: the out-of-core engine makes the {' and '.join(SPLITS)} splits; "
                          f"{config.split!r} needs the in-memory engine (--engine memory)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".duckdb-", dir=work_dir or out.parent) as tmp:
        db = _Db(Path(tmp), memory_limit, threads)
        try:
            log = _read_log(db, Path(interactions_path), columns, sep, encoding)
            table = item_table(log.items_in_order, log.path, items_path, item_columns, sep, encoding)
            users = IdMap(log.users_in_order, name="user")
            _index_events(db, log, users, table.ids)
            table, users = _preprocess(db, log, config, table, users)
            name, notes = _split(db, log, config)
            _check_leaks(db, log, name)
            stats = _stats(db, log, table)
            db.sql(f"COPY (SELECT u AS \"user\", i AS item{log.optional('t AS time', 'r AS rating', 'l AS label')}, "
                   f"part FROM ev ORDER BY part, {log.order}) TO {_lit(out / 'interactions.parquet')} "
                   "(FORMAT parquet)")
        finally:
            db.close()
    logger.info("prepared %s out of core in %.1f s", config.dataset, time.perf_counter() - started)
    meta = SplitMeta(name, notes, False, "s" if log.has_time else None, users, table.ids)
    return table, meta, stats


class _Db:
    """A DuckDB database file in a temporary folder, spilling there past the memory limit."""

    def __init__(self, folder: Path, memory_limit: str | None, threads: int | None):
        self.con = duckdb.connect(str(folder / "prepare.duckdb"))
        self.con.execute(f"SET temp_directory = {_lit(folder / 'spill')}")
        self.con.execute("SET TimeZone = 'UTC'")  # date strings without an offset are UTC, as in pandas
        if memory_limit:
            try:
                self.con.execute(f"SET memory_limit = {_lit(memory_limit)}")
            except duckdb.Error:
                raise ConfigError(f"memory_limit: {memory_limit!r} is not a size (e.g. 2GB, 512MB)") from None
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")

    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params or [])

    def row(self, query: str, params: list[Any] | None = None) -> tuple[Any, ...]:
        """The first row of a query that returns one. Every result is fetched to its end: DuckDB 2 refuses
        other work on a connection whose last result is unfinished."""
        rows = self.sql(query, params).fetchall()
        return tuple(rows[0]) if rows else ()

    def one(self, query: str, params: list[Any] | None = None) -> Any:
        return self.row(query, params)[0]

    def columns(self, query: str) -> list[str]:
        cursor = self.sql(query)
        names = [d[0] for d in cursor.description or []]
        cursor.fetchall()
        return names

    def column(self, query: str) -> np.ndarray:
        result = self.sql(query).fetchnumpy()
        return np.asarray(next(iter(result.values())))

    def close(self) -> None:
        self.con.close()


class _Log:
    """What is known of the log after reading: its columns and the raw ids in order of first appearance."""

    def __init__(self, path: Path, has_time: bool, has_rating: bool, has_label: bool):
        self.path = path
        self.has_time, self.has_rating, self.has_label = has_time, has_rating, has_label
        self.users_in_order: np.ndarray = np.array([], dtype=object)
        self.items_in_order: np.ndarray = np.array([], dtype=object)

    @property
    def order(self) -> str:
        """The in-memory engine's row order within a part: user, time, then the row's place in the file."""
        return "u, t, rn" if self.has_time else "u, rn"

    def optional(self, time: str, rating: str, label: str) -> str:
        present = [c for c, has in ((time, self.has_time), (rating, self.has_rating), (label, self.has_label)) if has]
        return "".join(f", {c}" for c in present)


# --- reading -----------------------------------------------------------------------------------------
def _read_log(db: _Db, path: Path, columns: ColumnMap, sep: str | None, encoding: str) -> _Log:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    logger.info("reading %s", path)
    try:
        db.sql(f"CREATE TABLE raw AS SELECT * FROM {_source(path, sep, encoding)}")
    except duckdb.Error as exc:
        raise DataError(f"{path}: cannot be parsed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    names = {str(c).lstrip("\ufeff"): str(c) for c in db.columns("SELECT * FROM raw LIMIT 0")}
    if db.one("SELECT count(*) FROM raw") == 0:
        raise DataError(f"{path}: the file has no data rows")

    def col(name: str, role: str) -> str:
        if name not in names:
            raise missing_column(path, name, list(names), role)
        return f"trim(CAST({_ident(names[name])} AS VARCHAR), {_STRIP})"

    log = _Log(path, columns.time is not None, columns.rating is not None, columns.label is not None)
    user, item = col(columns.user, "user"), col(columns.item, "item")
    for expr, role in ((user, "user"), (item, "item")):
        _first_bad(db, f"{expr} IS NULL OR {expr} IN {_EMPTY_IDS}", path,
                   lambda n, role=role: f"empty {role} id ({n} row(s) have none); fill them in or drop those rows")
    typed = [f"rowid AS rn, {user} AS u_raw, {item} AS i_raw"]
    if columns.time:
        typed.append(f"{_time_expr(db, col(columns.time, 'time'), columns.time_format, path, columns.time)} AS t")
    if columns.rating:
        typed.append(f"CAST({_number(db, col(columns.rating, 'rating'), path, columns.rating)} AS FLOAT) AS r")
    if columns.label:
        label = _number(db, col(columns.label, "label"), path, columns.label)
        if db.one(f"SELECT count(*) FROM raw WHERE {label} NOT IN (0, 1)"):
            raise DataError(f"{path}: column {columns.label!r} must hold 0/1 labels")
        typed.append(f"CAST({label} AS TINYINT) AS l")
    db.sql(f"CREATE TABLE src AS SELECT {', '.join(typed)} FROM raw")
    db.sql("DROP TABLE raw")
    log.users_in_order = db.column("SELECT u_raw FROM src GROUP BY u_raw ORDER BY min(rn)")
    log.items_in_order = db.column("SELECT i_raw FROM src GROUP BY i_raw ORDER BY min(rn)")
    return log


def _source(path: Path, sep: str | None, encoding: str) -> str:
    kind = file_kind(path)
    if kind == ".parquet":
        return f"read_parquet({_lit(path)})"
    if kind in (".jsonl", ".json", ".ndjson"):
        return f"read_json({_lit(path)}, format = 'newline_delimited')"
    if kind in (".csv", ".tsv", ".txt", ".dat"):
        options = ["all_varchar = true", "header = true"]
        delim = sep or ("\t" if kind == ".tsv" else None)
        if delim:
            options.append(f"delim = {_lit(delim)}")
        if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            options.append(f"encoding = {_lit(encoding)}")
        return f"read_csv({_lit(path)}, {', '.join(options)})"
    raise DataError(f"{path}: unknown file type {kind!r}; use .csv, .tsv, .parquet or .jsonl")


def _first_bad(db: _Db, condition: str, path: Path, what: Any) -> None:
    """Raise naming the first row (in file order) where ``condition`` holds; ``what(count)`` says what is wrong."""
    row = db.row(f"SELECT min(rowid), count(*) FROM raw WHERE {condition}")
    if row[1]:
        raise DataError(f"{where(path, int(row[0]))}: {what(int(row[1]))}")


def _raw_value(db: _Db, expr: str, condition: str) -> str:
    return repr(db.one(f"SELECT {expr} FROM raw WHERE {condition} ORDER BY rowid LIMIT 1"))


def _number(db: _Db, expr: str, path: Path, name: str) -> str:
    """A SQL expression for the column as DOUBLE; a row that is not a number is an error naming it."""
    num = f"TRY_CAST({expr} AS DOUBLE)"
    _first_bad(db, f"{num} IS NULL", path,
               lambda n: f"column {name!r} must be a number, got {_raw_value(db, expr, f'{num} IS NULL')}")
    return num


def _time_expr(db: _Db, expr: str, fmt: str, path: Path, name: str) -> str:
    """Unix seconds (BIGINT) from seconds, milliseconds or date strings, by the in-memory reader's rules."""
    num = f"TRY_CAST({expr} AS DOUBLE)"
    all_numeric = db.one(f"SELECT count(*) FROM raw WHERE {num} IS NULL") == 0
    if fmt in ("s", "ms") or (fmt == "auto" and all_numeric):
        _number(db, expr, path, name)
        if fmt == "auto":
            small = f"{num} < {MS_THRESHOLD}"
            if db.one(f"SELECT bool_or({small}) AND bool_or(NOT ({small})) FROM raw"):
                s_row = db.one(f"SELECT min(rowid) FROM raw WHERE {small}")
                ms_row = db.one(f"SELECT min(rowid) FROM raw WHERE NOT ({small})")
                raise DataError(
                    f"{path}: column {name!r} mixes unix seconds and milliseconds ({where(path, s_row)}: "
                    f"{_raw_value(db, expr, f'rowid = {s_row}')}; {where(path, ms_row)}: "
                    f"{_raw_value(db, expr, f'rowid = {ms_row}')}); convert it to one unit, "
                    f"or set columns.time_format to s or ms in the dataset's lmrec.yaml")
        in_ms = fmt == "ms" or (fmt == "auto" and db.one(f"SELECT max({num}) FROM raw") >= MS_THRESHOLD)
        secs = f"({num} / 1000.0)" if in_ms else num
        bad = f"abs({secs}) > {MAX_UNIX_SECONDS}"
        unit = "milliseconds" if in_ms else "seconds"
        _first_bad(db, bad, path, lambda n: f"column {name!r} holds {_raw_value(db, expr, bad)}, which is not a "
                                            f"unix time in {unit} before the year 3000")
        return f"CAST(trunc({secs}) AS BIGINT)"  # numpy's astype(int64) truncates too
    parsed = f"TRY_CAST({expr} AS TIMESTAMPTZ)"
    _first_bad(db, f"{parsed} IS NULL", path,
               lambda n: f"column {name!r} is not a time: {_raw_value(db, expr, f'{parsed} IS NULL')} (the "
                         "out-of-core engine reads ISO 8601 dates and unix seconds or milliseconds)")
    return f"CAST(floor(epoch({parsed})) AS BIGINT)"


def _index_events(db: _Db, log: _Log, users: IdMap, items: IdMap) -> None:
    """Events with integer user / item indices (the maps are one row per user and per item)."""
    db.con.register("user_map", pa.table({"u_raw": users.to_list(), "u": np.arange(len(users), dtype=np.int64)}))
    db.con.register("item_map", pa.table({"i_raw": items.to_list(), "i": np.arange(len(items), dtype=np.int64)}))
    db.sql("CREATE TABLE umap AS SELECT * FROM user_map")
    db.sql("CREATE TABLE imap AS SELECT * FROM item_map")
    db.con.unregister("user_map")
    db.con.unregister("item_map")
    db.sql(f"CREATE TABLE ev AS SELECT s.rn, um.u, im.i{log.optional('s.t', 's.r', 's.l')} FROM src s "
           "JOIN umap um ON s.u_raw = um.u_raw JOIN imap im ON s.i_raw = im.i_raw")
    db.sql("DROP TABLE src")


# --- preprocessing (the steps of lmrec.data.preprocess, in build_split's order) --------------------------
def _preprocess(db: _Db, log: _Log, config: PrepareConfig, table: ItemTable,
                users: IdMap) -> tuple[ItemTable, IdMap]:
    if config.min_rating is not None or config.positives_only:
        if config.min_rating is not None:
            if not log.has_rating:
                raise ConfigError("min_rating: needs ratings, and this dataset has none")
            _keep(db, f"r >= CAST({float(config.min_rating)!r} AS FLOAT)",  # compared in float32, as numpy does
                  f"keeping positives (min_rating={config.min_rating})")
        elif log.has_label:
            _keep(db, "l = 1", f"keeping positives (min_rating={config.min_rating})")
    if config.dedup:
        direction = "" if config.dedup == "first" else " DESC"
        by = ", ".join(f"{c}{direction}" for c in log.order.split(", ")[1:])
        db.sql(f"CREATE OR REPLACE TABLE ev AS SELECT * EXCLUDE (k) FROM (SELECT *, row_number() OVER "
               f"(PARTITION BY u, i ORDER BY {by}) AS k FROM ev) WHERE k = 1")
    if config.drop_items_without_text:
        db.con.register("with_text", pa.table({"i": np.flatnonzero(table.has_text()).astype(np.int64)}))
        _keep(db, "i IN (SELECT i FROM with_text)", "dropping items without text")
        db.con.unregister("with_text")
    if config.k_core:
        _k_core(db, config.k_core)
    if config.compact:
        user_keep = db.column("SELECT DISTINCT u FROM ev ORDER BY u").astype(np.int64)
        item_keep = db.column("SELECT DISTINCT i FROM ev ORDER BY i").astype(np.int64)
        db.sql(f"CREATE OR REPLACE TABLE ev AS SELECT e.rn, cu.new AS u, ci.new AS i"
               f"{log.optional('e.t', 'e.r', 'e.l')} FROM ev e "
               "JOIN (SELECT u, row_number() OVER (ORDER BY u) - 1 AS new FROM (SELECT DISTINCT u FROM ev)) cu "
               "ON e.u = cu.u JOIN (SELECT i, row_number() OVER (ORDER BY i) - 1 AS new FROM "
               "(SELECT DISTINCT i FROM ev)) ci ON e.i = ci.i")
        users = users.subset(user_keep)
        table = table.subset(item_keep)  # type: ignore[assignment]
    return table, users


def _keep(db: _Db, condition: str, step: str) -> None:
    db.sql(f"CREATE OR REPLACE TABLE ev AS SELECT * FROM ev WHERE {condition}")
    if db.one("SELECT count(*) FROM ev") == 0:
        raise DataError(f"the dataset is empty after {step}; loosen the filter")


def _k_core(db: _Db, k: int) -> None:
    """Drop users and items with fewer than ``k`` events until none remain: the k-core is unique, so this
    reaches the same events as the in-memory loop."""
    if k < 1:
        raise ConfigError(f"k-core thresholds must be >= 1, got users={k}, items={k}")
    before = db.one("SELECT count(*) FROM ev")
    rounds = 0
    while True:
        rounds += 1
        db.sql("CREATE OR REPLACE TABLE ev AS SELECT * FROM ev "
               f"WHERE u IN (SELECT u FROM ev GROUP BY u HAVING count(*) >= {k}) "
               f"AND i IN (SELECT i FROM ev GROUP BY i HAVING count(*) >= {k})")
        after = db.one("SELECT count(*) FROM ev")
        logger.info("k-core round %d: %d -> %d events", rounds, before, after)
        if after in (before, 0):
            break
        before = after
    if after == 0:
        raise DataError(f"the dataset is empty after {k}/{k}-core filtering (users/items); loosen the filter")


# --- splitting -----------------------------------------------------------------------------------------
def _split(db: _Db, log: _Log, config: PrepareConfig) -> tuple[str, dict[str, str]]:
    """Add ``part`` (0 train, 1 valid, 2 test) to every event; return the split's name and notes."""
    if config.split == "loo":  # as leave_one_out: last -> test (2+ events), second-to-last -> valid (3+)
        desc = ", ".join(f"{c} DESC" for c in log.order.split(", ")[1:])
        db.sql("CREATE OR REPLACE TABLE ev AS SELECT * EXCLUDE (n, k), CAST(CASE WHEN k = 0 AND n >= 2 THEN 2 "
               "WHEN k = 1 AND n >= 3 THEN 1 ELSE 0 END AS TINYINT) AS part FROM (SELECT *, count(*) OVER "
               f"(PARTITION BY u) AS n, row_number() OVER (PARTITION BY u ORDER BY {desc}) - 1 AS k FROM ev)")
        return "loo", {}
    check_fracs(config.valid_frac, config.test_frac)  # temporal, as temporal_split: a global time cut
    if not log.has_time:
        raise ConfigError(TEMPORAL_NEEDS_TIMES)
    n = db.one("SELECT count(*) FROM ev")
    n_test, n_valid = int(round(config.test_frac * n)), int(round(config.valid_frac * n))
    t_test = db.one(f"SELECT t FROM ev ORDER BY t LIMIT 1 OFFSET {n - n_test}") if n_test else math.inf
    t_valid = db.one(f"SELECT t FROM ev ORDER BY t LIMIT 1 OFFSET {n - n_test - n_valid}") if n_valid else t_test
    test = f"t >= {int(t_test)}" if n_test else "false"
    valid = f"t >= {int(t_valid)}" if math.isfinite(t_valid) else "false"
    db.sql(f"CREATE OR REPLACE TABLE ev AS SELECT *, CAST(CASE WHEN {test} THEN 2 WHEN {valid} THEN 1 ELSE 0 END "
           "AS TINYINT) AS part FROM ev")
    return "temporal", {"cut": temporal_cut_note(t_valid, t_test)}


def _check_leaks(db: _Db, log: _Log, name: str) -> None:
    same_time = " AND b.t = a.t" if log.has_time else ""
    for part, label in ((1, "valid"), (2, "test")):
        n = db.one(f"SELECT count(*) FROM ev a WHERE a.part = {part} AND EXISTS (SELECT 1 FROM ev b WHERE "
                   f"b.part = 0 AND b.u = a.u AND b.i = a.i{same_time})")
        if n:
            raise DataError(leak_message(name, n, label))


def _stats(db: _Db, log: _Log, table: ItemTable) -> dict[str, Any]:
    """The in-memory engine's statistics, aggregated in SQL."""
    n = db.one("SELECT count(*) FROM ev")
    ratings = None
    if log.has_rating:
        if db.one("SELECT count(DISTINCT r) FROM ev") <= LISTED_RATINGS:
            counts = db.sql("SELECT r, count(*) FROM ev GROUP BY r ORDER BY r").fetchnumpy()
            values, freq = (np.asarray(v) for v in counts.values())
            ratings = rating_stats(values.astype(np.float32), freq)
        else:
            lo, hi, mean = db.row("SELECT min(r), max(r), avg(CAST(r AS DOUBLE)) FROM ev")
            ratings = {"min": float(lo), "max": float(hi), "mean": float(mean)}
    dataset = assemble_stats(
        interactions=n, catalogue_items=len(table), used_items=db.column("SELECT DISTINCT i FROM ev ORDER BY i"),
        lengths=db.column("SELECT count(*) FROM ev GROUP BY u ORDER BY u").astype(np.int64),
        distinct_pairs=db.one("SELECT count(*) FROM (SELECT DISTINCT u, i FROM ev)"),
        time_range=db.row("SELECT min(t), max(t) FROM ev") if log.has_time else None,  # type: ignore[arg-type]
        time_unit="s" if log.has_time else None, ratings=ratings,
        positive_share=float(db.one("SELECT avg(l) FROM ev")) if log.has_label else None,
        items=table, users=None,
    )
    split = {}
    for part, label in enumerate(("train", "valid", "test")):
        row = db.row(f"SELECT count(*), count(DISTINCT u), count(DISTINCT i) FROM ev WHERE part = {part}")
        split[label] = {"interactions": int(row[0]), "users": int(row[1]), "items": int(row[2])}
    cold = {
        what: int(db.one(f"SELECT count(DISTINCT {c}) FROM ev WHERE part = 2 AND {c} NOT IN "
                         f"(SELECT {c} FROM ev WHERE part = 0)"))
        for what, c in (("cold_test_items", "i"), ("cold_test_users", "u"))
    }
    return {"dataset": dataset, "split": split, **cold}


def _lit(value: object) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A SQL identifier (a column name from the user's file)."""
    return '"' + name.replace('"', '""') + '"'
