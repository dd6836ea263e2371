import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmrec.data import IdMap
from lmrec.errors import DataError


def test_indices_follow_first_appearance_and_ints_equal_strings():
    m = IdMap.from_values([10, 3, 10, 7, 3])
    assert m.to_list() == ["10", "3", "7"]
    assert m.index("3") == 1 and m.index(3) == 1
    np.testing.assert_array_equal(m.indices(["7", "10", "7"]), [2, 0, 2])
    np.testing.assert_array_equal(m.raws([2, 0]), ["7", "10"])


def test_unknown_and_duplicate_ids_are_clear_errors():
    m = IdMap(["a", "b"])
    with pytest.raises(DataError, match="unknown id 'zz'"):
        m.index("zz")
    with pytest.raises(DataError, match="'c'.*1 unknown"):
        m.indices(["a", "c"])
    np.testing.assert_array_equal(m.indices(["a", "c"], missing="-1"), [0, -1])
    with pytest.raises(DataError, match="more than once"):
        IdMap(["a", "b", "a"])
    with pytest.raises(DataError, match="floating-point"):
        IdMap.from_values(np.array([1.5, 2.0]))


def test_extend_keeps_existing_indices_and_subset_reorders():
    m = IdMap(["a", "b"]).extend(["c", "a", "d", "c"])
    assert m.to_list() == ["a", "b", "c", "d"]
    assert m.subset(np.array([3, 0])).to_list() == ["d", "a"]
    assert m == IdMap(["a", "b", "c", "d"]) and m != IdMap(["a", "b", "d", "c"])


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50))
def test_round_trip_raw_to_index_to_raw(raw):
    m = IdMap.from_values(raw)
    assert list(m.raws(m.indices(raw))) == raw
    assert len(m) == len(set(raw))
