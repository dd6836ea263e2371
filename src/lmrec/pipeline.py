"""The Python API: plain functions, one per job; the CLI is a thin layer over these."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmrec.artifacts import new_run_dir, write_config
from lmrec.ctr import CTRModel, RelevanceMLP, Reranked, create_reranker, ctr_examples
from lmrec.data import PrepareConfig, Prepared, get_spec, load_dataset, prepare
from lmrec.data.datasets import download_dataset, missing_files
from lmrec.data.stats import interaction_stats
from lmrec.errors import ConfigError, DatasetNotFound
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
from lmrec.models.text_query import TextQuery
from lmrec.progress import logger, progress
from lmrec.registry import create
from lmrec.text.cache import EmbeddingCache
from lmrec.text.encoder import DEFAULT_ENCODER, load_encoder
from lmrec.text.texts import default_template, item_vectors

DEMO_DATASET = "movielens-100k"


def prepare_dataset(config: PrepareConfig | str, data_dir: str | Path | None = None, force: bool = False) -> Prepared:
    """Prepare (or reload from the cache) a dataset split; see ``PrepareConfig`` for the options."""
    return prepare(config, data_dir=data_dir, force=force)


def dataset_info(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Statistics of a raw dataset (all events, before any split) and its predefined splits."""
    spec = get_spec(name, data_dir)
    ds = load_dataset(name, data_dir)
    return {
        "name": name,
        "description": spec.description,
        "default_split": spec.default_split,
        "predefined_splits": list(ds.predefined),
        "item_fields": ds.items.fields,
        "user_fields": ds.users.fields if ds.users is not None else [],
        **interaction_stats(ds.interactions, ds.items, ds.users),
        "catalogue_text_coverage": ds.items.coverage(),
    }


DEFAULT_MODELS = ("pop", "itemknn", "userknn", "tfidf", "ease", "bpr", "als")
DEMO_MODELS = (*DEFAULT_MODELS, "lmcontent", "hybridncf", "sasrec", "textseq")
# Keeps `lmrec demo` near 5 minutes on a 2-core CPU: TextSeqRec stops after 15 epochs at most (its full
# run, ~45 epochs, is in bench/seqrec.py); SASRec runs to early stopping (~20 epochs).
DEMO_PARAMS: dict[str, dict[str, Any]] = {"textseq": {"epochs": 15}}
DEMO_QUERY = "sci-fi about time travel, not horror"


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
class LeaderboardRun:
    """What ``leaderboard`` produced: the table, per-model results, and the run folder holding it all."""

    run_dir: Path
    table: pd.DataFrame
    results: list[EvalResult]
    significance: list[dict[str, Any]]
    report: Path | None = None


def leaderboard(
    config: PrepareConfig | str, models: tuple[str, ...] | list[str] = DEFAULT_MODELS, ks: tuple[int, ...] = (10, 20),
    params: dict[str, dict[str, Any]] | None = None, runs_dir: str | Path = "runs", data_dir: str | Path | None = None,
    html_report: bool = False, rerank: Rerank | None = None,
) -> LeaderboardRun:
    """Fit each model on the split's train part, evaluate on test (full ranking), and write the run folder:
    ``config.yaml``, ``metrics.json``, ``per_user.parquet``, ``leaderboard.md``, PNG plots (and
    ``report.html`` if asked). ``params`` maps a model name to its config overrides. With ``rerank``, each
    model is also evaluated with a CTR reranker on its top k (see ``Rerank``)."""
    params = params or {}
    unknown = set(params) - set(models) - ({rerank.model} if rerank else set())
    if unknown:
        raise ConfigError(f"--set names model(s) not in --models: {', '.join(sorted(unknown))}")
    prepared = prepare(config, data_dir=data_dir)
    evaluator = Evaluator(prepared.split, "test", ks=ks, item_vectors=category_vectors(prepared.items))
    built = [(name, create(name, **params.get(name, {}))) for name in models]  # config errors before any work
    reranker = create_reranker(rerank.model, **params.get(rerank.model, {})) if rerank else None
    if rerank is not None and isinstance(reranker, CTRModel) and prepared.split.train.label is None:
        raise ConfigError(f"--rerank {rerank.model} trains a CTR model on like / dislike labels, and {prepared.name} "
                          f"has no labels; use a labelled dataset such as movielens-1m-collm, or --rerank "
                          f"{RelevanceMLP.name} (trained on the retriever's candidates)")
    if rerank is not None and isinstance(reranker, RelevanceMLP) and rerank.train_rows is not None:
        raise ConfigError(f"--rerank-train-rows samples labelled CTR rows; {RelevanceMLP.name} trains on candidate "
                          f"lists (set {RelevanceMLP.name}.holdout to change how many)")
    # models trained for epochs stop early on the valid part (never on test)
    validation = (Evaluator(prepared.split, "valid", ks=tuple(sorted({*ks, 10})))  # 10: the default monitor
                  if any(m.uses_validation for _, m in built) else None)
    results, timings = [], {}
    for name, model in progress(built, desc="models", total=len(built)):
        started = time.perf_counter()
        model.fit(prepared.split.train, prepared.items, validation=validation)
        timings[name] = {"fit_s": time.perf_counter() - started}
        logger.info("fitted %s in %.2fs", name, timings[name]["fit_s"])
        results.append(evaluator.evaluate(model, name=name))
    if rerank is not None and reranker is not None:
        results += _reranked(prepared, evaluator, built, reranker, rerank, timings, params.get(rerank.model, {}))
    table = leaderboard_frame(results, timings)
    best = max(results, key=lambda r: r.means()[f"ndcg@{min(ks)}"])
    significance = [compare(best, r, f"ndcg@{min(ks)}") | {"a": best.model, "b": r.model}
                    for r in results if r is not best]

    run_dir = new_run_dir(runs_dir, f"{prepared.name}-{prepared.config.split}")
    write_config(run_dir, {"dataset": prepared.config.model_dump(), "models": {n: m.config.model_dump() for n, m in built},
                           "rerank": ({**asdict(rerank), "config": reranker.config.model_dump()}
                                      if rerank and reranker else None),
                           "ks": list(ks), "evaluation": {"part": "test", "mode": "full ranking, history masked"},
                           "prepared": str(prepared.path)})
    metrics = {r.model: {"means": r.means(), "ci95": r.ci95(), "aggregate": r.aggregate,
                         "fit_seconds": timings[r.model]["fit_s"], "eval_seconds": r.seconds, "users": len(r.users),
                         **{k: v for k, v in timings[r.model].items() if k.startswith("rerank_")}}
               for r in results}
    (run_dir / "metrics.json").write_text(json.dumps({"models": metrics, "significance": significance}, indent=2))
    per_user_frame(results).to_parquet(run_dir / "per_user.parquet", index=False)
    title = f"{prepared.name}, split {prepared.split.name}: test, full ranking over {prepared.split.n_items:,} items"
    sig = pd.DataFrame([{"model": s["b"], f"ndcg@{min(ks)} diff vs {s['a']}": s["diff"], "t-test p": s["t_p"],
                         "Wilcoxon p": s["wilcoxon_p"]} for s in significance])
    md = to_markdown(table, title) + ("\n" + to_markdown(sig, "Paired tests across users") if len(sig) else "")
    (run_dir / "leaderboard.md").write_text(md)
    k0 = min(ks)
    images = [plot_metric_bars(results, run_dir / "metrics_with_ci.png", (f"recall@{k0}", f"ndcg@{k0}")),
              plot_by_history_length(results, run_dir / f"ndcg@{min(ks)}_by_history_length.png", f"ndcg@{min(ks)}")]
    report = None
    if html_report:
        sections = [("Leaderboard", to_markdown(table))] + ([("Paired tests across users", to_markdown(sig))] if len(sig) else [])
        report = write_html(run_dir / "report.html", f"lmrec leaderboard: {title}", sections, images)
    return LeaderboardRun(run_dir, table, results, significance, report)


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


@dataclass
class TextRecommendation:
    """One recommended item for a text query."""

    item: str
    title: str
    score: float


def recommend_from_text(
    dataset: str, query: str, k: int = 10, encoder: str = DEFAULT_ENCODER, template: str | None = None,
    user: str | None = None, history_weight: float = 0.3, data_dir: str | Path | None = None,
) -> list[TextRecommendation]:
    """Items of ``dataset`` that match a free-text ``query`` (optionally blended with a user's history,
    whose items are then not recommended again)."""
    ds = load_dataset(dataset, data_dir)
    enc = load_encoder(encoder)
    vectors, _ = item_vectors(ds.items, enc, template)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    history_vector, exclude = None, None
    if user is not None:
        u = ds.interactions.users.index(user)
        exclude = ds.interactions.sequences()[u]
        history_vector = vectors[exclude].mean(0) if len(exclude) else None
    ids, scores = TextQuery(enc, vectors).recommend(query, k, exclude, history_vector,
                                                     history_weight if user is not None else 0.0)
    titles = ds.items["title"] if "title" in ds.items else np.asarray(ds.items.render(template or default_template(ds.items)))
    raw = ds.interactions.items.raws(ids)
    return [TextRecommendation(str(r), str(titles[i]), float(s)) for r, i, s in zip(raw, ids, scores)]


def encode_items(
    dataset: str, encoder: str = DEFAULT_ENCODER, template: str | None = None, batch_size: int = 64,
    max_length: int = 128, float16: bool = False, data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Encode a dataset's item texts into the embedding cache; returns what was done."""
    ds = load_dataset(dataset, data_dir)
    enc = load_encoder(encoder, batch_size=batch_size, max_length=max_length)
    template = template or default_template(ds.items)
    cache = EmbeddingCache()
    started = time.perf_counter()
    _, has_text = item_vectors(ds.items, enc, template, cache, dtype="float16" if float16 else "float32")
    return {"dataset": dataset, "encoder": encoder, "fingerprint": enc.fingerprint, "dim": enc.dim,
            "template": template, "items": len(has_text), "items_with_text": int(has_text.sum()),
            "seconds": time.perf_counter() - started, "cache": str(cache.root)}


def demo(data_dir: str | Path | None = None, download: bool = True, runs_dir: str | Path = "runs",
         models: tuple[str, ...] = DEMO_MODELS) -> tuple[Prepared, LeaderboardRun, list[TextRecommendation]]:
    """The main job: prepare MovieLens-100K (leave-one-out), run the leaderboard of classical and
    language-model recommenders with an HTML report, and answer a free-text query (``DEMO_QUERY``).

    If the dataset is not in the data home and ``download`` is true, it is fetched from GroupLens first
    (checksum-verified).
    """
    spec = get_spec(DEMO_DATASET, data_dir)
    if missing_files(spec, data_dir):
        if not download:
            raise DatasetNotFound(f"{DEMO_DATASET} is not in the data home and downloading is off")
        logger.warning("%s not found in the data home; downloading it from GroupLens", DEMO_DATASET)
        download_dataset(DEMO_DATASET, data_dir)
    config = PrepareConfig(dataset=DEMO_DATASET, split="loo")
    prepared = prepare(config, data_dir=data_dir)
    params = {m: p for m, p in DEMO_PARAMS.items() if m in models}
    run = leaderboard(config, models, params=params, data_dir=data_dir, runs_dir=runs_dir, html_report=True)
    answers = recommend_from_text(DEMO_DATASET, DEMO_QUERY, k=5, data_dir=data_dir)
    return prepared, run, answers
