"""What earlier runs left on disk, read back: ``lmrec runs list | show | compare``.

Three kinds of folder count as a run, each recognised by the file it always has:

* a leaderboard run (``lmrec bench``): ``metrics.json`` + ``config.yaml`` + ``per_user.parquet``, one or more
  models; a model in it is referred to as ``FOLDER:MODEL`` (just ``FOLDER`` when it holds one);
* a bundle (``lmrec train``, ``lmrec tune``, ``lmrec refit``): ``bundle.json``; its test metrics per user are in
  ``per_user.parquet`` (bundles written before that file existed are evaluated again when compared);
* a search (``lmrec tune``): ``tune.json``, which names the bundle its best trial was trained into.

``compare`` pairs two runs' per-user test metrics over the users both evaluated (paired t-test and
Wilcoxon signed-rank, ``lmrec.eval.compare``); both must come from the same prepared split.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lmrec.bundle import Bundle
from lmrec.errors import ConfigError
from lmrec.eval import EvalResult, Evaluator, compare

PER_USER = "per_user.parquet"
MAX_DEPTH = 4  # runs/<bench run>/models/<bundle> is the deepest layout lmrec writes


@dataclass
class Run:
    """One run folder, as ``list`` shows it."""

    path: Path
    kind: str  # "bench" | "bundle" | "tune"
    dataset: dict[str, Any]  # the preparation (name, split, filters): equal for runs on the same split
    models: list[str]
    test: dict[str, dict[str, float]]  # model -> test means
    created: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.dataset.get('dataset', '?')} / {self.dataset.get('split', '?')}"


def read_run(path: str | Path) -> Run:
    """The run in folder ``path``; ``ConfigError`` if it is none of the three kinds."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder")
    if (path / "bundle.json").is_file():
        meta = _json(path / "bundle.json")
        metrics = _json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        return Run(path, "bundle", meta.get("dataset", {}), [meta.get("model", "?")],
                   {meta.get("model", "?"): metrics.get("test", {})}, meta.get("created", _mtime(path)),
                   {"fit_seconds": metrics.get("fit_seconds"), "best_epoch": metrics.get("best_epoch")})
    if (path / "tune.json").is_file():
        t = _json(path / "tune.json")
        bundle = Path(t.get("bundle", ""))
        dataset = read_run(bundle).dataset if (bundle / "bundle.json").is_file() else {
            "dataset": t.get("dataset"), "split": t.get("split")}
        return Run(path, "tune", dataset, [t.get("model", "?")], {t.get("model", "?"): t.get("test", {})},
                   _mtime(path / "tune.json"),
                   {k: t.get(k) for k in ("trials", "search_seconds", "metric", "best_valid", "best_params",
                                          "importances", "bundle")})
    if (path / "metrics.json").is_file() and (path / "config.yaml").is_file():
        metrics = _json(path / "metrics.json")
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        models = metrics.get("models", {})
        return Run(path, "bench", config.get("dataset", {}), list(models),
                   {m: v.get("means", {}) for m, v in models.items()}, _mtime(path / "metrics.json"),
                   {"fit_seconds": {m: v.get("fit_seconds") for m, v in models.items()},
                    "significance": metrics.get("significance", [])})
    raise ConfigError(f"{path} is not a run: no bundle.json, tune.json, or metrics.json with config.yaml")


def find_runs(root: str | Path) -> list[Run]:
    """Every run under ``root`` (bundles inside a leaderboard run too), oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder (lmrec writes runs to ./runs unless told otherwise)")
    found = []

    def walk(folder: Path, depth: int) -> None:
        try:
            found.append(read_run(folder))
        except ConfigError:
            pass
        if depth < MAX_DEPTH:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
                if child.name not in ("model", "data"):  # a bundle's insides
                    walk(child, depth + 1)

    walk(root, 0)
    return sorted(found, key=lambda r: (r.created, str(r.path)))


def per_user(ref: str, metric: str) -> tuple[Run, EvalResult]:
    """``ref`` = ``FOLDER`` or ``FOLDER:MODEL``: the run and its test ``metric`` per user."""
    folder, _, model = ref.rpartition(":") if ":" in ref and not Path(ref).is_dir() else (ref, "", "")
    run = read_run(folder)
    if run.kind == "tune":
        bundle = run.extra.get("bundle")
        if not bundle:
            raise ConfigError(f"{folder}: the search names no bundle to compare")
        return per_user(str(bundle), metric)
    if not model:
        if len(run.models) != 1:
            raise ConfigError(f"{folder} holds {len(run.models)} models ({', '.join(run.models)}): "
                              f"name one as {folder}:MODEL")
        model = run.models[0]
    if model not in run.models:
        raise ConfigError(f"{folder} has no model {model!r}; it has {', '.join(run.models)}")
    if (run.path / PER_USER).is_file():
        frame = pd.read_parquet(run.path / PER_USER)
        frame = frame[frame["model"] == model]
        if metric not in frame:
            known = [c for c in frame.columns if "@" in c or c == "auc"]
            raise ConfigError(f"{ref}: no per-user {metric!r}; it has {', '.join(known)}")
        users, values = frame["user"].to_numpy(), frame[metric].to_numpy(dtype=np.float64)
    elif run.kind == "bundle":  # written before bundles kept per-user metrics: evaluate once more
        bundle = Bundle.load(run.path)
        k = int(metric.split("@")[1]) if "@" in metric and metric.split("@")[1].isdigit() else 10
        result = Evaluator(bundle.prepared.split, "test", ks=(k,)).evaluate(bundle.model, name=model)
        if metric not in result.per_user:
            raise ConfigError(f"{ref}: no per-user {metric!r}; it has {', '.join(result.per_user)}")
        users, values = result.users, result.per_user[metric]
    else:
        raise ConfigError(f"{folder}: {PER_USER} is missing, so there is nothing to pair per user")
    return run, EvalResult(f"{run.path.name}:{model}", "test", "full", users, {metric: values}, {})


def compare_runs(a: str, b: str, metric: str = "ndcg@10") -> dict[str, Any]:
    """Paired test of run ``a`` against run ``b`` per user on ``metric`` (same split required)."""
    run_a, res_a = per_user(a, metric)
    run_b, res_b = per_user(b, metric)
    if run_a.dataset != run_b.dataset:
        raise ConfigError(f"{a} was evaluated on {run_a.label} and {b} on {run_b.label} (or with other preparation "
                          "options): a per-user comparison needs the same prepared split")
    return {"a": a, "b": b, "dataset": run_a.label, **compare(res_a, res_b, metric)}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None


def _mtime(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
