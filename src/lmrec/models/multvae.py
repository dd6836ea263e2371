"""Mult-VAE (Liang et al., WWW 2018): a variational autoencoder over each user's whole item set with a
multinomial likelihood. The encoder maps the (L2-normalised, dropped-out) history row to a Gaussian
posterior; the decoder maps a latent draw back to a softmax over all items; the KL term's weight is
annealed from 0 up to ``beta`` over ``anneal_steps`` updates. Scoring runs the decoder on the posterior
mean, so any history (a user absent from training too) is scored without refitting."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, load_module_state, module_state
from lmrec.train import TrainConfig, Trainer, TrainResult

SCORE_BATCH = 1024  # users per forward pass when scoring


class MultVAEConfig(TrainConfig):
    hidden: int = Field(600, ge=8, description="encoder / decoder hidden layer")
    latent: int = Field(200, ge=2, description="size of the latent user vector")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the input history")
    beta: float = Field(0.2, ge=0, description="largest weight of the KL term (the paper's anneal cap)")
    anneal_steps: int = Field(20000, ge=1, description="updates over which the KL weight rises to beta")
    batch_size: int = Field(256, ge=1)


@dataclass
class RowBatch:
    """Users' history rows as padded index lists: ``items[b]`` the item indices of row ``b``, ``mask[b]`` 1 where
    an entry is an item, 0 where it pads the row to the batch's longest. A binary history holds a handful of
    a catalogue's items: as dense ``[B, n_items]`` rows the encoder's first layer and the likelihood would
    spend nearly all their work on zeros. Every field has one row per user, so ``take_rows`` (a process's
    share in distributed training) slices it like any other batch."""

    items: torch.Tensor  # long [B, longest row]
    mask: torch.Tensor  # float [B, longest row]

    @classmethod
    def of(cls, rows: sp.csr_matrix) -> RowBatch:
        """From CSR rows; an item stored twice in a row or a stored zero would count in the row's norm."""
        if not rows.has_canonical_format or (rows.data == 0).any():
            rows = rows.copy()
            rows.sum_duplicates()
            rows.eliminate_zeros()
        counts = np.diff(rows.indptr)
        width = max(1, int(counts.max(initial=0)))
        row_of = np.repeat(np.arange(len(counts)), counts)
        column = np.arange(len(rows.indices)) - np.repeat(rows.indptr[:-1], counts)
        items = np.zeros((len(counts), width), dtype=np.int64)
        mask = np.zeros((len(counts), width), dtype=np.float32)
        items[row_of, column] = rows.indices
        mask[row_of, column] = 1.0
        return cls(torch.from_numpy(items), torch.from_numpy(mask))

    def to(self, device: torch.device | str) -> RowBatch:
        return RowBatch(self.items.to(device, non_blocking=True), self.mask.to(device, non_blocking=True))


class UserRows:
    """Batches of users' history rows, shuffled in an order fixed by ``(seed, epoch)``."""

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, seed: int):
        self.matrix, self.batch_size, self.seed = matrix, batch_size, seed
        self.users = np.flatnonzero(np.diff(matrix.indptr) > 0)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[RowBatch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.users)
        for start in range(0, len(order), self.batch_size):
            yield RowBatch.of(self.matrix[order[start:start + self.batch_size]])


class MultVAENet(nn.Module):
    def __init__(self, n_items: int, c: MultVAEConfig):
        super().__init__()
        self.latent = c.latent
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.Sequential(nn.Linear(n_items, c.hidden), nn.Tanh(), nn.Linear(c.hidden, 2 * c.latent))
        self.decoder = nn.Sequential(nn.Linear(c.latent, c.hidden), nn.Tanh(), nn.Linear(c.hidden, n_items))
        # updates so far, for the KL annealing; a buffer, so a resumed run continues the schedule
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def posterior(self, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder on the L2-normalised, dropped-out 0/1 rows, its first layer summing the weight columns
        of each row's items (the same product as the dense row times the weight matrix, without the zeros)."""
        first, rest = self.encoder[0], self.encoder[1:]
        # a 0/1 row's L2 norm is the square root of its length; dropout acts on the nonzero entries only
        # (padding has weight 0 and stays 0)
        values = self.drop(batch.mask * batch.mask.sum(1, keepdim=True).clamp(min=1).rsqrt())
        # the transposed weight copied to contiguous rows: gathering rows of the ``.t()`` view is a strided
        # read (a training step 2.7x slower on MovieLens-100K); the copy costs one pass over the weight
        h = F.embedding_bag(batch.items, first.weight.t().contiguous(), mode="sum", per_sample_weights=values)
        h = rest(h + first.bias)
        return h[:, :self.latent], h[:, self.latent:]

    def forward(self, batch: RowBatch) -> torch.Tensor:
        """Item logits ``[B, n_items]`` from the posterior mean (what scoring uses)."""
        mu, _ = self.posterior(batch)
        return self.decoder(mu)


class MultVAELoss:
    """Multinomial log-likelihood of the history plus the annealed KL term."""

    def __init__(self, beta: float, anneal_steps: int):
        self.beta, self.anneal_steps = beta, anneal_steps

    def __call__(self, net: MultVAENet, batch: RowBatch) -> torch.Tensor:
        mu, logvar = net.posterior(batch)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        # minus the log-likelihood of each row's items, summed per row, averaged over rows
        nll = -(F.log_softmax(net.decoder(z), dim=1).gather(1, batch.items) * batch.mask).sum(1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        weight = min(self.beta, self.beta * float(net.steps) / self.anneal_steps)
        net.steps += 1
        return nll + weight * kl


class MultVAE(Recommender):
    """Variational autoencoder for collaborative filtering with a multinomial likelihood (Mult-VAE)."""

    name = "multvae"
    Config = MultVAEConfig
    uses_validation = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net_: MultVAENet | None = None
        self.train_result_: TrainResult | None = None

    def _fit(self, train: Interactions, items: ItemTable | None, validation: Any = None) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        self.net_ = MultVAENet(train.n_items, c)
        data = UserRows(train.to_csr("binary"), c.batch_size, c.seed)

        def validate() -> dict[str, float]:
            return validation.evaluate(self, name=f"{self.name} (valid)").means()

        self.train_result_ = Trainer(c).fit(self.net_, MultVAELoss(c.beta, c.anneal_steps), data,
                                            validate if validation is not None else None)

    def _net(self) -> MultVAENet:
        if self.net_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")
        if self.net_.training:  # during fit the Trainer puts it back into training after validation
            self.net_.eval()
        return self.net_

    def score(self, queries: Queries) -> np.ndarray:
        net = self._net()
        device = next(net.parameters()).device
        history = queries.history
        out = np.empty((len(queries), history.shape[1]), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(queries), SCORE_BATCH):
                rows = sp.csr_matrix(history[start:start + SCORE_BATCH] > 0)
                out[start:start + rows.shape[0]] = net(RowBatch.of(rows).to(device)).float().cpu().numpy()
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return module_state(self._net())

    def _set_state(self, state: dict[str, Any]) -> None:
        assert self.n_items_ is not None
        net = MultVAENet(self.n_items_, self.config)
        load_module_state(net, state)
        self.net_ = net.eval()
