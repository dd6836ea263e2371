"""Hyperparameter search that never touches test (``lmrec tune``), on Optuna.

Each trial fits the model on the split's train part and is scored on the valid part only; models trained in
epochs report their validation curve to the trial, so a pruner stops a poor trial early. While the search
runs the test part is locked (``lmrec.eval.lock_test_part``): building a test Evaluator is an error. The
study lives in SQLite, so a killed search resumes where it stopped and ``trials`` is the number the study
ends with. Search spaces come from ``spaces.yaml`` (shipped defaults) or a file of the same form. A new
study's first trial is the model's default configuration (the parameters the space holds), so a search
never chooses something worse on validation than the defaults.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from lmrec.data.prepared import Prepared
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator, lock_test_part
from lmrec.fsutil import atomic_dir
from lmrec.progress import logger
from lmrec.registry import create, load_model, model_class
from lmrec.train.tracking import metric_key, mlflow_client, tensorboard_writer

RANKING_METRICS = ("ndcg", "recall", "hit", "mrr", "map", "precision")
Sampler = Literal["tpe", "random", "grid"]
Pruner = Literal["median", "none"]


def default_spaces() -> dict[str, dict[str, Any]]:
    """The shipped search space of every model that has one."""
    return yaml.safe_load(resources.files("lmrec.tuning").joinpath("spaces.yaml").read_text())


def load_space(model: str, file: str | Path | None = None) -> dict[str, Any]:
    """The search space of ``model`` (from ``file``, else the shipped defaults), checked against its options."""
    spaces = default_spaces() if file is None else _read_yaml(Path(file))
    if model not in spaces:
        where = "the shipped spaces" if file is None else str(file)
        raise ConfigError(f"no search space for {model!r} in {where} (it has {', '.join(sorted(spaces))}); "
                          "give one with --space FILE")
    space = spaces[model]
    fields = model_class(model).Config.model_fields
    for name, spec in space.items():
        if name not in fields:
            raise ConfigError(f"search space of {model!r}: {name!r} is not one of its options ({', '.join(fields)})")
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "categorical":
            if not spec.get("choices"):
                raise ConfigError(f"search space of {model!r}: {name!r} needs a non-empty 'choices' list")
        elif kind in ("int", "float"):
            if not {"low", "high"} <= set(spec) or spec["low"] > spec["high"]:
                raise ConfigError(f"search space of {model!r}: {name!r} needs low <= high")
            if spec.get("log") and spec["low"] <= 0:
                raise ConfigError(f"search space of {model!r}: {name!r} is log-scaled, so low must be > 0")
        else:
            raise ConfigError(f"search space of {model!r}: {name!r} has type {kind!r}; use float, int or categorical")
    return space


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read a search space file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search space file maps model names to their parameters")
    return data


def _suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


class _ReportingValidation:
    """The validation a model trained in epochs calls after each epoch: reports the metric to the trial and
    stops a trial the pruner gives up on (``optuna.TrialPruned`` leaves the training loop)."""

    def __init__(self, evaluator: Evaluator, trial: Any, metric: str):
        self.evaluator, self.trial, self.metric, self.step = evaluator, trial, metric, 0

    def evaluate(self, model: Any, name: str | None = None) -> Any:
        import optuna

        result = self.evaluator.evaluate(model, name=name)
        self.step += 1
        self.trial.report(result.means()[self.metric], self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {result.means()[self.metric]:.4f} after epoch {self.step}")
        return result


KEPT_JSON = "kept.json"  # beside a kept model (``search(keep=...)``): its study, trial, parameters, fit seconds


@dataclass
class SearchResult:
    study: Any  # optuna.Study
    best_params: dict[str, Any]
    best_value: float
    metric: str
    trials: list[dict[str, Any]]
    seconds: float  # the trials' own time, summed (the search's CPU budget on one core)
    kept: Path | None = None  # the folder ``keep`` saved the best trial's fitted model in (None: not asked)

    def best_model(self) -> tuple[Any, float] | None:
        """``(the best trial's fitted model, its fit seconds)`` where ``keep`` saved it, else None (not kept,
        or the study's best trial ran in an earlier search that kept nothing, or its folder is gone)."""
        meta_file = None if self.kept is None else self.kept / KEPT_JSON
        if meta_file is None or not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        best = (self.study.study_name, self.study.best_trial.number, self.best_params)
        if (meta.get("study"), meta.get("trial"), meta.get("params")) != best:
            return None
        return load_model(self.kept / "model"), float(meta["fit_seconds"])


def _keep(model: Any, folder: Path, trial: Any, params: dict[str, Any], fit_seconds: float) -> None:
    """Save a trial's fitted model with its study, trial number and parameters (the folder replaced atomically)."""
    with atomic_dir(folder) as tmp:
        model.save(tmp / "model")
        (tmp / KEPT_JSON).write_text(json.dumps({"study": trial.study.study_name, "trial": trial.number,
                                                 "params": params, "fit_seconds": fit_seconds}, default=str))


def search(prepared: Prepared, model: str, trials: int, storage: Path, metric: str = "ndcg@10",
           fixed: dict[str, Any] | None = None, space_file: str | Path | None = None, sampler: Sampler = "tpe",
           pruner: Pruner | Any = "median", timeout: float | None = None, jobs: int = 1, seed: int = 0,
           track: tuple[str, ...] | list[str] = (), keep: Path | None = None) -> SearchResult:
    """Run (or resume) the study in ``storage`` until it holds ``trials`` finished trials (or ``timeout``
    seconds pass); returns the best parameters found on validation. ``track``: also log each trial to
    ``mlflow`` (one run per trial in an experiment named after the study; local store ``mlflow.db`` beside
    the study unless ``MLFLOW_TRACKING_URI`` says otherwise) and / or ``tensorboard`` (event files in
    ``tensorboard/`` beside the study). ``keep``: a folder where each trial better than every earlier one
    saves its fitted model, so the best configuration need not be trained again (``best_model``)."""
    import optuna

    if trials < 1 or jobs < 1:
        raise ConfigError(f"trials and jobs must be at least 1, got {trials} and {jobs}")
    space = load_space(model, space_file)
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(space))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: fixed with --set and also searched; drop one of the two")
    create(model, ("ranker",), **fixed)  # bad fixed options fail before any trial
    name, _, cut = metric.partition("@")
    if name not in RANKING_METRICS or not cut.isdigit() or int(cut) < 1:
        raise ConfigError(f"metric {metric!r}: use one of {', '.join(RANKING_METRICS)} at a cut-off, e.g. ndcg@10")
    evaluator = Evaluator(prepared.split, "valid", ks=tuple(sorted({int(cut), 10})))
    storage.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # lmrec reports progress itself
    study = optuna.create_study(
        study_name=f"{prepared.name}-{prepared.split.name}-{model}-{metric}", storage=f"sqlite:///{storage}",
        load_if_exists=True, direction="maximize", sampler=_sampler(sampler, space, seed), pruner=_pruner(pruner))
    # the value a trial must beat for ``keep`` to save its model (parallel trials compare under the lock)
    kept_value = [max((t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                      default=-np.inf)]
    kept_lock = threading.Lock()

    def objective(trial: Any) -> float:
        params = {**fixed, **{name: _suggest(trial, name, spec) for name, spec in space.items()}}
        recommender = create(model, ("ranker",), **params)
        started = time.perf_counter()
        validation = _ReportingValidation(evaluator, trial, metric) if recommender.uses_validation else None
        recommender.fit(prepared.split.train, prepared.items, validation=validation)
        fit_seconds = round(time.perf_counter() - started, 2)
        value = float(evaluator.evaluate(recommender, name=model).means()[metric])
        trial.set_user_attr("fit_seconds", fit_seconds)
        if keep is not None:
            with kept_lock:
                if value > kept_value[0]:
                    _keep(recommender, keep, trial, params, fit_seconds)
                    kept_value[0] = value
        return value

    if not study.trials:  # a new study tries the model's defaults first: a search never ends below them
        defaults = _defaults_in_space(model, space, fixed)
        if defaults:
            study.enqueue_trial(defaults)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    remaining = trials - len(done)
    if done:
        logger.info("study %s: %d trials already done, %d to go", study.study_name, len(done), max(remaining, 0))
    if remaining > 0:
        log = _TrialLog(list(track), storage.parent, study.study_name, metric)
        with lock_test_part(f"the search for {model} runs"):
            try:
                study.optimize(objective, n_trials=remaining, timeout=timeout, n_jobs=jobs, catch=(), callbacks=[log])
            finally:
                log.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"no trial of {model} completed; raise --trials or use --pruner none")
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "seconds": t.duration.total_seconds() if t.duration else None} for t in study.trials]
    seconds = float(np.nansum([r["seconds"] or 0.0 for r in rows]))
    best = study.best_trial
    return SearchResult(study, {**fixed, **best.params}, float(best.value), metric, rows, seconds, keep)


class _TrialLog:
    """Optuna callback: each finished trial (complete or pruned) as an MLflow run and TensorBoard points."""

    def __init__(self, kinds: list[str], folder: Path, experiment: str, metric: str):
        unknown = sorted(set(kinds) - {"mlflow", "tensorboard"})
        if unknown:
            raise ConfigError(f"track: unknown tracker(s) {', '.join(unknown)}; use mlflow and / or tensorboard")
        self.metric, self.experiment = metric, experiment
        self.mlflow = mlflow_client(folder / "mlflow.db") if "mlflow" in kinds else None
        self.tb = tensorboard_writer(folder / "tensorboard") if "tensorboard" in kinds else None

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        curve = sorted(trial.intermediate_values.items())
        key = metric_key(self.metric)
        if self.mlflow is not None:
            experiment = self.mlflow.set_experiment(self.experiment)
            with self.mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"trial {trial.number}"):
                self.mlflow.log_params(trial.params)
                self.mlflow.set_tags({"state": state, "study": study.study_name})
                for step, value in curve:
                    self.mlflow.log_metric(f"valid_{key}", value, step=step)
                if trial.value is not None:
                    self.mlflow.log_metric(key, trial.value)
        if self.tb is not None:
            for step, value in curve:
                self.tb.add_scalar(f"trial-{trial.number}/valid_{self.metric}", value, step)
            if trial.value is not None:
                self.tb.add_scalar(self.metric, trial.value, trial.number)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _defaults_in_space(model: str, space: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """The model's default value of each searched parameter that the space contains."""
    config = create(model, ("ranker",), **fixed).config
    out = {}
    for name, spec in space.items():
        value = getattr(config, name, None)
        if value is None:
            continue
        if spec["type"] == "categorical":
            if value in spec["choices"]:
                out[name] = value
        elif spec["low"] <= value <= spec["high"]:
            out[name] = value
    return out


def _sampler(kind: Sampler, space: dict[str, Any], seed: int) -> Any:
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        if any(spec["type"] != "categorical" for spec in space.values()):
            raise ConfigError("a grid search needs every parameter as categorical choices (give a space file)")
        return optuna.samplers.GridSampler({name: spec["choices"] for name, spec in space.items()}, seed=seed)
    raise ConfigError(f"sampler must be tpe, random or grid, got {kind!r}")


def _pruner(kind: Pruner | Any) -> Any:
    import optuna

    if kind == "median":  # no pruning before 3 finished trials, nor in a trial's first 2 epochs
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if kind == "none":
        return optuna.pruners.NopPruner()
    if isinstance(kind, str):
        raise ConfigError(f"pruner must be median or none, got {kind!r}")
    return kind  # an optuna pruner object (Python API)


def importances(result: SearchResult) -> dict[str, float]:
    """Each searched parameter's share of the metric's variance across completed trials (Optuna's fANOVA);
    empty when there are too few trials to tell."""
    import optuna

    complete = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not complete[0].params:
        return {}
    try:
        with warnings.catch_warnings():  # few trials: Optuna warns that its estimate is rough; the report says how many
            warnings.simplefilter("ignore", UserWarning)
            found = optuna.importance.get_param_importances(result.study)
        return {k: round(float(v), 4) for k, v in found.items()}
    except (RuntimeError, ValueError) as exc:  # e.g. every trial got the same value
        logger.info("parameter importances not computed: %s", exc)
        return {}


def plot_history(result: SearchResult, path: Path) -> Path:
    """The optimisation history: each trial's validation metric and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    done = [r for r in result.trials if r["value"] is not None and r["state"] == "complete"]
    xs, ys = [r["number"] for r in done], [r["value"] for r in done]
    ax.scatter(xs, ys, s=18, label="trial")
    ax.plot(xs, np.maximum.accumulate(ys) if ys else ys, color="tab:red", label="best so far")
    pruned = [r["number"] for r in result.trials if r["state"] == "pruned"]
    if pruned:
        ax.scatter(pruned, [min(ys or [0])] * len(pruned), marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {result.metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
