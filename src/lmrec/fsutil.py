"""Filesystem helpers shared by everything that writes folders (prepared datasets, downloads, caches)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmrec import __version__
from lmrec.errors import ArtifactError, ConfigError


@contextmanager
def atomic_dir(target: Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it is renamed to ``target``.

    A failure or interruption inside the block removes the temporary folder, so ``target`` is either the
    complete new content, or untouched. With ``replace=False`` an existing ``target`` wins (another
    process wrote the same content first) and the new folder is discarded.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:40]}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if not replace:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if replace or not target.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # lost a race to an identical writer
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def inside(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refused unless it resolves inside ``root`` (paths built from user input)."""
    root = Path(root)
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"{relative}: resolves outside {root}")
    return path


def read_description(file: Path, what: str, keys: tuple[str, ...], format_version: int, redo: str) -> dict[str, Any]:
    """A saved artifact's JSON description (``model.json``, ``bundle.json``): it must exist, parse, hold
    ``keys`` and be of ``format_version``; otherwise one ``ArtifactError`` line naming the file. ``redo``
    says what to do about another format (e.g. "train the bundle again")."""
    file = Path(file)
    if not file.is_file():
        raise ArtifactError(f"{file.parent} is not a {what} (no {file.name})")
    try:
        meta = json.loads(file.read_text())
        missing = [k for k in (*keys, "format") if k not in meta]
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ArtifactError(f"{file}: not a valid {what} description ({type(exc).__name__}: {exc})") from None
    if missing:
        raise ArtifactError(f"{file}: not a valid {what} description (no {', '.join(missing)})")
    if meta["format"] != format_version:
        raise ArtifactError(f"{file}: {what} format {meta['format']} (written by lmrec {meta.get('lmrec_version')}); "
                            f"this lmrec {__version__} reads format {format_version}: {redo}")
    return meta


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def folder_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by path relative to it."""
    folder = Path(folder)
    return {str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()}


def verify_checksums(folder: Path, checksums: dict[str, str]) -> str | None:
    """None when every listed file exists with its checksum; else what is wrong, naming the file."""
    for rel, digest in checksums.items():
        f = Path(folder) / rel
        if not f.is_file():
            return f"{f}: missing"
        if sha256_file(f) != digest:
            return f"{f}: checksum differs from the one recorded (the file is corrupt or was changed)"
    return None
