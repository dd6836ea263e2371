"""A small catalogue with a planted pattern (even users take even items, odd users odd ones), as a user
dataset in a data home, and bundles trained on it."""

import numpy as np
import pytest

from lmrec import pipeline
from lmrec.data import PrepareConfig

N_USERS, N_ITEMS, PER_USER = 24, 16, 6


def write_parity_dataset(home):
    folder = home / "parity"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["user,item,t"]
    for u in range(N_USERS):
        own = np.arange(u % 2, N_ITEMS, 2)
        rows += [f"u{u},i{i},{1000 + 10 * n}" for n, i in enumerate(rng.choice(own, PER_USER, replace=False))]
    (folder / "logs.csv").write_text("\n".join(rows) + "\n")
    words = ["even", "odd"]
    items = ["item,name,kind"] + [f"i{i},gadget {words[i % 2]} model {i},{words[i % 2]}" for i in range(N_ITEMS)]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    (folder / "lmrec.yaml").write_text("interactions: logs.csv\nitems: items.csv\n"
                                       "columns: {user: user, item: item, time: t}\n"
                                       "item_columns: {id: item, text: [name, kind]}\n")
    return home


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """``{name: path}`` trained on the parity data (leave-one-out): itemknn, ease and sasrec (item ids only),
    lmcontent, lmcontent-mean (power 1: inner-product scores) and textseq (item text, through the hashing
    encoder: no model files needed)."""
    root = tmp_path_factory.mktemp("serve")
    home = write_parity_dataset(root / "home")
    config = PrepareConfig(dataset="parity", split="loo")
    out = {}
    small = {"epochs": 3, "dim": 16, "layers": 1, "max_len": 8}
    for name, model, params in (("itemknn", "itemknn", {}), ("ease", "ease", {}), ("sasrec", "sasrec", small),
                                ("lmcontent", "lmcontent", {"encoder": "hash:1024"}),
                                ("lmcontent-mean", "lmcontent", {"encoder": "hash:1024", "power": 1}),
                                ("textseq", "textseq", {**small, "encoder": "hash:1024", "experts": 2})):
        out[name] = pipeline.train(config, model, params, root / name, data_dir=home).path
    return out
