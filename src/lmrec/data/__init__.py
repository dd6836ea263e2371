"""The data layer: raw files -> ``Interactions`` + ``ItemTable`` -> ``Split``, prepared once and cached."""

from lmrec.data.dataset import Dataset
from lmrec.data.datasets import SPECS, download_dataset, get_spec, list_datasets, load_dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions, Sequences
from lmrec.data.items import ItemTable, UserTable
from lmrec.data.prepared import PrepareConfig, Prepared, prepare
from lmrec.data.split import (
    Split,
    cold_start_items,
    cold_start_users,
    leave_one_out,
    random_split,
    temporal_split,
)
from lmrec.data.stats import interaction_stats

__all__ = [
    "SPECS", "Dataset", "IdMap", "Interactions", "ItemTable", "PrepareConfig", "Prepared", "Sequences", "Split",
    "UserTable", "cold_start_items", "cold_start_users", "download_dataset", "get_spec", "interaction_stats",
    "leave_one_out", "list_datasets", "load_dataset", "prepare", "random_split", "temporal_split",
]
