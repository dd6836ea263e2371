"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained to fill in masked items (a cloze
task); to recommend, a mask token is put after the history and the model fills it in. Full-softmax
cross-entropy over the masked positions by default, as the paper's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from lmrec.data.batching import PAD, MaskedWindows, SequenceBatch, SequenceWindows, UserSampledWindows
from lmrec.models.sequential import DotProductOutput, SequentialConfig, SequentialRecommender, item_embeddings
from lmrec.nn.transformer import SequenceEncoder


class BERT4RecConfig(SequentialConfig):
    mask_prob: float = Field(0.2, gt=0, lt=1, description="share of a training window's items masked")

    @model_validator(mode="after")
    def _no_history_mask(self) -> BERT4RecConfig:
        if self.mask_history:
            # history_mask leaves out each position's *prefix*; a bidirectional model sees the whole window
            raise ValueError("mask_history assumes a left-to-right model; bert4rec sees the whole window")
        return self


class BERT4RecNet(DotProductOutput, nn.Module):
    """Item ``i`` is token ``i + 1``, 0 is padding and ``n_items + 1`` the mask token. Input and output item
    embeddings are shared (the mask token's row is an input only)."""

    def __init__(self, n_items: int, c: BERT4RecConfig):
        super().__init__()
        self.n_items, self.max_len = n_items, c.max_len
        self.items = item_embeddings(n_items + 1, c.dim)  # one more row: the mask token
        # a training window has up to max_len + 1 items; a query is max_len items and the mask
        self.encoder = SequenceEncoder(c.dim, c.layers, c.heads, c.max_len + 1, c.dropout, causal=False)

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    def sequence_states(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, L, d]``: the state at each position, each seeing the whole row."""
        return self.encoder(self.items(batch.tokens), batch.tokens != PAD)

    def encode_queries(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, d]``: the state at a mask token put after the most recent ``max_len`` items."""
        tokens = batch.tokens[:, -self.max_len:]
        mask = torch.full((len(tokens), 1), self.mask_token, dtype=tokens.dtype, device=tokens.device)
        tokens = torch.cat([tokens, mask], dim=1)
        return self.encoder(self.items(tokens), tokens != PAD)[:, -1]

    def item_table(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        table = self.items.weight[1:self.n_items + 1]
        return table if ids is None else table[ids]


class BERT4Rec(SequentialRecommender):
    """Bidirectional sequential recommendation by masked-item training (BERT4Rec)."""

    name = "bert4rec"
    Config = BERT4RecConfig

    def _new_net(self, n_items: int, inputs: dict[str, np.ndarray], trained: np.ndarray) -> nn.Module:
        return BERT4RecNet(n_items, self.config)

    def _training_batches(self, windows: SequenceWindows | UserSampledWindows) -> Any:
        assert self.n_items_ is not None
        return MaskedWindows(windows, self.n_items_ + 1, self.config.mask_prob, self.config.seed)
