import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, Split, leave_one_out
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError, DataError
from lmrec.eval import Evaluator, Sampled, compare, recommend
from lmrec.models import Popularity


class FixedScores:
    """Scores item i with a fixed value (same for every user): a model whose ranking we know."""

    name = "fixed"

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float32)

    def score(self, queries: Queries) -> np.ndarray:
        return np.tile(self.values, (len(queries), 1))


def make(user, item, n_users, n_items, time=None):
    return Interactions(np.array(user), np.array(item), IdMap(range(n_users)), IdMap(range(n_items)),
                        time=np.arange(len(user)) if time is None else np.array(time))


@pytest.fixture
def split():
    # user 0 history 0,1 -> valid 2 -> test 3; user 1 history 4 -> valid 0 -> test 5
    inter = make([0, 0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 0, 5], n_users=2, n_items=6)
    return leave_one_out(inter)


def test_full_ranking_masks_history_and_matches_hand_computation(split):
    # item order by score: 0 > 1 > 2 > 3 > 4 > 5
    model = FixedScores([6, 5, 4, 3, 2, 1])
    r = Evaluator(split, "test", ks=(1, 2)).evaluate(model)
    # user 0 history {0,1,2} masked -> ranking 3,4,5: test item 3 at rank 1
    # user 1 history {4,0} masked -> ranking 1,2,3,5: test item 5 at rank 4 (outside top 2)
    np.testing.assert_allclose(r.per_user["hit@1"], [1, 0])
    np.testing.assert_allclose(r.per_user["ndcg@2"], [1, 0])
    np.testing.assert_allclose(r.per_user["mrr@2"], [1, 0])
    # AUC: user 0: 3 candidates, target first -> 1; user 1: 4 candidates, target last -> 0
    np.testing.assert_allclose(r.per_user["auc"], [1.0, 0.0])
    assert r.aggregate["coverage@1"] == pytest.approx(2 / 6)  # items 3 and 1
    # on the valid part the history is train only: user 0 masks {0,1} -> valid item 2 at rank 1;
    # user 1 masks {4} -> valid item 0 at rank 1 (when scoring test, 0 was masked as valid history)
    v = Evaluator(split, "valid", ks=(1,)).evaluate(model)
    np.testing.assert_allclose(v.per_user["hit@1"], [1, 1])


def test_recommend_is_top_k_with_history_masked():
    q = Queries(np.array([0]), Queries.from_interactions(make([0, 0], [0, 2], 1, 4)).history, [np.array([0, 2])])
    ids, scores = recommend(FixedScores([4, 3, 2, 1]), q, k=2)
    assert ids.tolist() == [[1, 3]] and scores.tolist() == [[3.0, 1.0]]


def test_chunking_does_not_change_results(split):
    model = FixedScores([1, 5, 2, 6, 3, 4])
    a = Evaluator(split, batch_size=1).evaluate(model)
    b = Evaluator(split, batch_size=1000).evaluate(model)
    for k in a.per_user:
        np.testing.assert_array_equal(a.per_user[k], b.per_user[k])


def test_refuses_a_model_fitted_on_the_test_data(split):
    cheat = Popularity().fit(Interactions.concat([split.train, split.valid, split.test]))
    ev = Evaluator(split, "test")
    with pytest.raises(ConfigError, match="fitted on data other than this split's training data"):
        ev.evaluate(cheat)
    ev.evaluate(cheat, allow_fit_data=True)  # explicit opt-in
    ev.evaluate(Popularity().fit(split.train))
    ev.evaluate(Popularity().fit(Interactions.concat([split.train, split.valid])))
    with pytest.raises(ConfigError):  # train + valid is fine for test, not for valid
        Evaluator(split, "valid").evaluate(Popularity().fit(Interactions.concat([split.train, split.valid])))


def test_leaky_split_is_refused(split):
    leaky = Split(Interactions.concat([split.train, split.test]), split.valid, split.test)
    with pytest.raises(DataError, match="leaks"):
        Evaluator(leaky)


def test_sampled_mode_is_labelled_and_ranks_among_sampled_items(split):
    model = FixedScores([6, 5, 4, 3, 2, 1])
    r = Evaluator(split, ks=(1,), sampled=Sampled(n=1, seed=0)).evaluate(model)
    assert r.mode == "sampled-1-uniform"
    assert set(r.per_user) == {f"{m}@1/sampled-1-uniform" for m in ("recall", "hit", "precision", "ndcg", "mrr", "map")}
    # user 0: test item 3 outranks every candidate it could be sampled against (4, 5) -> always a hit
    assert r.per_user["hit@1/sampled-1-uniform"][0] == 1.0


def test_ci_slices_and_paired_compare():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 20
    users = np.repeat(np.arange(n_users), 6)
    items = np.concatenate([rng.permutation(n_items)[:6] for _ in range(n_users)])
    s = leave_one_out(make(users, items, n_users, n_items))
    ev = Evaluator(s, ks=(5,))
    good = Popularity().fit(s.train)
    bad = FixedScores(-good.counts_)  # the reverse of popularity
    ra, rb = ev.evaluate(good), ev.evaluate(bad)
    lo, hi = ra.ci95()["ndcg@5"]
    assert lo <= ra.means()["ndcg@5"] <= hi
    cmp = compare(ra, rb, "ndcg@5")
    assert cmp["users"] == n_users and cmp["diff"] == pytest.approx(ra.means()["ndcg@5"] - rb.means()["ndcg@5"])
    sl = ra.slice_means("history_length")
    assert sum(g["users"] for g in sl.values()) == n_users
    assert set(ra.slice_means("cold_target")) == {"False", "True"}


def test_top_k_breaks_ties_by_item_index_whatever_k():
    import torch

    from lmrec.eval.topk import top_k

    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 5.0, 0.0, 0.0, 0.0]])
    assert top_k(scores, 2).tolist() == [[1, 2], [2, 0]]
    assert top_k(scores, 3).tolist() == [[1, 2, 4], [2, 0, 1]]
    assert top_k(scores, 6).tolist() == [[1, 2, 4, 5, 3, 0], [2, 0, 1, 3, 4, 5]]


def test_metrics_do_not_depend_on_which_cutoffs_are_requested(split):
    model = FixedScores([1, 1, 1, 1, 1, 1])  # all tied: only the tie-break decides
    a = Evaluator(split, ks=(1,)).evaluate(model)
    b = Evaluator(split, ks=(1, 5)).evaluate(model)
    np.testing.assert_array_equal(a.per_user["ndcg@1"], b.per_user["ndcg@1"])
