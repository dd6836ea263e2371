"""TextSeqRec: a transferable sequential recommender whose item vectors come from text.

Each item's cached language-model embedding goes through a trainable adaptor (parametric whitening +
mixture of linear experts, ``lmrec.nn.adaptor``), optionally plus an ID embedding; a causal transformer
encodes the sequence; scores are (temperature-scaled cosine or dot) similarities against the adapted
vectors of all items. Since items are represented by text, items never seen in training are scored
without retraining (inductive), and the adaptor, sequence encoder and ID table are separately freezable
for transfer to other domains.

``lm_prior=True`` adds a text-match term to every score: a learned scale times the cosine between the
item's raw language-model vector and the recency-weighted mean of the history's raw vectors (what the
frozen ``lmcontent`` model ranks by). The adaptor must learn its mapping from interactions, so on a new
catalogue with little or no data it has not yet caught up with the language model's own notion of
similar text; the prior keeps that notion available from the first step, and training decides its weight.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lmrec.data.batching import SequenceBatch, query_batch
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.pretrained import PretrainedArtifact
from lmrec.models.sequential import SequentialConfig, SequentialRecommender
from lmrec.models.text_query import TextServing
from lmrec.nn.adaptor import MoEAdaptor
from lmrec.nn.transformer import SequenceEncoder
from lmrec.text import backbone
from lmrec.text.backbone import DEFAULT_ENCODER
from lmrec.text.encoder import TextEncoder, load_encoder
from lmrec.text.texts import item_vectors, matching_encoder

PARTS = ("adaptor", "encoder", "ids")


class TextSeqRecConfig(SequentialConfig):
    # Larger batches than SASRec: every step adapts the whole catalogue's text vectors once, so fewer,
    # bigger steps cost less; 512 at lr 2e-3 beat 128 at 1e-3 on Amazon-Scientific's valid part
    # (docs/benchmarks.md, "Sequence models").
    batch_size: int = Field(512, ge=1)
    lr: float = Field(2e-3, gt=0)
    encoder: str = Field(DEFAULT_ENCODER, description="text encoder (minilm, st:NAME, a Hugging Face id, hash[:dim])")
    template: str | None = Field(None, description="item text template; default: the dataset's descriptive fields")
    max_text_length: int = Field(128, ge=8, description="tokens per item text")
    experts: int = Field(8, ge=1, description="linear experts in the adaptor")
    adaptor_dropout: float = Field(0.2, ge=0, lt=1, description="dropout on the language-model vectors")
    id_mode: Literal["none", "add"] = Field("none", description="add a trainable ID embedding to the text vector")
    similarity: Literal["cosine", "dot"] = "cosine"
    temperature: float = Field(0.07, gt=0, description="logits = cosine / temperature (cosine similarity only)")
    freeze: list[Literal["adaptor", "encoder", "ids"]] = Field(default_factory=list, description="parts not trained")
    pretrained: str | None = Field(None, description="folder of a `lmrec pretrain` artifact to start from")
    tuning: Literal["full", "adapter", "lora", "none"] = Field(
        "full", description="what trains: everything; the adaptor + layer norms; LoRA on the transformer + the "
        "adaptor; nothing (zero-shot use of a pretrained model)")
    lora_rank: int = Field(8, ge=1, description="LoRA rank (tuning=lora)")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (tuning=lora)")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lm_prior: bool = Field(False, description="add a learned-weight cosine between the item's raw LM vector and "
                           "the recency-weighted mean of the history's (see the module docstring)")
    # 1 interaction: LMContent's half-life, chosen there on validation (recent interests dominate)
    lm_prior_half_life: float = Field(1.0, gt=0, description="recency half-life of the prior, in interactions")


# Config keys that fix the shapes and meaning of pretrained weights: a transfer must keep them.
ARCHITECTURE_KEYS = ("encoder", "max_text_length", "template", "dim", "layers", "heads", "max_len", "experts",
                     "similarity", "lm_prior", "lm_prior_half_life")
LORA_TARGETS = ["qkv", "proj", "ff.0", "ff.2"]  # the linear layers of every transformer block


class LMPrior(nn.Module):
    """The text-match term: ``scale * cos(pooled history LM vectors, item LM vector)``.

    Pooling is causal, per position: position ``t`` sees ``sum_{s<=t} 0.5 ** ((t - s) / half_life) x_s``
    over the items present, so every training position gets the prior its own prefix would get at
    recommendation time."""

    decay: torch.Tensor  # [max_len, max_len] buffer

    # The scale is learned in log space, stored divided by this gain: Adam moves a parameter by about lr per
    # step, so the stored value moves the log-scale GAIN times faster. At the sequence model's lr (2e-3) the
    # unscaled log-scale can change by at most ~0.3 in a short fine-tuning run, too little to switch the
    # prior off on a target where it misleads (the planted next-kind test needs a factor of ~200).
    GAIN = 10.0

    def __init__(self, max_len: int, half_life: float, scale: float):
        super().__init__()
        self.raw_scale = nn.Parameter(torch.tensor(float(scale)).log() / self.GAIN)  # scale = exp(GAIN * raw)
        age = torch.arange(max_len)[:, None] - torch.arange(max_len)[None, :]  # t - s
        decay = torch.where(age >= 0, 0.5 ** (age.clamp(min=0) / half_life), torch.zeros(()))
        self.register_buffer("decay", decay.float(), persistent=False)

    @property
    def scale(self) -> torch.Tensor:
        return (self.raw_scale * self.GAIN).exp()

    def pool(self, lm: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``lm`` ``[B, L, e]`` raw vectors of the sequence, ``valid`` ``[B, L]`` -> ``[B, L, e]`` unit vectors."""
        length = lm.shape[1]
        decay = self.decay[:length, :length]  # depends on t - s only, so any L x L corner is the same matrix
        pooled = torch.einsum("ts,bse->bte", decay, lm * valid.unsqueeze(-1))
        return F.normalize(pooled, dim=-1)


class TextSeqNet(nn.Module):
    """With ``lm_prior``, a state is ``[encoder state (dim) | pooled raw LM vector (lm_dim)]`` and an item
    vector ``[adapted vector (dim) | raw LM vector]``; ``similarity`` scores each part its own way."""

    lm: torch.Tensor  # [n_items, lm_dim] buffer
    trained: torch.Tensor  # [n_items, 1] buffer: 1 for items seen in training

    def __init__(self, lm: np.ndarray, trained: np.ndarray, c: TextSeqRecConfig):
        super().__init__()
        self.c = c
        # Frozen inputs: not parameters, and not in the state dict (saved once, with the model's inputs).
        self.register_buffer("lm", torch.as_tensor(lm, dtype=torch.float32), persistent=False)
        self.register_buffer("trained", torch.as_tensor(trained, dtype=torch.float32)[:, None], persistent=False)
        self.adaptor = MoEAdaptor(lm.shape[1], c.dim, c.experts, c.adaptor_dropout)
        self.ids = nn.Embedding(lm.shape[0], c.dim) if c.id_mode == "add" else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.02)
        self.encoder = SequenceEncoder(c.dim, c.layers, c.heads, c.max_len, c.dropout)
        # initial scale 1 / temperature: the text match counts as much as the model's own cosine
        self.prior = LMPrior(c.max_len, c.lm_prior_half_life, 1 / c.temperature) if c.lm_prior else None
        for part in c.freeze:
            module = getattr(self, part)
            if module is None:
                raise ConfigError("freeze=['ids'] needs id_mode='add'")
            module.requires_grad_(False)

    def load_pretrained(self, weights: dict[str, torch.Tensor]) -> None:
        """Load an artifact's adaptor + encoder weights; a target ID table (id_mode='add') starts fresh."""
        missing, unexpected = self.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith("ids.")]
        if missing or unexpected:
            raise ConfigError(f"pretrained weights do not fit this model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")

    def adapted(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[n_items, dim]`` (or ``[len(ids), dim]``): adaptor(LM vector) [+ ID embedding of trained items;
        items unseen in training keep the text part only, their IDs were never learned]."""
        lm = self.lm if ids is None else self.lm[ids]
        table = self.adaptor(lm)
        if self.ids is not None:
            idv = self.ids.weight if ids is None else self.ids(ids)
            table = table + idv * (self.trained if ids is None else self.trained[ids])
        return table

    def item_table(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The adapted vectors, followed by the unit raw LM vectors when the prior is on."""
        table = self.adapted(ids)
        if self.prior is None:
            return table
        return torch.cat([table, F.normalize(self.lm if ids is None else self.lm[ids], dim=-1)], dim=-1)

    def sequence_states(self, batch: SequenceBatch, text: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``; with ``text`` (``[B, lm_dim]`` language-model vectors of free text), each row reads
        its text as one more item after its history (``[B, L + 1, d]``): text and items share one space."""
        valid = batch.valid
        items = batch.tokens.clamp(min=1) - 1
        if len(items) == 1:  # one row (e.g. per-user gradients under torch.func.vmap, where unique cannot run)
            x = self.adapted(items[0]).unsqueeze(0) * valid.unsqueeze(-1)
            lm = self.lm[items] if self.prior is not None else None
        else:  # adapt each item present in the batch once
            present, inverse = torch.unique(items, return_inverse=True)
            x = self.adapted(present)[inverse] * valid.unsqueeze(-1)
            lm = self.lm[present][inverse] if self.prior is not None else None
        if text is not None:
            x = torch.cat([x, self.adaptor(text).unsqueeze(1)], dim=1)
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)
            lm = None if lm is None else torch.cat([lm, text.unsqueeze(1)], dim=1)
        states = self.encoder(x, valid)
        if self.prior is None:
            return states
        return torch.cat([states, self.prior.pool(lm, valid)], dim=-1)

    def states_with_item_text(self, batch: SequenceBatch, item: int, lm: torch.Tensor) -> torch.Tensor:
        """The last state of ``batch``'s one sequence once for each row of ``lm`` (``[m, lm_dim]``), with
        ``item``'s text vector replaced by that row wherever it occurs (its ID part kept)."""
        tokens = batch.tokens.expand(len(lm), -1)
        valid = tokens != 0
        present, inverse = torch.unique(tokens.clamp(min=1) - 1, return_inverse=True)
        x = self.adapted(present)[inverse]
        at = (tokens == item + 1).unsqueeze(-1)
        replaced = self.adaptor(lm).unsqueeze(1) + (self.adapted(torch.tensor([item], device=lm.device))
                                                     - self.adaptor(self.lm[item:item + 1])).unsqueeze(1)
        x = torch.where(at, replaced, x) * valid.unsqueeze(-1)
        states = self.encoder(x, valid)
        if self.prior is not None:
            raw = torch.where(at, lm.unsqueeze(1), self.lm[present][inverse])
            states = torch.cat([states, self.prior.pool(raw, valid)], dim=-1)
        return states[:, -1]

    def encode_queries(self, batch: SequenceBatch, text: torch.Tensor | None = None) -> torch.Tensor:
        return self.sequence_states(batch, text)[:, -1]

    def extend(self, lm: np.ndarray) -> None:
        """Append items known only by their text (``[n_new, lm_dim]``): never trained, so no ID part."""
        new = torch.as_tensor(lm, dtype=torch.float32, device=self.lm.device)
        self.lm = torch.cat([self.lm, new])
        self.trained = torch.cat([self.trained, torch.zeros(len(new), 1, device=self.trained.device)])
        if self.ids is not None:  # rows for the new ids, multiplied by trained = 0 wherever they are read
            old = self.ids
            self.ids = nn.Embedding(old.num_embeddings + len(new), old.embedding_dim).to(old.weight.device)
            with torch.no_grad():
                self.ids.weight.zero_()
                self.ids.weight[: old.num_embeddings] = old.weight
            self.ids.requires_grad_(old.weight.requires_grad)

    def similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        d = self.c.dim
        s, i = states[..., :d], items[..., :d]
        if self.c.similarity == "dot":
            logits = s @ i.T
        else:  # temperature applied to the [N, d] side: one pass less over the [N, n_items] logits
            logits = (F.normalize(s, dim=-1) / self.c.temperature) @ F.normalize(i, dim=-1).T
        if self.prior is None:
            return logits
        # both parts are unit vectors and constants (no gradient): only the scale learns from this product
        return logits + self.prior.scale * (states[..., d:] @ items[..., d:].T)

    # ``similarity`` as one inner product, dot_queries(s) @ dot_items(i).T (an index searches that form)
    def dot_queries(self, states: torch.Tensor) -> torch.Tensor:
        d = self.c.dim
        s = states[..., :d] if self.c.similarity == "dot" else F.normalize(states[..., :d], dim=-1) / self.c.temperature
        return s if self.prior is None else torch.cat([s, self.prior.scale * states[..., d:]], dim=-1)

    def dot_items(self, items: torch.Tensor) -> torch.Tensor:
        d = self.c.dim
        i = items[..., :d] if self.c.similarity == "dot" else F.normalize(items[..., :d], dim=-1)
        return i if self.prior is None else torch.cat([i, items[..., d:]], dim=-1)

    def pair_similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        d = self.c.dim
        s, i = states[..., :d], items[..., :d]
        if self.c.similarity == "dot":
            sims = (s * i).sum(-1)
        else:
            sims = (F.normalize(s, dim=-1) * F.normalize(i, dim=-1)).sum(-1) / self.c.temperature
        if self.prior is None:
            return sims
        return sims + self.prior.scale * (states[..., d:] * items[..., d:]).sum(-1)


class TextSeqRec(TextServing, SequentialRecommender):
    """Text-based transferable sequential recommender (UniSRec-style adaptor, trained from scratch here)."""

    name = "textseq"
    Config = TextSeqRecConfig

    def _prepare_inputs(self, train: Interactions, items: ItemTable | None) -> dict[str, np.ndarray]:
        if items is None or not items.fields:
            raise ConfigError(f"{self.name} needs item text: pass the dataset's item table to fit()")
        c = self.config
        encoder = load_encoder(c.encoder, max_length=c.max_text_length)
        self.encoder_fingerprint_ = encoder.fingerprint
        vectors, has_text = item_vectors(items, encoder, c.template)
        if not has_text.any():
            raise ConfigError(f"{self.name}: no item has text under the template; check the item fields")
        return {"lm": vectors, "has_text": has_text}

    def _new_net(self, n_items: int, inputs: dict[str, np.ndarray], trained: np.ndarray) -> nn.Module:
        if inputs["lm"].shape[0] != n_items:
            raise ConfigError(f"{self.name}: {inputs['lm'].shape[0]} item vectors for {n_items} items")
        return TextSeqNet(inputs["lm"], trained, self.config)

    # --- transfer: start from a pretrained artifact, choose what trains --------------------------------------
    def _before_training(self, net: nn.Module) -> None:
        c = self.config
        assert isinstance(net, TextSeqNet)
        if c.pretrained:
            artifact = PretrainedArtifact.load(c.pretrained)
            check_compatible(artifact, c.model_dump(), self.encoder_fingerprint_)
            net.load_pretrained(artifact.weights)
        if c.tuning in ("adapter", "lora"):
            net.encoder.requires_grad_(False)
            if c.tuning == "adapter":
                for module in net.encoder.modules():
                    if isinstance(module, nn.LayerNorm):
                        module.requires_grad_(True)
            else:  # freezes the encoder's own weights, trains the low-rank updates
                net.encoder = backbone.with_lora(net.encoder, c.lora_rank, c.lora_alpha, LORA_TARGETS, c.lora_dropout)

    def _trains(self) -> bool:
        return self.config.tuning != "none"

    # --- serving: new items and free text, read by the encoder the model was trained with -------------------
    def _encoder(self) -> TextEncoder:
        if getattr(self, "_text_encoder", None) is None:
            self._text_encoder = matching_encoder(self.config.encoder, getattr(self, "encoder_fingerprint_", None),
                                                  max_length=self.config.max_text_length)
        return self._text_encoder

    def add_items(self, items: ItemTable, new: np.ndarray, vectors: np.ndarray) -> None:
        self._check_added(items, new, vectors)
        assert self.n_items_ is not None
        self.inputs_ = {**self.inputs_, "lm": np.concatenate([self.inputs_["lm"], vectors]),
                        "has_text": np.concatenate([self.inputs_["has_text"], np.ones(len(new), dtype=bool)])}
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(new), dtype=np.float32)])
        net = self._net()
        net.extend(vectors)
        self.n_items_ += len(new)
        if self._table is not None and not self.live_weights:  # adapt the new rows only, not the catalogue
            with torch.no_grad():
                rows = net.item_table(torch.as_tensor(np.asarray(new), device=self._table.device))
            self._table = torch.cat([self._table, rows])

    def score_item_texts(self, queries: Queries, texts: list[str]) -> np.ndarray:
        """Scores of items that would have these texts (their text part: no ID embedding), for the one user of
        ``queries``."""
        net = self._net()
        device = next(net.parameters()).device
        lm = torch.as_tensor(self._encoder().encode(texts), dtype=torch.float32, device=device)
        with torch.no_grad():
            rows = net.adaptor(lm)
            if net.prior is not None:
                rows = torch.cat([rows, F.normalize(lm, dim=-1)], dim=-1)
            batch = query_batch(queries.sequences[:1], self.config.max_len).to(device)
            return net.similarity(net.encode_queries(batch), rows)[0].float().cpu().numpy()

    def score_with_history_texts(self, queries: Queries, history_item: int, texts: list[str], item: int) -> np.ndarray:
        """``item``'s score for the one user of ``queries`` if ``history_item`` read each of ``texts``."""
        net = self._net()
        device = next(net.parameters()).device
        lm = torch.as_tensor(self._encoder().encode(texts), dtype=torch.float32, device=device)
        with torch.no_grad():
            batch = query_batch(queries.sequences[:1], self.config.max_len).to(device)
            states = net.states_with_item_text(batch, history_item, lm)
            target = self._item_table(net)[item:item + 1]
            return net.similarity(states, target)[:, 0].float().cpu().numpy()

    def score_text(self, queries: Queries, texts: list[str]) -> np.ndarray:
        self._check_fitted()
        if len(texts) != len(queries):
            raise ConfigError(f"{len(texts)} texts for {len(queries)} queries")
        net = self._net()
        device = next(net.parameters()).device
        text = torch.as_tensor(self.query_encoder().encode(texts), dtype=torch.float32, device=device)
        with torch.no_grad():
            # one position is the text's: the history keeps its most recent max_len - 1 items
            batch = query_batch(queries.sequences, max(self.config.max_len - 1, 1)).to(device)
            if self.config.max_len == 1:
                batch.tokens.zero_()  # a one-position model reads the text alone
            states = net.encode_queries(batch, text)
            return net.similarity(states, self._item_table(net)).float().cpu().numpy()

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "encoder_fingerprint_": getattr(self, "encoder_fingerprint_", None)}

    def _after_training(self, net: nn.Module) -> None:
        # merged LoRA weights make an ordinary network: saving, loading and scoring need no peft
        if self.config.tuning == "lora":
            assert isinstance(net, TextSeqNet)
            net.encoder = backbone.merge(net.encoder)


def check_compatible(artifact: PretrainedArtifact, config: dict[str, Any], encoder_fingerprint: str) -> None:
    """Refuse a target model whose architecture or text encoder differs from the pretrained one."""
    # a key added after the artifact was made held its default value then
    pretrained = {k: artifact.config.get(k, TextSeqRecConfig.model_fields[k].default) for k in ARCHITECTURE_KEYS}
    differ = [f"{k}: pretrained {pretrained[k]!r}, now {config.get(k)!r}"
              for k in ARCHITECTURE_KEYS if pretrained[k] != config.get(k)]
    if differ:
        raise ConfigError("the model does not match the pretrained artifact (" + "; ".join(differ) +
                          "); leave these keys at the artifact's values")
    if encoder_fingerprint != artifact.encoder_fingerprint:
        raise ConfigError(
            f"the text encoder {config.get('encoder')!r} now gives different vectors than when the artifact "
            f"was pretrained (fingerprint {encoder_fingerprint[:12]} vs {artifact.encoder_fingerprint[:12]}): "
            "the model files or encoder options changed. Install the encoder version used for pretraining, "
            "or pretrain again with this one (the pretrain job with the encoder option); item vectors are "
            "re-encoded into the cache under the new fingerprint automatically")
