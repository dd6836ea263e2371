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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.errors import ConfigError
from lmrec.text.encoder import (
    EncoderError,
    Pooling,
    _is_decoder_only,
    _read_json,
    check_texts,
    resolve_model_path,
)

Tuning = Literal["full", "lora", "top-k", "frozen"]
TUNINGS = ("full", "lora", "top-k", "frozen")


class TunableEncoder(nn.Module):
    def __init__(self, model: str | Path, pooling: Pooling | None = None, normalize: bool = True,
                 max_length: int = 128):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model_path(model)
        config = _read_json(self.path / "config.json")
        self.pooling: Pooling = pooling or ("last-token" if _is_decoder_only(config) else "mean")
        self.normalize, self.max_length = normalize, max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model: Any = AutoModel.from_pretrained(self.path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise EncoderError(f"could not load the model in {self.path}: {' '.join(str(exc).split())[:300]}") from None
        if self.tokenizer.pad_token is None:  # decoder-only tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tuning: Tuning = "full"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    # --- forward ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(check_texts(texts), padding=True, truncation=True, return_tensors="pt",
                             max_length=max_length or self.max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            vec = hidden[:, 0]
        elif self.pooling == "mean":
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        elif self.tokenizer.padding_side == "left":
            vec = hidden[:, -1]
        else:
            vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), attention_mask.sum(1) - 1]
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
    def apply_tuning(self, tuning: Tuning, lora_rank: int = 8, lora_alpha: float = 16.0,
                     lora_targets: list[str] | None = None, lora_dropout: float = 0.0, top_k: int = 2) -> None:
        if tuning not in TUNINGS:
            raise ConfigError(f"unknown tuning {tuning!r}; choose one of {', '.join(TUNINGS)}")
        self.tuning = tuning
        if tuning == "full":
            self.model.requires_grad_(True)
        elif tuning == "frozen":
            self.model.requires_grad_(False)
        elif tuning == "top-k":
            self.model.requires_grad_(False)
            layers = transformer_layers(self.model)
            if not 1 <= top_k <= len(layers):
                raise ConfigError(f"top_k must be between 1 and the model's {len(layers)} layers, got {top_k}")
            for layer in layers[-top_k:]:
                layer.requires_grad_(True)
            for module in _after_layers(self.model):
                module.requires_grad_(True)
        else:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                target_modules=lora_targets)
            try:
                self.model = get_peft_model(self.model, config)
            except ValueError as exc:  # e.g. no default targets known for this architecture
                raise ConfigError(f"LoRA could not be applied: {exc}; name the layers with lora_targets") from None

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "merge_and_unload")

    def save_adapter(self, folder: str | Path) -> Path:
        """The LoRA adapter alone (``adapter_config.json`` + weights: a few hundred kB)."""
        if not self.has_adapter:
            raise ConfigError("this encoder has no LoRA adapter to save (tuning is not 'lora', or it was merged)")
        self.model.save_pretrained(str(folder))
        return Path(folder)

    def load_adapter(self, folder: str | Path) -> None:
        """Put a saved LoRA adapter on this (base) encoder."""
        from peft import PeftModel

        if self.has_adapter:
            raise ConfigError("this encoder already has an adapter")
        self.model = PeftModel.from_pretrained(self.model, str(folder))
        self.tuning = "lora"

    def merge(self) -> None:
        """Fold LoRA updates into the base weights; afterwards the encoder is a plain model."""
        if self.has_adapter:
            self.model = self.model.merge_and_unload()

    def export(self, folder: str | Path) -> Path:
        """An ordinary Hugging Face model folder (merged weights + tokenizer) that ``HFEncoder`` loads."""
        self.merge()
        folder = Path(folder)
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        # save_pretrained names the bare backbone (e.g. LlamaModel); keep the original architecture name so
        # HFEncoder picks the same default pooling (last-token for decoder-only models)
        config = json.loads((folder / "config.json").read_text())
        original = _read_json(self.path / "config.json").get("architectures")
        if original:
            config["architectures"] = original
            (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer layers: its ``ModuleList`` holding the most parameters
    (``encoder.layer`` in BERT, ``layers`` in Llama, ``h`` in GPT-2), found without per-family code."""
    best, size = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            n = sum(p.numel() for p in module.parameters())
            if n > size:
                best, size = module, n
    if best is None:
        raise ConfigError(f"cannot find the transformer layers of {type(model).__name__} for top-k tuning")
    return best


def _after_layers(model: nn.Module) -> list[nn.Module]:
    """Modules applied after the layer stack (final norm, pooler): trained with the top layers."""
    names = ("norm", "final_layer_norm", "ln_f", "pooler")
    return [m for n, m in model.named_children() if n in names]
