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


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="either a model to fit or a saved one"):
        create("fusion", components=[{"model": "ease", "saved": "x"}, {"model": "pop"}])
    with pytest.raises(ConfigError, match="at least 2"):
        create("fusion", components=[{"model": "ease"}])
    with pytest.raises(ConfigError, match="unknown recommender 'eas'"):
        create("fusion", components=[{"model": "eas"}, {"model": "pop"}]).fit(grouped(8, 3).train)


def test_standardised_rows():
    z = standardised(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], [0, 0, 0])
