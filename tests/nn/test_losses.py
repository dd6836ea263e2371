"""Loss values against hand computation on a fixed toy model."""

import math

import numpy as np
import pytest
import torch

from lmrec.data.batching import SequenceBatch
from lmrec.errors import ConfigError
from lmrec.nn.losses import BPRLoss, FullSoftmaxCE, InBatchSoftmax, SampledSoftmax, make_loss


class Fixed:
    """States and item vectors given directly; dot-product similarity."""

    def __init__(self, states, table):
        self.states, self.table = torch.tensor(states), torch.tensor(table)

    def sequence_states(self, batch):
        return self.states

    def item_table(self, ids=None):
        return self.table if ids is None else self.table[ids]

    def similarity(self, s, items):
        return s @ items.T

    def pair_similarity(self, s, items):
        return (s * items).sum(-1)


# one sequence of two positions; 3 items
MODEL = Fixed([[[1.0, 0.0], [0.0, 2.0]]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
BATCH = SequenceBatch(torch.tensor([[1, 2]]), torch.tensor([[1, 2]]), torch.tensor([0]))


def test_full_softmax_matches_hand_computation_and_respects_candidates():
    # position 1: logits (1, 0, 1), target 1 -> -0 + log(e + 1 + e); position 2: logits (0, 2, 2), target 2
    expected = (math.log(2 * math.e + 1) + (-2 + math.log(1 + 2 * math.e**2))) / 2
    assert math.isclose(FullSoftmaxCE()(MODEL, BATCH).item(), expected, rel_tol=1e-6)
    # item 0 unknown at training time: left out of every softmax
    expected = ((-0 + math.log(1 + math.e)) + (-2 + math.log(2 * math.e**2))) / 2
    got = FullSoftmaxCE(np.array([False, True, True]))(MODEL, BATCH).item()
    assert math.isclose(got, expected, rel_tol=1e-6)


def test_sampled_softmax_matches_hand_computation():
    # uniform q: the logQ correction is a constant shift; a negative equal to the row's target is masked
    loss = SampledSoftmax(3, negatives=64)
    full = FullSoftmaxCE()(MODEL, BATCH).item()
    # with 64 draws each item appears ~21 times; duplicates of a negative add log(count) to its weight
    torch.manual_seed(0)
    neg = torch.multinomial(torch.full((3,), 1 / 3), 64, replacement=True)
    counts = torch.bincount(neg, minlength=3).double()
    logits = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]]).double()
    targets = [1, 2]
    manual = []
    for r, t in enumerate(targets):
        others = [i for i in range(3) if i != t]
        z = math.exp(logits[r, t]) + sum(counts[i] * math.exp(logits[r, i]) for i in others)
        manual.append(-logits[r, t].item() + math.log(z))
    torch.manual_seed(0)
    assert math.isclose(loss(MODEL, BATCH).item(), float(np.mean(manual)), rel_tol=1e-5)
    assert full < float(np.mean(manual))  # the sampled loss counts repeated negatives


def test_bpr_matches_hand_computation():
    torch.manual_seed(3)
    neg = torch.multinomial(torch.full((3,), 1 / 3), 2, replacement=True)
    pos = torch.tensor([0.0, 2.0])
    scores = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]])
    expected = -torch.nn.functional.logsigmoid(pos - scores[[0, 1], neg]).mean()
    torch.manual_seed(3)
    assert math.isclose(BPRLoss(3)(MODEL, BATCH).item(), expected.item(), rel_tol=1e-6)


def test_in_batch_softmax_uses_the_batch_targets_as_candidates():
    # targets 1 and 2: candidates are items {1, 2} only (item 0 is not a target in the batch)
    # position 1: logits over (1, 2) = (0, 1), target 1; position 2: logits (2, 2), target 2
    expected = ((-0 + math.log(1 + math.e)) + (-2 + math.log(2 * math.e**2))) / 2
    assert math.isclose(InBatchSoftmax()(MODEL, BATCH).item(), expected, rel_tol=1e-6)


def test_sequence_views_drop_items_but_keep_the_last():
    torch.manual_seed(0)
    batch = SequenceBatch(torch.arange(1, 201).view(4, 50), torch.zeros(4, 50, dtype=torch.long), torch.arange(4))
    view = InBatchSoftmax(seq_weight=1.0, item_drop=0.5)._drop_items(batch)
    dropped = (view.tokens == 0).float().mean().item()
    assert 0.4 < dropped < 0.6 and bool((view.tokens[:, -1] > 0).all())
    assert torch.equal(view.tokens[view.tokens > 0], batch.tokens[view.tokens > 0])


def test_history_masking_leaves_prefix_items_out_but_keeps_a_repeated_target():
    # position 1 (prefix: item 0): logits (1, 0, 1), item 0 masked -> log(1 + e)
    # position 2 (prefix: items 0, 1), target 2: logits (0, 2, 2), items 0 and 1 masked -> 0
    expected = math.log(1 + math.e) / 2
    assert math.isclose(FullSoftmaxCE(mask_history=True)(MODEL, BATCH).item(), expected, rel_tol=1e-6)
    # with candidate columns: item 0 has no column at all; same values
    got = FullSoftmaxCE(np.array([False, True, True]), mask_history=True)(MODEL, BATCH).item()
    assert math.isclose(got, expected, rel_tol=1e-6)
    # a repeat: position 2's target is item 1, already in its prefix, so it stays: -2 + log(e^2 + e^2)
    repeat = SequenceBatch(torch.tensor([[1, 2]]), torch.tensor([[1, 1]]), torch.tensor([0]))
    expected = (math.log(1 + math.e) + math.log(2)) / 2
    assert math.isclose(FullSoftmaxCE(mask_history=True)(MODEL, repeat).item(), expected, rel_tol=1e-6)
    # in-batch: candidates are the targets {1, 2}; position 1: (0, 1), nothing masked -> log(1 + e);
    # position 2: (2, 2), item 1 masked -> 0
    got = InBatchSoftmax(mask_history=True)(MODEL, BATCH).item()
    assert math.isclose(got, math.log(1 + math.e) / 2, rel_tol=1e-6)
    with pytest.raises(ConfigError, match="mask_history"):
        make_loss("bpr", 3, 1, mask_history=True)
