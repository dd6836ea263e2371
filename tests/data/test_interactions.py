import numpy as np
import pytest

from lmrec.data import IdMap, Interactions
from lmrec.errors import DataError


def make(user, item, time=None, rating=None, n_users=3, n_items=4):
    return Interactions(np.array(user), np.array(item), IdMap(range(n_users)), IdMap(range(n_items)),
                        time=None if time is None else np.array(time),
                        rating=None if rating is None else np.array(rating))


def test_sequences_are_time_ordered_with_stable_ties():
    # user 0: times 5, 1, 5, 3 -> order by time, the two t=5 rows keep their row order (item 2 before 0)
    inter = make([0, 0, 1, 0, 0], [2, 1, 3, 0, 3], time=[5, 1, 9, 5, 3])
    seqs = inter.sequences()
    assert seqs[0].tolist() == [1, 3, 2, 0]
    assert seqs[1].tolist() == [3]
    assert seqs[2].tolist() == []  # a user of the map with no events still has an (empty) entry
    assert seqs.lengths.tolist() == [4, 1, 0]
    assert seqs.times is not None and seqs.times[:4].tolist() == [1, 3, 5, 5]


def test_sequences_without_time_keep_row_order():
    inter = make([1, 0, 1, 0], [3, 2, 1, 0])
    assert [s.tolist() for s in inter.sequences()] == [[2, 0], [3, 1], []]


def test_to_csr_binary_count_and_rating_values():
    inter = make([0, 0, 0, 2], [1, 1, 3, 0], rating=[2.0, 4.0, 5.0, 1.0])
    binary = inter.to_csr("binary").toarray()
    count = inter.to_csr("count").toarray()
    rating = inter.to_csr("rating").toarray()
    assert binary.shape == (3, 4)
    assert binary[0].tolist() == [0, 1, 0, 1] and binary[2].tolist() == [1, 0, 0, 0]
    assert count[0].tolist() == [0, 2, 0, 1]
    assert rating[0].tolist() == [0, 4.0, 0, 5.0]  # the later of the two ratings of (0, 1)


def test_validation_and_concat():
    with pytest.raises(DataError, match="outside the item id map"):
        make([0], [9])
    with pytest.raises(DataError, match="has 1 values, expected 2"):
        Interactions(np.array([0, 1]), np.array([0]), IdMap(range(2)), IdMap(range(2)))
    a, b = make([0], [1], time=[3]), make([2], [0], time=[1])
    both = Interactions.concat([a, b])
    assert both.user.tolist() == [0, 2] and both.time.tolist() == [3, 1]
    with pytest.raises(DataError, match="missing from some parts"):
        Interactions.concat([a, make([2], [0])])


def test_frame_round_trip_is_exact():
    inter = make([0, 2, 1], [3, 0, 1], time=[10, 20, 30], rating=[1.5, 2.0, 5.0])
    back = Interactions.from_frame(inter.to_frame(), inter.users, inter.items, time_unit="s")
    assert back.equals(inter)
    raw = inter.to_frame(raw_ids=True)
    assert raw["user"].tolist() == ["0", "2", "1"]
