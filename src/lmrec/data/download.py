"""Real downloads of public archives: streamed with a progress bar, checksum-verified, installed atomically."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lmrec.errors import DataError
from lmrec.fsutil import atomic_dir
from lmrec.progress import logger, progress_bar

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Download:
    """A zip archive to fetch: ``checksum`` is ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the archive;
    ``archive_folder`` is the folder inside the zip whose files make up the dataset folder."""

    url: str
    checksum: str
    archive_folder: str


def fetch(url: str, dest: Path, checksum: str, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` and verify its checksum; a failed or corrupt download leaves nothing."""
    algo, _, expected = checksum.partition(":")
    if algo not in ("md5", "sha256") or not expected:
        raise ValueError(f"checksum must be 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}")
    digest = hashlib.new(algo)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = resp.headers.get("Content-Length")
            with progress_bar(f"download {dest.name}", int(total) if total else None) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(f"download of {url} failed ({reason}); check the network or fetch it by hand") from None
    if digest.hexdigest() != expected.lower():
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: expected {algo} {expected}, got {digest.hexdigest()} "
            "(corrupt download or changed upstream file); nothing was installed"
        )
    tmp.replace(dest)
    return dest


def install_archive(archive: Path, archive_folder: str, target: Path) -> Path:
    """Extract the files under ``archive_folder/`` of a zip into ``target`` (created atomically)."""
    prefix = archive_folder.strip("/") + "/"
    with atomic_dir(target) as staging, zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise DataError(f"{archive}: the archive has no folder {archive_folder!r}")
        for m in members:
            rel = Path(m.filename[len(prefix):])
            if rel.is_absolute() or ".." in rel.parts:
                raise DataError(f"{archive}: unsafe path {m.filename!r} in archive")
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def download_to(spec: Download, target: Path) -> Path:
    """Fetch ``spec`` and install its files as the folder ``target``."""
    archive = target.parent / f".{target.name}.zip"
    logger.info("downloading %s -> %s", spec.url, target)
    fetch(spec.url, archive, spec.checksum)
    try:
        return install_archive(archive, spec.archive_folder, target)
    finally:
        archive.unlink(missing_ok=True)
