"""Text encoders: text -> float32 vectors. One protocol, several backends.

- ``HFEncoder``: any Hugging Face model through ``transformers.AutoModel``, pooling ``mean`` | ``cls`` |
  ``last-token`` (decoder-only LLMs), optional instruction prefix and L2 normalisation, length-sorted
  batches, device auto-selection and fp16/bf16 on GPU. The model loads lazily on the first ``encode``.
- ``SentenceTransformerEncoder``: models published in the sentence-transformers format.
- ``HashingEncoder`` (deterministic, no model; for tests) and ``TfidfEncoder`` (fitted vocabulary).

Every encoder has a ``fingerprint`` naming everything that changes its vectors (model files, pooling,
normalisation, max length, instruction, dtype), so the embedding cache can never serve stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from lmrec.errors import ConfigError, DataError
from lmrec.progress import progress
from lmrec.text import backbone
from lmrec.text.backbone import DEFAULT_ENCODER, EncoderError, Pooling

__all__ = ["DEFAULT_ENCODER", "EncoderError", "HFEncoder", "HashingEncoder", "Pooling", "SentenceTransformerEncoder",
           "TextEncoder", "TfidfEncoder", "check_texts", "load_encoder"]


@runtime_checkable
class TextEncoder(Protocol):
    """``encode(texts) -> float32 [n, dim]``; ``fingerprint`` identifies the vectors it produces."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def check_texts(texts: Sequence[Any]) -> list[str]:
    """Texts must be non-empty strings; the error names the first bad position."""
    if isinstance(texts, str):
        raise DataError("encode() takes a list of texts, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise DataError(f"text {i} is {type(t).__name__} ({t!r}), not a string")
        if not t.strip():
            raise DataError(f"text {i} is empty; drop it or give the item some text (see ItemTable.render)")
    return out


# One model load at a time in a process: transformers imports its classes lazily, and two threads importing
# at once can see a half-initialised module ("cannot import name AutoTokenizer").
_LOADING = threading.RLock()


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def folder_digest(folder: Path) -> str:
    """Identity of a model folder without reading gigabytes: small files fully, large ones by size and
    their first and last MiB (a re-trained or re-quantised model changes these)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
        h.update(str(path.relative_to(folder)).encode())
        size = path.stat().st_size
        h.update(str(size).encode())
        with open(path, "rb") as f:
            if size <= 4 << 20:
                h.update(f.read())
            else:
                h.update(f.read(1 << 20))
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()


def pick_device(device: str = "auto") -> str:
    """``auto``: cuda if available, else mps, else cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class HFEncoder:
    """A Hugging Face model as a text encoder (see module docstring)."""

    def __init__(
        self, model: str | Path, pooling: Pooling | None = None, normalize: bool = True, max_length: int = 256,
        batch_size: int = 64, device: str = "auto", dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto",
        instruction: str = "", revision: str | None = None, name: str | None = None, int8: bool = False,
    ):
        self.path = backbone.resolve_model_path(model, revision)
        if int8 and pick_device(device) != "cpu":
            raise ConfigError("int8 quantisation is for CPU inference; use device cpu or leave int8 off")
        self.int8 = int8
        self.name = name or str(model)
        self.normalize, self.max_length, self.batch_size = normalize, max_length, batch_size
        self.instruction, self.device_request, self.dtype_request = instruction, device, dtype
        config = backbone.read_config(self.path)
        pooling = pooling or backbone.default_pooling(config)
        if pooling not in ("mean", "cls", "last-token"):
            raise ConfigError(f"pooling must be mean, cls or last-token, got {pooling!r}")
        self.pooling: Pooling = pooling
        self._dim = backbone.hidden_size(config, self.path / "config.json")
        self._fingerprint = _digest("hf", folder_digest(self.path), pooling, normalize, max_length, instruction,
                                    self._torch_dtype_name(), *(["int8"] if int8 else []))
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dim(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"HFEncoder({self.name!r}, pooling={self.pooling!r}, dim={self.dim})"

    def _torch_dtype_name(self) -> str:
        device = pick_device(self.device_request)
        if self.dtype_request != "auto":
            return self.dtype_request
        return "float16" if device == "cuda" else "float32"

    def _load(self) -> None:
        with _LOADING:  # threads of a service may ask at once; one loads, the others wait
            if self._model is None:
                self._load_now()

    def _load_now(self) -> None:
        device = pick_device(self.device_request)
        tokenizer = backbone.load_tokenizer(self.path)
        model = backbone.load_model(self.path, dtype=self._torch_dtype_name())
        model.to(device).eval()
        if self.int8:
            model = backbone.quantize_int8(model)
        self._tokenizer, self._device, self._model = tokenizer, device, model  # the model last: it says "loaded"

    def int8_copy(self) -> HFEncoder:
        """The same encoder with int8 linear layers (CPU): for queries, whose vectors only need to be close to
        the float32 item vectors they are compared with. Its fingerprint differs: it never fills the cache
        under the float32 name."""
        return HFEncoder(self.path, self.pooling, self.normalize, self.max_length, self.batch_size, "cpu",
                         "float32", self.instruction, name=f"{self.name} (int8)", int8=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` in input order (encoded longest-first in batches)."""
        import torch

        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self._load()
        inputs = [self.instruction + t for t in texts]
        # token counts decide the order: batches of similar length waste little padding
        lengths = [len(ids) for ids in self._tokenizer(inputs, truncation=True, max_length=self.max_length,
                                                        add_special_tokens=True)["input_ids"]]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with torch.inference_mode():
            for idx in progress(batches, desc=f"encode ({self.name})", total=len(batches), unit="batch"):
                enc = self._tokenizer([inputs[i] for i in idx], padding=True, truncation=True,
                                      max_length=self.max_length, return_tensors="pt").to(self._device)
                hidden = self._model(**enc).last_hidden_state
                vec = backbone.pool(hidden, enc["attention_mask"], self.pooling, self._tokenizer.padding_side).float()
                if self.normalize:
                    vec = torch.nn.functional.normalize(vec, dim=-1)
                out[idx] = vec.cpu().numpy()
        return out



class SentenceTransformerEncoder:
    """A model in the sentence-transformers format (its own pooling / normalisation modules)."""

    def __init__(self, model: str | Path, batch_size: int = 64, device: str = "auto", normalize: bool = True,
                 max_length: int | None = None, name: str | None = None):
        self.path = backbone.resolve_model_path(model)
        self.name = name or str(model)
        self.batch_size, self.device, self.normalize = batch_size, pick_device(device), normalize
        self.max_length = max_length  # None: the model's own max_seq_length
        self._model: Any = None
        self._fingerprint = _digest("st", folder_digest(self.path), normalize, max_length)
        st_cfg = backbone.read_config(self.path)
        self._dim = int(st_cfg.get("hidden_size", 0))

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dim(self) -> int:
        if not self._dim:
            self._load()
            self._dim = int(self._model.get_sentence_embedding_dimension())
        return self._dim

    def _load(self) -> None:
        with _LOADING:
            if self._model is None:
                model = backbone.load_sentence_transformer(self.path, self.device)
                if self.max_length is not None:
                    model.max_seq_length = self.max_length
                self._model = model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        vec = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vec, dtype=np.float32)


class HashingEncoder:
    """Signed feature hashing of word uni- and bigrams (scikit-learn), L2-normalised. No model, fully
    deterministic: for tests and as a text-aware baseline."""

    def __init__(self, dim: int = 256):
        from sklearn.feature_extraction.text import HashingVectorizer

        self._dim = dim
        self._vectorizer = HashingVectorizer(n_features=dim, ngram_range=(1, 2), alternate_sign=True, norm="l2")

    @property
    def fingerprint(self) -> str:
        return _digest("hash", self._dim, "uni+bigram", "l2")

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        return self._vectorizer.transform(texts).toarray().astype(np.float32)


class TfidfEncoder:
    """TF-IDF over a fitted vocabulary (``fit(corpus)`` first); dense float32 output of at most
    ``max_features`` columns, or ``encode_sparse`` for the CSR matrix."""

    def __init__(self, max_features: int = 2048):
        self.max_features = max_features
        self._vectorizer: Any = None
        self._fingerprint = ""

    def fit(self, corpus: Sequence[str]) -> TfidfEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True, dtype=np.float32)
        self._vectorizer.fit(check_texts(corpus))
        vocab = sorted(self._vectorizer.vocabulary_.items())
        self._fingerprint = _digest("tfidf", vocab, self._vectorizer.idf_.round(6).tolist())
        return self

    def _check(self) -> None:
        if self._vectorizer is None:
            raise ConfigError("TfidfEncoder must be fitted on a corpus before encoding")

    @property
    def fingerprint(self) -> str:
        self._check()
        return self._fingerprint

    @property
    def dim(self) -> int:
        self._check()
        return len(self._vectorizer.vocabulary_)

    def encode_sparse(self, texts: Sequence[str]) -> Any:
        self._check()
        return self._vectorizer.transform(check_texts(texts))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_sparse(texts).toarray().astype(np.float32)


def load_encoder(name: str = DEFAULT_ENCODER, **options: Any) -> TextEncoder:
    """An encoder by name: ``minilm`` (default), ``hash`` / ``hash:DIM``, ``st:MODEL`` for the
    sentence-transformers backend, or any Hugging Face id / local folder (``HFEncoder`` options apply)."""
    lowered = name.lower()
    if lowered == "hash" or lowered.startswith("hash:"):
        # no model: batching and token options do not apply, so they are ignored
        dim = int(lowered.split(":", 1)[1]) if ":" in lowered else 256
        return HashingEncoder(dim)
    if lowered.startswith("st:"):
        return SentenceTransformerEncoder(name[3:], name=name, **options)
    if backbone.is_minilm(lowered):
        options = {"pooling": "mean", "normalize": True, "max_length": 256, **options}
    return HFEncoder(name, name=name, **options)
