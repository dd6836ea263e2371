"""Bad input gets one clear line naming the file, the line and what is wrong."""

import pytest

from lmrec.data import PrepareConfig, load_dataset, prepare
from lmrec.data.readers import ColumnMap, read_generic, read_movielens_100k, read_recbole
from lmrec.errors import ConfigError, DataError, DatasetNotFound

from . import fixtures


def test_missing_dataset_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFound) as exc:
        load_dataset("movielens-100k")
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"folder is missing at {tmp_path / 'movielens-100k'}" in msg
    assert "$LMREC_DATA" in msg and "lmrec datasets download movielens-100k" in msg


def test_missing_file_is_named(tmp_path, monkeypatch):
    folder = fixtures.write_ml100k(tmp_path / "movielens-100k")
    (folder / "u.user").unlink()
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFound, match=r"missing file\(s\) u.user at"):
        load_dataset("movielens-100k")


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(DatasetNotFound, match="did you mean amazon-beauty"):
        load_dataset("amazon-beuaty")


def test_malformed_line_names_file_and_line(tmp_path):
    folder = fixtures.write_ml100k(tmp_path)
    lines = (folder / "u.data").read_text().splitlines()
    lines[3] = "2\t1\t4"  # a field short
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u.data:4: expected 4 fields \(user, item, rating, time\) separated by '\\t', found 3"):
        read_movielens_100k(folder)


def test_non_numeric_value_names_file_line_and_column(tmp_path):
    folder = fixtures.write_ml100k(tmp_path)
    lines = (folder / "u.data").read_text().splitlines()
    lines[1] = "1\t2\tthree\t200"
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u.data:2: field 'rating' must be a number, got 'three'"):
        read_movielens_100k(folder)


def test_wrong_encoding_names_line_and_byte(tmp_path):
    folder = fixtures.write_unisrec(tmp_path)
    text = (folder / "Toy.text").read_bytes().replace(b"Gamma.", "Gämma.".encode("latin-1"))
    (folder / "Toy.text").write_bytes(text)
    with pytest.raises(DataError, match=r"Toy.text:4: byte 0xe4 at column 5 is not valid utf-8 text \(wrong encoding\?\)"):
        read_recbole(folder, "Toy")


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user,item\na,x\n")
    with pytest.raises(DataError, match=r"logs.csv: missing time column 'when'; columns are \['user', 'item'\]"):
        read_generic(path, ColumnMap(user="user", item="item", time="when"))


def test_bad_time_value_names_the_row(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id,t\na,x,2024-01-01\nb,y,yesterday-ish\n")
    with pytest.raises(DataError, match=r"row 2: column 't' is not a time: 'yesterday-ish'"):
        read_generic(path, ColumnMap(time="t"))


def test_empty_after_filtering(tmp_path, monkeypatch):
    fixtures.write_ml100k(tmp_path / "movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    with pytest.raises(DataError, match="empty after 50/50-core filtering"):
        prepare(PrepareConfig(dataset="movielens-100k", split="loo", k_core=50))


def test_empty_file(tmp_path):
    (tmp_path / "logs.csv").write_text("user_id,item_id\n")
    with pytest.raises(DataError, match="logs.csv: the file has no data rows"):
        read_generic(tmp_path / "logs.csv")


def test_unknown_config_key_and_bad_value():
    from lmrec.config import validate

    with pytest.raises(ConfigError, match=r"unknown key 'kcore' \(did you mean 'k_core'\? allowed: dataset, split"):
        validate(PrepareConfig, {"dataset": "x", "kcore": 5})
    with pytest.raises(ConfigError, match="split: Input should be 'loo'"):
        validate(PrepareConfig, {"dataset": "x", "split": "bogus"})
