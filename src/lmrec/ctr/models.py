"""CTR models on ``CTRExamples``: an ID factorisation machine, a frozen-encoder MLP, a cross-encoder.

All train through ``lmrec.train.Trainer`` (BCE on logits, early stopping on validation AUC) and share
``fit(train, items, valid)``, ``predict(examples) -> probabilities``, ``evaluate(examples) -> {auc, logloss}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lmrec.ctr.data import CTRExamples
from lmrec.ctr.metrics import auc, log_loss
from lmrec.data.items import ItemTable
from lmrec.errors import ConfigError
from lmrec.models.base import Model, load_module_state, module_state
from lmrec.nn.losses import BinaryCrossEntropy
from lmrec.text import backbone
from lmrec.text.backbone import DEFAULT_ENCODER, TuningOptions
from lmrec.text.encoder import load_encoder
from lmrec.text.texts import item_vectors
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


class CTRModel(Model):
    """Pointwise like / dislike models: ``fit(train, items, valid)`` on ``CTRExamples``,
    ``predict(examples) -> probabilities``. The network is built from arrays (``_inputs``) that are saved
    with it, so a loaded model needs neither the dataset nor the encoder."""

    kind: ClassVar[str] = "ctr"
    Config: ClassVar[type[CTRConfig]] = CTRConfig

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net_: nn.Module | None = None
        self.inputs_: dict[str, Any] = {}
        self.train_result_: TrainResult | None = None
        self.trainable_params_ = 0

    # subclasses: the arrays the network is built from, the network, and example rows as tensors
    def _inputs(self, train: CTRExamples, items: ItemTable) -> dict[str, Any]:
        return {}

    def _new_net(self, inputs: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def _before_training(self, net: nn.Module) -> None:
        """Hook: choose what trains (not on load)."""

    def _after_training(self, net: nn.Module) -> None:
        """Hook: e.g. merge LoRA so the saved network is plain."""

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def fit(self, train: CTRExamples, items: ItemTable, valid: CTRExamples | None = None) -> CTRModel:
        if len(train) == 0:
            raise ConfigError(f"cannot fit {self.name!r} on no examples")
        c = self.config
        torch.manual_seed(c.seed)
        self.inputs_ = self._inputs(train, items)
        self.net_ = self._new_net(self.inputs_)
        self._before_training(self.net_)
        self.trainable_params_ = sum(p.numel() for p in self.net_.parameters() if p.requires_grad)
        data = RowBatches(len(train), c.batch_size, c.seed, lambda rows: self._batch(train, rows))
        check = valid.sample(c.valid_rows, seed=c.seed) if valid is not None else None
        self.train_result_ = Trainer(c).fit(self.net_, BinaryCrossEntropy(), data,
                                            (lambda: self.evaluate(check)) if check is not None else None)
        self._after_training(self.net_)
        return self

    def _check_fitted(self) -> None:
        if self.net_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")

    def _state(self) -> dict[str, Any]:
        assert self.net_ is not None
        return {**{f"inputs.{k}": v for k, v in self.inputs_.items()}, **module_state(self.net_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.inputs_ = {k[len("inputs."):]: v for k, v in state.items() if k.startswith("inputs.")}
        self.net_ = self._new_net(self.inputs_)
        load_module_state(self.net_, state)
        self.net_.eval()

    def _batch(self, ex: CTRExamples, rows: np.ndarray) -> TensorBatch:
        return TensorBatch({**self._tensors(ex, rows), "labels": torch.as_tensor(ex.labels[rows], dtype=torch.float32)})

    @torch.no_grad()
    def predict(self, ex: CTRExamples, batch_size: int = 512) -> np.ndarray:
        """Like probabilities ``[len(ex)]``."""
        self._check_fitted()
        assert self.net_ is not None
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

    def _inputs(self, train: CTRExamples, items: ItemTable) -> dict[str, Any]:
        # every user of the split gets a row; users absent from training keep their (small, random) init
        return {"sizes": np.array([train.n_users, len(items)], dtype=np.int64)}

    def _new_net(self, inputs: dict[str, Any]) -> nn.Module:
        n_users, n_items = (int(n) for n in inputs["sizes"])
        return _FM(n_users, n_items, self.config.dim)

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

    def _inputs(self, train: CTRExamples, items: ItemTable) -> dict[str, Any]:
        vectors, _ = item_vectors(items, load_encoder(self.config.encoder))
        return {"vectors": vectors}

    def _new_net(self, inputs: dict[str, Any]) -> nn.Module:
        return _MLP(inputs["vectors"], self.config.hidden, self.config.dropout)

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        hist, mask = _padded(ex.histories, rows)
        return {"items": torch.as_tensor(ex.items[rows]), "history": hist, "history_mask": mask}


# --- cross-encoder -----------------------------------------------------------------------------------------------
class CrossEncoderConfig(CTRConfig, TuningOptions):
    encoder: str = DEFAULT_ENCODER
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(3, ge=1)
    head_lr: float | None = Field(None, gt=0, description="learning rate of the new classification head "
                                  "(None = lr); a random head barely moves at a fine-tuning lr in a few steps")
    history_items: int = Field(10, ge=0, description="liked history titles in the input, most recent first")
    max_length: int = Field(160, ge=16)


class _CrossEncoder(nn.Module):
    """A Hugging Face classifier with one logit; decoder-only models read the last non-padding token."""

    def __init__(self, path: Path):
        super().__init__()
        self.tokenizer = backbone.load_tokenizer(path)
        self.model: Any = backbone.load_model(path, head="classifier", pad_token_id=self.tokenizer.pad_token_id)

    def tune(self, c: CrossEncoderConfig) -> None:
        """What trains (``c.tuning``); the new head always trains (with 'frozen': a linear probe)."""
        prefix = self.model.base_model_prefix
        head = [m for n, m in self.model.named_children() if n != prefix]  # classifier / score (+ dropout)
        self.model = backbone.apply_tuning(self.model, c, task_type="SEQ_CLS")
        if c.tuning == "lora":  # peft trains the adapters and the classification head (modules_to_save)
            _head_lr(c, [p for n, p in self.model.named_parameters() if p.requires_grad and "lora_" not in n])
            return
        for module in head:
            module.requires_grad_(True)
            _head_lr(c, list(module.parameters()))

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.squeeze(-1)


def _head_lr(c: CrossEncoderConfig, params: list[nn.Parameter]) -> None:
    """Let the head's parameters learn at ``head_lr`` (the Trainer's optimiser reads ``lr_scale``)."""
    if c.head_lr is not None:
        for p in params:
            p.lr_scale = c.head_lr / c.lr  # type: ignore[attr-defined]


BACKBONE_DIR = "backbone"  # the fine-tuned classifier, as a Hugging Face folder inside the saved model


class CrossEncoderCTR(CTRModel):
    """A language model reads "liked titles (most recent first) [SEP] candidate title" -> like / dislike."""

    name = "cross-encoder"
    Config = CrossEncoderConfig

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.backbone_path_: Path | None = None  # where the network loads from: the base model, or a saved one

    def _inputs(self, train: CTRExamples, items: ItemTable) -> dict[str, Any]:
        self.backbone_path_ = backbone.resolve_model_path(self.config.encoder)
        titles = items["title"] if "title" in items else items.render("{" + items.fields[0] + "}")
        return {"titles": np.asarray(titles, dtype=str)}

    def _new_net(self, inputs: dict[str, Any]) -> nn.Module:
        assert self.backbone_path_ is not None
        return _CrossEncoder(self.backbone_path_)

    def _before_training(self, net: nn.Module) -> None:
        assert isinstance(net, _CrossEncoder)
        net.tune(self.config)

    def _after_training(self, net: nn.Module) -> None:
        assert isinstance(net, _CrossEncoder)
        net.model = backbone.merge(net.model)

    def pair_texts(self, ex: CTRExamples, rows: np.ndarray) -> tuple[list[str], list[str]]:
        k, titles = self.config.history_items, self.inputs_["titles"]
        firsts = ["; ".join(str(titles[i]) for i in ex.histories[r][::-1][:k]) or "no history" for r in rows]
        return firsts, [str(titles[ex.items[r]]) for r in rows]

    def _tensors(self, ex: CTRExamples, rows: np.ndarray) -> dict[str, torch.Tensor]:
        assert isinstance(self.net_, _CrossEncoder)
        first, second = self.pair_texts(ex, rows)
        enc = self.net_.tokenizer(first, second, truncation="only_first", max_length=self.config.max_length,
                                  padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    # --- persistence: the network is a Hugging Face folder of its own -----------------------------------------
    def _state(self) -> dict[str, Any]:
        return {f"inputs.{k}": v for k, v in self.inputs_.items()}

    def _save_files(self, folder: Path) -> None:
        assert isinstance(self.net_, _CrossEncoder)
        backbone.save_pretrained(self.net_.model, self.net_.tokenizer, folder / BACKBONE_DIR)

    def _load_files(self, folder: Path) -> None:
        self.backbone_path_ = folder / BACKBONE_DIR

    def _set_state(self, state: dict[str, Any]) -> None:
        self.inputs_ = {k[len("inputs."):]: v for k, v in state.items() if k.startswith("inputs.")}
        self.net_ = self._new_net(self.inputs_).eval()
