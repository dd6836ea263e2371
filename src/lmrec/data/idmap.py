"""Raw ids <-> contiguous integer indices.

Inside lmrec every user and item is an integer in ``[0, n)``; raw ids (strings) appear only at the edges.
An ``IdMap`` is built once per dataset and saved with every artifact so indices never drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmrec.errors import DataError


class IdMap:
    """An ordered, duplicate-free list of raw ids; the position of an id is its index.

    Raw ids are always stored as strings (``42`` and ``"42"`` are the same id), so ids read from
    different files of one dataset agree whatever type a parser gave them.
    """

    def __init__(self, raw_ids: Iterable[Any] = (), name: str = "id"):
        ids = pd.Index(_as_str_array(raw_ids), dtype=object)
        if ids.has_duplicates:
            dup = ids[ids.duplicated()][0]
            raise DataError(f"{name} ids must be unique; {dup!r} appears more than once")
        self.name = name
        self._index = ids

    @classmethod
    def from_values(cls, values: Iterable[Any], name: str = "id") -> IdMap:
        """Distinct values in order of first appearance."""
        arr = _as_str_array(values)
        return cls(pd.unique(arr), name=name)

    @property
    def _what(self) -> str:
        return "id" if self.name == "id" else f"{self.name} id"

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw: Any) -> bool:
        return str(raw) in self._index

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, IdMap) and self._index.equals(other._index))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object: compare, don't hash

    def __repr__(self) -> str:
        return f"IdMap({self.name!r}, n={len(self)})"

    def index(self, raw: Any) -> int:
        """Index of one raw id; raises ``DataError`` naming the unknown id."""
        loc = self._index.get_indexer([str(raw)])[0]
        if loc < 0:
            raise DataError(f"unknown {self._what} {raw!r}")
        return int(loc)

    def indices(self, raws: Iterable[Any], missing: str = "raise") -> np.ndarray:
        """Indices of many raw ids as int64; ``missing="raise"`` errors on unknown ids, ``"-1"`` marks them."""
        arr = _as_str_array(raws)
        loc = self._index.get_indexer(arr).astype(np.int64)
        if missing == "raise" and (loc < 0).any():
            bad = arr[np.flatnonzero(loc < 0)[0]]
            raise DataError(f"unknown {self._what} {bad!r} ({int((loc < 0).sum())} unknown in total)")
        return loc

    def raw(self, index: int) -> str:
        """The raw id at an index."""
        return str(self._index[index])

    def raws(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Raw ids (object array of str) of many indices."""
        return np.asarray(self._index.values[np.asarray(indices, dtype=np.int64)], dtype=object)

    def to_list(self) -> list[str]:
        return [str(x) for x in self._index]

    def subset(self, keep: np.ndarray) -> IdMap:
        """A new map holding the ids at the given indices (in that order)."""
        return IdMap(self._index.values[np.asarray(keep, dtype=np.int64)], name=self.name)

    def extend(self, raws: Iterable[Any]) -> IdMap:
        """A new map with unseen raw ids appended (existing indices unchanged)."""
        arr = pd.unique(_as_str_array(raws))
        new = arr[self._index.get_indexer(arr) < 0]
        return IdMap(np.concatenate([self._index.values, new]), name=self.name)


def _as_str_array(values: Iterable[Any]) -> np.ndarray:
    if isinstance(values, IdMap):
        return values._index.values
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    if not isinstance(values, np.ndarray):
        values = np.asarray(list(values), dtype=object)
    if values.dtype.kind in "iu":
        return values.astype(str).astype(object)
    if values.dtype.kind == "f":
        raise DataError("ids must be integers or strings, got floating-point values")
    return np.asarray([v if isinstance(v, str) else str(v) for v in values.ravel()], dtype=object)
