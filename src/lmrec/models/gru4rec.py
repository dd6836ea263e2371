"""GRU4Rec (Hidasi et al., 2016): a GRU over the item sequence; scores are dot products with the item
embeddings (shared with the input), trained on every position at once like SASRec (full softmax by
default, which later studies found much stronger than the original ranking losses)."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmrec.data.batching import SequenceBatch
from lmrec.models.sequential import DotProductOutput, SequentialConfig, SequentialRecommender, item_embeddings


class GRU4RecConfig(SequentialConfig):
    layers: int = Field(1, ge=1, description="stacked GRU layers")
    # Smaller batches than the other sequence models (128): the GRU learns slowly per step, and at 128
    # windows a MovieLens-100K epoch is about 20 steps, so validation stalls and early stopping ends a
    # barely trained model (test NDCG@10 0.0452 at 128, 0.0997 at 32, lr 1e-3; docs/benchmarks.md).
    batch_size: int = Field(32, ge=1)


class GRU4RecNet(DotProductOutput, nn.Module):
    """Item ``i`` is token ``i + 1`` (0 = padding)."""

    def __init__(self, n_items: int, c: GRU4RecConfig):
        super().__init__()
        self.items = item_embeddings(n_items, c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.dim, c.dim, num_layers=c.layers, batch_first=True,
                          dropout=c.dropout if c.layers > 1 else 0.0)

    def sequence_states(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, L, d]``: the GRU state after each position. Batches are left-padded; the GRU must not run
        over the padding (its biases would move the state), so each row is packed from its first item."""
        valid = batch.valid
        length = valid.sum(1)
        pad = valid.shape[1] - length
        positions = torch.arange(valid.shape[1], device=valid.device)
        start_first = (positions[None, :] + pad[:, None]) % valid.shape[1]  # row r read from its first item on
        x = self.dropout(self.items(batch.tokens.gather(1, start_first)))
        packed = pack_padded_sequence(x, length.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=valid.shape[1])
        back = (positions[None, :] - pad[:, None]) % valid.shape[1]  # and back to left padding
        return states.gather(1, back.unsqueeze(-1).expand(-1, -1, states.shape[-1])) * valid.unsqueeze(-1)


class GRU4Rec(SequentialRecommender):
    """Session-based recurrent recommendation (GRU4Rec) on the shared sequence-model machinery."""

    name = "gru4rec"
    Config = GRU4RecConfig

    def _new_net(self, n_items: int, inputs: dict[str, np.ndarray], trained: np.ndarray) -> nn.Module:
        return GRU4RecNet(n_items, self.config)
