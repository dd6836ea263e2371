"""HybridNCF: neural collaborative filtering whose item input fuses an ID embedding with the item's
language-model vector, so items nobody has interacted with are still scored through their text."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, mean_rows
from lmrec.progress import progress
from lmrec.text.encoder import DEFAULT_ENCODER, load_encoder
from lmrec.text.texts import item_vectors

# bytes of hidden activations per scoring step: [users, items, hidden] float32
_SCORE_CHUNK_BYTES = 128 * 1024**2


class HybridNCFConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoder: str = DEFAULT_ENCODER
    template: str | None = None
    id_dim: int = Field(32, ge=1, description="item ID embedding size")
    text_dim: int = Field(32, ge=1, description="size of the learned projection of the LM vector")
    hidden: int = Field(64, ge=1)
    # defaults chosen on MovieLens-100K's validation part (never on test)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    negatives: int = Field(4, ge=1, description="sampled negatives per positive (BCE)")
    id_dropout: float = Field(0.2, ge=0, lt=1, description="share of training items whose ID embedding is "
                              "dropped, so the model learns to score from text alone (cold-start items)")
    seed: int = 0
    max_length: int = Field(128, ge=8)


class _Net(nn.Module):
    """MLP over [user; item] with item = [ID embedding; projection(LM vector)] and
    user = [ID embedding; projection(mean LM vector of the user's history)].

    The first layer acts on a concatenation, so it splits exactly into a user part and an item part;
    full ranking then costs one small matrix per side plus ``relu(a_u + b_i) . w`` per pair.
    """

    def __init__(self, n_users: int, n_items: int, lm_dim: int, c: HybridNCFConfig):
        super().__init__()
        d_item = c.id_dim + c.text_dim
        self.user = nn.Embedding(n_users, c.id_dim)
        self.item_id = nn.Embedding(n_items, c.id_dim)
        self.text_proj = nn.Linear(lm_dim, c.text_dim)
        self.history_proj = nn.Linear(lm_dim, c.text_dim)
        self.user_layer = nn.Linear(d_item, c.hidden)
        self.item_layer = nn.Linear(d_item, c.hidden, bias=False)
        self.out = nn.Linear(c.hidden, 1)
        for emb in (self.user, self.item_id):
            nn.init.normal_(emb.weight, std=0.05)

    def item_repr(self, items: torch.Tensor, lm: torch.Tensor, keep_id: torch.Tensor) -> torch.Tensor:
        """``[N, id_dim + text_dim]``; ``keep_id`` (float ``[N, 1]``) zeroes dropped / untrained IDs."""
        return torch.cat([self.item_id(items) * keep_id, self.text_proj(lm)], dim=-1)

    def user_repr(self, users: torch.Tensor, history_lm: torch.Tensor, keep_id: torch.Tensor) -> torch.Tensor:
        """``[N, id_dim + text_dim]`` from the user's ID (zeroed where ``keep_id`` is 0) and history text."""
        return torch.cat([self.user(users) * keep_id, self.history_proj(history_lm)], dim=-1)

    def logits(self, user_vec: torch.Tensor, item_vec: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.user_layer(user_vec) + self.item_layer(item_vec))).squeeze(-1)


class HybridNCF(Recommender):
    """ID + language fusion trained with BCE on sampled negatives (see ``_Net``). Items and users absent
    from training are represented by their text alone (ID dropout during training teaches the model to
    do so); negatives are sampled from the items seen in training only."""

    name = "hybridncf"
    Config = HybridNCFConfig

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        if items is None or not items.fields:
            raise ConfigError(f"{self.name} needs item text: pass the dataset's item table to fit()")
        c = self.config
        lm, _ = item_vectors(items, load_encoder(c.encoder, max_length=c.max_length), c.template)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        net = _Net(train.n_users, train.n_items, lm.shape[1], c)
        lm_t = torch.as_tensor(lm)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        users, pos = train.user, train.item
        self.trained_items_ = np.bincount(pos, minlength=train.n_items) > 0
        self.trained_users_ = np.bincount(users, minlength=train.n_users) > 0
        candidates = np.flatnonzero(self.trained_items_)  # items unknown at training time are never negatives
        history_lm = torch.as_tensor(mean_rows(train.to_csr("binary"), lm))
        bar = progress(range(c.epochs), desc=f"train {self.name}", total=c.epochs, unit="epoch")
        for _ in bar:
            perm = rng.permutation(len(users))
            for start in range(0, len(perm), c.batch_size):
                idx = perm[start:start + c.batch_size]
                u = np.repeat(users[idx], 1 + c.negatives)
                negatives = candidates[rng.integers(0, len(candidates), (len(idx), c.negatives))]
                i = np.concatenate([pos[idx][:, None], negatives], 1).ravel()
                y = np.tile(np.r_[1.0, np.zeros(c.negatives)], len(idx)).astype(np.float32)
                it, ut = torch.as_tensor(i), torch.as_tensor(u)
                keep_i = torch.as_tensor(rng.random(len(i)) >= c.id_dropout, dtype=torch.float32)[:, None]
                keep_u = torch.as_tensor(rng.random(len(u)) >= c.id_dropout, dtype=torch.float32)[:, None]
                logits = net.logits(net.user_repr(ut, history_lm[ut], keep_u), net.item_repr(it, lm_t[it], keep_i))
                loss = loss_fn(logits, torch.as_tensor(y))
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        self._cache_item_side(net, lm_t)
        self.lm_ = lm
        self.user_emb_ = net.user.weight.detach().numpy().copy()
        self.history_proj_w_ = net.history_proj.weight.detach().numpy().copy()
        self.history_proj_b_ = net.history_proj.bias.detach().numpy().copy()
        self.user_layer_w_ = net.user_layer.weight.detach().numpy().copy()
        self.user_layer_b_ = net.user_layer.bias.detach().numpy().copy()
        self.out_w_ = net.out.weight.detach().numpy().ravel().copy()
        self.out_b_ = net.out.bias.detach().numpy().copy()

    def _cache_item_side(self, net: _Net, lm: torch.Tensor) -> None:
        """Item representations through the first layer, computed once after training.
        Items never seen in training keep only their text part (their ID embedding was never trained)."""
        with torch.no_grad():
            keep = torch.as_tensor(self.trained_items_, dtype=torch.float32)[:, None]
            reps = net.item_repr(torch.arange(lm.shape[0]), lm, keep)
            self.item_hidden_ = net.item_layer(reps).numpy().copy()

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        users = queries.users
        known = (users < len(self.trained_users_)) & self.trained_users_[np.minimum(users, len(self.trained_users_) - 1)]
        id_part = np.zeros((len(users), self.user_emb_.shape[1]), dtype=np.float32)
        id_part[known] = self.user_emb_[users[known]]  # users unseen in training: text part only
        text_part = mean_rows(queries.history, self.lm_) @ self.history_proj_w_.T + self.history_proj_b_
        user_vec = np.concatenate([id_part, text_part], axis=1)
        a = torch.as_tensor(user_vec @ self.user_layer_w_.T + self.user_layer_b_)  # [B, hidden]
        b = torch.as_tensor(self.item_hidden_)  # [n_items, hidden]
        w = torch.as_tensor(self.out_w_)
        out = np.empty((len(users), b.shape[0]), dtype=np.float32)
        step = max(1, _SCORE_CHUNK_BYTES // (4 * b.shape[0] * b.shape[1]))
        with torch.no_grad():
            for s in range(0, len(users), step):
                out[s:s + step] = (torch.relu(a[s:s + step, None, :] + b[None]) @ w).numpy() + self.out_b_[0]
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("trained_items_", "trained_users_", "item_hidden_", "lm_",
                                             "user_emb_", "history_proj_w_", "history_proj_b_", "user_layer_w_",
                                             "user_layer_b_", "out_w_", "out_b_")}
