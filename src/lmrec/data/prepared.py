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
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from lmrec import __version__
from lmrec.data import preprocess
from lmrec.data.dataset import Dataset
from lmrec.data.datasets import get_spec, load_dataset, source_files
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.split import (
    PARTS,
    Split,
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
        item_frame = pd.read_parquet(path / "items.parquet")
        item_meta = meta.get("items", {})
        item_table = ItemTable(items, {c: item_frame[c].to_numpy(dtype=object) for c in item_frame.columns},
                               template=item_meta.get("template"), title_field=item_meta.get("title_field"))
        user_table = None
        if (path / "users.parquet").is_file():
            uf = pd.read_parquet(path / "users.parquet")
            user_table = UserTable(users, {c: uf[c].to_numpy(dtype=object) for c in uf.columns})
        stats = json.loads((path / "stats.json").read_text())
        return cls(meta["dataset"], PrepareConfig.model_validate(meta["config"]), meta["key"], split,
                   item_table, user_table, stats, path)


def prepare(
    config: PrepareConfig | str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
    force: bool = False,
) -> Prepared:
    """Prepare (or reload) a dataset split. Returns at once when an identical preparation exists."""
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
                return Prepared.load(out)
        except Exception as exc:  # a truncated Parquet raises pyarrow's own types; the cache is ours to rebuild
            logger.warning("prepared dataset %s is unreadable (%s: %s); preparing it again", out,
                           type(exc).__name__, " ".join(str(exc).split())[:120])
    started = time.perf_counter()
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
    return Prepared(config.dataset, config, key, split, items, users, stats, out)


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
        pd.DataFrame({f: items[f] for f in items.fields}).astype(str).to_parquet(tmp / "items.parquet", index=False)
        if users is not None:
            pd.DataFrame({f: users[f] for f in users.fields}).astype(str).to_parquet(tmp / "users.parquet", index=False)
        (tmp / "idmaps.json").write_text(json.dumps({"users": split.train.users.to_list(),
                                                      "items": split.train.items.to_list()}))
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
        meta = {
            "dataset": config.dataset, "key": key, "config": config.model_dump(), "format_version": FORMAT_VERSION,
            "lmrec_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "split_name": split.name, "has_context": split.context is not None, "notes": split.notes,
            "time_unit": split.train.time_unit, "sources": digests,
            "items": {"template": items.template, "title_field": items.title_field},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
