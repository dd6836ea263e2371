"""Serving-time top-k through a FAISS index: exact re-scoring gives the model's own scores, exclusions hold,
and on a catalogue large enough for the index to be approximate it still finds the exact top-k."""

import numpy as np
import pytest
import scipy.sparse as sp

from lmrec.data import IdMap, Interactions, ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.eval import recommend
from lmrec.models.lm_content import LMContent
from lmrec.retrieval import Retriever

N_ITEMS, N_USERS = 3000, 40
WORDS = [f"w{i}" for i in range(400)]


@pytest.fixture(scope="module")
def model_and_queries():
    rng = np.random.default_rng(0)
    items = IdMap([f"i{i}" for i in range(N_ITEMS)])
    users = IdMap([f"u{u}" for u in range(N_USERS)])
    titles = [" ".join(rng.choice(WORDS, 6, replace=False)) for _ in range(N_ITEMS)]
    user = np.repeat(np.arange(N_USERS), 5)
    item = rng.integers(0, N_ITEMS, len(user))
    train = Interactions(user, item, users, items, time=np.arange(len(user)))
    # power 1: the mean-vector model, whose scores are inner products an index can serve
    model = LMContent(encoder="hash:256", power=1).fit(train, ItemTable(items, {"title": titles}))
    return model, Queries.from_interactions(train)


def exclusions(queries, extra=()):
    m = queries.history.tolil()
    for row, col in extra:
        m[row, col] = 1
    return sp.csr_matrix(m)


# Hashed random words have no cluster structure, the hardest case for IVF: it needs to probe most lists.
@pytest.mark.parametrize("kind,nprobe", [("hnsw", 32), ("ivf", 64)])
def test_index_answers_are_the_exact_answers(model_and_queries, kind, nprobe):
    model, queries = model_and_queries
    exclude = exclusions(queries, [(0, 5), (3, 77)])
    exact_ids, exact_scores = recommend(model, queries, 10, exclude)
    ids, scores = Retriever(model, kind, nprobe=nprobe).top_k(queries, 10, exclude)
    # an approximate index may miss an item: nearly every answer scores at least the exact k-th best
    # (compared by score, since hashed texts tie often)
    assert np.mean(scores >= exact_scores[:, -1:] - 1e-6) >= 0.95
    # every returned score is the model's exact score for that item, and excluded items never come back
    full = model.score(queries)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ids, 1), rtol=1e-5, atol=1e-6)
    assert not any(exclude[r, i] for r in range(len(ids)) for i in ids[r])
    assert np.all(np.diff(scores, axis=1) <= 1e-7)  # best first


def test_auto_is_exact_for_small_catalogues_and_new_items_reach_the_index(model_and_queries):
    model, queries = model_and_queries
    assert Retriever(model).kind == "exact"
    with pytest.raises(ConfigError, match="retrieval must be one of"):
        Retriever(model, "annoy")


def test_text_models_added_items_are_searchable(bundles):
    from lmrec.bundle import Bundle

    bundle = Bundle.load(bundles["lmcontent-mean"])
    bundle.retriever = Retriever(bundle.model, "hnsw")
    before = bundle.recommend(np.array([0, 2]), 3)  # builds the index
    bundle.add_items(["i99"], [{"name": "gadget even model 99", "kind": "even"}])
    after = bundle.recommend(np.array([0, 2]), 17)
    assert bundle.retriever._index.ntotal == 17 and "i99" in [r.item for r in after]
    assert [r.item for r in before] == [r.item for r in after[:3]]


def test_a_score_that_is_no_inner_product_is_served_exactly(bundles):
    """LMContent above power 1 sums powers of cosines: no index can hold it, so an index request scores every
    item exactly (and builds nothing)."""
    from lmrec.bundle import Bundle

    bundle = Bundle.load(bundles["lmcontent"])
    assert bundle.model.config.power > 1 and bundle.model.retrieval_items() is None
    queries = Queries.from_interactions(bundle.prepared.split.train)
    retriever = Retriever(bundle.model, "hnsw")
    ids, scores = retriever.top_k(queries, 5, queries.history)
    exact_ids, exact_scores = recommend(bundle.model, queries, 5, queries.history)
    assert retriever._index is None
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_array_equal(scores, exact_scores)


@pytest.mark.parametrize("name", ["sasrec", "textseq"])
def test_sequence_models_search_the_same_inner_products(bundles, name):
    from lmrec.bundle import Bundle

    bundle = Bundle.load(bundles[name])
    queries = Queries.from_interactions(bundle.prepared.split.train)
    exact_ids, exact_scores = recommend(bundle.model, queries, 5, queries.history)
    ids, scores = Retriever(bundle.model, "hnsw").top_k(queries, 5, queries.history)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-5)  # 16 items: the index finds all
    assert (ids == exact_ids).mean() > 0.95  # ids equal up to exact ties
