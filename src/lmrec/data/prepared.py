"""Prepared datasets: preprocess + split once, write Parquet + JSON, reload from there.

The cache key hashes the source files' contents, the preparation config and the format version, so
a second ``prepare`` of an unchanged source is a no-op, and any change (an edited file, another split,
a new lmrec data format) gives a fresh preparation instead of stale data.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from lmrec import __version__
from lmrec.data import preprocess
from lmrec.data.dataset import Dataset
from lmrec.data.datasets import DatasetSpec, get_spec, load_dataset, locate, source_files
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.outofcore import prepare_out_of_core
from lmrec.data.split import (
    PARTS,
    Split,
    SplitMeta,
    cold_start_items,
    cold_start_users,
    leave_one_out,
    random_split,
    temporal_split,
)
from lmrec.data.stats import interaction_stats
from lmrec.errors import ConfigError, DataError
from lmrec.fsutil import atomic_dir, inside, sha256_file
from lmrec.progress import logger
from lmrec.settings import cache_home

FORMAT_VERSION = 2  # 2: meta.json keeps the item table's template and title field
SplitKind = Literal["loo", "temporal", "random", "cold-items", "cold-users", "predefined"]


class PrepareConfig(BaseModel):
    """How to turn a raw dataset into a split. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    split: SplitKind | None = None  # None: the dataset's default (predefined where it ships one)
    predefined: str | None = None  # which predefined split, e.g. u1 for movielens-100k
    valid_frac: float = 0.1
    test_frac: float = 0.1
    seed: int = 0
    min_rating: float | None = None
    positives_only: bool = False
    dedup: Literal["first", "last"] | None = None
    k_core: int | None = None
    drop_items_without_text: bool = False
    compact: bool = False

    def resolved(self, default_split: str) -> PrepareConfig:
        return self if self.split else self.model_copy(update={"split": default_split})

    def filters(self) -> list[str]:
        """Names of the preprocessing steps this config asks for."""
        steps = []
        if self.min_rating is not None or self.positives_only:
            steps.append("min_rating/positives_only")
        if self.dedup:
            steps.append("dedup")
        if self.k_core:
            steps.append("k_core")
        if self.drop_items_without_text:
            steps.append("drop_items_without_text")
        if self.compact:
            steps.append("compact")
        return steps


@dataclass
class Prepared:
    """A prepared dataset: the split, item/user text, statistics, and where it is stored."""

    name: str
    config: PrepareConfig
    key: str
    split: Split
    items: ItemTable
    users: UserTable | None
    stats: dict[str, Any]
    path: Path

    @property
    def interactions(self) -> Interactions:
        """All events of the split (train, valid, test, context) in one set."""
        return Interactions.concat(list(self.split.parts().values()))

    @classmethod
    def load(cls, path: Path) -> Prepared:
        """Reload a prepared dataset written by ``prepare``."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        maps = json.loads((path / "idmaps.json").read_text())
        users, items = IdMap(maps["users"], name="user"), IdMap(maps["items"], name="item")
        frame = pd.read_parquet(path / "interactions.parquet")
        part = frame.pop("part").to_numpy()
        inter = Interactions.from_frame(frame, users, items, time_unit=meta["time_unit"])
        parts = {p: inter.select(part == i) for i, p in enumerate(PARTS)}
        split = Split(parts["train"], parts["valid"], parts["test"],
                      parts["context"] if meta["has_context"] else None, name=meta["split_name"],
                      notes=meta.get("notes", {}))
        item_meta = meta.get("items", {})
        item_table = ItemTable(items, template=item_meta.get("template"), title_field=item_meta.get("title_field"))
        for column in pq.read_schema(path / "items.parquet").names:  # each text field is read when first used
            item_table.defer(column, partial(_read_column, path / "items.parquet", column))
        item_table.source = path
        user_table = None
        if (path / "users.parquet").is_file():
            uf = pd.read_parquet(path / "users.parquet")
            user_table = UserTable(users, {c: uf[c].to_numpy(dtype=object) for c in uf.columns})
        stats = json.loads((path / "stats.json").read_text())
        return cls(meta["dataset"], PrepareConfig.model_validate(meta["config"]), meta["key"], split,
                   item_table, user_table, stats, path)


def _read_column(file: Path, column: str) -> np.ndarray:
    """One column of a prepared table (its values were written as strings)."""
    try:
        table = pq.read_table(file, columns=[column])
    except FileNotFoundError:
        raise DataError(f"{file} is gone (was the prepared dataset removed after it was loaded?); prepare the "
                        "dataset again") from None
    return table.column(0).to_numpy(zero_copy_only=False)


Engine = Literal["memory", "duckdb"]


def prepare(
    config: PrepareConfig | str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
    force: bool = False, engine: Engine = "memory", memory_limit: str | None = None,
) -> Prepared:
    """Prepare (or reload) a dataset split. Returns at once when an identical preparation exists.

    ``engine="duckdb"`` prepares a user's own log out of core (see ``lmrec.data.outofcore``); both engines
    write the same prepared dataset, so either one's result is reused by the other.
    """
    path, prepared = _prepare(config, data_dir, cache_dir, force, engine, memory_limit)
    return prepared if prepared is not None else Prepared.load(path)


def prepare_on_disk(
    config: PrepareConfig | str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
    force: bool = False, engine: Engine = "duckdb", memory_limit: str | None = None,
) -> Path:
    """As ``prepare``, but return the prepared folder without loading it (for logs larger than memory)."""
    return _prepare(config, data_dir, cache_dir, force, engine, memory_limit)[0]


def _prepare(
    config: PrepareConfig | str, data_dir: str | Path | None, cache_dir: str | Path | None, force: bool,
    engine: Engine, memory_limit: str | None,
) -> tuple[Path, Prepared | None]:
    if engine not in ("memory", "duckdb"):
        raise ConfigError(f"engine: {engine!r} is not one of memory, duckdb")
    if isinstance(config, str):
        config = PrepareConfig(dataset=config)
    spec = get_spec(config.dataset, data_dir)
    config = config.resolved(spec.default_split)
    files = source_files(spec, data_dir)
    digests = {f.name: sha256_file(f) for f in files}  # read each source once
    key = _cache_key(config, digests)
    root = Path(cache_dir) if cache_dir is not None else cache_home() / "prepared"
    out = inside(root, Path(config.dataset) / f"{config.split}-{key[:16]}")
    if not force and (out / "meta.json").is_file():
        try:
            if json.loads((out / "meta.json").read_text()).get("key") == key:
                return out, (Prepared.load(out) if engine == "memory" else None)
        except Exception as exc:  # a truncated Parquet raises pyarrow's own types; the cache is ours to rebuild
            logger.warning("prepared dataset %s is unreadable (%s: %s); preparing it again", out,
                           type(exc).__name__, " ".join(str(exc).split())[:120])
    started = time.perf_counter()
    if engine == "duckdb":
        _prepare_out_of_core(spec, config, key, digests, out, data_dir, memory_limit, started)
        return out, None
    dataset = load_dataset(config.dataset, data_dir)
    split, items, users = build_split(dataset, config)
    split.assert_no_leakage()
    stats = {
        "dataset": interaction_stats(Interactions.concat(list(split.parts().values())), items, users),
        "split": split.summary(),
        "cold_test_items": int(len(split.cold_items("test"))),
        "cold_test_users": int(len(split.cold_users("test"))),
        "prepare_seconds": round(time.perf_counter() - started, 3),
    }
    write_prepared(out, config, key, split, items, users, stats, digests)
    return out, Prepared(config.dataset, config, key, split, items, users, stats, out)


def _prepare_out_of_core(spec: DatasetSpec, config: PrepareConfig, key: str, digests: dict[str, str], out: Path,
                         data_dir: str | Path | None, memory_limit: str | None, started: float) -> None:
    user = spec.generic
    if user is None:
        raise ConfigError(f"engine: the out-of-core engine reads a user's own log (a data-home folder with "
                          f"lmrec.yaml); {config.dataset!r} is a built-in dataset that fits in memory: use "
                          "--engine memory")
    if config.predefined:
        raise ConfigError("predefined: names a published split, so it only applies with split 'predefined'")
    folder = locate(spec, data_dir)
    with atomic_dir(out) as tmp:
        items, meta, stats = prepare_out_of_core(
            folder / user.interactions, user.columns, folder / user.items if user.items else None,
            user.item_columns, config, tmp, sep=user.sep, encoding=user.encoding, memory_limit=memory_limit,
            work_dir=out.parent)
        stats["prepare_seconds"] = round(time.perf_counter() - started, 3)
        write_tables(tmp, config, key, items, None, stats, digests, meta)


def prepared_summary(path: Path) -> dict[str, Any]:
    """What a prepared folder says of itself without loading its rows: split name, statistics, config."""
    meta = json.loads((Path(path) / "meta.json").read_text())
    return {"split_name": meta["split_name"], "stats": json.loads((Path(path) / "stats.json").read_text()),
            "config": meta["config"], "path": Path(path)}


def build_split(dataset: Dataset, config: PrepareConfig) -> tuple[Split, ItemTable, UserTable | None]:
    """Apply the config's preprocessing to a loaded dataset and split it."""
    if config.split == "predefined":
        if config.filters():
            raise ConfigError(
                f"predefined splits are used exactly as published; drop the preprocessing options "
                f"({', '.join(config.filters())}) or choose split loo / temporal / random"
            )
        split = dataset.predefined_split(config.predefined)
        return split, dataset.items, dataset.users
    if config.predefined:
        raise ConfigError("predefined: names a published split, so it only applies with split 'predefined'")
    inter, items, users = dataset.interactions, dataset.items, dataset.users
    if config.min_rating is not None or config.positives_only:
        inter = preprocess.to_implicit(inter, config.min_rating)
    if config.dedup:
        inter = preprocess.dedup(inter, config.dedup)
    if config.drop_items_without_text:
        inter = preprocess.drop_items_without_text(inter, items)
    if config.k_core:
        inter = preprocess.k_core(inter, config.k_core, config.k_core)
    if config.compact:
        inter, items, users = preprocess.compact(inter, items, users)  # type: ignore[assignment]
    if len(inter) == 0:
        raise DataError(f"dataset {dataset.name!r} has no interactions left after preprocessing")
    kind = config.split
    if kind == "loo":
        split = leave_one_out(inter)
    elif kind == "temporal":
        split = temporal_split(inter, config.valid_frac, config.test_frac)
    elif kind == "random":
        split = random_split(inter, config.valid_frac, config.test_frac, config.seed)
    elif kind == "cold-items":
        split = cold_start_items(inter, config.valid_frac, config.test_frac, config.seed)
    elif kind == "cold-users":
        split = cold_start_users(inter, config.valid_frac, config.test_frac, config.seed)
    else:  # pragma: no cover - pydantic restricts the values
        raise ConfigError(f"unknown split {kind!r}")
    return split, items, users  # type: ignore[return-value]



def _cache_key(config: PrepareConfig, digests: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(f"lmrec-prepared-v{FORMAT_VERSION}\n".encode())
    h.update(config.model_dump_json().encode())
    for name in sorted(digests):
        h.update(f"\n{name}:{digests[name]}".encode())
    return h.hexdigest()


def write_prepared(out: Path, config: PrepareConfig, key: str, split: Split, items: ItemTable, users: UserTable | None,
           stats: dict[str, Any], digests: dict[str, str]) -> None:
    """Write into a temporary folder, then rename: a killed run never leaves a half-written preparation."""
    with atomic_dir(out) as tmp:
        parts = split.parts()
        frames = []
        for i, p in enumerate(PARTS):
            if p in parts:
                f = parts[p].to_frame()
                f["part"] = np.int8(i)
                frames.append(f)
        pd.concat(frames, ignore_index=True).to_parquet(tmp / "interactions.parquet", index=False)
        write_tables(tmp, config, key, items, users, stats, digests, SplitMeta.of(split))


def write_tables(tmp: Path, config: PrepareConfig, key: str, items: ItemTable, users: UserTable | None,
                 stats: dict[str, Any], digests: dict[str, str], split: SplitMeta) -> None:
    """Everything of a prepared dataset but ``interactions.parquet`` (whichever engine wrote that)."""
    # row groups of 64k items: ItemTextChunks reads a catalogue a bounded piece at a time
    pd.DataFrame({f: items[f] for f in items.fields}).astype(str).to_parquet(tmp / "items.parquet", index=False,
                                                                          row_group_size=65_536)
    if users is not None:
        pd.DataFrame({f: users[f] for f in users.fields}).astype(str).to_parquet(tmp / "users.parquet", index=False)
    (tmp / "idmaps.json").write_text(json.dumps({"users": split.users.to_list(), "items": split.items.to_list()}))
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
    meta = {
        "dataset": config.dataset, "key": key, "config": config.model_dump(), "format_version": FORMAT_VERSION,
        "lmrec_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "split_name": split.name, "has_context": split.has_context, "notes": split.notes,
        "time_unit": split.time_unit, "sources": digests,
        "items": {"template": items.template, "title_field": items.title_field},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
