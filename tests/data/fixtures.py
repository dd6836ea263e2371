"""Small files in the real formats, written by tests (the real datasets are never copied into the repo)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

GENRES = ["unknown", "Action", "Comedy"]


def write_ml100k(folder: Path) -> Path:
    """3 users, 3 movies (one title in Latin-1), official split u1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    items = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1",
        "2|Café au lait (1993)|01-Jan-1993||http://y|0|1|1",
        "3|Heat (1995)|01-Jan-1995||http://z|0|1|0",
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    data = [(1, 1, 5, 100), (1, 2, 3, 200), (1, 3, 4, 300), (2, 1, 4, 150), (2, 3, 2, 160), (3, 2, 5, 50)]
    line = lambda r: "\t".join(map(str, r))  # noqa: E731
    (folder / "u.data").write_text("\n".join(map(line, data)) + "\n")
    (folder / "u1.base").write_text("\n".join(map(line, data[:4])) + "\n")
    (folder / "u1.test").write_text("\n".join(map(line, data[4:])) + "\n")
    return folder


def write_ml1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n".encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "ratings.dat").write_text("1::2::3::978300760\n1::1::5::978300000\n2::1::4::978300100\n")
    return folder


def write_unisrec(folder: Path, name: str = "Toy") -> Path:
    """Two users; user 0 sequence a b c d e (b repeated later), user 1: c a d."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.item2index").write_text("A1\t0\nB1\t1\nC1\t2\nD1\t3\nE1\t4\n")
    (folder / f"{name}.user2index").write_text("U0\t0\nU1\t1\n")
    (folder / f"{name}.text").write_text(
        "item_id:token\ttext:token_seq\nA1\tAlpha. Tools.\nB1\tBeta. Tools.\nC1\tGamma.\nD1\tDelta.\nE1\tEps.\n")
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    # user 0 full sequence: 0 1 2 1 3 4 -> train targets 1 2 1 (newest first, like UniSRec), valid 3, test 4
    (folder / f"{name}.train.inter").write_text(head + "0\t0 1 2\t1\n0\t0 1\t2\n0\t0\t1\n")
    (folder / f"{name}.valid.inter").write_text(head + "0\t0 1 2 1\t3\n1\t2\t0\n")
    (folder / f"{name}.test.inter").write_text(head + "0\t0 1 2 1 3\t4\n1\t2 0\t3\n")
    return folder


def write_lcrec(folder: Path, name: str = "Toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 0]}))
    (folder / f"{name}.item.json").write_text(json.dumps({
        "0": {"title": "Pen", "description": "Writes.", "brand": "Bic", "categories": "Office,Pens"},
        "1": {"title": "Ink", "description": "", "brand": "", "categories": "Office"},
        "2": {"title": "Pad", "description": "Paper.", "brand": "Acme", "categories": ""},
    }))
    return folder


def write_sequences(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seq.txt").write_text("1 1 2 3\n2 3 1\n")
    (folder / "items.csv").write_text('item_id,asin,title\n1,B01,"Nail Polish, Red"\n2,B02,Toolbox\n3,B03,\n')
    return folder / "seq.txt", folder / "items.csv"


def write_urllm(folder: Path) -> Path:
    """Users 0 (train), 1 (valid), 2 (test); item 0..2 domain A, 3..4 domain O."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "item_listA_F.csv").write_text(
        "idBefore,item_title,idAfter,item_attribute\n0,red pen,0,arts pens bic\n1,blue ink,1,arts ink\n"
        "2,glue,2,arts glue elmer\n")
    (folder / "item_listO_AA_F.csv").write_text(
        "idBefore,item_title,idAfter,item_attribute\n0,stapler,3,office staplers\n1,folder,4,office folders\n")
    (folder / "Dualuser_dict.json").write_text(json.dumps(["RA", "RB", "RC"]))
    (folder / "train_F2.txt").write_text("0\t2\t0|0|0\t3|1|1\t1|2|2\t\n0\t2\t0|0|0\t3|1|1\t4|2|2\t\n")
    (folder / "valid_F2.txt").write_text("1\t1\t2|0|0\t0|1|1\t\n1\t1\t2|0|0\t3|1|1\t\n")
    (folder / "test_F2.txt").write_text("2\t2\t4|0|0\t1|1|1\t2|2|2\t\n2\t2\t4|0|0\t1|1|1\t3|2|2\t\n")
    return folder


def write_collm(folder: Path, suffix: str = "ood2") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "train": [(1, 1, 1, 100, "Heat (1995)"), (1, 2, 0, 110, "Alien (1979)"), (2, 1, 1, 120, "Heat (1995)")],
        "valid": [(2, 3, 1, 200, "Fargo (1996)")],
        "test": [(1, 3, 0, 300, "Fargo (1996)"), (3, 2, 1, 310, "Alien (1979)")],
    }
    for part, rs in rows.items():
        f = pd.DataFrame(rs, columns=["uid", "iid", "label", "timestamp", "title"])
        f["his"] = [[0]] * len(f)
        f["his_title"] = [[""]] * len(f)
        f.to_parquet(folder / f"{part}_{suffix}.parquet", index=False)
    return folder


def write_amazon_2014(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    reviews = [
        {"reviewerID": "U1", "asin": "I1", "overall": 5.0, "unixReviewTime": 300, "summary": "Great", "reviewText": "Loved it"},
        {"reviewerID": "U1", "asin": "I2", "overall": 2.0, "unixReviewTime": 100, "summary": "Meh", "reviewText": "Broke"},
        {"reviewerID": "U2", "asin": "I1", "overall": 4.0, "unixReviewTime": 200, "summary": "", "reviewText": "Fine"},
    ]
    rpath = folder / "reviews_Toy_5.json.gz"
    with gzip.open(rpath, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in reviews) + "\n")
    mpath = folder / "meta_Toy.json"
    # 2014 metadata is a Python literal per line (single quotes), not JSON
    mpath.write_text(
        "{'asin': 'I1', 'title': 'Red &amp; Blue Pen', 'categories': [['Office', 'Pens']], 'brand': 'Bic'}\n"
        "{'asin': 'I2', 'title': 'Ink', 'description': 'Black ink.'}\n"
        "{'asin': 'I9', 'title': 'Never reviewed'}\n")
    return rpath, mpath


def write_amazon_2023(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rpath = folder / "Toy.jsonl"
    rpath.write_text("\n".join(json.dumps(r) for r in [
        {"rating": 5.0, "title": "Nice", "text": "Works", "asin": "C1", "parent_asin": "P1", "user_id": "U9",
         "timestamp": 1588615855070},
        {"rating": 1.0, "title": "Bad", "text": "No", "asin": "C2", "parent_asin": "P2", "user_id": "U9",
         "timestamp": 1588615800000},
    ]) + "\n")
    mpath = folder / "meta_Toy.jsonl"
    mpath.write_text("\n".join(json.dumps(r) for r in [
        {"parent_asin": "P1", "title": "Lamp", "main_category": "Home", "categories": ["Home", "Lighting"],
         "description": ["Bright.", "LED."], "store": "Lumo"},
        {"parent_asin": "P2", "title": "Shade", "categories": [], "description": [], "store": None},
    ]) + "\n")
    return rpath, mpath
