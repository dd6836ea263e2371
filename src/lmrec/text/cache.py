"""Content-addressed embedding cache.

An entry's key hashes the encoder fingerprint, the template and the exact texts; it holds ``emb.npy``
(float32 or float16, memory-mapped on load) and ``meta.json`` (fingerprint, dim, normalised, count,
created, lmrec version). Entries are written to a temporary folder and renamed, so a killed run never
leaves a half-written entry that a later run would load. A meta that disagrees with the request is an
error, never a silent reuse.

Encoding is incremental: per encoder fingerprint a *pool* maps the hash of each text ever encoded to its
vector, so a new entry (another template, a few new items) only encodes the texts the pool lacks. The pool
is one file (``pool.safetensors``: hashes and vectors side by side) replaced by one rename, so a reader
never pairs one text's hash with another text's vector; writers merge under a file lock, so concurrent
runs lose none of each other's texts.

The cache is lmrec's own: an entry or pool that cannot be read (a killed disk, a truncated file) is
rebuilt with a warning, never a reason to fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import load_file, save_file

from lmrec import __version__
from lmrec.errors import DataError, LmrecError
from lmrec.fsutil import atomic_dir
from lmrec.progress import logger
from lmrec.settings import cache_home
from lmrec.text.encoder import TextEncoder, check_texts

StoreDtype = Literal["float32", "float16"]


class CacheError(LmrecError):
    """A cache entry does not match what was asked for."""


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """16-byte blake2b digest of each text, as an ``S16`` array."""
    return np.array([hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts], dtype="S16")


def _key_hasher(fingerprint: str, template: str) -> Any:
    h = hashlib.sha256()
    h.update(fingerprint.encode())
    h.update(b"\x00" + template.encode() + b"\x00")
    return h


def _add_texts(h: Any, texts: Iterable[str]) -> None:
    for t in texts:
        h.update(hashlib.blake2b(t.encode(), digest_size=16).digest())


def entry_key(fingerprint: str, template: str, texts: Sequence[str]) -> str:
    h = _key_hasher(fingerprint, template)
    _add_texts(h, texts)
    return h.hexdigest()


class EmbeddingCache:
    """Folder ``root`` (default ``$LMREC_CACHE/embeddings``) of entries and per-encoder pools."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_home() / "embeddings"

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def encode(self, encoder: TextEncoder, texts: Sequence[str], template: str = "",
               dtype: StoreDtype = "float32") -> np.ndarray:
        """Vectors ``[len(texts), dim]`` for ``texts``: from the cache when present, else encoded
        (only the texts never seen by this encoder) and stored. float32 entries load memory-mapped."""
        texts = check_texts(texts)
        fingerprint = encoder.fingerprint
        key = entry_key(fingerprint, template, texts)
        folder = self.entry_dir(key)
        cached = self._cached(folder, fingerprint, len(texts), dtype)
        if cached is not None:
            return cached
        vectors = self._encode_with_pool(encoder, texts)
        self._write_entry(folder, vectors, fingerprint, template, dtype, encoder)
        return self._load(folder, fingerprint, len(texts), dtype)

    def _cached(self, folder: Path, fingerprint: str, count: int, dtype: StoreDtype) -> np.ndarray | None:
        """The entry at ``folder`` if there is one; an unreadable one is removed (ours to rebuild) and None."""
        if not folder.exists():
            return None
        try:
            return self._load(folder, fingerprint, count, dtype)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            logger.warning("embedding cache entry %s is unreadable (%s); rebuilding it", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    # --- entries ------------------------------------------------------------------------------------------
    def _load(self, folder: Path, fingerprint: str, count: int, dtype: StoreDtype) -> np.ndarray:
        meta = json.loads((folder / "meta.json").read_text())
        problems = [f"{k}: stored {meta.get(k)!r}, asked {v!r}" for k, v in
                    (("fingerprint", fingerprint), ("count", count), ("dtype", dtype)) if meta.get(k) != v]
        if problems:
            raise CacheError(f"embedding cache entry {folder} does not match the request ({'; '.join(problems)}); "
                             "delete the folder to rebuild it")
        emb = np.load(folder / "emb.npy", mmap_mode="r")
        if emb.shape != (count, meta["dim"]):
            raise CacheError(f"embedding cache entry {folder} holds shape {emb.shape}, meta says {(count, meta['dim'])}")
        return emb if emb.dtype == np.float32 else np.asarray(emb, dtype=np.float32)

    def _write_entry(self, folder: Path, vectors: np.ndarray, fingerprint: str, template: str,
                     dtype: StoreDtype, encoder: TextEncoder) -> None:
        with atomic_dir(folder, replace=False) as tmp:  # same key, same content: a racing writer may win
            np.save(tmp / "emb.npy", vectors.astype(dtype))
            norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(0)
            self._write_meta(tmp, fingerprint, template, dtype, encoder, vectors.shape,
                             bool(np.allclose(norms, 1.0, atol=1e-3)))

    @staticmethod
    def _write_meta(folder: Path, fingerprint: str, template: str, dtype: StoreDtype, encoder: TextEncoder,
                    shape: tuple[int, ...], normalised: bool) -> None:
        meta = {"fingerprint": fingerprint, "dim": int(shape[1]), "count": int(shape[0]), "dtype": dtype,
                "normalised": normalised, "template": template, "encoder": repr(encoder),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lmrec_version": __version__}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))

    def encode_chunks(self, encoder: TextEncoder, chunks: Callable[[], Iterable[Sequence[str]]], template: str = "",
                      dtype: StoreDtype = "float32") -> np.ndarray:
        """The entry ``encode`` would give for all the texts of ``chunks()`` one after another (same key, same
        vectors), built a chunk at a time: memory is bounded by one chunk's texts and vectors, whatever the
        total, and the entry is written straight into its memory-mapped file. ``chunks`` is called twice (the
        key needs every text before anything is encoded), so it must give the same texts both times. The
        per-encoder pool is neither read nor extended here: for a catalogue this size it would be the whole
        catalogue's vectors in memory (so every text is encoded, none looked up)."""
        fingerprint = encoder.fingerprint
        hasher, count = _key_hasher(fingerprint, template), 0
        for texts in chunks():
            texts = check_texts(texts)
            _add_texts(hasher, texts)
            count += len(texts)
        if count == 0:
            raise DataError("no texts to encode")
        folder = self.entry_dir(hasher.hexdigest())
        cached = self._cached(folder, fingerprint, count, dtype)
        if cached is not None:
            return cached
        with atomic_dir(folder, replace=False) as tmp:
            emb = np.lib.format.open_memmap(tmp / "emb.npy", mode="w+", dtype=dtype, shape=(count, encoder.dim))
            done, normalised = 0, True
            for texts in chunks():
                if not texts:  # e.g. a chunk of items without text
                    continue
                vectors = np.asarray(encoder.encode(list(texts)), dtype=np.float32)
                if vectors.shape != (len(texts), encoder.dim) or done + len(vectors) > count:
                    raise CacheError(f"the texts changed between the two passes, or the encoder returned shape "
                                     f"{vectors.shape} for {len(texts)} texts")
                emb[done:done + len(vectors)] = vectors
                normalised &= bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3))
                done += len(vectors)
            if done != count:
                raise CacheError(f"the texts changed between the two passes ({count} then {done})")
            emb.flush()
            del emb
            self._write_meta(tmp, fingerprint, template, dtype, encoder, (count, encoder.dim), normalised)
        return self._load(folder, fingerprint, count, dtype)

    # --- pool of every text this encoder has encoded -------------------------------------------------------
    def _pool_dir(self, fingerprint: str) -> Path:
        return self.root / "pools" / fingerprint[:32]

    def _encode_with_pool(self, encoder: TextEncoder, texts: list[str]) -> np.ndarray:
        pool = self._pool_dir(encoder.fingerprint)
        hashes = text_hashes(texts)
        known_h, known_v = _read_pool(pool, encoder.dim)
        found = np.zeros(len(texts), dtype=bool)
        order = np.argsort(known_h)
        if len(order):
            pos = np.minimum(np.searchsorted(known_h[order], hashes), len(order) - 1)
            found = known_h[order][pos] == hashes
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        if found.any():
            out[found] = known_v[order[pos[found]]]
        missing = np.flatnonzero(~found)
        if len(missing):
            # encode each distinct missing text once
            uniq_h, first, inverse = np.unique(hashes[missing], return_index=True, return_inverse=True)
            new_v = encoder.encode([texts[missing[i]] for i in first])
            if new_v.shape != (len(uniq_h), encoder.dim):
                raise CacheError(f"encoder returned shape {new_v.shape}, expected {(len(uniq_h), encoder.dim)}")
            out[missing] = new_v[inverse]
            _add_to_pool(pool, encoder.dim, uniq_h, new_v)
        return out


POOL_FILE = "pool.safetensors"


def _read_pool(pool: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes S16 [n], vectors float32 [n, dim])`` of a pool; empty when there is none or it is unreadable
    (then it is rebuilt as texts are encoded again)."""
    empty = np.zeros(0, dtype="S16"), np.zeros((0, dim), dtype=np.float32)
    file = pool / POOL_FILE
    if not file.is_file():
        return empty
    try:
        stored = load_file(str(file))
        hashes, vectors = stored["hashes"], stored["vectors"]
        if hashes.shape[1:] != (16,) or vectors.shape != (len(hashes), dim):
            raise ValueError(f"shapes {hashes.shape} and {vectors.shape}")
    except Exception as exc:  # truncated or foreign file: the library raises its own types
        logger.warning("embedding pool %s is unreadable (%s); starting it again", file, exc)
        return empty
    return np.ascontiguousarray(hashes).view("S16").ravel(), vectors


def _add_to_pool(pool: Path, dim: int, new_h: np.ndarray, new_v: np.ndarray) -> None:
    """Merge new (hash, vector) rows into the pool: under the pool's lock, re-read what other writers added
    meanwhile, and replace the one file by one rename."""
    pool.mkdir(parents=True, exist_ok=True)
    with _locked(pool / ".lock"):
        known_h, known_v = _read_pool(pool, dim)
        keep = ~np.isin(new_h, known_h)
        if not keep.any():
            return
        all_h = np.concatenate([known_h, new_h[keep]])
        all_v = np.concatenate([known_v, new_v[keep].astype(np.float32)])
        fd, tmp = tempfile.mkstemp(prefix=f".{POOL_FILE}-", dir=pool)
        os.close(fd)
        try:
            save_file({"hashes": all_h.view(np.uint8).reshape(-1, 16), "vectors": all_v}, tmp)
            os.replace(tmp, pool / POOL_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (other lmrec processes wait for it)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
