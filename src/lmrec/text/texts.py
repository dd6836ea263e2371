"""Item and user text: default templates, item vectors from the cache, user text from reviews or history."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lmrec.data.idmap import IdMap
from lmrec.data.items import FIELD_LABELS, ItemTable, UserTable, template_fields, template_over
from lmrec.errors import ConfigError
from lmrec.progress import progress
from lmrec.text.cache import EmbeddingCache, StoreDtype
from lmrec.text.encoder import TextEncoder, load_encoder


def default_template(items: ItemTable) -> str:
    """The dataset's own template when it has one (a user dataset: every mapped text column, in the user's
    order), else one over the descriptive fields, e.g. ``"{title}. Brand: {brand}. Category: {categories}"``."""
    if items.template:
        return items.template
    known = [f for f, _ in FIELD_LABELS if f in items]
    return template_over(known or items.fields)  # unknown fields only: use them all


# From this many items a prepared catalogue's texts are read in chunks (ItemTextChunks' row groups): below it,
# the in-memory path also shares vectors between templates (the encoder's pool), which the chunked one does not.
CHUNKED_FROM = 4 * 65_536


def item_vectors(items: ItemTable, encoder: TextEncoder, template: str | None = None,
                 cache: EmbeddingCache | None = None, dtype: StoreDtype = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``(vectors float32 [n_items, dim], has_text bool [n_items])``; items whose rendered text is empty
    get a zero vector (they can still be scored by models that also use IDs)."""
    template = template or default_template(items)
    vectors = np.zeros((len(items), encoder.dim), dtype=np.float32)
    if items.source is not None and len(items) >= CHUNKED_FROM:
        # a large prepared catalogue: its texts are read, keyed and (where not cached) encoded a chunk at a
        # time, never all in memory; the entry is the one the in-memory path below reads or writes
        entry, has_text = encode_item_chunks(ItemTextChunks(items.source, template), encoder, cache, dtype)
        vectors[has_text] = entry
        return vectors, has_text
    texts = items.render(template)
    has_text = np.array([bool(t) for t in texts])
    if has_text.any():
        cache = cache or EmbeddingCache()
        vectors[has_text] = cache.encode(encoder, [t for t in texts if t], template=template, dtype=dtype)
    return vectors, has_text


class ItemTextChunks:
    """The rendered texts of a prepared dataset's items (folder ``path``), read ``rows`` items at a time from
    its ``items.parquet`` (only the fields the template reads), for catalogues whose text does not fit in
    memory. Iterating gives ``(has_text bool [rows], the non-empty texts)`` per chunk, in item order: what
    ``item_vectors`` renders from the whole table, a piece at a time."""

    def __init__(self, path: str | Path, template: str | None = None, rows: int = 65_536):
        if rows < 1:
            raise ConfigError(f"rows per chunk must be at least 1, not {rows}")
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text()).get("items", {})
        self.file = pq.ParquetFile(path / "items.parquet")
        names = self.file.schema_arrow.names
        header = ItemTable(IdMap([], name="item"), {n: [] for n in names}, template=meta.get("template"),
                           title_field=meta.get("title_field"))
        self.template = template or default_template(header)
        self.columns = template_fields(self.template, names)
        self.rows, self.items = rows, self.file.metadata.num_rows

    def __len__(self) -> int:
        return -(-self.items // self.rows)

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[str]]]:
        for batch in self.file.iter_batches(batch_size=self.rows, columns=self.columns):
            chunk = ItemTable(IdMap(range(batch.num_rows), name="item"),
                              {c: batch.column(c).to_numpy(zero_copy_only=False) for c in self.columns})
            texts = chunk.render(self.template)
            yield np.array([bool(t) for t in texts], dtype=bool), [t for t in texts if t]


def encode_item_chunks(chunks: ItemTextChunks, encoder: TextEncoder, cache: EmbeddingCache | None = None,
                       dtype: StoreDtype = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``(the cache entry's vectors [items with text, dim], memory-mapped; has_text bool [n_items])``: the entry
    ``item_vectors`` reads for the same items and template, written a chunk at a time."""
    cache = cache or EmbeddingCache()
    masks: list[np.ndarray] = []
    passes = 0

    def texts() -> Iterator[list[str]]:  # the cache reads the chunks twice: keys first, then to encode
        nonlocal passes
        passes += 1
        desc = "reading item texts" if passes == 1 else "encoding items"
        for has, chunk in progress(chunks, desc, total=len(chunks), unit="chunk"):
            if passes == 1:
                masks.append(has)
            yield chunk

    vectors = cache.encode_chunks(encoder, texts, template=chunks.template, dtype=dtype)
    return vectors, np.concatenate(masks) if masks else np.zeros(0, dtype=bool)


def new_item_vectors(items: ItemTable, new: np.ndarray, encoder: TextEncoder, template: str | None = None,
                     ) -> np.ndarray:
    """float32 ``[len(new), dim]`` for items added after training (not through the cache: a few texts at a
    time, at serving time). Every one must have text: a text model knows nothing else about it."""
    template = template or default_template(items)
    texts = items.render(template, new)
    empty = [items.ids.raw(int(i)) for i, t in zip(new, texts) if not t]
    if empty:
        raise ConfigError(f"item {empty[0]!r} has no text under the template {template!r}; give it the fields "
                          f"the template reads ({', '.join(items.fields)})")
    return np.asarray(encoder.encode(texts), dtype=np.float32)


def matching_encoder(name: str, fingerprint: str | None, **options: object) -> TextEncoder:
    """The encoder a model was fitted with, after checking it still gives the same vectors (the fingerprint
    recorded at fit time): vectors from a changed encoder would not match the model's item vectors."""
    encoder = load_encoder(name, **options)
    if fingerprint is not None and encoder.fingerprint != str(fingerprint):
        raise ConfigError(f"the text encoder {name!r} now gives different vectors than when the model was trained "
                          f"(fingerprint {encoder.fingerprint[:12]} vs {str(fingerprint)[:12]}); install the encoder "
                          "version used for training, or train the model again")
    return encoder


def user_text(history: Sequence[int] | np.ndarray, items: ItemTable, users: UserTable | None = None,
              user: int | None = None, field: str = "title", max_items: int = 10) -> str:
    """A user's text: their reviews when the dataset has them, else the titles of their most recent
    ``max_items`` history items, most recent first, joined by ``"; "``."""
    if users is not None and user is not None and "reviews" in users and users["reviews"][user]:
        return str(users["reviews"][user])
    source = items[field] if field in items else np.asarray(items.render(default_template(items)), dtype=object)
    recent = list(history)[::-1][:max_items]
    return "; ".join(str(source[i]) for i in recent if source[i])
