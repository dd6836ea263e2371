"""A domain for transfer: a prepared dataset whose items all get language-model vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmrec.config import validate
from lmrec.data.items import ItemTable
from lmrec.data.prepared import PrepareConfig, Prepared, prepare
from lmrec.errors import ConfigError
from lmrec.text.encoder import TextEncoder
from lmrec.text.texts import default_template, item_vectors


@dataclass
class Domain:
    name: str
    prepared: Prepared
    vectors: np.ndarray  # float32 [n_items, lm_dim]

    @property
    def split(self):  # noqa: ANN201 - a Split
        return self.prepared.split

    @property
    def n_items(self) -> int:
        return self.prepared.split.n_items

    def describe(self) -> dict[str, object]:
        train = self.split.train
        return {"name": self.name, "split": self.split.name, "items": self.n_items,
                "train_users": int(len(train.user_ids())), "train_events": int(len(train))}


def require_item_text(items: ItemTable, dataset: str, template: str | None) -> str:
    """The template to render ``dataset``'s items with; a clear error when its items have no text."""
    if not items.fields:
        raise ConfigError(f"dataset {dataset!r} has no item text (no title, description or other text field); "
                          "text-based transfer needs item text: add an items file with a title column")
    template = template or default_template(items)
    rendered = items.render(template)
    if not any(rendered):
        raise ConfigError(f"dataset {dataset!r}: every item's text is empty under the template {template!r} "
                          f"(item fields: {', '.join(items.fields)})")
    return template


def prepare_config(spec: str) -> PrepareConfig:
    """``"name"`` or ``"name:split"`` -> a ``PrepareConfig`` (the dataset's default split when omitted)."""
    name, _, split = spec.partition(":")
    return validate(PrepareConfig, {"dataset": name, "split": split or None}, where=f"dataset {spec!r}")


def load_domain(config: str, encoder: TextEncoder, template: str | None = None,
                data_dir: str | Path | None = None) -> Domain:
    """Prepare ``config`` (a dataset name, optionally ``name:split``, e.g. ``amazon-beauty:cold-items``)
    and encode its item texts."""
    prepared = prepare(prepare_config(config), data_dir=data_dir)
    require_item_text(prepared.items, prepared.name, template)
    vectors, _ = item_vectors(prepared.items, encoder, template)
    return Domain(config, prepared, vectors)
