"""LightGCN's propagation: its hand-written gradient must be autograd's through a dense product."""

import numpy as np
import scipy.sparse as sp
import torch

from lmrec.models.lightgcn import _normalised_adjacency, _propagate, _torch_csr


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
