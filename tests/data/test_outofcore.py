"""The out-of-core (DuckDB) engine writes the same prepared dataset as the in-memory one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lmrec.data.prepared import PrepareConfig, prepare, prepare_on_disk, prepared_summary
from lmrec.errors import ConfigError, DataError


def _log(n: int = 3000, seed: int = 0, with_time: bool = True) -> pd.DataFrame:
    """A log with what trips preprocessing up: repeated user-item pairs (at other times), tied times, ids with
    leading zeros, ratings with halves, users and items of every activity level."""
    rng = np.random.default_rng(seed)
    users = np.where(rng.random(n) < 0.3, rng.zipf(1.6, n) % 400, rng.integers(0, 400, n))  # heavy and light
    items = (rng.zipf(1.4, n) * 7 + users) % 90
    frame = pd.DataFrame({
        "who": [f"u{u:03d}" for u in users],
        "what": [f"{i:04d}" for i in items],
        "stars": rng.choice([1, 2, 3, 3.5, 4, 5], n),
    })
    if with_time:
        frame["when"] = 1_600_000_000_000 + rng.integers(0, 400, n) * 60_000  # milliseconds, many ties
    return frame


def _write_dataset(home, name: str, frame: pd.DataFrame, kind: str, columns: str) -> None:
    folder = home / name
    folder.mkdir(parents=True)
    if kind == "csv":
        frame.to_csv(folder / "log.csv", index=False)
    elif kind == "parquet":
        frame.to_parquet(folder / "log.parquet", index=False)
    else:
        frame.to_json(folder / "log.jsonl", orient="records", lines=True)
    items = pd.DataFrame({"sku": [f"{i:04d}" for i in range(0, 100, 1) if i % 9],  # some items lack a row
                          "title": [f"Item {i}" if i % 4 else "" for i in range(0, 100) if i % 9]})
    items.to_csv(folder / "items.csv", index=False)
    (folder / "lmrec.yaml").write_text(
        f"interactions: log.{kind}\nitems: items.csv\ncolumns: {columns}\nitem_columns: {{id: sku}}\n")


def _same(a, b, where: str = "") -> None:
    """Equal, floats to 1e-9 (SQL and numpy add in different orders)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


def _assert_identical(memory, disk) -> None:
    for part in ("train", "valid", "test"):
        a, b = memory.split.parts()[part], disk.split.parts()[part]
        assert a.equals(b), f"{part} differs: {a} vs {b}"
    assert disk.split.context is None and memory.split.context is None
    assert memory.split.name == disk.split.name and memory.split.notes == disk.split.notes
    assert memory.items.ids == disk.items.ids and memory.items.fields == disk.items.fields
    for f in memory.items.fields:
        np.testing.assert_array_equal(memory.items[f], disk.items[f])
    assert (memory.items.template, memory.items.title_field) == (disk.items.template, disk.items.title_field)
    _same({k: v for k, v in memory.stats.items() if k != "prepare_seconds"},
          {k: v for k, v in disk.stats.items() if k != "prepare_seconds"})


CASES = {
    "loo-csv": ("csv", True, dict(split="loo", dedup="first")),
    "loo-kcore-compact": ("csv", True, dict(split="loo", dedup="last", k_core=3, compact=True)),
    "loo-threshold-text": ("parquet", True, dict(split="loo", dedup="first", min_rating=3.5,
                                                 drop_items_without_text=True)),
    "temporal-kcore": ("jsonl", True, dict(split="temporal", valid_frac=0.15, test_frac=0.2, dedup="first",
                                           k_core=2)),
    "loo-no-time": ("csv", False, dict(split="loo", dedup="first", k_core=2, compact=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_out_of_core_and_in_memory_prepare_identical_splits(case, tmp_path, monkeypatch):
    kind, with_time, options = CASES[case]
    columns = "{user: who, item: what, rating: stars" + (", time: when}" if with_time else "}")
    _write_dataset(tmp_path / "data", "shop", _log(with_time=with_time), kind, columns)
    monkeypatch.setenv("LMREC_DATA", str(tmp_path / "data"))
    config = PrepareConfig(dataset="shop", **options)
    memory = prepare(config, cache_dir=tmp_path / "mem")
    disk = prepare(config, cache_dir=tmp_path / "disk", engine="duckdb", memory_limit="256MB")
    assert len(memory.split.test) > 30 and len(memory.split.valid) > 30  # the case exercises every part
    _assert_identical(memory, disk)
    # the folder is the one format: reloading it with the other engine asked for reuses it
    assert prepare_on_disk(config, cache_dir=tmp_path / "disk", engine="memory") == disk.path
    assert prepared_summary(disk.path)["stats"]["split"] == memory.stats["split"]


def test_datetime_strings_read_as_utc_in_both_engines(tmp_path, monkeypatch):
    frame = pd.DataFrame({"who": ["a", "a", "a", "b", "b"], "what": ["0001", "0002", "0003", "0001", "0003"],
                          "when": ["2020-01-01T10:00:00+00:00", "2020-01-02T00:00:00+02:00", "2020-01-03T00:00:00+00:00",
                                   "2020-01-01T09:00:00-01:00", "2020-02-01T00:00:00+00:00"]})
    _write_dataset(tmp_path / "data", "shop", frame, "csv", "{user: who, item: what, time: when}")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path / "data"))
    memory = prepare("shop", cache_dir=tmp_path / "mem")
    disk = prepare("shop", cache_dir=tmp_path / "disk", engine="duckdb")
    _assert_identical(memory, disk)
    assert disk.split.valid.time.tolist() == [1577916000]  # 2020-01-02T00:00+02:00 is 2020-01-01 22:00 UTC


def test_out_of_core_errors_name_the_row_and_the_way_out(tmp_path, monkeypatch):
    home = tmp_path / "data"
    frame = _log(50)
    frame.loc[7, "who"] = " "
    _write_dataset(home, "blank", frame, "csv", "{user: who, item: what, time: when}")
    frame = _log(50)
    frame["when"] = pd.to_datetime(frame["when"], unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S")
    frame.loc[3, "when"] = "yesterday"
    _write_dataset(home, "badtime", frame, "csv", "{user: who, item: what, time: when}")
    _write_dataset(home, "nocol", _log(50), "csv", "{user: customer, item: what}")
    monkeypatch.setenv("LMREC_DATA", str(home))
    with pytest.raises(DataError, match=r"log.csv:9 \(data row 8\): empty user id \(1 row\(s\) have none\)"):
        prepare("blank", cache_dir=tmp_path / "c", engine="duckdb")
    with pytest.raises(DataError, match=r"log.csv:5 \(data row 4\): column 'when' is not a time: 'yesterday'"):
        prepare("badtime", cache_dir=tmp_path / "c", engine="duckdb")
    with pytest.raises(DataError, match="missing user column 'customer'; columns are"):
        prepare("nocol", cache_dir=tmp_path / "c", engine="duckdb")
    with pytest.raises(ConfigError, match="split: the out-of-core engine makes the loo and temporal splits; "
                                          "'random' needs the in-memory engine"):
        prepare(PrepareConfig(dataset="nocol", split="random"), cache_dir=tmp_path / "c", engine="duckdb")
    with pytest.raises(ConfigError, match="memory_limit: 'lots' is not a size"):
        prepare("badtime", cache_dir=tmp_path / "c", engine="duckdb", memory_limit="lots")
    with pytest.raises(ConfigError, match="engine: 'spark' is not one of memory, duckdb"):
        prepare("badtime", engine="spark")  # type: ignore[arg-type]
    assert not list((tmp_path / "c").rglob("*.parquet"))  # a failed preparation leaves nothing behind


def test_out_of_core_refuses_built_in_datasets_with_a_reason(tmp_path, monkeypatch):
    from tests.data.fixtures import write_ml100k

    write_ml100k(tmp_path / "movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    with pytest.raises(ConfigError, match="built-in dataset that fits in memory: use --engine memory"):
        prepare(PrepareConfig(dataset="movielens-100k", split="loo"), cache_dir=tmp_path / "c", engine="duckdb")


def test_leaking_duplicates_are_refused_by_both_engines(tmp_path, monkeypatch):
    frame = pd.DataFrame({"who": ["a"] * 5, "what": ["0001", "0002", "0001", "0001", "0001"], "when": [1, 2, 3, 3, 3]})
    _write_dataset(tmp_path / "data", "dups", frame, "csv", "{user: who, item: what, time: when}")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path / "data"))
    for engine in ("memory", "duckdb"):
        with pytest.raises(DataError, match="split 'loo' leaks: 1 valid events also occur in train"):
            prepare("dups", cache_dir=tmp_path / engine, engine=engine)
    meta = json.loads((prepare_on_disk(PrepareConfig(dataset="dups", dedup="first"), cache_dir=tmp_path / "ok")
                       / "meta.json").read_text())
    assert meta["config"]["dedup"] == "first"


def test_cli_prepares_out_of_core(tmp_path, monkeypatch, capsys):
    from lmrec.cli import main

    _write_dataset(tmp_path / "data", "shop", _log(), "csv", "{user: who, item: what, time: when}")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "cache"))
    assert main(["datasets", "prepare", "shop", "--engine", "duckdb", "--memory-limit", "256MB", "--dedup", "first",
                 "--split", "temporal"]) == 0
    printed = capsys.readouterr().out
    memory = prepare(PrepareConfig(dataset="shop", dedup="first", split="temporal"), cache_dir=tmp_path / "mem")
    assert f"{len(memory.split.test):,}" in printed and "split 'temporal'" in printed
    assert main(["datasets", "prepare", "shop", "--engine", "spark"]) == 2
    assert "engine: 'spark' is not one of memory, duckdb" in capsys.readouterr().err
