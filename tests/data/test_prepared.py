import os
import pickle

import numpy as np
import pytest

from lmrec.data import PrepareConfig, Prepared, prepare
from lmrec.data import prepared as prepared_module
from lmrec.errors import ConfigError, DataError

from . import fixtures


@pytest.fixture
def home(tmp_path, monkeypatch):
    fixtures.write_ml100k(tmp_path / "movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    return tmp_path


def test_prepare_round_trip_is_exact(home):
    first = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    again = Prepared.load(first.path)
    for part in ("train", "valid", "test"):
        assert getattr(again.split, part).equals(getattr(first.split, part))
    assert again.items.equals(first.items) and again.users.equals(first.users)
    assert again.stats == first.stats and again.config == first.config
    # users 1 and 2 both end on movie 3; user 3 has one rating and stays in train
    assert first.stats["split"]["test"] == {"interactions": 2, "users": 2, "items": 1}


def test_a_loaded_item_table_reads_each_field_when_first_used(home, monkeypatch):
    first = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    reads = []
    real = prepared_module._read_column
    monkeypatch.setattr(prepared_module, "_read_column", lambda file, column: reads.append(column) or real(file, column))
    again = Prepared.load(first.path)
    assert reads == [] and again.items.fields == first.items.fields
    assert list(again.items.titles()) == list(first.items.titles()) and reads == ["title"]
    # a copy for another process carries the values, not a path to read them from
    clone = pickle.loads(pickle.dumps(again.items))
    assert all(isinstance(clone._fields[f], np.ndarray) for f in clone.fields) and clone.equals(first.items)
    assert again.items.source == first.path and clone.source is None
    # the prepared folder removed after loading: a field not read yet fails with a clear message
    again = Prepared.load(first.path)
    (first.path / "items.parquet").unlink()
    with pytest.raises(DataError, match="prepare the dataset again"):
        again.items.titles()


def test_second_prepare_of_unchanged_source_is_a_no_op(home, monkeypatch):
    first = prepare("movielens-100k")
    stamp = os.stat(first.path / "interactions.parquet").st_mtime_ns

    def fail(*a, **k):
        raise AssertionError("the raw files were read again")

    monkeypatch.setattr(prepared_module, "load_dataset", fail)
    second = prepare("movielens-100k")
    assert second.path == first.path and second.key == first.key
    assert os.stat(second.path / "interactions.parquet").st_mtime_ns == stamp


def test_changed_source_or_config_gives_a_new_preparation(home):
    first = prepare("movielens-100k")
    other_split = prepare(PrepareConfig(dataset="movielens-100k", split="random", seed=1))
    assert other_split.key != first.key
    data = home / "movielens-100k" / "u.data"
    data.write_text(data.read_text() + "3\t3\t1\t400\n")
    changed = prepare("movielens-100k")
    assert changed.key != first.key and len(changed.interactions) == len(first.interactions) + 1


def test_killed_write_leaves_no_preparation(home, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(prepared_module.pd.DataFrame, "to_parquet", boom)
        with pytest.raises(KeyboardInterrupt):
            prepare("movielens-100k")
    root = prepared_module.cache_home() / "prepared" / "movielens-100k"
    assert not any(root.iterdir())  # no folder, not even a temporary one
    assert len(prepare("movielens-100k").split.test) == 2


def test_predefined_split_refuses_preprocessing(home):
    with pytest.raises(ConfigError, match="used exactly as published"):
        prepare(PrepareConfig(dataset="movielens-100k", split="predefined", k_core=2))
    u1 = prepare(PrepareConfig(dataset="movielens-100k", split="predefined", predefined="u1"))
    assert (len(u1.split.train), len(u1.split.test)) == (4, 2)


def test_user_dataset_from_lmrec_yaml(tmp_path, monkeypatch):
    folder = tmp_path / "my-shop"
    folder.mkdir()
    (folder / "logs.csv").write_text("who,what,when\na,x,1\na,y,2\na,z,3\nb,x,5\nb,z,6\nb,y,7\n")
    (folder / "items.csv").write_text("what,name\nx,Pen\ny,Ink\nz,Pad\n")
    (folder / "lmrec.yaml").write_text(
        "description: my shop\ninteractions: logs.csv\nitems: items.csv\n"
        "columns: {user: who, item: what, time: when}\nitem_columns: {id: what}\n")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    p = prepare("my-shop")
    test = dict(zip(p.split.test.users.raws(p.split.test.user), p.items["name"][p.split.test.item]))
    assert test == {"a": "Pad", "b": "Ink"}
    np.testing.assert_array_equal(p.split.valid.items.raws(p.split.valid.item), ["y", "z"])
    (folder / "lmrec.yaml").write_text("interactions: logs.csv\ncolums: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'colums'"):
        prepare("my-shop")


def test_every_mapped_text_column_reaches_the_template_in_the_users_order(tmp_path, monkeypatch, capsys):
    from lmrec.cli import main
    from lmrec.text.texts import default_template

    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "logs.csv").write_text("u,i,t\na,x,1\na,y,2\na,z,3\nb,x,5\nb,z,6\nb,y,7\n")
    (folder / "items.csv").write_text("sku,name,description\nx,Pen,Blue ink\ny,Ink,Refill\nz,Pad,\n")
    yaml_head = "interactions: logs.csv\nitems: items.csv\ncolumns: {user: u, item: i, time: t}\n"
    (folder / "lmrec.yaml").write_text(yaml_head + "item_columns: {id: sku, text: [name, description]}\n")
    monkeypatch.setenv("LMREC_DATA", str(tmp_path))
    p = prepare("shop")  # through the prepared cache: the template and title field are kept
    # names reached the language model only as "Description: ..." before: now both fields, in the user's order
    assert default_template(p.items) == "{name}. Description: {description}"
    assert p.items.render(default_template(p.items)) == ["Pen. Description: Blue ink", "Ink. Description: Refill", "Pad"]
    assert p.items.titles().tolist() == ["Pen", "Ink", "Pad"]  # the first text field names the item
    assert main(["datasets", "info", "shop"]) == 0
    assert "title field: name; default text template: '{name}. Description: {description}'" in capsys.readouterr().out
    (folder / "lmrec.yaml").write_text(yaml_head + "item_columns: {id: sku, text: [description, name], title: name}\n")
    p = prepare("shop")
    assert default_template(p.items) == "Description: {description}. {name}" and p.items.titles()[0] == "Pen"
    (folder / "lmrec.yaml").write_text(yaml_head + "item_columns: {id: sku, text: [name], title: colour}\n")
    with pytest.raises(DataError, match="item_columns.title 'colour' is not one of the text columns"):
        prepare("shop")
