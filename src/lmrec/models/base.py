"""The one model base (``Model``: typed config, save / load in one format) and the ranker contract
(``Recommender``: ``fit(train, items)``, ``score(queries) -> [B, n_items]``).

Saved-model format (a folder, written atomically): ``model.json`` (format version, name, kind, config,
sizes, the fingerprint of the events it was fitted on, the lmrec version, a SHA-256 of every other file)
and ``state.safetensors`` (learned arrays through ``safetensors.numpy``; sparse matrices as their CSR
parts), ``strings.json`` for learned text, and for models that fine-tune a language model an ordinary
Hugging Face folder (safetensors weights). Nothing is pickled, so loading a file never runs code from it.
``lmrec.registry.load_model`` loads any saved model by the name in its ``model.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.numpy import load_file, save_file

from lmrec import __version__
from lmrec.config import validate
from lmrec.data.interactions import Interactions, events_key
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ArtifactError, ConfigError, Unsupported
from lmrec.fsutil import atomic_dir, folder_checksums, read_description, verify_checksums


class Validation(Protocol):
    """What models trained for epochs validate with (``lmrec.eval.Evaluator`` on the valid part)."""

    def evaluate(self, model: Any, name: str | None = None) -> Any: ...

FORMAT = 1  # bump when a saved model of the previous format can no longer be read
MODEL_JSON = "model.json"
STATE_FILE = "state.safetensors"
STRINGS_FILE = "strings.json"


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Model:
    """What every trained model shares: ``name`` and ``kind`` (``ranker``, ``ctr``, ``reranker``), a typed
    ``Config``, and ``save(dir)`` / ``load(dir)`` in the one format (module docstring).

    Subclasses list learned arrays in ``_state`` / ``_set_state`` (numpy, scipy sparse, or text), learned
    scalars in ``_meta`` / ``_set_meta``, and write extra folders (a fine-tuned language model) in
    ``_save_files`` / ``_load_files``. Learned attributes end in ``_``.
    """

    name: ClassVar[str] = "base"
    kind: ClassVar[str] = "model"
    Config: ClassVar[type[BaseModel]] = NoConfig
    # Options added to ``Config`` after models were saved without them: the value each such saved model was
    # fitted with (the behaviour before the option existed), used where a saved config lacks the option, so
    # that a model saved by an older lmrec loads with the outputs it was saved with, whatever the new default.
    options_absent_from_old_saves: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        # typed Any: each subclass reads its own Config's fields
        self.config: Any = validate(self.Config, params, where=f"model {self.name!r}")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    def _check_fitted(self) -> None:
        raise NotImplementedError

    # --- what a subclass saves -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Learned arrays (numpy, scipy sparse, str or string arrays) by attribute name."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def _meta(self) -> dict[str, Any]:
        """Learned JSON values (sizes, fingerprints)."""
        return {}

    def _set_meta(self, meta: dict[str, Any]) -> None:
        for k, v in meta.items():
            setattr(self, k, v)

    def _save_files(self, folder: Path) -> None:
        """Write extra files into ``folder`` (e.g. a fine-tuned Hugging Face model)."""

    def _load_files(self, folder: Path) -> None:
        """Read what ``_save_files`` wrote (called after ``_set_meta`` and before ``_set_state``)."""

    # --- the format ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model into folder ``path`` (replaced as a whole, atomically); returns ``path``.

        An existing folder is replaced only if it holds a saved model: anything else there is refused."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MODEL_JSON).is_file())):
            raise ConfigError(f"{path} exists and is not a saved model: save into a new or empty folder")
        with atomic_dir(path) as tmp:
            arrays, strings, kinds = _flatten(self._state())
            save_file(arrays, str(tmp / STATE_FILE))
            (tmp / STRINGS_FILE).write_text(json.dumps(strings))
            self._save_files(tmp)
            meta = {"format": FORMAT, "name": self.name, "kind": self.kind, "lmrec_version": __version__,
                    "config": self.config.model_dump(mode="json"), "learned": self._meta(), "state": kinds,
                    "files": folder_checksums(tmp)}
            (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Rebuild a saved model of this class; its outputs are identical to the saved model's.
        (``lmrec.registry.load_model`` loads a model of any class.)"""
        return cls.from_saved(Path(path), read_model_meta(Path(path)))

    @classmethod
    def from_saved(cls, path: Path, meta: dict[str, Any]) -> Any:
        """Rebuild from folder ``path`` whose checked ``model.json`` is ``meta`` (``read_model_meta``)."""
        if meta["name"] != cls.name:
            raise ArtifactError(f"{path / MODEL_JSON}: holds a {meta['name']!r} model, not {cls.name!r} "
                                "(load it with lmrec.registry.load_model)")
        model = cls(**{**cls.options_absent_from_old_saves, **meta["config"]})
        model._set_meta(meta["learned"])
        model._load_files(path)
        try:
            stored = load_file(str(path / STATE_FILE))
        except Exception as exc:  # truncated or not a safetensors file: the library raises its own types
            raise ArtifactError(f"{path / STATE_FILE}: unreadable ({' '.join(str(exc).split())[:200]})") from None
        strings = json.loads((path / STRINGS_FILE).read_text())
        model._set_state(_unflatten(stored, strings, meta["state"], path))
        return model


def module_state(module: Any, prefix: str = "net.") -> dict[str, np.ndarray]:
    """A torch module's state dict as numpy arrays named ``prefix + key`` (bfloat16, which numpy lacks,
    as float32)."""
    out = {}
    for k, v in module.state_dict().items():
        t = v.detach().cpu()
        out[prefix + k] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return out


def load_module_state(module: Any, state: dict[str, Any], prefix: str = "net.") -> None:
    """Load what ``module_state`` saved into ``module`` (every key must fit)."""
    module.load_state_dict({k[len(prefix):]: torch.as_tensor(v) for k, v in state.items() if k.startswith(prefix)})


def mean_rows(history: sp.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    """``[n_rows, dim]``: mean of ``vectors`` over each row's items (zeros for an empty row)."""
    h = history.astype(np.float32)
    counts = np.maximum(np.asarray(h.sum(1)).ravel(), 1)[:, None]
    return np.asarray(h @ vectors, dtype=np.float32) / counts


def read_model_meta(path: Path) -> dict[str, Any]:
    """``model.json`` of a saved model, after checking the format and every file's checksum."""
    meta = read_description(Path(path) / MODEL_JSON, "saved model", ("name", "config", "learned", "state", "files"),
                            FORMAT, "train the model again with this lmrec")
    problem = verify_checksums(Path(path), meta["files"])
    if problem:
        raise ArtifactError(f"saved model {path}: {problem}")
    return meta


def _flatten(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """Arrays for safetensors, text for JSON, and the kind of each entry."""
    arrays: dict[str, np.ndarray] = {}
    strings: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for key, value in state.items():
        if sp.issparse(value):
            m = value.tocsr()
            kinds[key] = "csr"
            arrays.update({f"{key}.data": m.data, f"{key}.indices": m.indices, f"{key}.indptr": m.indptr,
                           f"{key}.shape": np.asarray(m.shape, dtype=np.int64)})
        elif isinstance(value, str) or (isinstance(value, np.ndarray) and value.dtype.kind in "USO"):
            kinds[key] = "text"
            strings[key] = value if isinstance(value, str) else np.asarray(value, dtype=str).tolist()
        else:
            kinds[key] = "dense"
            arrays[key] = np.ascontiguousarray(value)
    return arrays, strings, kinds


def _unflatten(arrays: dict[str, np.ndarray], strings: dict[str, Any], kinds: dict[str, str],
               path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    try:
        for key, kind in kinds.items():
            if kind == "csr":
                state[key] = sp.csr_matrix((arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]),
                                           shape=tuple(int(n) for n in arrays[f"{key}.shape"]))
            elif kind == "text":
                value = strings[key]
                state[key] = value if isinstance(value, str) else np.asarray(value, dtype=str)
            else:
                state[key] = arrays[key]
    except KeyError as exc:
        raise ArtifactError(f"{path / STATE_FILE}: entry {exc} is missing") from None
    return state


class Recommender(Model):
    """Rankers: ``fit(train, items) -> self``, ``score(queries) -> float32 [B, n_items]`` (higher is
    better), ``save(dir)``, ``load(dir)``. Masking seen items and top-k live in ``lmrec.eval.ranking``.

    Subclasses define ``name``, a pydantic ``Config`` and ``_fit`` / ``score``; learned state lives in
    attributes ending in ``_`` and is listed by ``_state`` so that save / load round-trips exactly.
    """

    kind: ClassVar[str] = "ranker"
    uses_validation: ClassVar[bool] = False  # True: _fit takes validation= (early stopping)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.n_users_: int | None = None
        self.n_items_: int | None = None
        self.fit_key_: str | None = None

    # --- contract ------------------------------------------------------------------------------------
    def fit(self, train: Interactions, items: ItemTable | None = None, validation: Validation | None = None,
            ) -> Recommender:
        """Learn from ``train`` (and item text where the model uses it); returns ``self``.

        ``validation`` (an ``Evaluator`` on the split's valid part) lets models trained for several
        epochs stop early and keep their best epoch; models without epochs ignore it.
        """
        if len(train) == 0:
            raise ConfigError(f"cannot fit {self.name!r} on an empty training set")
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.fit_key_ = events_key(train)
        # Labelled (CTR) data: these implicit-feedback models learn from the positive events only.
        positives = train.positives()
        if len(positives) == 0:
            raise ConfigError(f"cannot fit {self.name!r}: the training set has no positive events")
        if self.uses_validation:
            self._fit(positives, items, validation=validation)  # type: ignore[call-arg]
        else:
            self._fit(positives, items)
        return self

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        raise NotImplementedError

    def score(self, queries: Queries) -> np.ndarray:
        """Scores ``[len(queries), n_items]`` (float32), higher is better."""
        raise NotImplementedError

    # --- text at serving time (models that represent items by text override these) ---------------------------
    def encode_new_items(self, items: ItemTable, new: np.ndarray) -> np.ndarray:
        """Vectors for the items at indices ``new`` (the last rows of ``items``, the catalogue that now holds
        them), from their text; changes nothing. Raises ``ConfigError`` when the model cannot rank them."""
        raise Unsupported(f"the {self.name!r} model knows items only by what it learned in training, so it cannot "
                          "rank an item added since; refit the bundle once the item has events (lmrec refit), "
                          "or serve a model that reads item text (textseq, lmcontent)")

    def add_items(self, items: ItemTable, new: np.ndarray, vectors: np.ndarray) -> None:
        """Make the items at ``new`` rankable with no retraining (cold-start items), given their
        ``encode_new_items`` vectors."""
        self.encode_new_items(items, new)  # the same refusal

    def warm_start(self, previous: Recommender) -> bool:
        """Start the next ``fit`` from ``previous`` (a fitted model of the same kind) where the model can;
        False when it fits from scratch (models without iterative training)."""
        return False

    # --- retrieval (lmrec.retrieval): models whose scores are inner products say so ----------------------------
    def retrieval_items(self) -> np.ndarray | None:
        """``[n_items, d]`` item vectors such that ``score`` is ``retrieval_queries(q) @ retrieval_items().T``,
        or None when the scores are no inner product (then every item is scored exactly)."""
        return None

    def retrieval_queries(self, queries: Queries) -> np.ndarray | None:
        """``[len(queries), d]`` query vectors for ``retrieval_items`` (None: score these queries exactly)."""
        return None

    # --- explanations (lmrec.explain) ----------------------------------------------------------------------
    def history_terms(self, queries: Queries, item: int) -> tuple[np.ndarray, np.ndarray] | None:
        """For one query: ``(distinct history items, their exact additive terms in item's score)`` when the
        score is such a sum; None, and explanations use occlusion."""
        return None

    def _new_rows(self, items: ItemTable, new: np.ndarray) -> np.ndarray:
        """``new`` as indices, after checking they are the last rows of ``items`` and follow the model's."""
        self._check_fitted()
        assert self.n_items_ is not None
        new = np.asarray(new, dtype=np.int64)
        if len(items) != self.n_items_ + len(new) or not np.array_equal(new, np.arange(self.n_items_, len(items))):
            raise ConfigError(f"{self.name}: the new items must be the last {len(new)} of a catalogue of "
                              f"{self.n_items_} + {len(new)} items")
        return new

    def score_text(self, queries: Queries, texts: list[str]) -> np.ndarray:
        """Like ``score``, with each query's free text (what the person asks for) read after its history."""
        raise Unsupported(f"the {self.name!r} model does not read text, so it cannot answer a free-text query; "
                          "serve a model that does (textseq, lmcontent)")

    def _check_fitted(self) -> None:
        if self.n_items_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")

    def _meta(self) -> dict[str, Any]:
        return {"n_users_": self.n_users_, "n_items_": self.n_items_, "fit_key_": self.fit_key_}
