import numpy as np
import pytest

from lmrec.errors import ConfigError
from lmrec.models.text_query import TextQuery, split_query
from lmrec.text import HashingEncoder


def test_split_query_finds_negations():
    assert split_query("sci-fi about time travel, not horror") == ("sci-fi about time travel", ["horror"])
    assert split_query("cozy mysteries without gore, no romance") == ("cozy mysteries", ["gore", "romance"])
    assert split_query("comedy") == ("comedy", [])


def test_query_ranks_matching_items_first_and_negation_pushes_down():
    enc = HashingEncoder(512)
    titles = ["space time travel adventure", "time travel horror night", "romantic comedy in paris",
              "space horror station"]
    tq = TextQuery(enc, enc.encode(titles))
    ids, _ = tq.recommend("time travel", k=2)
    assert set(ids) == {0, 1}
    ids, scores = tq.recommend("time travel, not horror", k=4)
    assert ids[0] == 0 and list(ids).index(1) > list(ids).index(0)
    assert scores[list(ids).index(1)] < tq.scores("time travel")[1]
    ids, _ = tq.recommend("time travel", k=3, exclude=np.array([0]))
    assert 0 not in ids


def test_history_blend_and_bad_queries():
    enc = HashingEncoder(512)
    vectors = enc.encode(["space adventure", "paris comedy"])
    tq = TextQuery(enc, vectors)
    plain = tq.scores("adventure")
    blended = tq.scores("adventure", history_vector=vectors[1], history_weight=0.9)
    assert blended[1] - blended[0] > plain[1] - plain[0]
    with pytest.raises(ConfigError, match="non-empty"):
        tq.scores("  ")
    with pytest.raises(ConfigError, match="only says what to avoid"):
        tq.scores("not horror")
    with pytest.raises(ConfigError, match="history weight"):
        tq.scores("x", vectors[0], 2.0)
