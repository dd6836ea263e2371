"""Every staged dataset loads with the exact counts its SOURCE.md states (needs LMREC_DATA).

Skips with a reason when LMREC_DATA is unset; under LMREC_REQUIRE_DATA=1 (CI) a missing dataset fails.
"""

import numpy as np
import pytest

from lmrec.data import PrepareConfig, load_dataset, prepare
from tests.conftest import staged_folder

pytestmark = pytest.mark.data


@pytest.fixture
def home(monkeypatch):
    def use(name):
        folder = staged_folder(name)
        monkeypatch.setenv("LMREC_DATA", str(folder.parent))
        return folder
    return use


def sizes(inter):
    return len(inter.user_ids()), len(inter.item_ids()), len(inter)


def test_movielens_100k(home):
    home("movielens-100k")
    ds = load_dataset("movielens-100k")
    assert sizes(ds.interactions) == (943, 1682, 100_000)
    assert ds.items.has_text(["title"]).all() and ds.users is not None and len(ds.users) == 943
    assert set(np.unique(ds.interactions.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (ds.interactions.time.min(), ds.interactions.time.max()) == (874724710, 893286638)
    assert ds.items["title"][ds.interactions.items.index("1")] == "Toy Story (1995)"
    for key in ("u1", "u2", "u3", "u4", "u5"):
        s = ds.predefined_split(key)
        assert (len(s.train), len(s.test)) == (80_000, 20_000)
        s.assert_no_leakage()
    for key in ("ua", "ub"):
        s = ds.predefined_split(key)
        assert (len(s.train), len(s.test)) == (90_570, 9_430)
        assert set(np.bincount(s.test.user)) == {10}  # exactly 10 test ratings per user
    loo = prepare(PrepareConfig(dataset="movielens-100k", split="loo")).split
    assert (len(loo.train), len(loo.valid), len(loo.test)) == (98_114, 943, 943)


def test_amazon_scientific_unisrec(home):
    home("amazon-scientific")
    ds = load_dataset("amazon-scientific")
    assert sizes(ds.interactions) == (8_442, 4_385, 59_427)
    assert ds.items.has_text().all()
    assert ds.interactions.items.raw(0) == "B00TNNWMXI" and ds.interactions.users.raw(0) == "ABW8NXS7SV55K"
    s = prepare("amazon-scientific").split  # default: the predefined UniSRec split
    assert s.name == "unisrec"
    assert (len(s.train), len(s.valid), len(s.test)) == (42_543, 8_442, 8_442)
    assert len(s.train) - 8_442 == 34_101  # the train file's targets: all but each user's first item


def test_amazon_scientific_lcrec(home):
    home("amazon-scientific-lcrec")
    ds = load_dataset("amazon-scientific-lcrec")
    assert sizes(ds.interactions) == (8_317, 4_344, 58_492)
    lengths = ds.interactions.sequences().lengths
    assert (lengths.min(), lengths.max()) == (5, 78)
    assert np.bincount(ds.interactions.item).min() >= 5
    nonempty = {f: int((ds.items[f] != "").sum()) for f in ds.items.fields}
    assert nonempty == {"title": 4_344, "description": 4_221, "brand": 4_332, "categories": 4_213}


def test_amazon_beauty(home):
    home("amazon-beauty")
    ds = load_dataset("amazon-beauty")
    assert sizes(ds.interactions) == (22_363, 12_101, 198_502)
    lengths = ds.interactions.sequences().lengths
    assert (lengths.min(), lengths.max()) == (5, 204)
    assert int(ds.items.has_text(["title"]).sum()) == 12_094  # SOURCE.md: 7 items have an empty title
    p = prepare("amazon-beauty")
    assert p.split.name == "loo"
    assert (len(p.split.train), len(p.split.valid), len(p.split.test)) == (198_502 - 2 * 22_363, 22_363, 22_363)


def test_amazon_arts_office(home):
    home("amazon-arts-office")
    ds = load_dataset("amazon-arts-office")
    assert ds.interactions.n_users == 9_577 and ds.interactions.n_items == 38_396
    assert len(ds.interactions.item_ids()) == 34_419
    domain = ds.items["domain"]
    assert (int((domain == "arts").sum()), int((domain == "office").sum())) == (18_639, 19_757)
    assert ds.items.has_text(["title"])[ds.interactions.item_ids()].all()
    s = ds.predefined_split()
    assert len(s.train) == 183_092
    assert len(s.valid) + int(np.isin(s.context.user, s.users("valid")).sum()) == 8_800
    assert len(s.test) + int(np.isin(s.context.user, s.users("test")).sum()) == 16_649
    assert (len(s.users("train")), len(s.users("valid")), len(s.users("test"))) == (8_000, 577, 1_000)
    assert len(s.cold_users("test")) == 1_000 and len(s.cold_users("valid")) == 577
    # train histories: 91,434 Arts + 75,658 Office items (targets excluded)
    train_hist = s.train.select(s.train.time < np.bincount(s.train.user, minlength=s.n_users)[s.train.user] - 2)
    assert len(train_hist) == 91_434 + 75_658
    s.assert_no_leakage()


@pytest.mark.parametrize("name,items,used,train", [("amazon-arts", 18_639, 18_639, 91_434 + 7_659 + 2 * 341),
                                                   ("amazon-office", 19_757, 15_780, 75_658 + 7_659)])
def test_per_domain_views(home, name, items, used, train):
    home("amazon-arts-office")
    ds = load_dataset(name)
    assert ds.interactions.n_items == items and len(ds.interactions.item_ids()) == used
    assert set(ds.items["domain"]) == {name.split("-")[1]}
    assert len(ds.predefined_split().train) == train


def test_movielens_1m_collm(home):
    home("movielens-1m-collm")
    ds = load_dataset("movielens-1m-collm")
    assert sizes(ds.interactions) == (838, 3_255, 51_623)
    assert ds.items.has_text(["title"]).all()
    s = ds.predefined_split()
    expect = {"train": (33_891, 740, 3_087, 18_191, 991356108, 1017615347),
              "valid": (10_401, 356, 2_506, 5_495, 1017620997, 1030837385),
              "test": (7_331, 320, 2_203, 3_998, 1030839253, 1044033786)}
    for part, (rows, users, items, pos, t0, t1) in expect.items():
        x = getattr(s, part)
        assert (len(x), len(x.user_ids()), len(x.item_ids()), int(x.label.sum())) == (rows, users, items, pos)
        assert (x.time.min(), x.time.max()) == (t0, t1)
