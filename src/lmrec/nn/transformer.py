"""A transformer over left-padded item sequences (pre-norm blocks, nanoGPT-style): causal (SASRec) or
bidirectional (BERT4Rec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm self-attention + feed-forward block."""

    def __init__(self, dim: int, heads: int, inner: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, inner), nn.GELU(), nn.Linear(inner, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, d]``; ``allowed`` bool ``[B, 1, L, L]`` (query i may attend to key j)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class SequenceEncoder(nn.Module):
    """Learned positions + ``layers`` blocks + final norm: ``[B, L, d]`` -> ``[B, L, d]``. Causal by default
    (a position sees itself and earlier ones); ``causal=False`` lets every position see the whole row.

    Positions count back from the most recent item (position 0 = last), so a left-padded row and the
    same row without padding get identical states, whatever the batch's length.
    """

    def __init__(self, dim: int, layers: int, heads: int, max_len: int, dropout: float, inner: int | None = None,
                 causal: bool = True):
        super().__init__()
        self.max_len, self.causal = max_len, causal
        self.position = nn.Embedding(max_len, dim)
        # small like the item vectors: N(0, 1) positions would drown the items at the start of training
        nn.init.normal_(self.position.weight, std=0.02)
        self.input_norm = nn.LayerNorm(dim)
        self.input_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, inner or 4 * dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, d]`` item vectors, ``valid`` bool ``[B, L]`` (False = padding)."""
        n = x.shape[1]
        if n > self.max_len:
            x, valid = x[:, -self.max_len:], valid[:, -self.max_len:]
            n = self.max_len
        back = torch.arange(n - 1, -1, -1, device=x.device)
        x = self.input_drop(self.input_norm(x + self.position(back)))
        x = x * valid.unsqueeze(-1)
        order = torch.ones(n, n, dtype=torch.bool, device=x.device)
        if self.causal:
            order = order.tril()
        # A padded query sees only itself, so no attention row is empty (an empty row gives NaN).
        allowed = order & (valid[:, None, :] | torch.eye(n, dtype=torch.bool, device=x.device))
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)
