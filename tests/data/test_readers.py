import json

import numpy as np
import pandas as pd
import pytest

from lmrec.data.readers import (
    ColumnMap,
    ItemColumns,
    read_amazon,
    read_collm,
    read_generic,
    read_lcrec,
    read_movielens_1m,
    read_movielens_100k,
    read_recbole,
    read_sequence_file,
    read_urllm,
)
from lmrec.errors import DataError

from . import fixtures


def seqs_raw(ds):
    """{raw user: [raw items in order]} of a dataset."""
    s = ds.interactions.sequences()
    return {ds.interactions.users.raw(u): ds.interactions.items.raws(s[u]).tolist() for u in range(len(s))}


def test_movielens_100k(tmp_path):
    ds = read_movielens_100k(fixtures.write_ml100k(tmp_path / "ml"))
    assert len(ds.interactions) == 6 and ds.interactions.n_items == 3
    assert ds.items["title"][1] == "Café au lait (1993)"  # Latin-1 decoded
    assert ds.items["genres"].tolist() == ["Comedy", "Action, Comedy", "Action"]
    assert ds.users["occupation"].tolist() == ["technician", "other", "writer"]
    assert seqs_raw(ds) == {"1": ["1", "2", "3"], "2": ["1", "3"], "3": ["2"]}
    assert ds.interactions.rating.tolist()[:3] == [5.0, 3.0, 4.0]
    assert list(ds.predefined) == ["u1"]
    u1 = ds.predefined_split("u1")
    assert (len(u1.train), len(u1.valid), len(u1.test)) == (4, 0, 2)
    u1.assert_no_leakage()


def test_movielens_1m(tmp_path):
    ds = read_movielens_1m(fixtures.write_ml1m(tmp_path / "ml1m"))
    assert seqs_raw(ds) == {"1": ["1", "2"], "2": ["1"]}  # time-ordered: 978300000 before 978300760
    assert ds.items["genres"][0] == "Animation, Children's, Comedy"
    assert ds.users["age"].tolist() == ["1", "56"]


def test_unisrec_rebuilds_full_sequences_from_the_presplit_files(tmp_path):
    ds = read_recbole(fixtures.write_unisrec(tmp_path / "u"), "Toy")
    assert seqs_raw(ds) == {"U0": ["A1", "B1", "C1", "B1", "D1", "E1"], "U1": ["C1", "A1", "D1"]}
    assert ds.items["text"][0] == "Alpha. Tools."
    assert ds.interactions.time_unit == "order"
    split = ds.predefined_split("unisrec")
    test = dict(zip(split.test.users.raws(split.test.user), split.test.items.raws(split.test.item)))
    assert test == {"U0": "E1", "U1": "D1"}
    split.assert_no_leakage()  # B1 is bought twice by U0: a repeat, not a leak


def test_unisrec_inconsistent_files_are_rejected(tmp_path):
    folder = fixtures.write_unisrec(tmp_path / "u")
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / "Toy.test.inter").write_text(head + "0\t0 1 2 1 4\t4\n1\t2 0\t3\n")
    with pytest.raises(DataError, match="Toy.test.inter: user 0: history disagrees"):
        read_recbole(folder, "Toy")


def test_recbole_plain_atomic_files(tmp_path):
    (tmp_path / "m.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti2\t4\t20\nu1\ti1\t5\t10\nu2\ti3\t3\t5\n")
    (tmp_path / "m.item").write_text("item_id:token\ttitle:token_seq\nI0\tUnused\ni1\tOne\ni2\tTwo\n")
    ds = read_recbole(tmp_path, "m")
    assert seqs_raw(ds) == {"u1": ["i1", "i2"], "u2": ["i3"]}
    assert ds.interactions.n_items == 4  # catalogue: item file + an item known only from interactions
    assert ds.items["title"][ds.interactions.items.index("i2")] == "Two"
    assert ds.items["title"][ds.interactions.items.index("i3")] == ""


def test_recbole_bad_header(tmp_path):
    (tmp_path / "m.inter").write_text("user_id\titem_id:token\nu\ti\n")
    with pytest.raises(DataError, match=r"m.inter:1: header field 'user_id' must be 'name:type'"):
        read_recbole(tmp_path, "m")


def test_lcrec(tmp_path):
    ds = read_lcrec(fixtures.write_lcrec(tmp_path / "l"), "Toy")
    assert seqs_raw(ds) == {"0": ["0", "1", "2"], "1": ["2", "0"]}
    assert ds.items.fields == ["title", "description", "brand", "categories"]
    assert ds.items.render("{title}. Brand: {brand}") == ["Pen. Brand: Bic", "Ink", "Pad. Brand: Acme"]


def test_sequence_file_with_items_csv(tmp_path):
    seq, items = fixtures.write_sequences(tmp_path)
    ds = read_sequence_file(seq, items)
    assert seqs_raw(ds) == {"1": ["1", "2", "3"], "2": ["3", "1"]}
    assert ds.items["title"].tolist() == ["Nail Polish, Red", "Toolbox", ""]
    (tmp_path / "seq.txt").write_text("1 1 2\n2 7\n")
    with pytest.raises(DataError, match="item '7' is used in a sequence but has no row"):
        read_sequence_file(seq, items)


def test_urllm_cross_domain_with_user_disjoint_split(tmp_path):
    ds = read_urllm(fixtures.write_urllm(tmp_path / "ao"), {"item_listA_F.csv": "arts", "item_listO_AA_F.csv": "office"})
    assert ds.items["domain"].tolist() == ["arts", "arts", "arts", "office", "office"]
    assert ds.interactions.users.to_list() == ["RA", "RB", "RC"]
    # user RA: history 0 3, then two targets (1 and 4) at the same position
    assert seqs_raw(ds)["RA"] == ["0", "3", "1", "4"]
    s = ds.predefined_split("urllm")
    assert s.train.users.raws(s.train.user_ids()).tolist() == ["RA"]
    assert sorted(s.test.items.raws(s.test.item).tolist()) == ["2", "3"]
    assert s.context.items.raws(s.context.item[s.context.user == 2]).tolist() == ["4", "1"]
    assert set(s.cold_users("test")) == {2}
    arts = ds.restrict_items(ds.items["domain"] == "arts", "arts")
    assert arts.interactions.n_items == 3 and set(arts.items["domain"]) == {"arts"}
    a_split = arts.predefined_split("urllm")
    assert a_split.test.items.raws(a_split.test.item).tolist() == ["2"]


def test_urllm_bad_count(tmp_path):
    folder = fixtures.write_urllm(tmp_path / "ao")
    (folder / "test_F2.txt").write_text("2\t5\t4|0|0\t1|1|1\t\n")
    with pytest.raises(DataError, match=r"test_F2.txt:1: header says 5 history items \+ 1 target, found 2"):
        read_urllm(folder, {"item_listA_F.csv": "arts", "item_listO_AA_F.csv": "office"})


def test_collm_parquet(tmp_path):
    ds = read_collm(fixtures.write_collm(tmp_path / "c"))
    assert ds.interactions.label.tolist() == [1, 0, 0, 1, 1, 1]  # sorted by user then time
    assert ds.items["title"].tolist() == ["Heat (1995)", "Alien (1979)", "Fargo (1996)"]
    s = ds.predefined_split()
    assert (len(s.train), len(s.valid), len(s.test)) == (3, 1, 2)
    assert s.train.time.max() < s.valid.time.min() <= s.valid.time.max() < s.test.time.min()


def test_amazon_2014_loose_json_and_gzip(tmp_path):
    ds = read_amazon(*fixtures.write_amazon_2014(tmp_path))
    assert seqs_raw(ds) == {"U1": ["I2", "I1"], "U2": ["I1"]}
    assert ds.interactions.n_items == 2  # the never-reviewed metadata item is not in the catalogue
    assert ds.items["title"].tolist() == ["Red & Blue Pen", "Ink"]
    assert ds.items["categories"][0] == "Office, Pens"
    assert ds.items["description"][1] == "Black ink."
    assert ds.users["reviews"][0] == "Great Loved it\nMeh Broke"  # most recent first


def test_amazon_2023_jsonl_with_millisecond_times(tmp_path):
    ds = read_amazon(*fixtures.write_amazon_2023(tmp_path))
    assert seqs_raw(ds) == {"U9": ["P2", "P1"]}
    assert ds.interactions.time.tolist() == [1588615800, 1588615855]
    lamp = ds.interactions.items.index("P1")
    assert ds.items["brand"][lamp] == "Lumo" and ds.items["description"][lamp] == "Bright., LED."
    assert ds.items["categories"][lamp] == "Home, Lighting"


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_generic_formats_with_column_mapping(tmp_path, fmt):
    logs = pd.DataFrame({"uid": ["a", "a", "b"], "sku": ["x", "y", "x"],
                         "ts": ["2024-01-02", "2024-01-01", "2024-01-03"], "stars": [5, 3, 4]})
    items = pd.DataFrame({"sku": ["x", "y", "z"], "name": ["Pen", "Ink", "Pad"], "note": ["n1", "", "n3"]})
    path, ipath = tmp_path / f"logs.{fmt}", tmp_path / f"items.{fmt}"
    for frame, p in ((logs, path), (items, ipath)):
        if fmt == "csv":
            frame.to_csv(p, index=False)
        elif fmt == "parquet":
            frame.to_parquet(p, index=False)
        else:
            p.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    ds = read_generic(path, ColumnMap(user="uid", item="sku", time="ts", rating="stars"), ipath,
                      ItemColumns(id="sku", text=["name"]))
    assert seqs_raw(ds) == {"a": ["y", "x"], "b": ["x"]}
    assert ds.items.fields == ["name"] and ds.interactions.n_items == 3
    assert ds.interactions.time.tolist()[0] == 1704067200  # 2024-01-01 UTC
    assert np.allclose(ds.interactions.rating, [3, 5, 4])
