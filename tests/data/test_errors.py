"""Bad input gets one clear line naming the file, the line and what is wrong."""

import re

import numpy as np
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
    with pytest.raises(DataError, match=r"logs.csv: missing time column 'when'; columns are \['user', 'item'\] "
                                        r"\(map it in the dataset's lmrec.yaml\)"):
        read_generic(path, ColumnMap(user="user", item="item", time="when"))


def test_bad_time_value_names_the_row(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id,t\na,x,2024-01-01\nb,y,yesterday-ish\n")
    with pytest.raises(DataError, match=r"logs.csv:3 \(data row 2\): column 't' is not a time: 'yesterday-ish'"):
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


# --- silently wrong data now stops (or warns) with the file and line ------------------------------------------
def test_empty_or_missing_ids_stop_naming_the_line(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id\na,x\n,y\nb,\n")
    with pytest.raises(DataError, match=r"logs.csv:3 \(data row 2\): empty user id \(1 row\(s\) have none\)"):
        read_generic(path)
    jsonl = tmp_path / "logs.jsonl"
    jsonl.write_text('{"user_id": "a", "item_id": "x"}\n{"user_id": "b", "item_id": null}\n')
    with pytest.raises(DataError, match=r"logs.jsonl:2: empty item id"):
        read_generic(jsonl)


def test_a_time_column_mixing_seconds_and_milliseconds_stops(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id,t\na,x,1700000000\na,y,1700000100000\n")
    with pytest.raises(DataError, match=r"column 't' mixes unix seconds and milliseconds \(.*logs.csv:2 .*"
                                        r"'1700000000'; .*logs.csv:3 .*'1700000100000'\)"):
        read_generic(path, ColumnMap(time="t"))
    path.write_text("user_id,item_id,t\na,x,1700000000\na,y,1700000100\n")  # one unit: fine, in seconds
    assert read_generic(path, ColumnMap(time="t")).interactions.time.tolist() == [1700000000, 1700000100]


def test_timestamps_that_overflow_are_one_line(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id,t\na,x,1700000000000\na,y,99999999999999999999999\n")
    with pytest.raises(DataError, match=r"logs.csv:3 \(data row 2\): column 't' holds '9+', which is not a unix "
                                        r"time in milliseconds before the year 3000"):
        read_generic(path, ColumnMap(time="t"))


@pytest.mark.parametrize("interaction_id,item_file_id", [("3", "003"), ("2", "2.0")])
def test_item_ids_spelled_differently_in_the_two_files_stop(tmp_path, interaction_id, item_file_id):
    (tmp_path / "logs.csv").write_text(f"user_id,item_id\na,{interaction_id}\nb,{interaction_id}\n")
    (tmp_path / "items.csv").write_text(f"item_id,title\n{item_file_id},Pen\n")
    with pytest.raises(DataError, match=rf"spell item ids differently \(e.g. '{interaction_id}' vs "
                                        rf"'{re.escape(item_file_id)}'\): 1 of 1 items would get no text"):
        read_generic(tmp_path / "logs.csv", items_path=tmp_path / "items.csv")


def test_few_items_with_text_is_a_warning(tmp_path, caplog):
    (tmp_path / "logs.csv").write_text("user_id,item_id\na,x\nb,y\nc,z\n")
    (tmp_path / "items.csv").write_text("item_id,title\nx,Pen\nq,Other\n")
    read_generic(tmp_path / "logs.csv", items_path=tmp_path / "items.csv")
    assert "only 33% of the 3 items in logs.csv have a row there" in caplog.text


def test_density_counts_distinct_pairs_when_events_repeat():
    from lmrec.data import IdMap, Interactions
    from lmrec.data.stats import interaction_stats

    inter = Interactions(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]), IdMap(["u"]), IdMap(["a", "b"]))
    stats = interaction_stats(inter)
    assert stats["interactions"] == 4 and stats["density"] == 1.0  # was 2.0 (200%)


# --- tracebacks that are now one line, and caches that rebuild ------------------------------------------------
def test_empty_files_and_a_byte_order_mark(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_generic(tmp_path / "empty.csv")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffuser_id,item_id\na,x\n".encode())
    assert read_generic(bom).interactions.users.to_list() == ["a"]  # not a column named '\ufeffuser_id'


def test_an_encoding_set_in_lmrec_yaml_and_the_hint_that_names_it(tmp_path, monkeypatch):
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "logs.csv").write_bytes("user_id,item_id\nJosé,x\nAna,x\n".encode("latin-1"))
    (folder / "lmrec.yaml").write_text("interactions: logs.csv\n")
    with pytest.raises(DataError, match=r"logs.csv:2: byte 0xe9 .* set 'encoding:' in the dataset's lmrec.yaml"):
        load_dataset("latin", tmp_path)
    (folder / "lmrec.yaml").write_text("interactions: logs.csv\nencoding: latin-1\n")
    assert load_dataset("latin", tmp_path).interactions.users.to_list() == ["José", "Ana"]
    (folder / "lmrec.yaml").write_text("interactions: logs.csv\nencoding: klingon\n")
    with pytest.raises(ConfigError, match="unknown text encoding 'klingon'"):
        load_dataset("latin", tmp_path)


def test_one_bad_lmrec_yaml_does_not_hide_the_other_datasets(tmp_path):
    from lmrec.data import list_datasets

    for name, text in (("good", "interactions: logs.csv\n"), ("bad", "interactions: [unclosed\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "logs.csv").write_text("user_id,item_id\na,x\n")
        (tmp_path / name / "lmrec.yaml").write_text(text)
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert rows["good"]["status"] == "found" and rows["bad"]["status"] == "invalid"
    assert "not valid YAML" in rows["bad"]["how_to_get"]


def test_a_corrupt_prepared_dataset_in_the_cache_is_rebuilt(tmp_path, monkeypatch):
    fixtures.write_ml100k(tmp_path / "movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    first = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    events = first.path / "interactions.parquet"
    events.write_bytes(events.read_bytes()[:30])  # used to fail every run with ArrowInvalid until --force
    again = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    assert again.split.train.equals(first.split.train)


def test_an_unwritable_cache_and_no_models_are_one_line(tmp_path, capsys, monkeypatch):
    from lmrec.cli import main

    fixtures.write_ml100k(tmp_path / "data" / "movielens-100k")
    code = main(["bench", "--dataset", "movielens-100k", "--models", "", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "models: name at least one model (set with --models)" in err
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "cache"))
    code = main(["datasets", "prepare", "movielens-100k", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "cache" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_runs_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    from lmrec.cli import main

    fixtures.write_ml100k(tmp_path / "data" / "movielens-100k")
    (tmp_path / "runs").write_text("a file where the runs folder should be")  # unwritable, even for root
    code = main(["bench", "--dataset", "movielens-100k", "--models", "pop", "--data-dir", str(tmp_path / "data"),
                 "--runs-dir", str(tmp_path / "runs" / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and "runs/sub" in err and "Not a directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
