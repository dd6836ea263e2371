import numpy as np
import pytest

from lmrec.data import IdMap, Interactions, ItemTable, UserTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.text import HashingEncoder
from lmrec.text.cache import EmbeddingCache
from lmrec.text.texts import default_template, item_vectors, user_text


@pytest.fixture
def items():
    return ItemTable(IdMap(["a", "b", "c"]), {"asin": ["A", "B", "C"], "title": ["Red Pen", "Ink", ""],
                                              "brand": ["Bic", "", ""], "categories": ["Office", "Office", ""]})


def test_default_template_reads_the_descriptive_fields(items):
    assert default_template(items) == "{title}. Brand: {brand}. Category: {categories}"
    assert items.render(default_template(items)) == ["Red Pen. Brand: Bic. Category: Office", "Ink. Category: Office", ""]


def test_item_vectors_zero_for_items_without_text(items, tmp_path):
    vectors, has_text = item_vectors(items, HashingEncoder(32), cache=EmbeddingCache(tmp_path))
    assert has_text.tolist() == [True, True, False]
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1) and not vectors[2].any()


def test_user_text_prefers_reviews_else_recent_titles(items):
    users = UserTable(IdMap(["u", "v"]), {"reviews": ["Great pens.", ""]})
    assert user_text([0, 1], items, users, user=0) == "Great pens."
    assert user_text([0, 1], items, users, user=1) == "Ink; Red Pen"  # most recent first
    assert user_text([0, 1, 0], items, max_items=2) == "Red Pen; Ink"


def test_recency_weights_in_interactions_and_seconds():
    inter = Interactions(np.array([0, 0, 0]), np.array([0, 1, 2]), IdMap(["u"]), IdMap(range(3)),
                         time=np.array([0, 3600, 7200]))
    q = Queries.from_interactions(inter)
    np.testing.assert_allclose(q.weights(1.0).toarray(), [[0.25, 0.5, 1.0]])
    np.testing.assert_allclose(q.weights(3600.0, "seconds").toarray(), [[0.25, 0.5, 1.0]])
    np.testing.assert_allclose(q.weights(None).toarray(), [[1, 1, 1]])
    ordinal = Interactions(inter.user, inter.item, inter.users, inter.items, time=np.arange(3), time_unit="order")
    with pytest.raises(ConfigError, match="needs real timestamps"):
        Queries.from_interactions(ordinal).weights(1.0, "seconds")
