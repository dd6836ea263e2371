"""Item and user text: default templates, item vectors from the cache, user text from reviews or history."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmrec.data.items import FIELD_LABELS, ItemTable, UserTable, template_over
from lmrec.errors import ConfigError
from lmrec.text.cache import EmbeddingCache, StoreDtype
from lmrec.text.encoder import TextEncoder, load_encoder


def default_template(items: ItemTable) -> str:
    """The dataset's own template when it has one (a user dataset: every mapped text column, in the user's
    order), else one over the descriptive fields, e.g. ``"{title}. Brand: {brand}. Category: {categories}"``."""
    if items.template:
        return items.template
    known = [f for f, _ in FIELD_LABELS if f in items]
    return template_over(known or items.fields)  # unknown fields only: use them all


def item_vectors(items: ItemTable, encoder: TextEncoder, template: str | None = None,
                 cache: EmbeddingCache | None = None, dtype: StoreDtype = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``(vectors float32 [n_items, dim], has_text bool [n_items])``; items whose rendered text is empty
    get a zero vector (they can still be scored by models that also use IDs)."""
    template = template or default_template(items)
    texts = items.render(template)
    has_text = np.array([bool(t) for t in texts])
    vectors = np.zeros((len(items), encoder.dim), dtype=np.float32)
    if has_text.any():
        cache = cache or EmbeddingCache()
        vectors[has_text] = cache.encode(encoder, [t for t in texts if t], template=template, dtype=dtype)
    return vectors, has_text


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
