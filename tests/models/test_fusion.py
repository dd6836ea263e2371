"""Fusion learns on validation how far to trust each component: a text model whose item text is noise gets
no weight and the fusion keeps its collaborative component's quality; text that carries the pattern gets
weight where the collaborative component has too little data. Saved components and bad specs."""

import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, ItemTable, leave_one_out
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator
from lmrec.models.fusion import standardised
from lmrec.registry import create, load_model

N_ITEMS = 40


def grouped(n_users, per_user, seed=0):
    """Four groups of ten items; each user takes items of one group only."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        own = np.arange(10) + 10 * (u % 4)
        users += [u] * per_user
        items += rng.choice(own, per_user, replace=False).tolist()
    inter = Interactions(np.array(users), np.array(items), IdMap(range(n_users)), IdMap(range(N_ITEMS)),
                         time=np.tile(np.arange(per_user), n_users))
    return leave_one_out(inter)


def titles(informative, seed=0):
    words = ["violin", "kayak", "saffron", "quartz"]
    rng = np.random.default_rng(seed)
    noise = [" ".join(rng.choice(["alpha", "bravo", "delta", "echo", "fox", "golf", "hotel", "india"], 3))
             for _ in range(N_ITEMS)]
    return ItemTable(IdMap(range(N_ITEMS)), {"title": [f"{words[i // 10]} item{i}" if informative else noise[i]
                                                       for i in range(N_ITEMS)]})


TEXT = {"model": "lmcontent", "params": {"encoder": "hash"}}


@pytest.mark.parametrize("power", [1.0, 8.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_text_does_not_cost_the_fusion_its_collaborative_quality(seed, power):
    """Item text of random words: whatever weight validation gives it (chance agreement can earn some), the
    fusion stays within 0.01 NDCG@5 of ItemKNN alone on test, for the mean-vector text model and the
    sharpened one alike."""
    split = grouped(200, 6, seed=seed)
    valid, test = Evaluator(split, "valid", ks=(5,)), Evaluator(split, "test", ks=(5,))
    text = {"model": "lmcontent", "params": {"encoder": "hash", "power": power}}
    fusion = create("fusion", components=[text, {"model": "itemknn"}], metric="ndcg@5")
    fusion.fit(split.train, titles(informative=False, seed=seed), validation=valid)
    assert fusion.weights_[1] > 0
    knn = create("itemknn").fit(split.train)
    assert test.evaluate(fusion).means()["ndcg@5"] >= test.evaluate(knn).means()["ndcg@5"] - 0.01
    # the search was judged on validation: the chosen weights are the best it saw there, and no worse than
    # either component alone
    chosen = valid.evaluate(fusion).means()["ndcg@5"]
    assert max(s["ndcg@5"] for s in fusion.search_) == pytest.approx(chosen)
    alone = [s["ndcg@5"] for s in fusion.search_ if sorted(s["weights"]) == [0.0, 1.0]]
    assert len(alone) == 2 and chosen >= max(alone)


def test_noise_text_gets_no_weight_where_validation_shows_it_hurts():
    """Seed 0, the mean-vector text model: noise text lowers validation NDCG@5 at every weight tried, so it
    gets none and the fusion ranks exactly as ItemKNN does."""
    split = grouped(200, 6)
    valid, test = Evaluator(split, "valid", ks=(5,)), Evaluator(split, "test", ks=(5,))
    text = {"model": "lmcontent", "params": {"encoder": "hash", "power": 1.0}}
    fusion = create("fusion", components=[text, {"model": "itemknn"}], metric="ndcg@5")
    fusion.fit(split.train, titles(informative=False), validation=valid)
    assert fusion.weights_[0] == 0 and fusion.weights_[1] > 0
    knn = create("itemknn").fit(split.train)
    np.testing.assert_allclose(test.evaluate(fusion).means()["ndcg@5"], test.evaluate(knn).means()["ndcg@5"])


def test_informative_text_gets_weight_when_interactions_are_scarce():
    split = grouped(60, 3)  # 2 training events per user: item-item statistics are thin
    valid, test = Evaluator(split, "valid", ks=(5,)), Evaluator(split, "test", ks=(5,))
    items = titles(informative=True)
    fusion = create("fusion", components=[TEXT, {"model": "itemknn"}], metric="ndcg@5")
    fusion.fit(split.train, items, validation=valid)
    assert fusion.weights_[0] > 0
    knn = create("itemknn").fit(split.train)
    assert test.evaluate(fusion).means()["ndcg@5"] > test.evaluate(knn).means()["ndcg@5"]


def test_saved_components_are_used_as_fitted(tmp_path):
    split = grouped(100, 5)
    valid = Evaluator(split, "valid", ks=(5,))
    items = titles(informative=True)
    knn = create("itemknn").fit(split.train)
    knn.save(tmp_path / "knn")
    fusion = create("fusion", components=[TEXT, {"saved": str(tmp_path / "knn")}], metric="ndcg@5")
    fusion.fit(split.train, items, validation=valid)
    fresh = create("fusion", components=[TEXT, {"model": "itemknn"}], metric="ndcg@5")
    fresh.fit(split.train, items, validation=valid)
    np.testing.assert_array_equal(fusion.weights_, fresh.weights_)
    fusion.save(tmp_path / "fusion")
    loaded = load_model(tmp_path / "fusion")
    q = Evaluator(split, "test").queries
    np.testing.assert_array_equal(loaded.score(q), fusion.score(q))
    other = grouped(100, 5, seed=1)
    with pytest.raises(ConfigError, match="fitted on other events"):
        create("fusion", components=[TEXT, {"saved": str(tmp_path / "knn")}]).fit(other.train, items)


def test_fallback_search_is_the_search_a_fusion_of_those_components_makes():
    """With ``fallback`` naming the collaborative components, their own search inside the fusion ends on the
    weights (and validation value) a fusion of just them finds, and the full fusion never ends below it."""
    split = grouped(200, 6)
    valid = Evaluator(split, "valid", ks=(5,))
    items = titles(informative=False)
    collaborative = [{"model": "itemknn"}, {"model": "pop"}, {"model": "als", "params": {"factors": 8, "iterations": 3}}]
    text = {"model": "lmcontent", "params": {"encoder": "hash"}}
    twin = create("fusion", components=collaborative, metric="ndcg@5").fit(split.train, items, validation=valid)
    fusion = create("fusion", components=[text, *collaborative], metric="ndcg@5", fallback=[3, 1, 2])
    fusion.fit(split.train, items, validation=valid)
    assert fusion.fallback_["weights"] == [0.0, *twin.weights_.tolist()]
    twin_value = valid.evaluate(twin).means()["ndcg@5"]
    assert fusion.fallback_["ndcg@5"] == pytest.approx(twin_value, abs=1e-12)
    assert valid.evaluate(fusion).means()["ndcg@5"] >= twin_value


class _Landscape:
    """A stand-in validation whose metric is a function of the weights under search (``Fusion`` reads
    ``evaluate(scorer).per_user``; one user here): 0.5 where component 0 is off and components 1 and 2 weigh 3 : 1, 0.45
    wherever component 0 is on, 0.3 elsewhere. Coordinate ascent over all three from equal weights or from
    component 0 alone stays at 0.45 (no single change reaches 0.5); over components 1 and 2 alone it climbs
    from (1, 1) to (3, 1)."""

    def evaluate(self, scorer, name=None):
        w = scorer.weights
        value = 0.45 if w[0] > 0 else 0.5 if w[2] > 0 and w[1] == 3 * w[2] else 0.3
        return _result(np.array([value]))


def _result(per_user):
    return type("Result", (), {"per_user": {"ndcg@10": per_user}})()


def _search(fallback, validation=None, **params):
    fusion = create("fusion", components=[{"model": "pop"}] * 3, fallback=fallback, **params)
    fusion.components_ = [create("pop") for _ in range(3)]
    fusion.n_items_ = 3
    return fusion._search_weights(validation or _Landscape()), fusion


def test_the_fallback_start_escapes_a_local_optimum_of_the_full_search():
    weights, _ = _search([])
    assert weights[0] > 0  # stuck at 0.45
    weights, fusion = _search([1, 2])
    np.testing.assert_array_equal(weights, [0.0, 3.0, 1.0])
    assert fusion.fallback_ == {"weights": [0.0, 3.0, 1.0], "ndcg@10": 0.5}


class _Voters:
    """A stand-in validation of 30 users, each wanting components 1 and 2 in their own ratio: user u scores
    1 - |w1 / (w1 + w2) - target_u| (0 where both are off), component 0 costs everyone 0.1 per unit of
    weight. ``users`` restricts it to some of them (repeats allowed), as a bootstrap resample does."""

    target = np.linspace(0.1, 0.9, 30) ** 2

    def __init__(self, users=None):
        self.users = np.arange(30) if users is None else users

    def evaluate(self, scorer, name=None):
        w = scorer.weights
        share = w[1] / (w[1] + w[2]) if w[1] + w[2] > 0 else None
        values = np.zeros(30) if share is None else 1 - np.abs(share - self.target) - 0.1 * w[0]
        return _result(values[self.users])


def test_bags_average_the_searches_on_bootstrap_resamples_of_the_validation_users():
    """With ``bags`` the weights are the mean of the weights (scaled to sum 1) that the plain search finds on
    each bootstrap resample of the validation users, drawn from ``seed``; the resamples disagree here, and
    the fallback start is part of every resample's search."""
    weights, fusion = _search([1, 2], _Voters(), bags=6, seed=3)
    rng = np.random.default_rng(3)
    expected = []
    for _ in range(6):
        plain, _ = _search([1, 2], _Voters(rng.integers(0, 30, 30)))
        expected.append(plain / plain.sum())
    np.testing.assert_allclose(fusion.bags_, expected)
    np.testing.assert_allclose(weights, np.mean(expected, axis=0))
    assert weights[0] == 0 and len({tuple(b) for b in fusion.bags_}) > 1
    # the search on all users is still made and logged (its fallback part too); every vector once
    plain, _ = _search([1, 2], _Voters())
    assert fusion.fallback_["weights"] == [0.0, *(plain[1:]).tolist()]
    tried = [tuple(s["weights"]) for s in fusion.search_]
    assert len(tried) == len(set(tried))


def test_bagged_fusion_keeps_the_collaborative_quality_when_text_is_noise():
    split = grouped(200, 6, seed=1)
    valid, test = Evaluator(split, "valid", ks=(5,)), Evaluator(split, "test", ks=(5,))
    fusion = create("fusion", components=[TEXT, {"model": "itemknn"}], metric="ndcg@5", bags=5, fallback=[1])
    fusion.fit(split.train, titles(informative=False, seed=1), validation=valid)
    knn = create("itemknn").fit(split.train)
    assert fusion.weights_.sum() == pytest.approx(1.0) and fusion.weights_[1] > fusion.weights_[0]
    assert test.evaluate(fusion).means()["ndcg@5"] >= test.evaluate(knn).means()["ndcg@5"] - 0.01


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="either a model to fit or a saved one"):
        create("fusion", components=[{"model": "ease", "saved": "x"}, {"model": "pop"}])
    with pytest.raises(ConfigError, match="at least 2"):
        create("fusion", components=[{"model": "ease"}])
    with pytest.raises(ConfigError, match="unknown recommender 'eas'"):
        create("fusion", components=[{"model": "eas"}, {"model": "pop"}]).fit(grouped(8, 3).train)
    two = [{"model": "ease"}, {"model": "pop"}]
    for fallback in ([2], [0, 0], [-1]):
        with pytest.raises(ConfigError, match="distinct component indices from 0 to 1"):
            create("fusion", components=two, fallback=fallback)
    with pytest.raises(ConfigError, match="some of the components, not all"):
        create("fusion", components=two, fallback=[0, 1])


def test_standardised_rows():
    z = standardised(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], [0, 0, 0])
