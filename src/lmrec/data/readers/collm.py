"""CoLLM's MovieLens-1M CTR files: ``{train,valid,test}_SUFFIX.parquet`` with binary labels and titles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lmrec.data.dataset import Dataset
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.readers._io import require_file
from lmrec.data.split import Split
from lmrec.errors import DataError

REQUIRED = ("uid", "iid", "label", "timestamp", "title")
PARTS = ("train", "valid", "test")


def read_collm(folder: Path, suffix: str = "ood2", name: str = "movielens-1m-collm") -> Dataset:
    """Read the three CoLLM Parquet files (rows = rating events with like/dislike labels, unix times).

    Item titles come from the target ``title`` column.
    The predefined split ``collm`` is the files' time-based train / valid / test.
    """
    folder = Path(folder)
    frames = []
    for part in PARTS:
        path = require_file(folder / f"{part}_{suffix}.parquet", "CoLLM parquet file")
        try:
            names = pq.read_schema(path).names
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; columns are {names}")
            f = pq.read_table(path, columns=list(REQUIRED)).to_pandas()
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
        f["part"] = PARTS.index(part)
        frames.append(f)
    rows = pd.concat(frames, ignore_index=True)
    # The catalogue is the items that occur as targets (CoLLM: 3,255); ``his``/``his_title`` only
    # repeat earlier liked items, so they add no item and are not read (reading them costs seconds).
    uniq, first = np.unique(rows["iid"].to_numpy(np.int64), return_index=True)
    titles = dict(zip(uniq.tolist(), rows["title"].to_numpy(dtype=object)[first].tolist()))
    item_ids = sorted(titles)
    items = IdMap(item_ids, name="item")
    table = ItemTable(items, {"title": [titles[i] for i in item_ids]})
    users = IdMap(np.unique(rows["uid"].to_numpy()), name="user")
    labels = rows["label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{folder}: label values must be 0 or 1")
    inter = Interactions(
        users.indices(rows["uid"]), items.indices(rows["iid"]), users, items,
        time=rows["timestamp"].to_numpy(), label=labels, time_unit="s",
    )
    part = rows["part"].to_numpy()
    order = inter.chronological_order()
    inter, part = inter.select(order), part[order]

    def build() -> Split:
        return Split(inter.select(part == 0), inter.select(part == 1), inter.select(part == 2), name="collm")

    files = [folder / f"{p}_{suffix}.parquet" for p in PARTS]
    return Dataset(name, inter, table, None, {"collm": build}, source_files=files)
