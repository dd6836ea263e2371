"""CTR models on ``CTRExamples``: an ID factorisation machine, a frozen-encoder MLP, a cross-encoder.

All train through ``lmrec.train.Trainer`` (BCE on logits, early stopping on validation AUC) and share
``fit(train, items, valid)``, ``predict(examples) -> probabilities``, ``evaluate(examples) -> {auc, logloss}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lmrec.config import validate
from lmrec.ctr.data import CTRExamples
from lmrec.ctr.metrics import auc, log_loss
from lmrec.data.items import ItemTable
from lmrec.errors import ConfigError
from lmrec.text.encoder import DEFAULT_ENCODER, load_encoder, resolve_model_path
from lmrec.text.texts import item_vectors
from lmrec.text.tuning import TUNINGS, transformer_layers
from lmrec.train import TrainConfig, Trainer, TrainResult


class CTRConfig(TrainConfig):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    monitor: str = "auc"
    patience: int = Field(3, ge=1)
    valid_rows: int | None = Field(None, ge=2, description="validate on this many rows (a fixed sample; None = all)")


@dataclass
class TensorBatch:
    tensors: dict[str, torch.Tensor]

    def to(self, device: torch.device | str) -> TensorBatch:
        return TensorBatch({k: v.to(device) for k, v in self.tensors.items()})


class RowBatches:
    """Shuffled batches of example rows; order fixed by (seed, epoch) so training resumes exactly."""

    def __init__(self, n: int, batch_size: int, seed: int, make: Callable[[np.ndarray], TensorBatch]):
        self.n, self.batch_size, self.seed, self.make = n, batch_size, seed, make

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[TensorBatch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        for start in range(0, self.n, self.batch_size):
            yield self.make(order[start:start + self.batch_size])


def _bce(module: nn.Module, batch: TensorBatch) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(module(batch.tensors).float(), batch.tensors["labels"])


class CTRModel:
    name: ClassVar[str] = "ctr"
    Config: ClassVar[type[CTRConfig]] = CTRConfig

    def __init__(self, **params: Any):
        self.config: Any = validate(self.Config, params, where=f"model {self.name!r}")
        self.net_: nn.Module | None = None
        self.train_result_: TrainResult | None = None
        self.trainable_params_ = 0

    # subclasses: build the network and turn example rows into tensors
    def _build(self, train: CTRExamples, items: ItemTable) -> nn.Module:
        raise NotImplementedError

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def fit(self, train: CTRExamples, items: ItemTable, valid: CTRExamples | None = None) -> CTRModel:
        if len(train) == 0:
            raise ConfigError(f"cannot fit {self.name!r} on no examples")
        c = self.config
        torch.manual_seed(c.seed)
        self.net_ = self._build(train, items)
        self.trainable_params_ = sum(p.numel() for p in self.net_.parameters() if p.requires_grad)
        data = RowBatches(len(train), c.batch_size, c.seed, lambda rows: self._batch(train, rows))
        check = valid.sample(c.valid_rows, seed=c.seed) if valid is not None else None
        self.train_result_ = Trainer(c).fit(self.net_, _bce, data,
                                            (lambda: self.evaluate(check)) if check is not None else None)
        return self

    def _batch(self, ex: CTRExamples, rows: np.ndarray) -> TensorBatch:
        return TensorBatch({**self._tensors(ex, rows), "labels": torch.as_tensor(ex.labels[rows], dtype=torch.float32)})

    @torch.no_grad()
    def predict(self, ex: CTRExamples, batch_size: int = 512) -> np.ndarray:
        if self.net_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")
        net = self.net_.eval()
        device = next(net.parameters()).device
        out = [torch.sigmoid(net(self._batch(ex, np.arange(s, min(s + batch_size, len(ex)))).to(device).tensors).float())
               for s in range(0, len(ex), batch_size)]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)

    def evaluate(self, ex: CTRExamples) -> dict[str, float]:
        p = self.predict(ex)
        return {"auc": auc(ex.labels, p), "logloss": log_loss(ex.labels, p)}


def _padded(histories: list[np.ndarray], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """History items ``[B, H]`` (+1, 0 = padding) and their mask."""
    h = max(1, max(len(histories[r]) for r in rows))
    out = np.zeros((len(rows), h), dtype=np.int64)
    for i, r in enumerate(rows):
        if len(histories[r]):
            out[i, :len(histories[r])] = histories[r] + 1
    t = torch.from_numpy(out)
    return t, t > 0


# --- IDs: a factorisation machine --------------------------------------------------------------------------------
class IdFMConfig(CTRConfig):
    dim: int = Field(16, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class _FM(nn.Module):
    """Fields: user, candidate item, the bag of liked history items (mean). Logit = bias + linear terms +
    every pairwise dot product of the field embeddings (a second-order factorisation machine)."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user, self.item = nn.Embedding(n_users, dim), nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.user_bias, self.item_bias = nn.Embedding(n_users, 1), nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.bias = nn.Parameter(torch.zeros(1))
        for e in (self.user, self.item):
            nn.init.normal_(e.weight, std=0.01)
        for e in (self.user_bias, self.item_bias):
            nn.init.zeros_(e.weight)

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        hist, mask = t["history"], t["history_mask"].unsqueeze(-1).float()
        bag = (self.item(hist) * mask).sum(1) / mask.sum(1).clamp(min=1)
        u, i = self.user(t["users"]), self.item(t["items"] + 1)
        fields = torch.stack([u, i, bag], 1)  # [B, 3, d]
        pairwise = 0.5 * (fields.sum(1).pow(2) - fields.pow(2).sum(1)).sum(-1)
        linear = self.user_bias(t["users"]).squeeze(-1) + self.item_bias(t["items"] + 1).squeeze(-1)
        return self.bias + linear + pairwise


class IdFM(CTRModel):
    name = "id-fm"
    Config = IdFMConfig

    def _build(self, train: CTRExamples, items: ItemTable) -> nn.Module:
        # every user of the split gets a row; users absent from training keep their (small, random) init
        return _FM(train.n_users, len(items), self.config.dim)

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        hist, mask = _padded(ex.histories, rows)
        return {"users": torch.as_tensor(ex.users[rows]), "items": torch.as_tensor(ex.items[rows]), "history": hist,
                "history_mask": mask}


# --- frozen language-model vectors + MLP ---------------------------------------------------------------------------
class FrozenMLPConfig(CTRConfig):
    encoder: str = DEFAULT_ENCODER
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class _MLP(nn.Module):
    def __init__(self, vectors: np.ndarray, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("vectors", torch.as_tensor(np.vstack([np.zeros((1, vectors.shape[1])), vectors]),
                                                        dtype=torch.float32), persistent=False)
        d = vectors.shape[1]
        self.mlp = nn.Sequential(nn.Linear(3 * d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = t["history_mask"].unsqueeze(-1).float()
        hist = (self.vectors[t["history"]] * mask).sum(1) / mask.sum(1).clamp(min=1)
        cand = self.vectors[t["items"] + 1]
        return self.mlp(torch.cat([hist, cand, hist * cand], -1)).squeeze(-1)


class FrozenEncoderMLP(CTRModel):
    name = "frozen-mlp"
    Config = FrozenMLPConfig

    def _build(self, train: CTRExamples, items: ItemTable) -> nn.Module:
        vectors, _ = item_vectors(items, load_encoder(self.config.encoder))
        return _MLP(vectors, self.config.hidden, self.config.dropout)

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        hist, mask = _padded(ex.histories, rows)
        return {"items": torch.as_tensor(ex.items[rows]), "history": hist, "history_mask": mask}


# --- cross-encoder -----------------------------------------------------------------------------------------------
class CrossEncoderConfig(CTRConfig):
    encoder: str = DEFAULT_ENCODER
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(3, ge=1)
    tuning: Literal["full", "lora", "top-k", "frozen"] = "full"
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_targets: list[str] | None = None
    top_k: int = Field(2, ge=1)
    head_lr: float | None = Field(None, gt=0, description="learning rate of the new classification head "
                                  "(None = lr); a random head barely moves at a fine-tuning lr in a few steps")
    history_items: int = Field(10, ge=0, description="liked history titles in the input, most recent first")
    max_length: int = Field(160, ge=16)


class _CrossEncoder(nn.Module):
    def __init__(self, c: CrossEncoderConfig):
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model_path(c.encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # one logit; for decoder-only models the head reads the last non-padding token (pad id required)
        self.model: Any = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self._tune(c)

    def _tune(self, c: CrossEncoderConfig) -> None:
        if c.tuning not in TUNINGS:
            raise ConfigError(f"unknown tuning {c.tuning!r}; choose one of {', '.join(TUNINGS)}")
        prefix = self.model.base_model_prefix
        head = [m for n, m in self.model.named_children() if n != prefix]  # classifier / score (+ dropout)
        if c.tuning == "lora":
            from peft import LoraConfig, get_peft_model

            self.model = get_peft_model(self.model, LoraConfig(task_type="SEQ_CLS", r=c.lora_rank, lora_alpha=c.lora_alpha,
                                                               target_modules=c.lora_targets))
            # peft trains the adapters and the classification head (modules_to_save)
            _head_lr(c, [p for n, p in self.model.named_parameters() if p.requires_grad and "lora_" not in n])
            return
        self.model.requires_grad_(c.tuning == "full")
        if c.tuning == "top-k":
            layers = transformer_layers(getattr(self.model, prefix))
            if not 1 <= c.top_k <= len(layers):
                raise ConfigError(f"top_k must be between 1 and the model's {len(layers)} layers, got {c.top_k}")
            for layer in layers[-c.top_k:]:
                layer.requires_grad_(True)
        for module in head:  # the new head always trains (with 'frozen' this is a linear probe)
            module.requires_grad_(True)
            _head_lr(c, list(module.parameters()))

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.squeeze(-1)


def _head_lr(c: CrossEncoderConfig, params: list[nn.Parameter]) -> None:
    """Let the head's parameters learn at ``head_lr`` (the Trainer's optimiser reads ``lr_scale``)."""
    if c.head_lr is not None:
        for p in params:
            p.lr_scale = c.head_lr / c.lr  # type: ignore[attr-defined]


class CrossEncoderCTR(CTRModel):
    """A language model reads "liked titles (most recent first) [SEP] candidate title" -> like / dislike."""

    name = "cross-encoder"
    Config = CrossEncoderConfig

    def _build(self, train: CTRExamples, items: ItemTable) -> nn.Module:
        self.titles_ = np.asarray(items["title"] if "title" in items else items.render("{" + items.fields[0] + "}"),
                                  dtype=object)
        self.encoder_ = _CrossEncoder(self.config)
        return self.encoder_

    def pair_texts(self, ex: CTRExamples, rows: np.ndarray) -> tuple[list[str], list[str]]:
        k = self.config.history_items
        firsts = ["; ".join(str(self.titles_[i]) for i in ex.histories[r][::-1][:k]) or "no history" for r in rows]
        return firsts, [str(self.titles_[ex.items[r]]) for r in rows]

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        first, second = self.pair_texts(ex, rows)
        enc = self.encoder_.tokenizer(first, second, truncation="only_first", max_length=self.config.max_length,
                                      padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


CTR_MODELS: dict[str, type[CTRModel]] = {m.name: m for m in (IdFM, FrozenEncoderMLP, CrossEncoderCTR)}


def create_ctr(name: str, **params: Any) -> CTRModel:
    """A CTR model by name (``id-fm``, ``frozen-mlp``, ``cross-encoder``) with config overrides."""
    if name not in CTR_MODELS:
        raise ConfigError(f"unknown CTR model {name!r}; choose one of {', '.join(CTR_MODELS)}")
    return CTR_MODELS[name](**params)
