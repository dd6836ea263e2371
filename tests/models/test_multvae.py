"""Mult-VAE reads history rows as index lists; the result must be the dense formula's exactly."""

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from lmrec.data.batching import take_rows
from lmrec.models.multvae import MultVAEConfig, MultVAELoss, MultVAENet, RowBatch


def _rows(seed: int = 0, users: int = 7, items: int = 40) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.15).astype(np.float32)
    dense[3] = 0  # an empty row
    return sp.csr_matrix(dense)


def test_the_index_list_forward_equals_the_dense_rows_forward():
    rows = _rows()
    net = MultVAENet(rows.shape[1], MultVAEConfig(hidden=16, latent=4, dropout=0.5)).eval()
    dense = torch.from_numpy(rows.toarray())
    with torch.no_grad():
        h = net.encoder(F.normalize(dense, dim=1))
        expected = net.decoder(h[:, :4])
        got = net(RowBatch.of(rows))
    torch.testing.assert_close(got, expected)
    # a row stored with a duplicate entry and an explicit zero reads as the same 0/1 row
    end = rows.indptr[1]
    absent = next(i for i in range(rows.shape[1]) if i not in rows.indices[:end])
    data = np.r_[rows.data[:end], 1.0, 0.0, rows.data[end:]]
    indices = np.r_[rows.indices[:end], rows.indices[0], absent, rows.indices[end:]]
    messy = sp.csr_matrix((data, indices, np.r_[0, rows.indptr[1:] + 2]), shape=rows.shape)
    assert not messy.has_canonical_format
    with torch.no_grad():
        torch.testing.assert_close(net(RowBatch.of(messy)), expected)
        # a process's share in distributed training: every other row, sliced like any batch of rows
        torch.testing.assert_close(net(take_rows(RowBatch.of(rows), slice(1, None, 2))), expected[1::2])


def test_the_loss_equals_the_dense_multinomial_likelihood_plus_kl():
    rows = _rows(1)
    c = MultVAEConfig(hidden=16, latent=4, dropout=0.0, beta=0.2, anneal_steps=10)
    net = MultVAENet(rows.shape[1], c)
    for _ in range(3):  # past a few annealing steps
        torch.manual_seed(5)
        got = MultVAELoss(c.beta, c.anneal_steps)(net, RowBatch.of(rows))
        net.steps -= 1
        torch.manual_seed(5)
        dense = torch.from_numpy(rows.toarray())
        h = net.encoder(F.normalize(dense, dim=1))
        mu, logvar = h[:, :4], h[:, 4:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = -(F.log_softmax(net.decoder(z), dim=1) * dense).sum(1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        expected = nll + min(c.beta, c.beta * float(net.steps) / c.anneal_steps) * kl
        net.steps += 1
        torch.testing.assert_close(got, expected)
        got.backward()  # gradients reach the first layer's weight through the index lists
        assert net.encoder[0].weight.grad is not None and net.encoder[0].weight.grad.abs().sum() > 0
        net.zero_grad()
