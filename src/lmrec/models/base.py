"""The ``Recommender`` contract every model follows, and its save / load format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from lmrec import __version__
from lmrec.config import validate
from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError

if TYPE_CHECKING:
    from lmrec.eval.ranking import Evaluator


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recommender:
    """Base class: ``fit(train, items) -> self``, ``score(queries) -> float32 [B, n_items]`` (higher is
    better), ``save(dir)``, ``load(dir)``. Masking seen items and top-k live in ``lmrec.eval.ranking``.

    Subclasses define ``name``, a pydantic ``Config`` and ``_fit`` / ``score``; learned state lives in
    attributes ending in ``_`` and is listed by ``_state`` so that save / load round-trips exactly.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[BaseModel]] = NoConfig
    uses_validation: ClassVar[bool] = False  # True: _fit takes validation= (early stopping)

    def __init__(self, **params: Any):
        # typed Any: each subclass reads its own Config's fields
        self.config: Any = validate(self.Config, params, where=f"model {self.name!r}")
        self.n_users_: int | None = None
        self.n_items_: int | None = None
        self.fit_key_: str | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # --- contract ------------------------------------------------------------------------------------
    def fit(self, train: Interactions, items: ItemTable | None = None, validation: Evaluator | None = None,
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

    def _check_fitted(self) -> None:
        if self.n_items_ is None:
            raise ConfigError(f"model {self.name!r} is not fitted; call fit() first")

    # --- persistence -----------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Learned arrays (numpy or scipy sparse) by attribute name."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (name, config, sizes, fit key) and ``state.npz`` into folder ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        kinds: dict[str, str] = {}
        for key, value in self._state().items():
            if sp.issparse(value):
                m = value.tocsr()
                kinds[key] = "csr"
                arrays.update({f"{key}.data": m.data, f"{key}.indices": m.indices, f"{key}.indptr": m.indptr,
                               f"{key}.shape": np.asarray(m.shape)})
            else:
                kinds[key] = "dense"
                arrays[key] = np.asarray(value)
        np.savez(path / "state.npz", **arrays)  # type: ignore[arg-type]
        meta = {"name": self.name, "config": self.config.model_dump(), "n_users": self.n_users_,
                "n_items": self.n_items_, "fit_key": self.fit_key_, "state": kinds, "lmrec_version": __version__}
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Rebuild a saved model; scores are identical to the model that was saved."""
        from lmrec.registry import model_class

        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model_cls = model_class(meta["name"]) if cls is Recommender else cls
        model = model_cls(**meta["config"])
        model.n_users_, model.n_items_, model.fit_key_ = meta["n_users"], meta["n_items"], meta["fit_key"]
        with np.load(path / "state.npz", allow_pickle=False) as z:
            state: dict[str, Any] = {}
            for key, kind in meta["state"].items():
                if kind == "csr":
                    state[key] = sp.csr_matrix((z[f"{key}.data"], z[f"{key}.indices"], z[f"{key}.indptr"]),
                                               shape=tuple(z[f"{key}.shape"]))
                else:
                    state[key] = z[key]
        model._set_state(state)
        return model


def events_key(inter: Interactions) -> str:
    """Order-independent fingerprint of a set of events (user, item, time)."""
    cols = [inter.user, inter.item] + ([inter.time] if inter.time is not None else [])
    order = np.lexsort(cols[::-1])
    h = hashlib.sha256()
    for c in cols:
        h.update(np.ascontiguousarray(c[order]).tobytes())
    h.update(f"{inter.n_users}x{inter.n_items}".encode())
    return h.hexdigest()
