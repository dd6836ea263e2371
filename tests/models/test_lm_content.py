"""LMContent's power: the score is the weighted sum of each history item's clipped cosine to the candidate
raised to it, computed in chunks without changing a value; power 1 stays the mean vector's inner product."""

import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models import lm_content
from lmrec.models.lm_content import LMContent

# Two interests (items 0 and 1); candidate 2 is close to the first only, candidate 3 half-way between both.
TITLES = ["alpha beta gamma delta", "omega sigma tau rho", "alpha beta gamma epsilon", "alpha beta omega sigma"]


def fitted(power, titles=TITLES, history=(0, 1), half_life=None, dim=1024):
    items = IdMap([f"i{i}" for i in range(len(titles))])
    train = Interactions(np.zeros(len(history), dtype=np.int64), np.array(history), IdMap(["u"]), items,
                         time=np.arange(len(history), dtype=np.float64))
    model = LMContent(encoder=f"hash:{dim}", power=power, half_life=half_life)
    return model.fit(train, ItemTable(items, {"title": titles})), Queries.from_interactions(train)


def test_a_candidate_close_to_one_interest_beats_one_loosely_close_to_both():
    mean, q = fitted(1.0)
    sharp, _ = fitted(8.0)
    assert mean.score(q)[0, 3] > mean.score(q)[0, 2]  # the mean vector points between the two interests
    assert sharp.score(q)[0, 2] > sharp.score(q)[0, 3]


def test_scores_are_the_weighted_sum_of_clipped_cosines_to_the_power():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    titles = [" ".join(rng.choice(words, 4, replace=False)) for _ in range(30)] + [""]  # the last has no text
    history = (4, 9, 4, 17, 30)
    model, q = fitted(2.5, titles, history, half_life=2.0, dim=16)  # 16 signed buckets: words collide
    v = model.item_vectors_ / np.maximum(np.linalg.norm(model.item_vectors_, axis=1, keepdims=True), 1e-30)
    w = q.weights(2.0).toarray()[0]
    expected = [sum(w[h] * max(0.0, float(v[h] @ v[i])) ** 2.5 for h in range(len(titles))) for i in range(len(titles))]
    assert (v @ v.T < 0).any()  # signed hashing: some cosines are negative and must count as 0
    np.testing.assert_allclose(model.score(q)[0], expected, rtol=1e-5, atol=1e-7)
    assert model.score(q)[0, 30] == 0.0


def test_chunked_scoring_gives_the_same_scores(monkeypatch):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    titles = [" ".join(rng.choice(words, 5, replace=False)) for _ in range(200)]
    users, items = IdMap([f"u{u}" for u in range(25)]), IdMap([f"i{i}" for i in range(200)])
    user = np.repeat(np.arange(25), 6)
    train = Interactions(user, rng.integers(0, 200, len(user)), users, items, time=np.arange(len(user), dtype=np.float64))
    model = LMContent(encoder="hash:256").fit(train, ItemTable(items, {"title": titles}))
    q = Queries.from_interactions(train)
    whole = model.score(q)
    monkeypatch.setattr(lm_content, "SIMILARITY_BYTES", 3 * 4 * 200)  # three history items at a time
    np.testing.assert_allclose(model.score(q), whole, rtol=1e-6, atol=1e-7)


def test_power_one_is_the_mean_vectors_inner_product_and_an_index_can_serve_it():
    model, q = fitted(1.0)
    u = model.item_vectors_[[0, 1]].mean(0)
    np.testing.assert_allclose(model.score(q)[0], model.item_vectors_ @ (u / np.linalg.norm(u)), rtol=1e-6)
    assert model.retrieval_items() is not None
    sharp, _ = fitted(8.0)
    assert sharp.retrieval_items() is None and sharp.retrieval_queries(q) is None


def test_power_must_be_at_least_one():
    with pytest.raises(ConfigError, match="power"):
        LMContent(power=0.5)


def test_a_model_saved_before_the_power_option_loads_as_the_mean_vector_model(tmp_path):
    """Saved configs of older lmrec versions have no ``power``: such a model was the mean-vector one, and must
    load with the scores it was saved with, not with the new default's."""
    import json

    from lmrec.registry import load_model

    mean, q = fitted(1.0)
    mean.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["config"]["power"]  # what lmrec wrote before the option (model.json is not among the checksums)
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    loaded = load_model(tmp_path / "old")
    assert loaded.config.power == 1.0
    np.testing.assert_array_equal(loaded.score(q), mean.score(q))
    sharp, _ = fitted(8.0)
    sharp.save(tmp_path / "new")  # a model saved now names its power and keeps it
    assert load_model(tmp_path / "new").config.power == 8.0
