"""Matrix factorisation through the ``implicit`` library: BPR-MF and ALS."""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.models.base import Recommender


def _single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    """implicit asks for single-threaded BLAS during its fit (it parallelises itself); scoped so other
    models (EASE's matrix inverse) keep every core."""
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    return threadpool_limits(1, "blas")


class _FactorModel(Recommender):
    """Shared scoring: user factors . item factors; users unseen in training use their history."""

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """Factors for users without a trained vector: the mean of their history items' factors."""
        counts = np.maximum(np.asarray(history.sum(1)).ravel(), 1)[:, None]
        return np.asarray(history.astype(np.float32) @ self.item_factors_) / counts

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        users = queries.users
        known = (users < self.user_factors_.shape[0]) & self.trained_users_[np.minimum(users, len(self.trained_users_) - 1)]
        factors = np.empty((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        factors[known] = self.user_factors_[users[known]]
        if (~known).any():
            factors[~known] = self._fold_in(queries.history[np.flatnonzero(~known)])
        return factors @ self.item_factors_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors_": self.user_factors_, "item_factors_": self.item_factors_,
                "trained_users_": self.trained_users_}

    def _implicit_model(self) -> object:
        """The configured, unfitted ``implicit`` model."""
        raise NotImplementedError

    def _fit(self, train: Interactions, items: ItemTable | None) -> None:
        with _single_threaded_blas():  # implicit checks the BLAS threads when the model is built
            model = self._implicit_model()
            model.fit(train.to_csr("binary").astype(np.float32), show_progress=False)  # type: ignore[attr-defined]
        self._store(model, train)

    def _store(self, model: object, train: Interactions) -> None:
        uf, itf = model.user_factors, model.item_factors  # type: ignore[attr-defined]
        to_np = lambda a: np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float32)  # noqa: E731
        self.user_factors_, self.item_factors_ = to_np(uf), to_np(itf)
        self.trained_users_ = np.bincount(train.user, minlength=train.n_users) > 0


class BPRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factors: int = Field(64, ge=1)
    learning_rate: float = Field(0.01, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(100, ge=1)
    seed: int = 0
    # implicit's BPR updates factors from several threads at once (Hogwild): fast but not repeatable.
    # One thread makes a seeded fit reproducible; raise it when speed matters more.
    threads: int = Field(1, ge=0, description="0 = all cores (not reproducible)")


class BPR(_FactorModel):
    """Bayesian personalised ranking MF (``implicit.cpu.bpr``)."""

    name = "bpr"
    Config = BPRConfig

    def _implicit_model(self) -> object:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        return BayesianPersonalizedRanking(factors=c.factors, learning_rate=c.learning_rate,
                                           regularization=c.regularization, iterations=c.iterations,
                                           random_state=c.seed, num_threads=c.threads)


class ALSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factors: int = Field(64, ge=1)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0, description="confidence weight of an observed interaction")
    iterations: int = Field(15, ge=1)
    seed: int = 0


class ALS(_FactorModel):
    """Implicit-feedback alternating least squares (``implicit.cpu.als``)."""

    name = "als"
    Config = ALSConfig

    def _implicit_model(self) -> object:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        return AlternatingLeastSquares(factors=c.factors, regularization=c.regularization, alpha=c.alpha,
                                       iterations=c.iterations, random_state=c.seed)
