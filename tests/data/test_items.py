import numpy as np
import pytest

from lmrec.data import IdMap, ItemTable
from lmrec.errors import ConfigError, DataError


@pytest.fixture
def table():
    return ItemTable(IdMap(["a", "b", "c", "d"]), {
        "title": ["Red Pen", "Blue Pen", "", None],
        "brand": ["Bic", "", "Acme", float("nan")],
        "categories": [["Office", "Pens"], "Office", "", ""],
    })


def test_render_drops_empty_fields_with_their_label(table):
    texts = table.render("{title}. Brand: {brand}. Category: {categories}.")
    assert texts == [
        "Red Pen. Brand: Bic. Category: Office, Pens.",
        "Blue Pen. Category: Office.",
        "Brand: Acme.",  # empty first field: the leading separator goes too
        "",  # nothing at all
    ]
    assert table.render("{title}", indices=[1, 0]) == ["Blue Pen", "Red Pen"]


def test_render_rejects_unknown_or_formatted_fields(table):
    with pytest.raises(ConfigError, match="field 'colour'.*available: title, brand, categories"):
        table.render("{colour}")
    with pytest.raises(ConfigError, match="plain names"):
        table.render("{title!r}")
    with pytest.raises(ConfigError, match="names no field"):
        table.render("no fields here")


def test_coverage_has_text_and_subset(table):
    assert table.coverage() == {"title": 0.5, "brand": 0.5, "categories": 0.5}
    assert table.has_text().tolist() == [True, True, True, False]
    assert table.has_text(["title"]).tolist() == [True, True, False, False]
    sub = table.subset(np.array([2, 0]))
    assert sub.ids.to_list() == ["c", "a"] and sub["brand"].tolist() == ["Acme", "Bic"]
    with pytest.raises(DataError, match="3 values for 4 items"):
        table["x"] = ["1", "2", "3"]
