"""A Hugging Face encoder that trains: tuning strategies, LoRA adapters, merging and export.

``TunableEncoder`` wraps ``transformers.AutoModel`` + its tokenizer as an ``nn.Module`` whose forward
pools token states into one vector per text (mean / cls / last-token, as ``HFEncoder``). One switch picks
what trains:

- ``full``: every weight;
- ``lora``: low-rank updates of the attention (or named) linear layers through ``peft``; the base
  weights stay frozen; adapters save / load on their own and merge into the base weights;
- ``top-k``: the last ``k`` transformer layers (and the final norm / pooler after them);
- ``frozen``: nothing (the control: the pretrained encoder as is).

``export(folder)`` writes the (merged) model and tokenizer as an ordinary Hugging Face folder: loaded by
``HFEncoder`` it has a new fingerprint, so the embedding cache never mixes vectors of the base and the
fine-tuned model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.config import validate
from lmrec.text import backbone
from lmrec.text.backbone import TUNINGS, Pooling, Tuning, TuningOptions
from lmrec.text.encoder import check_texts

__all__ = ["TUNINGS", "TunableEncoder", "Tuning", "TuningOptions"]


class TunableEncoder(nn.Module):
    def __init__(self, model: str | Path, pooling: Pooling | None = None, normalize: bool = True,
                 max_length: int = 128):
        super().__init__()
        self.path = backbone.resolve_model_path(model)
        self.config_json = backbone.read_config(self.path)
        self.pooling: Pooling = pooling or backbone.default_pooling(self.config_json)
        self.normalize, self.max_length = normalize, max_length
        self.tokenizer = backbone.load_tokenizer(self.path)
        self.model = backbone.load_model(self.path)
        self.tuning: Tuning = "full"

    @property
    def dim(self) -> int:
        return backbone.hidden_size(self.config_json, self.path)

    # --- forward ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(check_texts(texts), padding=True, truncation=True, return_tensors="pt",
                             max_length=max_length or self.max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vec = backbone.pool(hidden, attention_mask, self.pooling, self.tokenizer.padding_side)
        return F.normalize(vec, dim=-1) if self.normalize else vec

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None) -> np.ndarray:
        """float32 ``[len(texts), dim]`` in input order (length-sorted batches, eval mode)."""
        texts = check_texts(texts)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = {k: v.to(device) for k, v in self.tokenize([texts[i] for i in idx], max_length).items()}
            out[idx] = self(**enc).float().cpu().numpy()
        self.train(was_training)
        return out

    # --- what trains -----------------------------------------------------------------------------------------
    def apply_tuning(self, tuning: Tuning | TuningOptions, **options: Any) -> None:
        """Choose what trains: a model config's ``TuningOptions``, or ``tuning`` and its options by name
        (``lora_rank``, ``lora_alpha``, ``lora_targets``, ``lora_dropout``, ``top_k``); see
        ``lmrec.text.backbone.apply_tuning``."""
        if not isinstance(tuning, TuningOptions):
            tuning = validate(TuningOptions, {"tuning": tuning, **options}, where="tuning")
        self.model = backbone.apply_tuning(self.model, tuning)
        self.tuning = tuning.tuning

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def has_adapter(self) -> bool:
        return backbone.has_adapter(self.model)

    def save_adapter(self, folder: str | Path) -> Path:
        """The LoRA adapter alone (``adapter_config.json`` + weights: a few hundred kB)."""
        return backbone.save_adapter(self.model, Path(folder))

    def load_adapter(self, folder: str | Path) -> None:
        """Put a saved LoRA adapter on this (base) encoder."""
        self.model = backbone.load_adapter(self.model, Path(folder))
        self.tuning = "lora"

    def merge(self) -> None:
        """Fold LoRA updates into the base weights; afterwards the encoder is a plain model."""
        self.model = backbone.merge(self.model)

    def export(self, folder: str | Path) -> Path:
        """An ordinary Hugging Face model folder (merged weights + tokenizer) that ``HFEncoder`` loads; it
        keeps the original architecture name, so it gets the same default pooling."""
        self.merge()
        return backbone.save_pretrained(self.model, self.tokenizer, Path(folder),
                                        self.config_json.get("architectures"))
