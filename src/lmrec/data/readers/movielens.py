"""MovieLens readers: the 100K distribution (``u.*`` files, official splits) and the 1M ``::`` format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.readers._io import Kind, iter_lines, read_delimited, require_file
from lmrec.data.split import Split
from lmrec.errors import DataError

_RATING_COLUMNS: list[tuple[str, Kind]] = [("user", "int"), ("item", "int"), ("rating", "float"), ("time", "int")]
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_LATIN1_HINT = "MovieLens files are Latin-1 (ISO-8859-1); do not re-save them in another encoding"


def read_movielens_100k(folder: Path, name: str = "movielens-100k") -> Dataset:
    """Read ``u.data``, ``u.item`` (Latin-1, 19 genre flags), ``u.user`` and the official splits.

    Predefined splits ``u1``..``u5`` (5-fold 80/20) and ``ua``/``ub`` (10 test ratings per user) are
    built lazily; their valid part is empty.
    """
    folder = Path(folder)
    genres = _read_genres(folder / "u.genre")
    item_path = require_file(folder / "u.item")
    item_rows = []
    for no, line in iter_lines(item_path, encoding="latin-1"):
        if not line.strip():
            continue
        f = line.split("|")
        if len(f) != 5 + len(genres):
            raise DataError(f"{item_path}:{no}: expected {5 + len(genres)} '|'-separated fields, found {len(f)}")
        flags = f[5:]
        if any(x not in ("0", "1") for x in flags):
            raise DataError(f"{item_path}:{no}: genre flags must be 0 or 1, got {'|'.join(flags)!r}")
        item_rows.append((f[0], f[1], f[2], ", ".join(g for g, x in zip(genres, flags) if x == "1")))
    items_map = IdMap([r[0] for r in item_rows], name="item")
    items = ItemTable(items_map, {
        "title": [r[1] for r in item_rows],
        "genres": [r[3] for r in item_rows],
        "release_date": [r[2] for r in item_rows],
    })
    users_frame = read_delimited(
        folder / "u.user", "|",
        [(c, "str") for c in ("id", "age", "gender", "occupation", "zip")],
        encoding="latin-1",
    )
    users_map = IdMap(users_frame["id"], name="user")
    users = UserTable(users_map, {c: users_frame[c] for c in ("age", "gender", "occupation", "zip")})

    def ratings(path: Path) -> Interactions:
        return _ratings(path, "\t", users_map, items_map)

    inter = ratings(folder / "u.data").sorted()
    predefined: dict[str, Callable[[], Split]] = {
        key: _official_split(folder, key, ratings) for key in ML100K_SPLITS
        if (folder / f"{key}.base").is_file() and (folder / f"{key}.test").is_file()
    }
    files = [folder / f for f in ("u.data", "u.item", "u.user", "u.genre")]
    return Dataset(name, inter, items, users, predefined, source_files=files)


def _official_split(folder: Path, key: str, ratings: Callable[[Path], Interactions]) -> Callable[[], Split]:
    def build() -> Split:
        train = ratings(folder / f"{key}.base")
        test = ratings(folder / f"{key}.test")
        return Split(train, train.select(np.zeros(len(train), dtype=bool)), test, name=key)

    return build


def _read_genres(path: Path) -> list[str]:
    require_file(path)
    names: dict[int, str] = {}
    for no, line in iter_lines(path, encoding="latin-1"):
        if not line.strip():
            continue
        name, _, idx = line.partition("|")
        if not idx.strip().isdigit():
            raise DataError(f"{path}:{no}: expected 'genre|index', got {line!r}")
        names[int(idx)] = name
    return [names[i] for i in sorted(names)]


def _ratings(path: Path, sep: str, users: IdMap, items: IdMap) -> Interactions:
    frame = read_delimited(path, sep, _RATING_COLUMNS, encoding="latin-1")
    return Interactions(
        _lookup(users, frame["user"], path, "user"), _lookup(items, frame["item"], path, "item"),
        users, items, time=frame["time"].to_numpy(), rating=frame["rating"].to_numpy(), time_unit="s",
    )


def _lookup(ids: IdMap, raw: pd.Series, path: Path, what: str) -> np.ndarray:
    loc = ids.indices(raw, missing="-1")
    if (loc < 0).any():
        row = int(np.flatnonzero(loc < 0)[0])
        raise DataError(f"{path}:{row + 1}: {what} id {raw.iloc[row]!r} is not in the {what} file")
    return loc


def read_movielens_1m(folder: Path, name: str = "movielens-1m") -> Dataset:
    """Read the original ML-1M files: ``ratings.dat``, ``movies.dat`` (Latin-1), ``users.dat`` (``::``)."""
    folder = Path(folder)
    movies = read_delimited(folder / "movies.dat", "::", [("id", "str"), ("title", "str"), ("genres", "str")],
                            encoding="latin-1")
    items_map = IdMap(movies["id"], name="item")
    items = ItemTable(items_map, {
        "title": movies["title"],
        "genres": [g.replace("|", ", ") for g in movies["genres"]],
    })
    users = None
    users_path = folder / "users.dat"
    if users_path.is_file():
        columns: list[tuple[str, Kind]] = [(c, "str") for c in ("id", "gender", "age", "occupation", "zip")]
        uf = read_delimited(users_path, "::", columns, encoding="latin-1")
        users_map = IdMap(uf["id"], name="user")
        users = UserTable(users_map, {c: uf[c] for c in ("gender", "age", "occupation", "zip")})
    frame = read_delimited(folder / "ratings.dat", "::", _RATING_COLUMNS, encoding="latin-1")
    if users is None:
        users_map = IdMap.from_values(frame["user"], name="user")
    inter = Interactions(
        _lookup(users_map, frame["user"], folder / "ratings.dat", "user"),
        _lookup(items_map, frame["item"], folder / "ratings.dat", "item"),
        users_map, items_map, time=frame["time"].to_numpy(), rating=frame["rating"].to_numpy(), time_unit="s",
    ).sorted()
    files = [p for p in (folder / "ratings.dat", folder / "movies.dat", users_path) if p.is_file()]
    return Dataset(name, inter, items, users, {}, source_files=files)
