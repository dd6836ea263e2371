import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrec.data import (
    IdMap,
    Interactions,
    Split,
    cold_start_items,
    cold_start_users,
    leave_one_out,
    random_split,
    temporal_split,
)
from lmrec.errors import ConfigError, DataError


def make(user, item, time=None, n_users=4, n_items=6, unit="s"):
    return Interactions(np.array(user), np.array(item), IdMap(range(n_users)), IdMap(range(n_items)),
                        time=None if time is None else np.array(time), time_unit=unit)


def pairs(inter):
    return sorted(zip(inter.user.tolist(), inter.item.tolist()))


def test_leave_one_out_exact_parts():
    # user 0: items 0,1,2,3 at t=1..4 (given out of order); user 1: two events; user 2: one event
    inter = make([0, 0, 1, 0, 0, 1, 2], [3, 0, 4, 1, 2, 5, 1], time=[4, 1, 1, 2, 3, 2, 7])
    s = leave_one_out(inter)
    assert pairs(s.test) == [(0, 3), (1, 5)]
    assert pairs(s.valid) == [(0, 2)]
    assert pairs(s.train) == [(0, 0), (0, 1), (1, 4), (2, 1)]
    s.assert_no_leakage()
    assert s.users("test").tolist() == [0, 1]


def test_leave_one_out_allows_a_repeat_purchase_but_not_a_copied_event():
    # user 0 buys item 1 at t=1 and again at t=3 (the test event): a new event, not a leak
    s = leave_one_out(make([0, 0, 0], [1, 2, 1], time=[1, 2, 3]))
    assert s.leaked_rows("test") == 0
    leaky = Split(s.train, s.valid, Interactions.concat([s.test, s.train.select(np.array([0]))]))
    with pytest.raises(DataError, match="1 test events also occur in train"):
        leaky.assert_no_leakage()


def test_temporal_split_cuts_globally_and_needs_timestamps():
    inter = make([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3], time=list(range(10)))
    s = temporal_split(inter, valid_frac=0.2, test_frac=0.2)
    assert s.train.time.max() < s.valid.time.min() <= s.valid.time.max() < s.test.time.min()
    assert (len(s.train), len(s.valid), len(s.test)) == (6, 2, 2)
    with pytest.raises(ConfigError, match="real timestamps"):
        temporal_split(make([0], [0], time=[0], unit="order"))
    with pytest.raises(ConfigError, match="sum below 1"):
        temporal_split(inter, valid_frac=0.6, test_frac=0.5)


def test_random_split_is_seeded_and_partitions_all_events():
    rng = np.random.default_rng(1)
    inter = make(rng.integers(0, 4, 1000), rng.integers(0, 6, 1000), time=np.arange(1000))
    a, b = random_split(inter, seed=3), random_split(inter, seed=3)
    assert a.test.equals(b.test) and not a.test.equals(random_split(inter, seed=4).test)
    assert len(a.train) + len(a.valid) + len(a.test) == 1000
    assert 60 < len(a.test) < 140 and 60 < len(a.valid) < 140


def test_cold_start_items_never_appear_in_train():
    rng = np.random.default_rng(0)
    inter = make(rng.integers(0, 4, 300), rng.integers(0, 6, 300), time=np.arange(300))
    s = cold_start_items(inter, valid_frac=1 / 6, test_frac=2 / 6, seed=1)
    assert len(s.items("test")) == 2 and len(s.items("valid")) == 1
    assert not set(s.items("test")) & set(s.train.item_ids())
    assert set(s.cold_items("test")) == set(s.items("test"))
    assert len(s.train) + len(s.valid) + len(s.test) == 300


def test_cold_start_users_hold_out_whole_users_with_context():
    inter = make([0, 0, 0, 1, 1, 2, 2, 2, 3, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3], time=list(range(10)))
    s = cold_start_users(inter, valid_frac=0.25, test_frac=0.25, seed=0)
    held = set(s.users("test")) | set(s.users("valid"))
    assert len(s.users("test")) == 1 and len(s.users("valid")) == 1
    assert not held & set(s.train.user_ids())
    assert set(s.context.user_ids()) == held
    for u in s.users("test"):  # the target is the user's last event, context the ones before it
        seq = inter.sequences()[u]
        assert s.test.item[s.test.user == u].tolist() == [seq[-1]]
        assert s.context.item[s.context.user == u].tolist() == seq[:-1].tolist()
    s.assert_no_leakage()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7), st.integers(0, 30)), min_size=1, max_size=80,
                unique=True))
def test_leave_one_out_never_leaks_and_test_is_last(events):
    """Distinct events (a log with exact duplicate rows must be deduplicated first; see the next test)."""
    u, i, t = (np.array(x) for x in zip(*events))
    inter = make(u, i, time=t, n_users=6, n_items=8)
    s = leave_one_out(inter)
    s.assert_no_leakage()
    assert len(s.train) + len(s.valid) + len(s.test) == len(inter)
    for user in s.users("test"):
        assert s.train.time[s.train.user == user].max() <= s.test.time[s.test.user == user].min()
        if user in s.users("valid"):
            assert s.valid.time[s.valid.user == user].max() <= s.test.time[s.test.user == user].min()


def test_exact_duplicate_events_are_reported_as_leakage():
    s = leave_one_out(make([0, 0, 0, 0], [1, 2, 2, 3], time=[1, 2, 2, 3]))  # the t=2 event is logged twice
    with pytest.raises(DataError, match="--dedup"):
        s.assert_no_leakage()
