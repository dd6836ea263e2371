"""Per-item and per-user text fields (``ItemTable``, ``UserTable``) and template rendering."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmrec.data.idmap import IdMap
from lmrec.errors import ConfigError, DataError

_SEPARATORS = " \t.,;:|-/"


# Fields worth reading, in the order they read best; labels make the rendered text self-explanatory.
FIELD_LABELS = [("title", ""), ("text", ""), ("brand", "Brand: "), ("categories", "Category: "),
                ("genres", "Genres: "), ("attributes", "Attributes: "), ("description", "Description: ")]


def template_over(fields: Sequence[str]) -> str:
    """A template over ``fields`` in the given order, labelling those whose name says what they hold."""
    labels = dict(FIELD_LABELS)
    return ". ".join(f"{labels.get(f, '')}{{{f}}}" for f in fields)


# what a table derived from another (``subset``, ``appended``) does not take over from it
_OWN_ROWS = ("ids", "_fields", "source")


class FieldTable:
    """Named string fields for every id of an ``IdMap``; a missing value is the empty string."""

    kind = "row"

    def __init__(self, ids: IdMap, fields: Mapping[str, Sequence[Any] | np.ndarray] | None = None):
        self.ids = ids
        # a field's values, or what reads them on first use (``defer``)
        self._fields: dict[str, np.ndarray | Callable[[], Sequence[Any] | np.ndarray]] = {}
        for name, values in (fields or {}).items():
            self[name] = values
        # the prepared folder whose table file holds exactly these rows and fields (set by ``Prepared.load``;
        # None for a table built or changed in memory): lets a large catalogue's text be read a chunk at a time
        self.source: Path | None = None

    def __setitem__(self, name: str, values: Sequence[Any] | np.ndarray) -> None:
        self._store(name, values)
        self.source = None  # the table file no longer says what this table holds

    def _store(self, name: str, values: Sequence[Any] | np.ndarray) -> None:
        arr = _clean_strings(values)
        if len(arr) != len(self.ids):
            raise DataError(f"{self.kind} field {name!r} has {len(arr)} values for {len(self.ids)} {self.kind}s")
        self._fields[name] = arr

    def defer(self, name: str, read: Callable[[], Sequence[Any] | np.ndarray]) -> None:
        """Add field ``name`` whose values ``read()`` returns when the field is first used: a model that never
        reads the text (an ID model on a large catalogue) never holds it in memory."""
        self._fields[name] = read

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._fields:
            raise ConfigError(f"unknown {self.kind} field {name!r}; available: {', '.join(self.fields) or 'none'}")
        values = self._fields[name]
        if callable(values):
            self._store(name, values())
        return self._fields[name]  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        # a copy sent to another process (Ray workers) carries the values, not a path that may not exist there
        return {**vars(self), "_fields": {n: self[n] for n in self.fields}, "source": None}

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, fields={self.fields})"

    @property
    def fields(self) -> list[str]:
        return list(self._fields)

    def coverage(self) -> dict[str, float]:
        """Share of rows with a non-empty value, per field."""
        n = max(len(self), 1)
        return {name: float((self[name] != "").sum()) / n for name in self.fields}

    def has_text(self, fields: Sequence[str] | None = None) -> np.ndarray:
        """Boolean mask ``[n]``: True where at least one of ``fields`` (default: all) is non-empty."""
        names = list(fields) if fields is not None else self.fields
        mask = np.zeros(len(self), dtype=bool)
        for name in names:
            mask |= self[name] != ""
        return mask

    def subset(self, indices: np.ndarray) -> FieldTable:
        """Rows at ``indices`` (in that order) over the matching sub-map of ids."""
        idx = np.asarray(indices, dtype=np.int64)
        out = type(self)(self.ids.subset(idx), {n: self[n][idx] for n in self.fields})
        out.__dict__.update({k: v for k, v in vars(self).items() if k not in _OWN_ROWS})  # e.g. template
        return out

    def appended(self, ids: Sequence[str], rows: Sequence[Mapping[str, str]]) -> FieldTable:
        """A new table with rows for new ``ids`` after the existing ones (existing indices unchanged); a field
        a row leaves out is empty. Refuses ids already present and fields the table does not have."""
        taken = [i for i in ids if i in self.ids]
        if taken or len(set(ids)) != len(ids):
            raise ConfigError(f"{self.kind} {(taken or list(ids))[0]!r} is already in the table")
        unknown = sorted({f for row in rows for f in row} - set(self.fields))
        if unknown:
            raise ConfigError(f"unknown {self.kind} field {unknown[0]!r}; the fields are {', '.join(self.fields)}")
        out = type(self)(self.ids.extend(ids), {f: np.concatenate([self[f], _clean_strings([r.get(f, "") for r in rows])])
                                                for f in self.fields})
        out.__dict__.update({k: v for k, v in vars(self).items() if k not in _OWN_ROWS})  # e.g. template
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per id: ``id`` (raw) plus one column per field."""
        return pd.DataFrame({"id": self.ids.to_list(), **{n: self[n] for n in self.fields}})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, ids: IdMap | None = None, id_column: str = "id") -> FieldTable:
        """Build from a frame with an id column; rows are aligned to ``ids`` (absent ids get empty fields)."""
        if id_column not in frame.columns:
            raise DataError(f"{cls.kind} table has no {id_column!r} column; columns: {list(frame.columns)}")
        raw = frame[id_column].to_numpy()
        fields = [c for c in frame.columns if c != id_column]
        if ids is None:
            ids = IdMap(raw, name=cls.kind)
            return cls(ids, {c: frame[c].to_numpy() for c in fields})
        loc = ids.indices(raw, missing="-1")
        keep = loc >= 0
        out = cls(ids)
        for c in fields:
            col = np.full(len(ids), "", dtype=object)
            col[loc[keep]] = _clean_strings(frame[c].to_numpy()[keep])
            out[c] = col
        return out

    def equals(self, other: FieldTable) -> bool:
        return (
            type(self) is type(other) and self.ids == other.ids and self.fields == other.fields
            and all(np.array_equal(self[f], other[f]) for f in self.fields)
        )


class ItemTable(FieldTable):
    """Text fields per item (title, brand, categories, description, genres, domain, ...)."""

    kind = "item"

    def __init__(self, ids: IdMap, fields: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
                 template: str | None = None, title_field: str | None = None):
        super().__init__(ids, fields)
        # Set by datasets that say which text describes an item and which field names it (a user's
        # lmrec.yaml); otherwise lmrec.text.texts.default_template and the "title" field decide.
        self.template = template
        self.title_field = title_field

    @property
    def display_field(self) -> str | None:
        """The field that names an item to a person: ``title_field``, else ``title``, else the first field."""
        if self.title_field is not None:
            return self.title_field
        return "title" if "title" in self else (self.fields[0] if self.fields else None)

    def titles(self) -> np.ndarray:
        """Each item's display name (``display_field``; "" when the table has no fields)."""
        field = self.display_field
        return self[field] if field is not None else np.full(len(self), "", dtype=object)

    def render(self, template: str, indices: Sequence[int] | np.ndarray | None = None) -> list[str]:
        """Fill ``template`` (e.g. ``"{title}. Brand: {brand}"``) for each item (all, or ``indices``).

        A field that is empty for an item is dropped together with the literal text just before it,
        so ``"{title}. Brand: {brand}"`` renders as ``"Pen"`` (not ``"Pen. Brand: "``) when the brand is
        missing. An item with every field empty renders as ``""``.
        """
        pieces = _parse_template(template, self.fields)
        rows = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        columns = [(lit, self[field][rows] if field else None) for lit, field in pieces]
        out = []
        for r in range(len(rows)):
            parts, kept_any, first_dropped = [], False, False
            for pos, (lit, col) in enumerate(columns):
                if col is None:  # trailing literal after the last field
                    if kept_any:
                        parts.append(lit)
                    continue
                value = col[r]
                if value:
                    parts.append(lit + value)
                    kept_any = True
                elif pos == 0:
                    first_dropped = True
            text = "".join(parts).strip()
            if first_dropped:
                text = text.lstrip(_SEPARATORS)
            out.append(text)
        return out


class UserTable(FieldTable):
    """Fields per user (demographics, review texts, ...)."""

    kind = "user"


def template_fields(template: str, fields: Sequence[str]) -> list[str]:
    """The fields ``template`` reads, in order (each once); an error names a field not in ``fields``."""
    return list(dict.fromkeys(f for _, f in _parse_template(template, list(fields)) if f))


def _parse_template(template: str, fields: list[str]) -> list[tuple[str, str | None]]:
    """Split a template into (literal before, field) pieces; a final (literal, None) holds the tail."""
    pieces: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"bad text template {template!r}: {exc}") from None
    for literal, field, spec, conv in parsed:
        if field is None:
            pieces.append((literal, None))
            continue
        if spec or conv or not field:
            raise ConfigError(f"template fields must be plain names like {{title}}; got {{{field}}} in {template!r}")
        if field not in fields:
            raise ConfigError(f"template {template!r} names field {field!r}; available: {', '.join(fields)}")
        pieces.append((literal, field))
    if not any(f for _, f in pieces):
        raise ConfigError(f"template {template!r} names no field; write e.g. '{{title}}'")
    return pieces


def _clean_strings(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Object array of stripped strings; None / NaN / missing become ''."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            out[i] = ""
        elif isinstance(v, str):
            out[i] = v.strip()
        elif isinstance(v, (list, tuple, np.ndarray)):
            out[i] = ", ".join(str(x).strip() for x in v if x is not None and str(x).strip())
        else:
            out[i] = str(v).strip()
    return out
