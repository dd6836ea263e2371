"""SASRec: ID embeddings + causal self-attention, trained on all positions of each sequence at once."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmrec.data.batching import SequenceBatch
from lmrec.models.sequential import DotProductOutput, SequentialConfig, SequentialRecommender, item_embeddings
from lmrec.nn.transformer import SequenceEncoder


class SASRecConfig(SequentialConfig):
    pass


class SASRecNet(DotProductOutput, nn.Module):
    """Item ``i`` is token ``i + 1`` (0 = padding). Input and output item embeddings are shared."""

    def __init__(self, n_items: int, c: SASRecConfig):
        super().__init__()
        self.items = item_embeddings(n_items, c.dim)
        self.encoder = SequenceEncoder(c.dim, c.layers, c.heads, c.max_len, c.dropout)

    def sequence_states(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, L, d]``: the state after each position."""
        return self.encoder(self.items(batch.tokens), batch.valid)


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley, 2018), with full-softmax cross-entropy
    by default (which beats the paper's one-negative BCE by a wide margin in later studies)."""

    name = "sasrec"
    Config = SASRecConfig

    def _new_net(self, n_items: int, inputs: dict[str, np.ndarray], trained: np.ndarray) -> nn.Module:
        return SASRecNet(n_items, self.config)
