"""The shortlist metric of a weighted sum equals the Evaluator's full ranking of that sum exactly, on the
shortlist path and on the users it has to rank in full; the fusion's search chooses the same weights by it."""

import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, random_split
from lmrec.data.queries import Queries
from lmrec.eval import Evaluator, Sampled
from lmrec.eval.blend import ShortlistBlend
from lmrec.models.fusion import Fusion, weighted_sum
from lmrec.registry import create

N_USERS, N_ITEMS = 120, 60
GRID = [0.0, 0.1, 0.35, 1.0, 3.0]


def several_targets_split():
    """Random split: users hold several validation items, some of them repeats of history items."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), 20)
    items = rng.integers(0, N_ITEMS, len(users))
    inter = Interactions(users, items, IdMap(range(N_USERS)), IdMap(range(N_ITEMS)), time=np.arange(len(users)))
    return random_split(inter, valid_frac=0.2, test_frac=0.1)


def score_tables():
    """Per-user scores with the hard cases: ties everywhere (small integers), a row-constant source, and a
    continuous one whose float32 weighted sums round."""
    rng = np.random.default_rng(1)
    ties = np.tile(rng.integers(0, 4, N_ITEMS), (N_USERS, 1)).astype(np.float32)
    constant = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    smooth = rng.normal(size=(N_USERS, N_ITEMS)).astype(np.float32)
    coarse = np.round(rng.normal(size=(N_USERS, N_ITEMS)), 1).astype(np.float32)
    return [ties, constant, smooth, coarse]


class Blend:
    def __init__(self, tables, weights):
        self.tables, self.weights = tables, weights

    def score(self, queries: Queries) -> np.ndarray:
        return weighted_sum(self.weights, [t[queries.users] for t in self.tables])


@pytest.mark.parametrize("depth", [2, 8, N_ITEMS])
@pytest.mark.parametrize("metric", ["ndcg@5", "recall@2", "hit@5", "precision@3", "mrr@5", "map@5"])
def test_shortlist_metric_equals_the_full_ranking_to_the_last_bit(metric, depth):
    split = several_targets_split()
    k = int(metric.split("@")[1])
    valid = Evaluator(split, "valid", ks=(k,))
    tables = score_tables()
    sources = [lambda q, t=t: t[q.users] for t in tables]
    if k > depth:
        with pytest.raises(ValueError, match="k <= depth"):
            ShortlistBlend(valid, sources, metric, depth=depth)
        return
    blend = ShortlistBlend(valid, sources, metric, depth=depth)
    rng = np.random.default_rng(2)
    smooth = np.array([0, 0, 1.0, 0.35])
    for weights in [np.ones(4), np.eye(4)[0], np.eye(4)[1], smooth, *rng.choice(GRID, size=(12, 4))]:
        if not weights.any():
            continue
        full = valid.evaluate(Blend(tables, weights)).means()[metric]
        assert blend.value(weights) == full, weights
        if depth == N_ITEMS:  # the shortlist is the catalogue: nothing is ranked again
            assert blend.ranked_in_full == 0
        elif weights[1] > 0 and not weights[[0, 2, 3]].any():  # all scores equal: no bound is ever strict
            assert blend.ranked_in_full == len(valid.users)
        elif depth == 8 and weights is smooth:  # distinct scores: both paths within one call
            assert 0 < blend.ranked_in_full < len(valid.users)


def test_metrics_that_need_the_whole_ranking_are_refused():
    split = several_targets_split()
    sources = [lambda q: np.zeros((len(q), N_ITEMS), dtype=np.float32)]
    with pytest.raises(ValueError, match="top-k"):
        ShortlistBlend(Evaluator(split, "valid", ks=(5,)), sources, "auc")
    with pytest.raises(ValueError, match="top-k"):
        ShortlistBlend(Evaluator(split, "valid", ks=(5,), sampled=Sampled(n=10)), sources, "ndcg@5")


def test_the_fusion_search_chooses_the_same_weights_either_way(monkeypatch):
    split = several_targets_split()
    valid = Evaluator(split, "valid", ks=(5,))
    components = [{"model": "pop"}, {"model": "itemknn"}, {"model": "ease"}]
    fast = create("fusion", components=components, metric="ndcg@5", shortlist_depth=3).fit(split.train, validation=valid)
    monkeypatch.setattr(Fusion, "shortlist", None)
    slow = create("fusion", components=components, metric="ndcg@5").fit(split.train, validation=valid)
    assert fast.search_ == slow.search_  # every weight vector tried, with its value, bit for bit
    np.testing.assert_array_equal(fast.weights_, slow.weights_)
    assert len({tuple(s["weights"]) for s in fast.search_}) > 5
