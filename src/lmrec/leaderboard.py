"""The leaderboard in three steps: ``run_models`` (fit on train, evaluate on test, optional reranking),
``record_run`` (config, metrics, per-user metrics and bundles into the run folder) and ``report_run``
(markdown table, plots, HTML). ``lmrec.pipeline.leaderboard`` chains them."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmrec.artifacts import new_run_dir, write_config
from lmrec.bundle import write_bundle
from lmrec.ctr import CTRModel, RelevanceMLP, Reranked, ctr_examples
from lmrec.data import Prepared
from lmrec.errors import ConfigError
from lmrec.eval import EvalResult, Evaluator, compare
from lmrec.eval.report import (
    category_vectors,
    leaderboard_frame,
    per_user_frame,
    plot_by_history_length,
    plot_metric_bars,
    to_markdown,
    write_html,
)
from lmrec.progress import logger, progress, report
from lmrec.registry import RERANKER_KINDS, create


@dataclass
class Rerank:
    """Two-stage evaluation: a reranker reorders the top ``k`` of every leaderboard model; each pipeline is
    a row of its own, named ``MODEL+RERANKER@k``. A CTR model (``lmrec.ctr``: id-fm, frozen-mlp,
    cross-encoder) is fitted once on the split's labelled train rows (validated on its valid rows) and
    needs a labelled, timed dataset (e.g. movielens-1m-collm); ``relevance-mlp`` is fitted per retriever on
    that retriever's candidate lists from the train part (``lmrec.ctr.relevance``) and works on any dataset.
    The candidates' order fuses the reranker's and the retriever's ranks (``lmrec.ctr.rerank``): ``weight``
    1 is the reranker's order alone, 0 the retriever's; None picks it per pipeline on the valid users (0 unless
    the best weight's gain there is significant, see ``Reranked.fit_weight``)."""

    model: str = "cross-encoder"
    k: int = 100
    train_rows: int | None = None  # CTR rerankers: a stratified sample of the labelled train rows (None = all)
    weight: float | None = None  # reranker's share of the fused rank; None = chosen on validation


@dataclass
class ModelRuns:
    """What ``run_models`` produced: fitted models by name, their test results, timings and extras."""

    prepared: Prepared
    built: list[tuple[str, Any]]
    results: list[EvalResult]
    timings: dict[str, dict[str, Any]]
    reranker: Any = None
    rerank: Rerank | None = None
    ks: tuple[int, ...] = (10, 20)
    significance: list[dict[str, Any]] = field(default_factory=list)


def run_models(prepared: Prepared, models: tuple[str, ...] | list[str], ks: tuple[int, ...],
               params: dict[str, dict[str, Any]], rerank: Rerank | None = None) -> ModelRuns:
    """Fit each model on the split's train part and evaluate it on test (full ranking); models trained for
    epochs stop early on the valid part (never on test). With ``rerank``, each model is also evaluated
    with the reranker on its top k."""
    if not models:
        raise ConfigError("models: name at least one model")
    unknown = set(params) - set(models) - ({rerank.model} if rerank else set())
    if unknown:
        raise ConfigError(f"options are set for model(s) not in models: {', '.join(sorted(unknown))}")
    evaluator = Evaluator(prepared.split, "test", ks=ks, item_vectors=category_vectors(prepared.items))
    built = [(name, create(name, ("ranker",), **params.get(name, {}))) for name in models]  # errors before work
    reranker = create(rerank.model, RERANKER_KINDS, **params.get(rerank.model, {})) if rerank else None
    if rerank is not None and isinstance(reranker, CTRModel) and prepared.split.train.label is None:
        raise ConfigError(f"rerank model {rerank.model} trains a CTR model on like / dislike labels, and "
                          f"{prepared.name} has no labels; use a labelled dataset such as movielens-1m-collm, or "
                          f"rerank model {RelevanceMLP.name} (trained on the retriever's candidates)")
    if rerank is not None and isinstance(reranker, RelevanceMLP) and rerank.train_rows is not None:
        raise ConfigError(f"rerank train_rows samples labelled CTR rows; {RelevanceMLP.name} trains on candidate "
                          f"lists (set {RelevanceMLP.name}.holdout to change how many)")
    validation = (Evaluator(prepared.split, "valid", ks=tuple(sorted({*ks, 10})))  # 10: the default monitor
                  if any(m.uses_validation for _, m in built) else None)
    results, timings = [], {}
    for name, model in progress(built, desc="models", total=len(built)):
        started = time.perf_counter()
        model.fit(prepared.split.train, prepared.items, validation=validation)
        timings[name] = {"fit_s": time.perf_counter() - started}
        report("fitted %s in %.1f s", name, timings[name]["fit_s"])
        results.append(evaluator.evaluate(model, name=name))
    if rerank is not None and reranker is not None:
        results += _reranked(prepared, evaluator, built, reranker, rerank, timings, params.get(rerank.model, {}))
    best = max(results, key=lambda r: r.means()[f"ndcg@{min(ks)}"])
    significance = [compare(best, r, f"ndcg@{min(ks)}") | {"a": best.model, "b": r.model}
                    for r in results if r is not best]
    return ModelRuns(prepared, built, results, timings, reranker, rerank, ks, significance)


def record_run(runs: ModelRuns, runs_dir: str | Path, save_models: bool = False) -> Path:
    """A new run folder with ``config.yaml``, ``metrics.json``, ``per_user.parquet`` and, with
    ``save_models``, every fitted model as a bundle in ``models/NAME`` (``lmrec.bundle``)."""
    prepared = runs.prepared
    run_dir = new_run_dir(runs_dir, f"{prepared.name}-{prepared.config.split}")
    config = {"dataset": prepared.config.model_dump(), "models": {n: m.config.model_dump() for n, m in runs.built},
              "rerank": ({**asdict(runs.rerank), "config": runs.reranker.config.model_dump()}
                         if runs.rerank and runs.reranker else None),
              "ks": list(runs.ks), "evaluation": {"part": "test", "mode": "full ranking, history masked"},
              "prepared": str(prepared.path)}
    write_config(run_dir, config)
    metrics = {r.model: {"means": r.means(), "ci95": r.ci95(), "aggregate": r.aggregate,
                         "fit_seconds": runs.timings[r.model]["fit_s"], "eval_seconds": r.seconds,
                         "users": len(r.users),
                         **{k: v for k, v in runs.timings[r.model].items() if k.startswith("rerank_")}}
               for r in runs.results}
    (run_dir / "metrics.json").write_text(json.dumps({"models": metrics, "significance": runs.significance},
                                                     indent=2))
    per_user_frame(runs.results).to_parquet(run_dir / "per_user.parquet", index=False)
    if save_models:
        by_name = {r.model: r for r in runs.results}
        for name, model in runs.built:
            write_bundle(run_dir / "models" / name, model, prepared,
                         {"dataset": config["dataset"], "model": name, "params": model.config.model_dump()},
                         training_metrics(model, by_name[name], runs.timings[name]["fit_s"]), test=by_name[name])
    return run_dir


def training_metrics(model: Any, test: EvalResult, fit_seconds: float) -> dict[str, Any]:
    """What a bundle records about its training run: test means, the validation curve, timings."""
    result = getattr(model, "train_result_", None)
    return {"test": test.means(), "test_aggregate": test.aggregate, "test_users": len(test.users),
            "fit_seconds": fit_seconds, "valid_curve": result.history if result is not None else [],
            "best_epoch": result.best_epoch if result is not None else None}


def report_run(runs: ModelRuns, run_dir: Path, html_report: bool = False) -> tuple[pd.DataFrame, Path | None]:
    """``leaderboard.md``, PNG plots and (optionally) ``report.html`` in ``run_dir``; returns the table."""
    prepared, ks, results = runs.prepared, runs.ks, runs.results
    table = leaderboard_frame(results, runs.timings, ks)
    title = f"{prepared.name}, split {prepared.split.name}: test, full ranking over {prepared.split.n_items:,} items"
    sig = pd.DataFrame([{"model": s["b"], f"ndcg@{min(ks)} diff vs {s['a']}": s["diff"], "t-test p": s["t_p"],
                         "Wilcoxon p": s["wilcoxon_p"]} for s in runs.significance])
    md = to_markdown(table, title) + ("\n" + to_markdown(sig, "Paired tests across users") if len(sig) else "")
    (run_dir / "leaderboard.md").write_text(md)
    k0 = min(ks)
    images = [plot_metric_bars(results, run_dir / "metrics_with_ci.png", (f"recall@{k0}", f"ndcg@{k0}")),
              plot_by_history_length(results, run_dir / f"ndcg@{k0}_by_history_length.png", f"ndcg@{k0}")]
    report = None
    if html_report:
        sections = [("Leaderboard", to_markdown(table))] + ([("Paired tests across users", to_markdown(sig))]
                                                            if len(sig) else [])
        report = write_html(run_dir / "report.html", f"lmrec leaderboard: {title}", sections, images)
    return table, report


def _reranked(prepared: Prepared, evaluator: Evaluator, built: list[tuple[str, Any]],
              reranker: CTRModel | RelevanceMLP, rerank: Rerank, timings: dict[str, dict[str, float]],
              params: dict[str, Any]) -> list[EvalResult]:
    """Fit the reranker (a CTR model once; a relevance reranker per retriever, on its own candidates), then
    evaluate every fitted model with it on top (see ``Rerank``)."""
    fit_s, trained_on = 0.0, {}
    if isinstance(reranker, CTRModel):
        train = ctr_examples(prepared.split, "train").sample(rerank.train_rows)
        started = time.perf_counter()
        reranker.fit(train, prepared.items, ctr_examples(prepared.split, "valid"))
        fit_s = time.perf_counter() - started
        trained_on = {"rerank_train_rows": len(train)}
        logger.info("fitted reranker %s on %d rows in %.2fs", rerank.model, len(train), fit_s)
    valid = Evaluator(prepared.split, "valid", ks=(10,))
    results = []
    for name, model in built:
        if isinstance(reranker, RelevanceMLP):
            reranker = RelevanceMLP(**params)  # each retriever's candidates train their own reranker
            started = time.perf_counter()
            reranker.fit(model, prepared.split.train, prepared.items, rerank.k)
            fit_s = time.perf_counter() - started
            assert reranker.list_stats_ is not None
            trained_on = {"rerank_train_lists": reranker.list_stats_.lists,
                          "rerank_list_hit_rate": reranker.list_stats_.hit_rate}
            logger.info("fitted reranker %s on %s's candidates in %.2fs", rerank.model, name, fit_s)
        two_stage = Reranked(model, reranker, rerank.k, weight=1.0 if rerank.weight is None else rerank.weight)
        chosen = {}
        if rerank.weight is None:
            started = time.perf_counter()
            choice = two_stage.fit_weight(valid)
            chosen = {"rerank_valid_ndcg@10": choice.curve, "rerank_valid_best_weight": choice.best,
                      "rerank_valid_p": choice.p_value, "rerank_weight_choice_s": time.perf_counter() - started}
            logger.info("%s: fused-rank weight %.1f (best on valid %.1f, paired t-test p vs the retriever's order "
                        "%s; NDCG@10 %s)", two_stage.name, two_stage.weight, choice.best,
                        "-" if choice.p_value is None else f"{choice.p_value:.3g}",
                        ", ".join(f"{w}: {v:.4f}" for w, v in choice.curve.items()))
        results.append(evaluator.evaluate(two_stage, name=two_stage.name))
        # fit: retriever + reranker; the reranking cost per user is what the second stage adds at serving time
        timings[two_stage.name] = {"fit_s": timings[name]["fit_s"] + fit_s,
                                   "rerank_ms_per_user": 1000 * two_stage.seconds_per_user,
                                   "rerank_weight": two_stage.weight, "rerank_fit_s": fit_s, **trained_on, **chosen}
    return results
