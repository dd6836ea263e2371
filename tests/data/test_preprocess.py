import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, ItemTable, preprocess
from lmrec.errors import ConfigError, DataError


def make(user, item, time=None, rating=None, label=None, n_users=4, n_items=5):
    arr = lambda x: None if x is None else np.array(x)  # noqa: E731
    return Interactions(np.array(user), np.array(item), IdMap(range(n_users)), IdMap(range(n_items)),
                        time=arr(time), rating=arr(rating), label=arr(label))


def test_dedup_keeps_first_or_last_in_time():
    inter = make([0, 0, 0, 1], [2, 2, 3, 2], time=[5, 1, 3, 2], rating=[5, 1, 3, 4])
    first = preprocess.dedup(inter, "first")
    last = preprocess.dedup(inter, "last")
    assert sorted(zip(first.user.tolist(), first.item.tolist(), first.time.tolist())) == [(0, 2, 1), (0, 3, 3), (1, 2, 2)]
    assert sorted(zip(last.user.tolist(), last.item.tolist(), last.time.tolist())) == [(0, 2, 5), (0, 3, 3), (1, 2, 2)]
    with pytest.raises(ConfigError):
        preprocess.dedup(inter, "middle")


def test_k_core_is_iterative():
    # 2-core: item 4 has one event -> dropped; then user 2 has one event left -> dropped;
    # then item 3 (users 2 and 3... only 3 remains) -> dropped; then user 3 -> dropped.
    inter = make([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 3, 4, 3, 2])
    out = preprocess.k_core(inter, 2, 2)
    assert sorted(zip(out.user.tolist(), out.item.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with pytest.raises(DataError, match="empty after 9/9-core"):
        preprocess.k_core(inter, 9, 9)


def test_to_implicit_by_rating_or_label():
    rated = make([0, 0, 1], [0, 1, 2], rating=[5.0, 2.0, 4.0])
    assert preprocess.to_implicit(rated, 4.0).item.tolist() == [0, 2]
    labelled = make([0, 0, 1], [0, 1, 2], label=[1, 0, 1])
    assert preprocess.to_implicit(labelled).item.tolist() == [0, 2]
    with pytest.raises(ConfigError, match="needs ratings"):
        preprocess.to_implicit(labelled, 4.0)


def test_drop_items_without_text_and_compact():
    inter = make([0, 1, 3], [0, 2, 4])
    items = ItemTable(inter.items, {"title": ["a", "", "c", "", ""]})
    kept = preprocess.drop_items_without_text(inter, items)
    assert kept.item.tolist() == [0, 2]
    small, small_items, _ = preprocess.compact(kept, items)
    assert small.n_users == 2 and small.n_items == 2
    assert small.users.to_list() == ["0", "1"] and small_items["title"].tolist() == ["a", "c"]
    assert small.item.tolist() == [0, 1]
