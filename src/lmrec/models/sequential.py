"""The generic wrapper that turns a neural sequence network into a ``Recommender``.

A network implements ``sequence_states(batch) -> [B, L, d]``, ``encode_queries(batch) -> [B, d]``,
``item_table(ids=None) -> [n_items, d]``, ``similarity`` and ``pair_similarity`` (see ``lmrec.nn.losses``).
This class owns everything else once: building training windows, the loss, the Trainer with early
stopping on the validation Evaluator, scoring in batches, the empty-history policy, save / load.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lmrec.data.batching import SequenceWindows, UserSampledWindows, query_batch
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender, load_module_state, module_state
from lmrec.nn.losses import make_loss
from lmrec.progress import logger
from lmrec.train import TrainConfig, Trainer, TrainResult, resolve_device

SCORE_BATCH = 1024  # users per forward pass when scoring


def item_embeddings(n_items: int, dim: int) -> nn.Embedding:
    """The ID table of SASRec-style networks: token ``i + 1`` is item ``i``, row 0 is a zero padding row."""
    table = nn.Embedding(n_items + 1, dim, padding_idx=0)
    nn.init.normal_(table.weight, std=0.02)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


class DotProductOutput:
    """For networks whose items are rows of one ID embedding ``self.items`` (token ``i + 1`` = item ``i``, 0 =
    padding), shared between input and output: the query is the state after the most recent item and a score
    is a dot product (SASRec, GRU4Rec). The network defines ``sequence_states``."""

    items: nn.Embedding

    def sequence_states(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_queries(self, batch: Any) -> torch.Tensor:
        """``[B, d]``: the state after the most recent item (left padding puts it last)."""
        return self.sequence_states(batch)[:, -1]

    def item_table(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[n_items, d]`` (or ``[len(ids), d]``) output vectors."""
        table = self.items.weight[1:]
        return table if ids is None else table[ids]

    def similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return states @ items.T

    def pair_similarity(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (states * items).sum(-1)

    # ``similarity`` is already an inner product: both sides are their own retrieval vectors
    def dot_queries(self, states: torch.Tensor) -> torch.Tensor:
        return states

    def dot_items(self, items: torch.Tensor) -> torch.Tensor:
        return items


class SequentialConfig(TrainConfig):
    """Sequence-model options on top of the training loop's."""

    max_len: int = Field(50, ge=1, description="most recent items a user is represented by")
    dim: int = Field(64, ge=8, description="hidden size")
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["ce", "sampled_softmax", "bpr", "bce", "inbatch"] = Field(
        "ce", description="ce = full softmax over all items; inbatch = the batch's other targets are the negatives")
    negatives: int = Field(256, ge=1, description="negatives per step (sampled_softmax) or per position (bce)")
    windows: Literal["all", "last"] = Field("all", description="train on every window of long sequences, or the last")
    mask_history: bool = Field(False, description="leave the items a position's prefix already holds out of its "
                               "softmax, as evaluation leaves them out of the ranking (ce / inbatch losses)")


class SequentialRecommender(Recommender):
    """Base of SASRec and TextSeqRec. Users with an empty history get popularity scores (and a log
    message), since a sequence model has nothing to encode for them."""

    uses_validation: ClassVar[bool] = True
    Config: ClassVar[type[SequentialConfig]] = SequentialConfig

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.net_: Any = None  # the network (an nn.Module with the methods listed above)
        self.train_result_: TrainResult | None = None
        self.trainable_params_: int | None = None  # parameters the last fit trained
        self.privacy_: dict[str, Any] | None = None  # the DP guarantee of a private fit (lmrec.train.private)
        # The item table of a finished model, kept between score calls: TextSeqRec's adaptor otherwise runs
        # over the whole catalogue for every request (95% of a served request's time on Amazon Beauty).
        # Not kept while ``live_weights`` (during fit, whose validation scores between weight updates, or for a
        # model that shares a network still training); cleared by fit, load and to().
        self._table: torch.Tensor | None = None
        self.live_weights = False
        self._warm_from: nn.Module | None = None

    # --- to implement -----------------------------------------------------------------------------------
    def _prepare_inputs(self, train: Interactions, items: ItemTable | None) -> dict[str, np.ndarray]:
        """Arrays the network is built from (e.g. language-model vectors); saved with the model."""
        return {}

    def _new_net(self, n_items: int, inputs: dict[str, np.ndarray], trained: np.ndarray) -> nn.Module:
        raise NotImplementedError

    def _before_training(self, net: nn.Module) -> None:
        """Hook after the network is built for a fit (not on load): e.g. load pretrained weights, freeze."""

    def _training_batches(self, windows: SequenceWindows | UserSampledWindows) -> Any:
        """What the Trainer iterates (a ``BatchSource``); next-item windows by default, BERT4Rec masks them."""
        return windows

    def _trains(self) -> bool:
        """False for a model used as built (e.g. a pretrained model applied zero-shot)."""
        return True

    def _after_training(self, net: nn.Module) -> None:
        """Hook after training (e.g. merge adapters into the base weights so the saved model is plain)."""

    # --- fit ---------------------------------------------------------------------------------------------
    def _fit(self, train: Interactions, items: ItemTable | None, validation: Any = None) -> None:
        self._table, self.live_weights = None, True
        try:
            self._fit_network(train, items, validation)
        finally:
            self.live_weights = False

    def build(self, train: Interactions, items: ItemTable | None = None) -> SequentialRecommender:
        """The network as ``fit`` starts it (seeded initial weights, frozen parts frozen), without training:
        e.g. the common starting point of federated training (``lmrec.federated``)."""
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self._table = None
        self._build_network(train, items)
        return self

    def trainable_arrays(self) -> list[np.ndarray]:
        """The weights training changes (float32 copies, in a fixed order): all of SASRec, TextSeqRec's adaptor
        without its frozen language-model vectors."""
        self._check_fitted()
        return [p.detach().cpu().float().numpy().copy() for p in self._net().parameters() if p.requires_grad]

    def set_trainable_arrays(self, arrays: list[np.ndarray]) -> None:
        """Replace the weights ``trainable_arrays`` returns (same order and shapes)."""
        params = [p for p in self._net().parameters() if p.requires_grad]
        if len(arrays) != len(params) or any(tuple(a.shape) != tuple(p.shape) for a, p in zip(arrays, params)):
            raise ConfigError(f"{self.name}: expected {len(params)} weight arrays of shapes "
                              f"{[tuple(p.shape) for p in params]}, got {[tuple(a.shape) for a in arrays]}")
        with torch.no_grad():
            for p, a in zip(params, arrays):
                p.copy_(torch.as_tensor(np.asarray(a), dtype=p.dtype, device=p.device))
        self._table = None  # the cached item table came from the old weights

    def _build_network(self, train: Interactions, items: ItemTable | None) -> np.ndarray:
        """Build ``net_`` (and the inputs and popularity fallback); returns the item counts of ``train``."""
        c = self.config
        private = c.privacy.enabled
        counts = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
        # Users without history get popularity scores; a private model keeps only which items occur (the
        # catalogue, treated as public), since exact counts are not covered by its guarantee.
        self.popularity_ = ((counts > 0) if private else counts).astype(np.float32)
        self.privacy_ = None
        self.inputs_ = self._prepare_inputs(train, items)
        torch.manual_seed(c.seed)
        self.net_ = self._new_net(train.n_items, self.inputs_, counts > 0)
        self._before_training(self.net_)
        return counts

    def _fit_network(self, train: Interactions, items: ItemTable | None, validation: Any) -> None:
        c = self.config
        private = c.privacy.enabled
        counts = self._build_network(train, items)
        if self._warm_from is not None:
            copied = copy_weights(self._warm_from, self.net_)
            logger.info("%s: warm start, %d of %d weight tensors from the previous model", self.name, copied,
                        len(self.net_.state_dict()))
        trains = self._trains()
        self.trainable_params_ = sum(p.numel() for p in self.net_.parameters() if p.requires_grad) if trains else 0
        if not trains:
            self.train_result_ = None
            self.net_.eval()
            return
        windows = SequenceWindows(train.sequences(), c.max_len, c.batch_size, c.windows, c.seed)
        data = self._training_batches(UserSampledWindows(windows, c.batch_size, c.seed) if private else windows)
        # sampled softmax draws by popularity (its logQ term corrects for it); BPR / BCE uniformly over
        # the items seen in training, and so does a private model's sampled softmax (popularity-weighted
        # draws would publish exact counts)
        probs = counts if c.loss == "sampled_softmax" and not private else (counts > 0).astype(np.float64)
        loss = make_loss(c.loss, train.n_items, c.negatives, probs, c.mask_history)

        def validate() -> dict[str, float]:
            return validation.evaluate(self, name=f"{self.name} (valid)").means()

        logger.info("%s: %d windows, %d targets, %d steps per epoch", self.name, len(windows), windows.n_targets,
                    windows.steps_per_epoch)
        self.train_result_ = Trainer(c).fit(self.net_, loss, data, validate if validation is not None else None)
        self.privacy_ = self.train_result_.privacy
        self._after_training(self.net_)

    def warm_start(self, previous: Recommender) -> bool:
        """Start the next ``fit`` from ``previous``'s weights (same model and architecture; a larger catalogue
        keeps the old items' rows, new rows start fresh), e.g. when ``lmrec refit`` adds events."""
        if type(previous) is not type(self) or getattr(previous, "net_", None) is None:
            return False
        self._warm_from = previous.net_
        return True

    # --- score -------------------------------------------------------------------------------------------
    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        net = self._net()
        device = next(net.parameters()).device
        assert self.n_items_ is not None
        out = np.empty((len(queries), self.n_items_), dtype=np.float32)
        lengths = np.array([len(s) for s in queries.sequences])
        with torch.no_grad():
            table = self._item_table(net)
            for start in range(0, len(queries), SCORE_BATCH):
                stop = min(start + SCORE_BATCH, len(queries))
                batch = query_batch(queries.sequences[start:stop], self.config.max_len).to(device)
                out[start:stop] = net.similarity(net.encode_queries(batch), table).float().cpu().numpy()
        empty = lengths == 0
        if empty.any():
            logger.info("%s: %d user(s) with no history get popularity scores", self.name, int(empty.sum()))
            out[empty] = self.popularity_
        return out

    # --- retrieval: scores as inner products (lmrec.retrieval searches them with an index) ------------------
    def retrieval_items(self) -> np.ndarray | None:
        net = self._net()
        if not hasattr(net, "dot_items"):
            return None
        with torch.no_grad():
            return net.dot_items(self._item_table(net)).float().cpu().numpy()

    def retrieval_queries(self, queries: Queries) -> np.ndarray | None:
        net = self._net()
        if not hasattr(net, "dot_queries") or any(len(s) == 0 for s in queries.sequences):
            return None  # an empty history gets popularity scores, which are no inner product
        device = next(net.parameters()).device
        with torch.no_grad():
            batch = query_batch(queries.sequences, self.config.max_len).to(device)
            return net.dot_queries(net.encode_queries(batch)).float().cpu().numpy()

    def _net(self) -> Any:
        if self.net_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")
        if self.net_.training:  # eval() walks every submodule: not on every request
            self.net_.eval()
        return self.net_

    def _item_table(self, net: Any) -> torch.Tensor:
        if self.live_weights:
            return net.item_table()
        if self._table is None:
            self._table = net.item_table()
        return self._table

    def to(self, device: str | torch.device) -> SequentialRecommender:
        """Move the network (e.g. to a GPU for scoring)."""
        self._table = None
        self._net().to(resolve_device(str(device)))
        return self

    # --- persistence -------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "privacy_": self.privacy_}

    def _state(self) -> dict[str, Any]:
        return {"popularity_": self.popularity_, **{f"inputs.{k}": v for k, v in self.inputs_.items()},
                **module_state(self._net())}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.popularity_ = state["popularity_"]
        self.inputs_ = {k[len("inputs."):]: v for k, v in state.items() if k.startswith("inputs.")}
        assert self.n_items_ is not None
        net = self._new_net(self.n_items_, self.inputs_, self.popularity_ > 0)
        load_module_state(net, state)
        self.net_ = net.eval()
        self._table = None


def copy_weights(source: nn.Module, target: nn.Module) -> int:
    """Copy every tensor of ``source``'s state into ``target`` where the name matches and the shape does, or
    where only the first dimension grew (an item table over a larger catalogue: the leading rows). Returns
    how many tensors were copied."""
    old = source.state_dict()
    copied = 0
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            prev = old.get(name)
            if prev is None or prev.dim() != tensor.dim():
                continue
            if prev.shape == tensor.shape:
                tensor.copy_(prev)
            elif prev.dim() >= 1 and prev.shape[1:] == tensor.shape[1:] and prev.shape[0] <= tensor.shape[0]:
                tensor[: prev.shape[0]].copy_(prev)
            else:
                continue
            copied += 1
    return copied
