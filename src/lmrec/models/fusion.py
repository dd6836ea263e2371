"""Fusion: several recommenders' scores, each standardised per user, added with weights learned on the
validation part. With a text model among the components (TextSeqRec, lmcontent) the weights say how far
to trust text: where item text says little, validation gives the text component a small weight or none and
the fusion falls back to its collaborative components; where text helps, it gets a share.

Components are registered models fitted here on the same training events (``{"model": NAME, "params":
{...}}``), or models already fitted on exactly those events (``{"saved": FOLDER}``: a saved model or a
bundle; its fingerprint of training events must match). Weights: coordinate ascent over a grid, each step
kept only if the validation metric rises, from two starts (equal weights, and the best component alone);
the better end is kept, so the fusion is never below its best component on validation. With ``fallback``
(some components' indices, e.g. the collaborative ones beside a text model) the same search first runs over
those components alone, which is the search a fusion of just them makes (same starts, same order, same
weights at the end), and the full search also starts from its end: the fusion then never ends below the
fusion of its fallback components on validation, so a component that adds nothing is left out instead of
leading the ascent to a worse local optimum. Each weight vector's top-k validation metric is computed on
per-user shortlists (``lmrec.eval.blend``: exact, several times faster than ranking the catalogue for each
one); other metrics rank the catalogue. With ``bags`` the search also runs on that many bootstrap resamples
of the validation users and the fusion takes the mean of their weights (each scaled to sum 1): with a dozen
components the one search fits the particular validation users closely (on ~1,000 users its validation gains
mostly did not carry to test), and the mean of the resamples' choices depends less on which users they are
(on the leaderboard it was no test gain: ``docs/training.md``). Each weight vector's
per-user metric is computed once, so a resample costs only the vectors no earlier search tried.
A component whose weight ends at zero is not scored at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmrec.data.interactions import Interactions
from lmrec.data.items import ItemTable
from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.models.base import Recommender
from lmrec.progress import progress, report

COMPONENTS_DIR = "components"


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a registered recommender, fitted by the fusion")
    params: dict[str, Any] = Field(default_factory=dict, description="its options")
    saved: str | None = Field(None, description="a saved model or bundle folder fitted on the same train events")

    @model_validator(mode="after")
    def _one_source(self) -> Component:
        if (self.model is None) == (self.saved is None):
            raise ValueError("a component names either a model to fit or a saved one, not both")
        if self.saved is not None and self.params:
            raise ValueError("a saved component is used as it was fitted: params apply to a model to fit")
        return self


def _default_components() -> list[Component]:
    return [Component(model="textseq"), Component(model="sasrec"), Component(model="ease")]


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    components: list[Component] = Field(default_factory=_default_components, min_length=2)
    metric: str = Field("ndcg@10", description="validation metric the weights maximise")
    # 200: with nine components on Amazon Beauty, a depth of 100 left about 5% of the users to be ranked over
    # the catalogue for each weight vector (most of the search's time), 200 about 0.1%
    shortlist_depth: int = Field(200, ge=1, description="each component's top items in a user's shortlist "
                                 "during the weight search (speed only: the metric is exact at any depth)")
    grid: list[float] = Field([0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
                              description="weights tried for each component")
    rounds: int = Field(3, ge=1, description="passes of coordinate ascent over the components")
    bags: int = Field(0, ge=0, description="bootstrap resamples of the validation users: the search runs on "
                      "each and the fusion takes the mean of their weights (each scaled to sum 1), a choice that "
                      "fits the particular validation users less; 0: the one search on all of them")
    seed: int = Field(0, description="seed of the bootstrap resamples")
    fallback: list[int] = Field(default_factory=list,
                                description="indices of components the fusion can fall back to: their own weight "
                                "search runs first and the full search also starts from its end, so the "
                                "fusion never ends below theirs on validation (e.g. the collaborative models "
                                "beside a text model)")

    @model_validator(mode="after")
    def _grid(self) -> FusionConfig:
        if any(w < 0 for w in self.grid) or not any(w > 0 for w in self.grid):
            raise ValueError("grid weights must be >= 0, with at least one > 0")
        n = len(self.components)
        if len(set(self.fallback)) != len(self.fallback) or any(not 0 <= i < n for i in self.fallback):
            raise ValueError(f"fallback: distinct component indices from 0 to {n - 1}, got {self.fallback}")
        if len(self.fallback) == n:
            raise ValueError("fallback: name some of the components, not all of them (all is the search itself)")
        return self


class Fusion(Recommender):
    """A validated weighted sum of standardised component scores (module docstring)."""

    name = "fusion"
    Config = FusionConfig
    uses_validation = True
    # The registry imports every model, so models cannot import it: it hands Fusion the two functions it
    # needs when it registers the class (``create(name, **params)`` and ``load_model(folder)``).
    create_model: ClassVar[Callable[..., Recommender] | None] = None
    load_saved: ClassVar[Callable[[Path], Recommender] | None] = None
    # ... and the shortlist evaluator of lmrec.eval.blend (``(validation, sources, metric) -> .value(weights)``,
    # ValueError where it does not apply), which sits above the models too.
    shortlist: ClassVar[Callable[..., Any] | None] = None

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.components_: list[Recommender] = []
        self.weights_: np.ndarray | None = None
        self.search_: list[dict[str, Any]] = []
        self.fallback_: dict[str, Any] | None = None  # the fallback components' own search: weights, value
        self.bags_: list[list[float]] = []  # with ``bags``: each resample's weights, scaled to sum 1

    def _fit(self, train: Interactions, items: ItemTable | None, validation: Any = None) -> None:
        if self.create_model is None or self.load_saved is None:
            raise ConfigError("fusion is used through lmrec.registry (create('fusion', ...))")
        self.components_ = []
        for spec in self.config.components:
            if spec.saved is not None:
                component = self.load_saved(_model_folder(Path(spec.saved)))
                if component.fit_key_ != self.fit_key_:
                    raise ConfigError(f"fusion: {spec.saved} was fitted on other events than this training set; "
                                      "a component must be fitted on exactly these events")
            else:
                component = self.create_model(spec.model, **spec.params)
                component.fit(train, items, validation=validation if component.uses_validation else None)
            self.components_.append(component)
        n = len(self.components_)
        if validation is None:
            report("fusion: no validation part, so equal weights")
            self.weights_ = np.ones(n, dtype=np.float64)
            return
        self.weights_ = self._search_weights(validation)

    def _search_weights(self, validation: Any) -> np.ndarray:
        """The search on all validation users or, with ``bags``, the mean of the searches on bootstrap resamples
        of them. Component scores are computed once, and each weight vector's per-user metric once, so a
        resample's search costs only the vectors no earlier search tried."""
        metric, names = self.config.metric, _labels(self.components_)
        measure = self._shortlist_metric(validation) or self._catalogue_metric(validation)
        per_user: dict[bytes, np.ndarray] = {}

        def values(weights: np.ndarray) -> np.ndarray:
            key = weights.tobytes()
            if key not in per_user:
                per_user[key] = measure(weights)
                self.search_.append({"weights": weights.tolist(), metric: _mean(per_user[key])})
            return per_user[key]

        best, best_value = self._search(lambda w: _mean(values(w)), log=True)
        if not self.config.bags:
            report("fusion: weights %s, valid %s %.4f (equal weights %.4f)", dict(zip(names, best.tolist())),
                   metric, best_value, _mean(values(np.ones(len(names)))))
            return best
        rng = np.random.default_rng(self.config.seed)
        n_users = len(values(best))
        draws = []
        for _ in progress(range(self.config.bags), desc="fusion bags", total=self.config.bags):
            sample = rng.integers(0, n_users, n_users)
            weights, _ = self._search(lambda w, s=sample: _mean(values(w)[s]))
            draws.append(weights / weights.sum())
        self.bags_ = [d.tolist() for d in draws]
        mean = np.mean(draws, axis=0)
        report("fusion: mean of %d bags' weights %s, valid %s %.4f (the search on all users: %.4f)",
               self.config.bags, dict(zip(names, mean.round(3).tolist())), metric, _mean(values(mean)), best_value)
        return mean

    def _search(self, value: Callable[[np.ndarray], float], log: bool = False) -> tuple[np.ndarray, float]:
        """Coordinate ascent over the grid on ``value`` (module docstring), with the fallback start where the
        config names one; ``log`` records the fallback search in ``fallback_``."""
        n = len(self.components_)

        def ascend(start: np.ndarray, free: list[int]) -> tuple[np.ndarray, float]:
            """Coordinate ascent over the components in ``free`` (the others keep their weight in ``start``)."""
            best, best_value = start, value(start)
            for _ in range(self.config.rounds):
                improved = False
                for i in free:
                    for w in self.config.grid:
                        trial = best.copy()
                        trial[i] = w
                        if not trial.any() or np.array_equal(trial, best):
                            continue
                        v = value(trial)
                        if v > best_value + 1e-9:
                            best, best_value, improved = trial, v, True
                if not improved:
                    break
            return best, best_value

        def search(free: list[int]) -> tuple[np.ndarray, float]:
            """The ascent over ``free`` (the rest at 0) from two starts, since it can stop in a local optimum:
            equal weights, and the best of them alone (so it never ends below its best component). The same
            steps in the same order as a fusion of just these components takes."""
            equal = np.zeros(n)
            equal[free] = 1.0
            alone = [np.eye(n)[i] for i in free]
            best_single = alone[int(np.argmax([value(a) for a in alone]))]
            return max((ascend(equal, free), ascend(best_single, free)), key=lambda r: r[1])

        every = list(range(n))
        best, best_value = search(every)
        if self.config.fallback:
            base, base_value = search(sorted(self.config.fallback))
            if log:
                self.fallback_ = {"weights": base.tolist(), self.config.metric: base_value}
                report("fusion: fallback %s alone, valid %s %.4f", dict(zip(_labels(self.components_),
                       base.tolist())), self.config.metric, base_value)
            best, best_value = max(((best, best_value), ascend(base, every)), key=lambda r: r[1])
        return best, best_value

    def _shortlist_metric(self, validation: Any) -> Callable[[np.ndarray], np.ndarray] | None:
        """Each validation user's metric of a weight vector, from the shortlists (None where they do not apply)."""
        if self.shortlist is None or not hasattr(validation, "queries"):  # not an Evaluator
            return None
        sources = [lambda q, c=c: standardised(c.score(q)) for c in self.components_]
        try:
            return self.shortlist(validation, sources, self.config.metric,
                                  self.config.shortlist_depth).per_user_values
        except ValueError:  # a metric that needs the whole ranking (auc, ...)
            return None

    def _catalogue_metric(self, validation: Any) -> Callable[[np.ndarray], np.ndarray]:
        """Each validation user's metric of a weight vector, ranking the catalogue."""
        assert self.n_items_ is not None
        scorer, metric = _WeightedScores(self.components_, self.n_items_, self.fit_key_), self.config.metric

        def measure(weights: np.ndarray) -> np.ndarray:
            scorer.weights = weights
            per_user = validation.evaluate(scorer, name="fusion (valid)").per_user
            if metric not in per_user:
                raise ConfigError(f"fusion: metric {metric!r} is not among the validation metrics "
                                  f"({', '.join(sorted(per_user))})")
            return np.asarray(per_user[metric], dtype=np.float64)
        return measure

    def score(self, queries: Queries) -> np.ndarray:
        self._check_fitted()
        assert self.weights_ is not None and self.n_items_ is not None
        return weighted_sum(self.weights_, [standardised(c.score(queries)) if w > 0 else None
                                            for w, c in zip(self.weights_, self.components_)],
                            (len(queries), self.n_items_))

    # --- persistence: each component is a saved model of its own under components/<i> ------------------------
    def _save_files(self, folder: Path) -> None:
        for i, component in enumerate(self.components_):
            component.save(folder / COMPONENTS_DIR / str(i))

    def _load_files(self, folder: Path) -> None:
        if self.load_saved is None:
            raise ConfigError("fusion is loaded through lmrec.registry.load_model")
        self.components_ = [self.load_saved(folder / COMPONENTS_DIR / str(i))
                            for i in range(len(self.config.components))]

    def _state(self) -> dict[str, np.ndarray]:
        assert self.weights_ is not None
        return {"weights_": self.weights_}

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "search_": self.search_, "fallback_": self.fallback_, "bags_": self.bags_}


class _WeightedScores:
    """The weighted sum under search: each component's standardised scores for a batch of users are kept,
    so trying another weight costs one evaluation pass and no model scoring."""

    def __init__(self, components: list[Recommender], n_items: int, fit_key: str | None):
        self.components, self.n_items, self.fit_key_ = components, n_items, fit_key
        self.weights = np.ones(len(components))
        self.cache: dict[tuple[int, bytes], np.ndarray] = {}

    def score(self, queries: Queries) -> np.ndarray:
        parts = []
        for i, component in enumerate(self.components):
            key = (i, queries.users.tobytes())
            if self.weights[i] > 0 and key not in self.cache:
                self.cache[key] = standardised(component.score(queries))
            parts.append(self.cache.get(key))
        return weighted_sum(self.weights, parts, (len(queries), self.n_items))


def weighted_sum(weights: np.ndarray, parts: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``sum(w * part)`` over the positive weights, in float32 and in this order: the one definition of a
    fusion's score, since the shortlist search (``lmrec.eval.blend``) must reproduce it to the last bit.
    ``parts``: one array per weight (``None`` is allowed where the weight is 0); ``shape`` when all are."""
    out = np.zeros(shape if shape is not None else np.shape(parts[0]), dtype=np.float32)
    for w, part in zip(weights, parts):
        if w > 0:
            out += np.float32(w) * part
    return out


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (rows that are constant become zeros): scores of
    different models on one scale, without changing any model's own order."""
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.mean(1, keepdims=True)
    std = scores.std(1, keepdims=True)
    return np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1), 0).astype(np.float32)


def _mean(values: np.ndarray) -> float:
    """The mean over the users who have one (a user without a relevant item has NaN); the Evaluator's own
    (``lmrec.eval.results``) sits above the models, and the search must match its value to the last bit."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _labels(components: list[Recommender]) -> list[str]:
    """Component names for the log, numbered where a model appears more than once (two TextSeqRec variants)."""
    names = [c.name for c in components]
    return [f"{name}#{names[:i].count(name) + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _model_folder(path: Path) -> Path:
    """A bundle's model lives in its ``model`` folder; a saved model is the folder itself."""
    return path / "model" if (path / "bundle.json").is_file() else path
