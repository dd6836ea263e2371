"""Language-model features: text encoders, the embedding cache, and item / user text."""

from lmrec.text.cache import CacheError, EmbeddingCache
from lmrec.text.encoder import (
    DEFAULT_ENCODER,
    EncoderError,
    HashingEncoder,
    HFEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    TfidfEncoder,
    load_encoder,
)

__all__ = [
    "DEFAULT_ENCODER", "CacheError", "EmbeddingCache", "EncoderError", "HFEncoder", "HashingEncoder",
    "SentenceTransformerEncoder", "TextEncoder", "TfidfEncoder", "load_encoder",
]
