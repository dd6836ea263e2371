"""Metric values against hand-computed ones.

The top-K lists below are fixed; every expected number was worked out by hand from the definitions
(which are RecBole 1.2.1's: NDCG's ideal DCG and MAP's normaliser use min(n_relevant, K)), so our
metrics agree with RecBole's on identical lists to within 1e-6 without RecBole installed.
"""

import math

import numpy as np
import pytest

from lmrec.eval import metrics as M

# user 0: relevant at ranks 1 and 3 (2 relevant); user 1: at rank 4 (1 relevant); user 2: none of 3
HITS = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)
N_REL = np.array([2, 1, 3])


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_recall_hit_precision():
    close(M.recall_at_k(HITS, N_REL, 4), [1.0, 1.0, 0.0])
    close(M.recall_at_k(HITS, N_REL, 2), [0.5, 0.0, 0.0])
    close(M.hit_rate_at_k(HITS, 2), [1.0, 0.0, 0.0])
    close(M.hit_rate_at_k(HITS, 4), [1.0, 1.0, 0.0])
    close(M.precision_at_k(HITS, 4), [0.5, 0.25, 0.0])


def test_recall_and_hit_rate_differ_with_several_relevant_items():
    hits = np.array([[0, 1, 0]], dtype=bool)
    assert M.recall_at_k(hits, np.array([4]), 3)[0] == 0.25
    assert M.hit_rate_at_k(hits, 3)[0] == 1.0


def test_ndcg():
    dcg0 = 1 / math.log2(2) + 1 / math.log2(4)
    idcg0 = 1 / math.log2(2) + 1 / math.log2(3)
    close(M.ndcg_at_k(HITS, N_REL, 4), [dcg0 / idcg0, 1 / math.log2(5), 0.0])
    close(M.ndcg_at_k(HITS, N_REL, 4)[0], 0.9197207891481876)
    close(M.ndcg_at_k(HITS, N_REL, 1), [1.0, 0.0, 0.0])


def test_mrr_and_map():
    close(M.mrr_at_k(HITS, 4), [1.0, 0.25, 0.0])
    close(M.mrr_at_k(HITS, 3), [1.0, 0.0, 0.0])
    close(M.map_at_k(HITS, N_REL, 4), [(1 + 2 / 3) / 2, 0.25, 0.0])
    close(M.map_at_k(HITS, N_REL, 2), [1 / 2, 0.0, 0.0])  # one hit in 2; normaliser min(2, 2)


def test_auc_from_ranks():
    # 5 candidates, relevant at ranks 0 and 3: the second has 2 others above it -> 1 - (0 + 2) / 2 / 3
    close(M.auc_from_ranks([np.array([3.0, 0.0])], np.array([5])), [1 - 1 / 3])
    close(M.auc_from_ranks([np.array([0.0])], np.array([10])), [1.0])
    close(M.auc_from_ranks([np.array([9.0])], np.array([10])), [0.0])
    assert np.isnan(M.auc_from_ranks([np.array([0.0])], np.array([1]))[0])


def test_beyond_accuracy_metrics():
    top = np.array([[0, 1], [0, 2]])
    assert M.coverage_at_k(top, n_items=4, k=2) == 0.75
    assert M.coverage_at_k(top, n_items=4, k=1) == 0.25
    pop = np.array([4.0, 2.0, 1.0, 0.0])  # of 4 training users
    close(M.novelty_at_k(top, pop, n_users=4, k=2), [(0 + 1) / 2, (0 + 2) / 2])
    close(M.average_popularity_at_k(top, pop, 2), [3.0, 2.5])
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=float)  # e.g. genre flags
    close(M.intra_list_diversity_at_k(top, vectors, 2), [0.0, 1.0])


def test_k_out_of_range():
    with pytest.raises(ValueError, match="k=5"):
        M.recall_at_k(HITS, N_REL, 5)
