"""TwoTowerLM: fine-tune a Hugging Face encoder for recommendation with an in-batch softmax.

Query side: the user's text (titles of their most recent ``query_items`` history items, most recent
first; see ``lmrec.text.texts.user_text``). Item side: the item's rendered text. One shared encoder by
default (``shared: false`` gives each side its own copy). Training examples are (history prefix -> next
item) pairs, ``samples_per_user`` random positions per user and epoch; every other item of the batch
(and, with ``hard_negatives``, text-similar items) is a negative (InfoNCE), at a fixed or learned
temperature. ``tuning`` picks what trains (``full`` / ``lora`` / ``top-k`` / ``frozen``, see
``lmrec.text.tuning``). After training, LoRA is merged, every item is re-encoded, and recommendation is
a full-ranking dot product. ``export_encoder`` writes the fine-tuned tower as an ordinary Hugging Face
folder that every other lmrec model can use as its encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender
from lmrec.nn.losses import InBatchInfoNCE
from lmrec.text.backbone import DEFAULT_ENCODER, Tuning, TuningOptions
from lmrec.text.texts import default_template
from lmrec.text.tuning import TunableEncoder
from lmrec.train import TrainConfig, Trainer, TrainResult


class TwoTowerConfig(TrainConfig, TuningOptions):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=2, description="queries per step; the other items of the batch are negatives")
    lr: float = Field(2e-4, gt=0)
    encoder: str = Field(DEFAULT_ENCODER, description="Hugging Face model (id or folder) or minilm")
    shared: bool = Field(True, description="one encoder for queries and items")
    tuning: Tuning = "lora"
    template: str | None = Field(None, description="item text template (default: the dataset's descriptive fields)")
    query_items: int = Field(10, ge=1, description="history items rendered into the query text")
    query_max_length: int = Field(128, ge=8)
    item_max_length: int = Field(64, ge=8)
    samples_per_user: int = Field(4, ge=1, description="training examples drawn per user and epoch")
    hard_negatives: int = Field(0, ge=0, description="text-similar negatives added per example (0 = in-batch only)")
    temperature: float = Field(0.05, gt=0)
    learn_temperature: bool = False
    logq_correction: bool = Field(True, description="subtract log(item frequency as a training target) from the "
                                  "in-batch logits, so popular items are not pushed down for being frequent negatives")


@dataclass
class PairBatch:
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    item_ids: torch.Tensor
    item_mask: torch.Tensor
    items: torch.Tensor  # item index of every item-side row (targets first, then hard negatives)
    n_targets: int

    def to(self, device: torch.device | str) -> PairBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device)
        return PairBatch(**moved)


class PairSource:
    """(query text, next item) examples, ``samples_per_user`` per user and epoch, order fixed by (seed, epoch)."""

    def __init__(self, train: Interactions, item_texts: list[str], tower: TunableEncoder, c: TwoTowerConfig,
                 neighbours: np.ndarray | None, item_titles: np.ndarray):
        self.seqs = train.sequences()
        self.users = np.flatnonzero(self.seqs.lengths >= 2)
        if len(self.users) == 0:
            raise ConfigError("no user has two or more interactions: nothing to learn a next item from")
        self.item_texts, self.item_titles, self.tower, self.c = item_texts, item_titles, tower, c
        self.neighbours = neighbours

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.users) * self.c.samples_per_user // self.c.batch_size)

    def target_log_q(self, n_items: int) -> torch.Tensor:
        """log of each item's share of the possible targets (every position after a user's first);
        items never a target get half a count so the log stays finite (they appear only as hard negatives)."""
        counts = np.bincount(np.concatenate([self.seqs[u][1:] for u in self.users]), minlength=n_items).astype(np.float64)
        counts[counts == 0] = 0.5
        return torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32)

    def epoch(self, epoch: int) -> Iterator[PairBatch]:
        c = self.c
        rng = np.random.default_rng([c.seed, epoch])
        users = rng.permutation(np.repeat(self.users, c.samples_per_user))
        for start in range(0, len(users), c.batch_size):
            chunk = users[start:start + c.batch_size]
            queries, targets = [], []
            for u in chunk:
                seq = self.seqs[u]
                t = int(rng.integers(1, len(seq)))
                queries.append(query_text(seq[:t], self.item_titles, c.query_items))
                targets.append(int(seq[t]))
            items = list(targets)
            if self.neighbours is not None and c.hard_negatives:
                items += [x for u, t in zip(chunk, targets) for x in self.hard_negatives(t, self.seqs[u], rng)]
            q = self.tower.tokenize(queries, c.query_max_length)
            i = self.tower.tokenize([self.item_texts[x] for x in items], c.item_max_length)
            yield PairBatch(q["input_ids"], q["attention_mask"], i["input_ids"], i["attention_mask"],
                            torch.as_tensor(items), len(targets))

    def hard_negatives(self, target: int, user_items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``hard_negatives`` picks among the target's text neighbours, never one of the user's own items:
        those are items the user chose, so pushing them away as negatives would teach the wrong thing.
        When every neighbour is the user's, any other item will do."""
        allowed = np.setdiff1d(self.neighbours[target], user_items)
        if len(allowed) == 0:
            allowed = np.setdiff1d(np.arange(len(self.item_texts)), user_items)
        return rng.choice(allowed, self.c.hard_negatives)


def query_text(history: np.ndarray, item_titles: np.ndarray, max_items: int) -> str:
    """The most recent ``max_items`` history titles, most recent first, joined by ``"; "``."""
    recent = [str(item_titles[i]) for i in history[::-1][:max_items] if item_titles[i]]
    return "; ".join(recent) or "no history"


class TwoTowerNet(nn.Module):
    """``query_path`` / ``item_path``: where the towers load from (the base model, or a saved model's folders)."""

    def __init__(self, c: TwoTowerConfig, query_path: str | Path | None = None, item_path: str | Path | None = None):
        super().__init__()
        self.query_tower = TunableEncoder(query_path or c.encoder, max_length=c.query_max_length)
        # registered only when separate, so a shared encoder is stored (and saved) once
        self.own_item_tower = (None if c.shared else
                               TunableEncoder(item_path or c.encoder, max_length=c.item_max_length))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / c.temperature))),
                                      requires_grad=c.learn_temperature)

    @property
    def item_tower(self) -> TunableEncoder:
        return self.own_item_tower if self.own_item_tower is not None else self.query_tower

    def towers(self) -> list[TunableEncoder]:
        return [self.query_tower] + ([self.own_item_tower] if self.own_item_tower is not None else [])


class TwoTowerLM(Recommender):
    """Language-model two-tower retrieval, fine-tuned on interactions (see the module docstring)."""

    name = "twotower"
    Config = TwoTowerConfig
    uses_validation: ClassVar[bool] = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net_: TwoTowerNet | None = None
        self.train_result_: TrainResult | None = None
        self.trainable_params_: int | None = None

    def _fit(self, train: Interactions, items: ItemTable | None, validation: Any = None) -> None:
        if items is None or not items.fields:
            raise ConfigError(f"{self.name} needs item text: pass the dataset's item table to fit()")
        c = self.config
        template = c.template or default_template(items)
        self.item_texts_ = np.asarray([t or "unknown item" for t in items.render(template)], dtype=str)
        self.query_titles_ = np.asarray(items["title"] if "title" in items else self.item_texts_, dtype=str)
        torch.manual_seed(c.seed)
        net = TwoTowerNet(c)
        neighbours = self._text_neighbours(net) if c.hard_negatives else None
        for tower in net.towers():
            tower.apply_tuning(c)
        self.net_ = net
        self.trainable_params_ = sum(p.numel() for p in net.parameters() if p.requires_grad)
        self.item_vectors_: np.ndarray | None = None
        if c.tuning != "frozen" or c.learn_temperature:
            data = PairSource(train, list(self.item_texts_), net.query_tower, c, neighbours, self.query_titles_)

            def validate() -> dict[str, float]:
                self.item_vectors_ = None  # the towers changed: re-encode the items
                return validation.evaluate(self, name=f"{self.name} (valid)").means()

            loss = InBatchInfoNCE(data.target_log_q(len(self.item_texts_)) if c.logq_correction else None)
            self.train_result_ = Trainer(c).fit(net, loss, data, validate if validation is not None else None)
        for tower in net.towers():
            tower.merge()
        net.eval()
        self.item_vectors_ = None
        self._item_vectors()

    def _text_neighbours(self, net: TwoTowerNet, k: int = 50) -> np.ndarray:
        """The ``k`` items most text-similar to each item under the encoder training starts from (hard
        negatives): the base model's, or, started from an exported fine-tuned tower, that model's own
        near misses."""
        vec = torch.as_tensor(net.item_tower.encode(list(self.item_texts_), max_length=self.config.item_max_length))
        sims = vec @ vec.T
        sims.fill_diagonal_(-float("inf"))
        return sims.topk(min(k, len(vec) - 1), dim=1).indices.numpy()

    def _item_vectors(self) -> np.ndarray:
        if self.item_vectors_ is None:
            assert self.net_ is not None
            self.item_vectors_ = self.net_.item_tower.encode(list(self.item_texts_), max_length=self.config.item_max_length)
        return self.item_vectors_

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        return self.score_texts([query_text(np.asarray(s), self.query_titles_, self.config.query_items)
                                 for s in queries.sequences])

    def score_texts(self, texts: list[str]) -> np.ndarray:
        """Scores of every item for free-text queries (e.g. "sci-fi about time travel"), through the
        fine-tuned query tower: ``[len(texts), n_items]``."""
        self._check_fitted()
        assert self.net_ is not None
        q = self.net_.query_tower.encode(texts, max_length=self.config.query_max_length)
        return (q @ self._item_vectors().T).astype(np.float32)

    def export_encoder(self, folder: str | Path, side: Literal["item", "query"] = "item") -> Path:
        """The fine-tuned tower as an ordinary Hugging Face model folder: any lmrec model takes it as
        ``encoder=<folder>`` (e.g. ``lmcontent``, ``relevance-mlp``), and its new fingerprint keeps the
        embedding cache from mixing its vectors with the base model's. With a shared encoder both sides are
        the same model. Encoded with this model's ``item_max_length``, the folder's vectors of the item texts
        are this model's item vectors."""
        self._check_fitted()
        assert self.net_ is not None
        if side not in ("item", "query"):
            raise ConfigError(f"side must be 'item' or 'query', not {side!r}")
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise ConfigError(f"{folder} is not empty: export into a new folder")
        return (self.net_.item_tower if side == "item" else self.net_.query_tower).export(folder)

    # --- persistence: each tower as an ordinary Hugging Face folder inside the saved model ----------------------
    QUERY_DIR, ITEM_DIR = "query_encoder", "item_encoder"

    def _state(self) -> dict[str, Any]:
        assert self.net_ is not None
        return {"item_texts_": self.item_texts_, "query_titles_": self.query_titles_,
                "item_vectors_": self._item_vectors(), "log_scale": self.net_.log_scale.detach().numpy()}

    def _save_files(self, folder: Path) -> None:
        assert self.net_ is not None
        self.net_.query_tower.export(folder / self.QUERY_DIR)
        if self.net_.own_item_tower is not None:
            self.net_.own_item_tower.export(folder / self.ITEM_DIR)

    def _load_files(self, folder: Path) -> None:
        self.net_ = TwoTowerNet(self.config, folder / self.QUERY_DIR, folder / self.ITEM_DIR).eval()

    def _set_state(self, state: dict[str, Any]) -> None:
        assert self.net_ is not None
        self.item_texts_, self.query_titles_ = state["item_texts_"], state["query_titles_"]
        self.item_vectors_ = state["item_vectors_"]
        with torch.no_grad():
            self.net_.log_scale.copy_(torch.as_tensor(state["log_scale"]).reshape(()))
