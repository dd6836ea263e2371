"""Text adaptor: frozen language-model vectors -> recommendation space (the UniSRec recipe).

Parametric whitening ``(x - b) W`` per expert, then a mixture of ``K`` such experts mixed by a learned
softmax gate. Whitening undoes the anisotropy of LM embeddings (they crowd into a narrow cone);
several experts let different semantic regions map differently; the gate is what domain adaptation
mostly needs to retune (the transfer issue freezes everything else).
"""

from __future__ import annotations

import torch
from torch import nn


class MoEAdaptor(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, experts: int = 8, dropout: float = 0.2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(experts, in_dim))  # per-expert centre, learned
        self.weight = nn.Parameter(torch.empty(experts, in_dim, out_dim))
        nn.init.normal_(self.weight, std=0.02)
        self.gate = nn.Linear(in_dim, experts, bias=False)
        nn.init.zeros_(self.gate.weight)  # start as the plain average of the experts
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, in_dim]`` -> ``[N, out_dim]``."""
        x = self.drop(x)
        # (x - b_k) W_k written as x W_k - b_k W_k: never materialises an [N, K, in_dim] tensor
        shift = torch.einsum("ke,keo->ko", self.bias, self.weight)
        experts = torch.einsum("ne,keo->nko", x, self.weight) - shift  # [N, K, out]
        gate = torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)  # [N, K, 1]
        return (gate * experts).sum(1)
