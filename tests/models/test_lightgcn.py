"""LightGCN's propagation (its hand-written gradient must be autograd's through a dense product) and its
negative sampling."""

import numpy as np
import scipy.sparse as sp
import torch

from lmrec.models.lightgcn import _negatives, _normalised_adjacency, _propagate, _torch_csr


def test_propagation_and_its_gradient_equal_the_dense_formula():
    rng = np.random.default_rng(0)
    ui = sp.csr_matrix((rng.random((6, 5)) < 0.4).astype(np.float32))
    values = sp.csr_matrix((rng.random((5, 3)) < 0.5).astype(np.float32))
    adj = _normalised_adjacency(ui, values)
    assert abs(adj - adj.T).max() < 1e-7  # symmetric: what the hand-written backward relies on
    weights = torch.randn(adj.shape[0], 4, dtype=torch.float32)
    emb = torch.randn(adj.shape[0], 4, requires_grad=True)
    (_propagate(_torch_csr(adj), emb, 3) * weights).sum().backward()
    got = emb.grad.clone()
    dense = torch.from_numpy(adj.toarray())
    emb2 = emb.detach().clone().requires_grad_(True)
    total, current = emb2, emb2
    for _ in range(3):
        current = dense @ current
        total = total + current
    torch.testing.assert_close(_propagate(_torch_csr(adj), emb.detach(), 3), (total / 4).detach())
    (total / 4 * weights).sum().backward()
    torch.testing.assert_close(got, emb2.grad)


def test_negatives_come_from_the_pool_and_avoid_the_users_items():
    """Negatives are drawn only from ``pool`` (the items with training interactions: a cold-start item is
    never a negative); a draw that hits the user's own items is redrawn (five times, so a user who took half
    the pool keeps one of their own items as a negative with probability 1/64)."""
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=np.float32))
    pool = np.array([0, 1, 2, 3])  # items 4 and 5 have no training interactions
    users = np.repeat([0, 1], 500)
    out = _negatives(seen, users, pool, np.random.default_rng(0))
    assert set(out) == {0, 1, 2, 3}
    assert np.isin(out[users == 0], [0, 1]).mean() < 0.05  # the user's own items, 50% before the redraws
    assert np.isin(out[users == 1], [2]).mean() < 0.01
