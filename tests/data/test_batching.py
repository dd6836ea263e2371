import numpy as np
import pytest
import torch

from lmrec.data import IdMap, Interactions
from lmrec.data.batching import NO_TARGET, PAD, MaskedWindows, SequenceWindows, query_batch
from lmrec.errors import ConfigError


def sequences(rows):
    users = np.concatenate([[u] * len(r) for u, r in enumerate(rows)])
    items = np.concatenate(rows)
    time = np.concatenate([np.arange(len(r)) for r in rows])
    inter = Interactions(users, items, IdMap(range(len(rows))), IdMap(range(100)), time=time)
    return inter.sequences()


def all_pairs(windows: SequenceWindows):
    """(input item, target item) pairs over one epoch, read back from the tensors."""
    pairs = []
    for b in windows.epoch(0):
        has = b.targets >= 0
        pairs += list(zip((b.tokens[has] - 1).tolist(), b.targets[has].tolist()))
    return sorted(pairs)


def test_windows_make_every_event_a_target_exactly_once():
    seq = [10, 11, 12, 13, 14, 15, 16]
    w = SequenceWindows(sequences([np.array(seq), np.array([5]), np.array([7, 8])]), max_len=3, batch_size=2)
    # user 0: windows [13..16], [10..13]; user 1 has a single item (no example); user 2: [7, 8]
    assert len(w) == 3 and w.n_targets == 7
    assert all_pairs(w) == sorted([(a, b) for a, b in zip(seq, seq[1:])] + [(7, 8)])


def test_last_window_only_and_left_padding():
    w = SequenceWindows(sequences([np.array([1, 2, 3, 4, 5]), np.array([7, 8])]), max_len=3, batch_size=4,
                        windows="last")
    (b,) = list(w.epoch(0))
    rows = {int(u): i for i, u in enumerate(b.users)}
    assert b.tokens[rows[0]].tolist() == [3, 4, 5] and b.targets[rows[0]].tolist() == [3, 4, 5]
    assert b.tokens[rows[1]].tolist() == [PAD, PAD, 8] and b.targets[rows[1]].tolist() == [NO_TARGET, NO_TARGET, 8]
    assert b.valid[rows[1]].tolist() == [False, False, True]


def test_epoch_order_is_fixed_by_seed_and_epoch():
    w = SequenceWindows(sequences([np.arange(i, i + 4) for i in range(20)]), max_len=3, batch_size=5, seed=3)
    first = [b.users.tolist() for b in w.epoch(1)]
    assert first == [b.users.tolist() for b in w.epoch(1)]
    assert first != [b.users.tolist() for b in w.epoch(2)]


def test_masked_windows_hide_items_and_ask_for_them_back():
    rows = [np.arange(i, i + 1 + i % 7) for i in range(60)]  # windows of 1 (no example) to 7 items
    w = SequenceWindows(sequences(rows), max_len=6, batch_size=8, seed=1)
    masked = MaskedWindows(w, mask_token=101, mask_prob=0.3, seed=1)
    n_masked = n_items = 0
    seen_windows = []
    for b in masked.epoch(0):
        hidden = b.tokens == 101
        assert torch.equal(hidden, b.targets >= 0)  # a target exactly where an item is hidden
        assert hidden.any(1).all()  # every row asks for at least one item
        for r in range(len(b)):
            # the full window comes back: shown items plus the hidden ones' targets, in order
            full = torch.where(hidden[r], b.targets[r] + 1, b.tokens[r])
            window = (full[full != PAD] - 1).tolist()
            u = int(b.users[r])
            assert window == rows[u].tolist()
            seen_windows.append(u)
        n_masked += int(hidden.sum())
        n_items += int((b.tokens != PAD).sum())
    assert sorted(seen_windows) == [u for u in range(60) if len(rows[u]) >= 2]
    assert 0.25 < n_masked / n_items < 0.45  # 0.3, plus the forced last item of rows with none hidden
    same = [(b.tokens.tolist(), b.targets.tolist()) for b in masked.epoch(0)]
    assert same == [(b.tokens.tolist(), b.targets.tolist()) for b in masked.epoch(0)]
    with pytest.raises(ConfigError, match="mask_prob"):
        MaskedWindows(w, 101, 1.0)


def test_query_batch_keeps_the_most_recent_items():
    b = query_batch([np.array([1, 2, 3, 4]), np.array([], dtype=np.int64)], max_len=2)
    assert b.tokens.tolist() == [[4, 5], [PAD, PAD]]  # items 3, 4 as tokens


def test_no_trainable_sequences():
    with pytest.raises(ConfigError, match="two or more"):
        SequenceWindows(sequences([np.array([1]), np.array([2])]), max_len=3, batch_size=2)
