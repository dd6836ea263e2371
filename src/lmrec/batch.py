"""Recommendations for every user of a bundle, written to one Parquet file chunk by chunk.

Users are scored in chunks of ``chunk`` users (memory bounded by the chunk, not by the number of users), on
this machine or on a Ray cluster (``lmrec.raydata``: one bundle per Ray worker); either way the chunks are
the same and are written in user order, so both give the same file.

Columns: ``user`` (raw id), ``rank`` (1 = best), ``item`` (raw id), ``score`` (the model's score). A user
with fewer than ``k`` items left to recommend gets fewer rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmrec import raydata
from lmrec.bundle import BUNDLE_JSON, DATA_DIR, Bundle
from lmrec.errors import ConfigError
from lmrec.progress import progress

BatchEngine = Literal["local", "ray"]
SCHEMA = pa.schema([("user", pa.string()), ("rank", pa.int16()), ("item", pa.string()), ("score", pa.float32())])
MAX_K = 10_000  # rank is int16; a top-10,000 list per user is already a catalogue dump


def user_chunks(n_users: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` user-index ranges of at most ``chunk`` users, in order."""
    if chunk < 1:
        raise ConfigError(f"chunk: users per chunk must be at least 1, got {chunk}")
    return [(s, min(s + chunk, n_users)) for s in range(0, n_users, chunk)]


def recommend_chunk(bundle: Bundle, start: int, stop: int, k: int) -> pa.Table:
    """The rows of users ``start .. stop - 1`` (``SCHEMA``)."""
    users = np.arange(start, stop, dtype=np.int64)
    ids, scores = bundle.recommend_users(users, k)
    keep = np.isfinite(scores)
    user_of = np.repeat(users, keep.sum(axis=1))
    return pa.table({
        "user": pa.array(bundle.users.raws(user_of), pa.string()),
        "rank": pa.array(np.nonzero(keep)[1].astype(np.int16) + 1, pa.int16()),
        "item": pa.array(bundle.items.raws(ids[keep]), pa.string()),
        "score": pa.array(scores[keep].astype(np.float32), pa.float32()),
    }, schema=SCHEMA)


def recommend_all(bundle_path: str | Path, out: str | Path, k: int = 10, chunk: int = 1024,
                  engine: BatchEngine = "local", workers: int | None = None,
                  address: str | None = None) -> dict[str, Any]:
    """Top ``k`` for every user of the bundle into the Parquet file ``out`` (written under a temporary name and
    renamed, so a killed run leaves no partial file). ``engine="ray"``: on the Ray cluster at ``address``
    (default: a running one, else a local one) with ``workers`` bundle-holding workers."""
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"k: the number of items must be in 1..{MAX_K}, got {k}")
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine: {engine!r} is not one of local, ray")
    out = Path(out)
    if out.suffix != ".parquet":
        raise ConfigError(f"out: {out} should be a .parquet file")
    started = time.perf_counter()
    if engine == "ray":
        n_users = bundle_users(bundle_path)
        chunks = user_chunks(n_users, chunk)
        ranges = pa.table({"start": [s for s, _ in chunks], "stop": [e for _, e in chunks]})
        tables: Iterator[pa.Table] = raydata.map_in_order(
            ranges, _RayRecommender, {"path": str(Path(bundle_path).resolve()), "k": k}, address, workers)
    else:
        bundle = Bundle.load(bundle_path)
        n_users = len(bundle.users)
        chunks = user_chunks(n_users, chunk)
        tables = (recommend_chunk(bundle, s, e, k)
                  for s, e in progress(chunks, "recommending", total=len(chunks), unit="chunk"))
    rows = write_tables(tables, out)
    return {"users": n_users, "rows": rows, "k": k, "engine": engine, "out": str(out),
            "seconds": round(time.perf_counter() - started, 3)}


class _RayRecommender:
    """One bundle per Ray actor; called on one user range at a time."""

    def __init__(self, path: str, k: int):
        self.bundle, self.k = Bundle.load(path), k

    def __call__(self, ranges: pa.Table) -> pa.Table:
        return pa.concat_tables([recommend_chunk(self.bundle, s, e, self.k) for s, e in
                                 zip(ranges.column("start").to_pylist(), ranges.column("stop").to_pylist())])


def bundle_users(path: str | Path) -> int:
    """How many users a bundle knows, from its id maps (without loading the model)."""
    file = Path(path) / DATA_DIR / "idmaps.json"
    if not (Path(path) / BUNDLE_JSON).is_file() or not file.is_file():
        raise ConfigError(f"model: {path} is not a bundle (no {BUNDLE_JSON} or {DATA_DIR}/idmaps.json); "
                          "train one with lmrec train")
    return len(json.loads(file.read_text())["users"])


def write_tables(tables: Iterator[pa.Table], out: Path) -> int:
    """Write ``tables`` (``SCHEMA``) one after another into ``out``; returns the number of rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA) as writer:
            for table in tables:
                writer.write_table(table.cast(SCHEMA))
                rows += table.num_rows
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
