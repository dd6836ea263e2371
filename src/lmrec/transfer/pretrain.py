"""Pretrain one TextSeqRec on several domains at once (``lmrec pretrain``).

Items of all domains share the text -> adaptor mapping and the sequence encoder; no ID embeddings are
learned (they would not transfer). Batches are domain-balanced (``MultiDomainWindows``); the objective
is the sequence-item contrastive loss over the batch's targets, optionally plus the sequence-sequence
contrastive term (``InBatchSoftmax``). Validation is the mean NDCG@10 over the domains' valid parts
(the domain's own catalogue, full ranking), and the best epoch's weights go into the artifact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from lmrec.config import validate
from lmrec.data.batching import MultiDomainWindows, SequenceWindows
from lmrec.data.interactions import Sequences, events_key
from lmrec.errors import ConfigError
from lmrec.eval.ranking import Evaluator
from lmrec.models.pretrained import PretrainedArtifact
from lmrec.models.textseq import TextSeqNet, TextSeqRec, TextSeqRecConfig
from lmrec.nn.losses import InBatchSoftmax, make_loss
from lmrec.progress import logger
from lmrec.text.encoder import load_encoder
from lmrec.train import Trainer, TrainResult, resolve_device
from lmrec.transfer.domains import Domain, load_domain

PRETRAIN_ONLY = ("seq_weight", "item_drop", "valid_users", "batch_domains")


class PretrainConfig(TextSeqRecConfig):
    loss: Literal["ce", "sampled_softmax", "bpr", "bce", "inbatch"] = Field(
        "inbatch", description="inbatch: sequence-item contrastive over the batch's targets (cheap on big catalogues)")
    seq_weight: float = Field(0.0, ge=0, description="weight of the sequence-sequence contrastive term (0 = off)")
    item_drop: float = Field(0.2, ge=0, lt=1, description="share of items dropped to make the two sequence views")
    batch_domains: Literal["mixed", "single"] = Field(
        "mixed", description="mixed: every batch has an equal share of each domain; single: each batch one domain, "
        "domains taking turns (same-domain in-batch negatives)")
    valid_users: int | None = Field(2000, ge=1, description="validate on at most this many users per domain "
                                    "(a fixed random sample; None = all)")


@dataclass
class PretrainRun:
    path: Path
    artifact: PretrainedArtifact
    result: TrainResult
    domains: list[Domain]


def pretrain(datasets: list[str], params: dict[str, Any] | None = None, out: str | Path = "runs/base",
             data_dir: str | Path | None = None) -> PretrainRun:
    """Pretrain on ``datasets`` (names, optionally ``name:split``) and write the artifact to ``out``.
    Checkpoints go to ``out/train`` so an interrupted pretraining resumes where it stopped."""
    if not datasets:
        raise ConfigError("pretrain needs at least one dataset")
    out = Path(out)
    c = validate(PretrainConfig, {"checkpoint_dir": str(out / "train"), **(params or {})}, where="pretrain")
    if c.id_mode != "none" or c.pretrained or c.tuning != "full":
        raise ConfigError("pretraining learns text-based items only: leave id_mode, pretrained and tuning unset "
                          "(ID embeddings do not transfer across domains)")
    started = time.perf_counter()
    encoder = load_encoder(c.encoder, max_length=c.max_text_length)
    domains = [load_domain(name, encoder, c.template, data_dir) for name in datasets]
    offsets = np.cumsum([0] + [d.n_items for d in domains])
    counts = np.concatenate([np.bincount(d.split.train.item, minlength=d.n_items) for d in domains])
    model_config = TextSeqRecConfig(**{k: v for k, v in c.model_dump().items() if k not in PRETRAIN_ONLY})

    torch.manual_seed(c.seed)
    net = TextSeqNet(np.concatenate([d.vectors for d in domains]), counts > 0, model_config)
    windows = [SequenceWindows(_shifted(d.split.train.sequences(), int(off)), c.max_len, c.batch_size, c.windows, c.seed)
               for d, off in zip(domains, offsets)]
    data = MultiDomainWindows(windows, c.batch_size, c.seed, c.batch_domains)
    loss = (InBatchSoftmax(c.seq_weight, c.item_drop, c.mask_history) if c.loss == "inbatch"
            else make_loss(c.loss, len(counts), c.negatives, counts.astype(np.float64), c.mask_history))
    views = [domain_model(net, d, model_config) for d in domains]
    rng = np.random.default_rng(c.seed)
    evaluators = [Evaluator(d.split, "valid", ks=(10, 20), users=_sample(d.split.users("valid"), c.valid_users, rng))
                  for d in domains]
    device = resolve_device(c.device)

    def validate_all() -> dict[str, float]:
        out: dict[str, float] = {}
        for d, view, ev in zip(domains, views, evaluators):
            view.to(device)
            for k, v in ev.evaluate(view, name=f"pretrain (valid {d.name})").means().items():
                out[f"{k}[{d.name}]"] = v
        for metric in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
            out[metric] = float(np.mean([out[f"{metric}[{d.name}]"] for d in domains]))
        return out

    logger.info("pretraining on %s: %d items, %d windows, %d steps per epoch", ", ".join(datasets), len(counts),
                len(data), data.steps_per_epoch)
    result = Trainer(c).fit(net, loss, data, validate_all)
    weights = dict(net.state_dict())
    best = result.history[result.best_epoch - 1].get("valid", {}) if result.history else {}
    summary = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "steps": result.steps,
               "train_seconds": result.train_seconds, "seconds": time.perf_counter() - started,
               "valid_at_best": best, "loss": c.loss, "seq_weight": c.seq_weight,
               "pretrain_config": c.model_dump(mode="json")}
    artifact = PretrainedArtifact(model_config.model_dump(mode="json"), encoder.fingerprint, weights,
                                  [d.describe() for d in domains], summary)
    artifact.save(out)
    logger.info("pretrained artifact written to %s (best epoch %d, mean valid ndcg@10 %s)", out, result.best_epoch,
                result.best_metric)
    return PretrainRun(out, artifact, result, domains)


def domain_model(net: TextSeqNet, domain: Domain, config: TextSeqRecConfig) -> TextSeqRec:
    """A TextSeqRec over ``domain``'s catalogue that shares ``net``'s adaptor and sequence encoder (so it
    follows the weights while they train)."""
    model = TextSeqRec(**config.model_dump())
    train = domain.split.train
    counts = np.bincount(train.item, minlength=domain.n_items)
    view = TextSeqNet(domain.vectors, counts > 0, model.config)
    view.adaptor, view.encoder, view.prior = net.adaptor, net.encoder, net.prior
    model.net_ = view
    model.live_weights = True  # its weights change under it: never keep its item table
    model.inputs_ = {"lm": domain.vectors, "has_text": np.abs(domain.vectors).sum(1) > 0}
    model.popularity_ = counts.astype(np.float32)
    model.n_users_, model.n_items_, model.fit_key_ = train.n_users, train.n_items, events_key(train)
    return model


def _shifted(seqs: Sequences, offset: int) -> Sequences:
    return Sequences(offsets=seqs.offsets, items=seqs.items + offset, times=seqs.times)


def _sample(users: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    return users if n is None or len(users) <= n else np.sort(rng.choice(users, n, replace=False))
