"""The Python API: plain functions, one per job; the CLI is a thin layer over these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmrec.data import PrepareConfig, Prepared, get_spec, load_dataset, prepare
from lmrec.data.datasets import download_dataset, missing_files
from lmrec.data.stats import interaction_stats
from lmrec.errors import DatasetNotFound
from lmrec.progress import logger

DEMO_DATASET = "movielens-100k"


def prepare_dataset(config: PrepareConfig | str, data_dir: str | Path | None = None, force: bool = False) -> Prepared:
    """Prepare (or reload from the cache) a dataset split; see ``PrepareConfig`` for the options."""
    return prepare(config, data_dir=data_dir, force=force)


def dataset_info(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Statistics of a raw dataset (all events, before any split) and its predefined splits."""
    spec = get_spec(name, data_dir)
    ds = load_dataset(name, data_dir)
    return {
        "name": name,
        "description": spec.description,
        "default_split": spec.default_split,
        "predefined_splits": list(ds.predefined),
        "item_fields": ds.items.fields,
        "user_fields": ds.users.fields if ds.users is not None else [],
        **interaction_stats(ds.interactions, ds.items, ds.users),
        "catalogue_text_coverage": ds.items.coverage(),
    }


def demo(data_dir: str | Path | None = None, download: bool = True) -> Prepared:
    """The main job for now: prepare MovieLens-100K with a leave-one-out split.

    If the dataset is not in the data home and ``download`` is true, it is fetched from GroupLens first
    (checksum-verified).
    """
    spec = get_spec(DEMO_DATASET, data_dir)
    if missing_files(spec, data_dir):
        if not download:
            raise DatasetNotFound(f"{DEMO_DATASET} is not in the data home and downloading is off")
        logger.warning("%s not found in the data home; downloading it from GroupLens", DEMO_DATASET)
        download_dataset(DEMO_DATASET, data_dir)
    return prepare(PrepareConfig(dataset=DEMO_DATASET, split="loo"), data_dir=data_dir)
