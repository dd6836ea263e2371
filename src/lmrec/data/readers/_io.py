"""Shared file helpers for readers: strict delimited parsing with line-precise error messages.

The fast path parses with pandas' C engine. Only when that fails (or a value does not convert) does
``_locate_problem`` re-read the file line by line to name the exact line and what is wrong, so good
files stay fast and bad files get a message a person can act on.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lmrec.errors import DataError

Kind = Literal["int", "float", "str"]
_UNIT_SEP = "\x1f"  # stands in for multi-character separators such as '::' so the C parser can be used


def require_file(path: Path, what: str = "file") -> Path:
    """Return ``path`` if it is a readable file, else raise a ``DataError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def read_bytes(path: Path) -> bytes:
    """Whole file as bytes, transparently decompressing ``.gz``."""
    require_file(path)
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def decode(path: Path, data: bytes, encoding: str, hint: str = "") -> str:
    """Decode bytes, turning a ``UnicodeDecodeError`` into a line-precise ``DataError``."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        fix = hint or f"save the file as {encoding} or pass the right encoding"
        raise DataError(
            f"{path}:{line}: byte 0x{bad} at column {col} is not valid {encoding} text (wrong encoding?); {fix}"
        ) from None


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) for each line of a text (or .gz) file."""
    text = decode(path, read_bytes(path), encoding)
    yield from enumerate(text.splitlines(), start=1)


def read_delimited(
    path: Path,
    sep: str,
    columns: Sequence[tuple[str, Kind]],
    encoding: str = "utf-8",
    header: bool = False,
    extra_columns: bool = False,
) -> pd.DataFrame:
    """Parse a delimited file with exactly the named columns (types ``int``, ``float``, ``str``).

    ``extra_columns=True`` tolerates and drops trailing fields beyond ``columns``. Errors name the file,
    line and problem: missing file, wrong encoding, wrong field count, a value of the wrong type.
    """
    require_file(path)
    text = decode(path, read_bytes(path), encoding)
    names = [c for c, _ in columns]
    parse_sep = sep
    if len(sep) > 1:
        text = text.replace(sep, _UNIT_SEP)
        parse_sep = _UNIT_SEP
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=parse_sep, header=None, skiprows=1 if header else 0,
            names=None if extra_columns else names, usecols=range(len(names)) if extra_columns else None,
            dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False, engine="c", skip_blank_lines=True,
        )
    except (pd.errors.ParserError, ValueError, IndexError):
        raise _locate_problem(path, text, parse_sep, sep, columns, header, extra_columns) from None
    if extra_columns:
        frame.columns = names
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    out = {}
    for name, kind in columns:
        col = frame[name]
        if kind == "str":
            out[name] = col.to_numpy(dtype=object)
            continue
        nums = pd.to_numeric(col, errors="coerce")
        bad = nums.isna().to_numpy()
        if kind == "int" and not bad.any():
            bad = (nums != np.floor(nums)).to_numpy()
        if bad.any():
            raise _locate_problem(path, text, parse_sep, sep, columns, header, extra_columns)
        out[name] = nums.to_numpy(dtype=np.int64 if kind == "int" else np.float64)
    return pd.DataFrame(out)


def _locate_problem(
    path: Path, text: str, parse_sep: str, sep: str, columns: Sequence[tuple[str, Kind]],
    header: bool, extra_columns: bool,
) -> DataError:
    """Scan line by line for the first malformed line and describe it."""
    names = [c for c, _ in columns]
    for no, line in enumerate(text.splitlines(), start=1):
        if (header and no == 1) or not line.strip():
            continue
        fields = line.split(parse_sep)
        if len(fields) < len(columns) or (len(fields) > len(columns) and not extra_columns):
            return DataError(
                f"{path}:{no}: expected {len(columns)} fields ({', '.join(names)}) separated by {sep!r}, "
                f"found {len(fields)}"
            )
        for (name, kind), value in zip(columns, fields):
            if kind == "str":
                continue
            try:
                num = float(value)
                if kind == "int" and num != int(num):
                    raise ValueError
            except ValueError:
                want = "an integer" if kind == "int" else "a number"
                return DataError(f"{path}:{no}: field {name!r} must be {want}, got {value!r}")
    return DataError(f"{path}: could not be parsed as {sep!r}-separated columns {names}")
