"""Named datasets: which files each needs, where they live, how to read them and how to get them.

A dataset named N lives in folder N of the data home (see ``lmrec.settings.data_home``). Per-domain
views (``amazon-arts``, ``amazon-office``) read the folder of the dataset they are a view of. Any other
folder of the data home with an ``lmrec.yaml`` is a user dataset read by the generic reader.
"""

from __future__ import annotations

import codecs
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmrec.config import validate
from lmrec.data.dataset import Dataset
from lmrec.data.download import Download, download_to
from lmrec.data.readers import (
    ColumnMap,
    ItemColumns,
    read_collm,
    read_generic,
    read_lcrec,
    read_movielens_1m,
    read_movielens_100k,
    read_recbole,
    read_sequence_file,
    read_urllm,
)
from lmrec.errors import ConfigError, DatasetNotFound, LmrecError, one_line
from lmrec.settings import data_home, data_home_source

USER_CONFIG = "lmrec.yaml"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_AO_ITEMS = {"item_listA_F.csv": "arts", "item_listO_AA_F.csv": "office"}


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one named dataset."""

    name: str
    description: str
    folder: str
    files: tuple[str, ...]
    read: Callable[[Path], Dataset]
    how_to_get: str
    default_split: str = "loo"
    optional_files: tuple[str, ...] = ()
    download: Download | None = None
    extra: dict[str, str] = field(default_factory=dict)
    generic: UserDatasetConfig | None = None  # a user's own log: what the out-of-core engine reads


def _arts_office(folder: Path) -> Dataset:
    return read_urllm(folder, _AO_ITEMS, name="amazon-arts-office")


def _domain_view(domain: str) -> Callable[[Path], Dataset]:
    def read(folder: Path) -> Dataset:
        full = _arts_office(folder)
        return full.restrict_items(full.items["domain"] == domain, name=f"amazon-{domain}")
    return read


_ML100K_SPLIT_FILES = tuple(f"{k}.{p}" for k in ("u1", "u2", "u3", "u4", "u5", "ua", "ub") for p in ("base", "test"))
_AO_FILES = (*_AO_ITEMS, "train_F2.txt", "valid_F2.txt", "test_F2.txt")
_AO_HOW = ("copy DG_Final/AO/ of github.com/TingJShen/URLLM (item_list*.csv, *_F2.txt, Dualuser_dict.json) "
           "into the folder")

SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        "movielens-100k", "MovieLens 100K ratings (943 users, 1,682 movies) with genres, demographics, official splits",
        "movielens-100k", ("u.data", "u.item", "u.user", "u.genre"), lambda f: read_movielens_100k(f),
        how_to_get="run `lmrec datasets download movielens-100k` (GroupLens, research use only)",
        optional_files=_ML100K_SPLIT_FILES,
        download=Download(f"{_GROUPLENS}/ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "ml-100k"),
    ),
    DatasetSpec(
        "movielens-1m", "MovieLens 1M ratings, original '::' files", "movielens-1m",
        ("ratings.dat", "movies.dat"), lambda f: read_movielens_1m(f),
        how_to_get="run `lmrec datasets download movielens-1m` (GroupLens, research use only)",
        optional_files=("users.dat",),
        download=Download(f"{_GROUPLENS}/ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
    ),
    DatasetSpec(
        "movielens-1m-collm", "ML-1M subset released by CoLLM: like/dislike CTR rows, time split, titles",
        "movielens-1m-collm", ("train_ood2.parquet", "valid_ood2.parquet", "test_ood2.parquet"),
        lambda f: read_collm(f), default_split="predefined",
        how_to_get="take collm-datasets/ml-1m.zip of github.com/zyang1580/CoLLM and save its *_ood2 frames as Parquet",
    ),
    DatasetSpec(
        "amazon-scientific", "Amazon 2018 Industrial & Scientific, UniSRec leave-one-out split (RecBole atomic)",
        "amazon-scientific",
        ("Scientific.train.inter", "Scientific.valid.inter", "Scientific.test.inter", "Scientific.text"),
        lambda f: read_recbole(f, "Scientific", "amazon-scientific"), default_split="predefined",
        optional_files=("Scientific.item2index", "Scientific.user2index"),
        how_to_get="copy dataset/Scientific/ of github.com/ysh-1998/CoWPiRec (UniSRec format) into the folder",
    ),
    DatasetSpec(
        "amazon-scientific-lcrec", "Amazon 2018 Industrial & Scientific 5-core with descriptions (LC-Rec JSON)",
        "amazon-scientific-lcrec", ("Scientific.inter.json", "Scientific.item.json"),
        lambda f: read_lcrec(f, "Scientific", "amazon-scientific-lcrec"),
        how_to_get="copy data/Scientific/ of github.com/Nishikata97/CollisionGenRec into the folder",
    ),
    DatasetSpec(
        "amazon-beauty", "Amazon 2014 Beauty 5-core, S3-Rec sequences with product titles",
        "amazon-beauty", ("Beauty.txt", "items.csv"),
        lambda f: read_sequence_file(f / "Beauty.txt", f / "items.csv", name="amazon-beauty"),
        how_to_get="copy data/Beauty.txt of github.com/RUCAIBox/CIKM2020-S3Rec plus an items.csv "
                   "(item_id,asin,title) into the folder",
    ),
    DatasetSpec(
        "amazon-arts-office", "Amazon Arts <-> Office cross-domain sequences (URLLM), user-disjoint split",
        "amazon-arts-office", _AO_FILES, _arts_office, default_split="predefined",
        optional_files=("Dualuser_dict.json",), how_to_get=_AO_HOW,
    ),
    DatasetSpec(
        "amazon-arts", "Arts items only of amazon-arts-office (a per-domain view)", "amazon-arts-office",
        _AO_FILES, _domain_view("arts"), default_split="predefined",
        optional_files=("Dualuser_dict.json",), how_to_get=_AO_HOW,
    ),
    DatasetSpec(
        "amazon-office", "Office items only of amazon-arts-office (a per-domain view)", "amazon-arts-office",
        _AO_FILES, _domain_view("office"), default_split="predefined",
        optional_files=("Dualuser_dict.json",), how_to_get=_AO_HOW,
    ),
]}


class UserDatasetConfig(BaseModel):
    """``lmrec.yaml`` in a data-home folder: a user's own logs read by the generic reader."""

    model_config = ConfigDict(extra="forbid")
    description: str = "user dataset"
    interactions: str
    items: str | None = None
    columns: ColumnMap = ColumnMap()
    item_columns: ItemColumns = ItemColumns()
    sep: str | None = None
    encoding: str = Field("utf-8", description="text encoding of the CSV / TSV / JSONL files (e.g. latin-1)")
    default_split: str = "loo"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
        return value


def _user_spec(name: str, folder: Path) -> DatasetSpec:
    path = folder / USER_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (interactions, items, columns, ...)")
    cfg = validate(UserDatasetConfig, raw, where=str(path))
    files = (USER_CONFIG, cfg.interactions) + ((cfg.items,) if cfg.items else ())
    return DatasetSpec(
        name, cfg.description, name, files,
        lambda f: read_generic(f / cfg.interactions, cfg.columns, f / cfg.items if cfg.items else None,
                               cfg.item_columns, name=name, sep=cfg.sep, encoding=cfg.encoding),
        how_to_get=f"edit {path}", default_split=cfg.default_split, generic=cfg,
    )


def get_spec(name: str, data_dir: str | Path | None = None) -> DatasetSpec:
    """The spec of a named dataset (built-in, or a data-home folder with ``lmrec.yaml``)."""
    if name in SPECS:
        return SPECS[name]
    check_dataset_name(name)
    folder = data_home(data_dir) / name
    if (folder / USER_CONFIG).is_file():
        return _user_spec(name, folder)
    known = list(SPECS) + _user_dataset_names(data_dir)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known datasets: {', '.join(known)}"
    raise DatasetNotFound(f"unknown dataset {name!r}{hint}")


DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_dataset_name(name: str) -> None:
    """A dataset name is a folder name, nothing more: it becomes a path under the data home and the cache,
    so separators, ``..`` or an absolute path could read or write outside them."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name) or ".." in name:
        raise DatasetNotFound(f"dataset name {name!r} is not a folder name: use letters, digits, '.', '_' and '-' "
                              "(no path separators, no '..'; at most 128 characters)")


def _user_dataset_names(data_dir: str | Path | None) -> list[str]:
    home = data_home(data_dir)
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if (p / USER_CONFIG).is_file() and p.name not in SPECS)


def missing_files(spec: DatasetSpec, data_dir: str | Path | None = None) -> list[str]:
    folder = data_home(data_dir) / spec.folder
    return [f for f in spec.files if not (folder / f).is_file()]


def locate(spec: DatasetSpec, data_dir: str | Path | None = None) -> Path:
    """The dataset's folder, or ``DatasetNotFound`` saying where it looked and how to fix it."""
    folder = data_home(data_dir) / spec.folder
    missing = missing_files(spec, data_dir)
    if missing:
        what = "folder is missing" if not folder.is_dir() else f"missing file(s) {', '.join(missing)}"
        raise DatasetNotFound(
            f"dataset {spec.name!r} not found: {what} at {folder} (data home from {data_home_source(data_dir)}); "
            f"to get it: {spec.how_to_get}; or point LMREC_DATA (or data_dir) at the folder that holds "
            f"'{spec.folder}/'"
        )
    return folder


def source_files(spec: DatasetSpec, data_dir: str | Path | None = None) -> list[Path]:
    """The files a dataset is read from (required + optional ones that exist)."""
    folder = locate(spec, data_dir)
    return [folder / f for f in (*spec.files, *spec.optional_files) if (folder / f).is_file()]


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Read a named dataset from its files in the data home."""
    spec = get_spec(name, data_dir)
    return spec.read(locate(spec, data_dir))


def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """One row per known dataset: name, status (found / missing), where, and what to do if missing."""
    rows = []
    for name in list(SPECS) + _user_dataset_names(data_dir):
        try:
            spec = get_spec(name, data_dir)
        except LmrecError as exc:  # one broken lmrec.yaml must not hide every other dataset
            rows.append({"name": name, "description": "(invalid lmrec.yaml)", "status": "invalid",
                         "where": str(data_home(data_dir) / name), "missing": "",
                         "how_to_get": one_line(str(exc))})
            continue
        folder = data_home(data_dir) / spec.folder
        missing = missing_files(spec, data_dir)
        rows.append({
            "name": name, "description": spec.description, "status": "found" if not missing else "missing",
            "where": str(folder), "missing": ", ".join(missing), "how_to_get": spec.how_to_get if missing else "",
        })
    return rows


def download_dataset(name: str, data_dir: str | Path | None = None, force: bool = False) -> Path:
    """Download a dataset that has a public archive into the data home (checksum-verified)."""
    spec = get_spec(name, data_dir)
    if spec.download is None:
        raise ConfigError(f"dataset {name!r} has no public download; to get it: {spec.how_to_get}")
    target = data_home(data_dir) / spec.folder
    if not force and not missing_files(spec, data_dir):
        return target
    return download_to(spec.download, target)
