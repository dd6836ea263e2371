"""The Python API: plain functions, one per job; the CLI is a thin layer over these."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from lmrec.batch import BatchEngine, recommend_all
from lmrec.bundle import Bundle, Recommendation, write_bundle
from lmrec.data import PrepareConfig, Prepared, get_spec, list_datasets, load_dataset, prepare
from lmrec.data.datasets import download_dataset, missing_files
from lmrec.data.prepared import Engine, prepare_on_disk, prepared_summary
from lmrec.data.stats import interaction_stats
from lmrec.errors import ConfigError, DataError, DatasetNotFound, LmrecError
from lmrec.eval import EvalResult, Evaluator
from lmrec.eval.report import category_vectors
from lmrec.explain import Explanation, explain
from lmrec.federated import FederatedConfig, FederatedResult, federate, run_client, run_server
from lmrec.fsutil import inside
from lmrec.leaderboard import Rerank, record_run, report_run, run_models, training_metrics
from lmrec.models.text_query import TextQuery
from lmrec.models.two_tower import TwoTowerLM
from lmrec.progress import logger, report
from lmrec.raydata import RayEncoder
from lmrec.registry import create, load_model
from lmrec.retrieval import KINDS as RETRIEVAL_KINDS
from lmrec.text.cache import EmbeddingCache
from lmrec.text.encoder import DEFAULT_ENCODER, TextEncoder, load_encoder
from lmrec.text.texts import ItemTextChunks, default_template, encode_item_chunks, item_vectors
from lmrec.train import distributed
from lmrec.transfer import pretrain, transfer, transfer_grid

__all__ = ["LeaderboardRun", "Recommendation", "Rerank", "TrainRun", "dataset_info", "demo", "demo_bundle", "demo_serve", "download_dataset",
           "encode_items", "evaluate_bundle", "export_encoder", "leaderboard", "list_datasets", "prepare_dataset", "recommend_all_users", "federated", "FederatedConfig",
           "prepare_dataset_on_disk", "prepared_summary",
           "explain_from_bundle", "online_report", "tune", "pretrain", "recommend_from_bundle", "recommend_from_text", "refit", "serve", "train", "transfer", "transfer_grid"]

DEMO_DATASET = "movielens-100k"


def prepare_dataset(config: PrepareConfig | str, data_dir: str | Path | None = None, force: bool = False,
                    engine: Engine = "memory", memory_limit: str | None = None) -> Prepared:
    """Prepare (or reload from the cache) a dataset split; see ``PrepareConfig`` for the options."""
    return prepare(config, data_dir=data_dir, force=force, engine=engine, memory_limit=memory_limit)


def prepare_dataset_on_disk(config: PrepareConfig | str, data_dir: str | Path | None = None, force: bool = False,
                            engine: Engine = "memory", memory_limit: str | None = None) -> Path:
    """As ``prepare_dataset``, returning the prepared folder without loading its rows (``prepared_summary``
    reads what it says of itself)."""
    return prepare_on_disk(config, data_dir=data_dir, force=force, engine=engine, memory_limit=memory_limit)


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
        "title_field": ds.items.display_field,
        "text_template": default_template(ds.items) if ds.items.fields else None,
        "user_fields": ds.users.fields if ds.users is not None else [],
        **interaction_stats(ds.interactions, ds.items, ds.users),
        "catalogue_text_coverage": ds.items.coverage(),
    }


DEFAULT_MODELS = ("pop", "itemknn", "userknn", "tfidf", "ease", "bpr", "als")
DEMO_MODELS = (*DEFAULT_MODELS, "lmcontent", "hybridncf", "sasrec", "textseq")
# Keeps `lmrec demo` short on a CPU: TextSeqRec stops after 15 epochs at most (its full run is in
# bench/seqrec.py); SASRec runs to early stopping.
DEMO_PARAMS: dict[str, dict[str, Any]] = {"textseq": {"epochs": 15}}
DEMO_QUERY = "sci-fi about time travel, not horror"


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
    html_report: bool = False, rerank: Rerank | None = None, save_models: bool = False,
) -> LeaderboardRun:
    """Fit each model on the split's train part, evaluate on test (full ranking), and write the run folder:
    ``config.yaml``, ``metrics.json``, ``per_user.parquet``, ``leaderboard.md``, PNG plots (and
    ``report.html`` if asked; with ``save_models`` every fitted model as a bundle in ``models/NAME``).
    ``params`` maps a model name to its config overrides. With ``rerank``, each model is also evaluated
    with a reranker on its top k (see ``Rerank``)."""
    _check_ks(ks)
    prepared = prepare(config, data_dir=data_dir)
    runs = run_models(prepared, models, ks, params or {}, rerank)
    run_dir = record_run(runs, runs_dir, save_models)
    table, report = report_run(runs, run_dir, html_report)
    return LeaderboardRun(run_dir, table, runs.results, runs.significance, report)


def _check_ks(ks: tuple[int, ...]) -> None:
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks: cut-offs must be positive integers, got {list(ks)}")




def recommend_from_text(
    dataset: str, query: str, k: int = 10, encoder: str = DEFAULT_ENCODER, template: str | None = None,
    user: str | None = None, history_weight: float = 0.3, data_dir: str | Path | None = None,
) -> list[Recommendation]:
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
    titles = ds.items.titles()
    raw = ds.interactions.items.raws(ids)
    return [Recommendation(str(r), str(titles[i]), float(s)) for r, i, s in zip(raw, ids, scores)]


def encode_items(
    dataset: str | None, encoder: str = DEFAULT_ENCODER, template: str | None = None, batch_size: int = 64,
    max_length: int = 128, float16: bool = False, data_dir: str | Path | None = None,
    engine: Literal["local", "ray"] = "local", workers: int | None = None, address: str | None = None,
    prepared: str | Path | None = None, chunk: int = 65_536,
) -> dict[str, Any]:
    """Encode a dataset's item texts into the embedding cache; returns what was done. ``engine="ray"`` encodes
    on the Ray cluster at ``address`` (default: a running one, else a local one) with ``workers`` encoders;
    the cache entry is the one the local engine writes.

    ``prepared``: a prepared dataset's folder instead of a dataset name: its item table is read ``chunk`` items
    at a time and the entry written chunk by chunk (memory bounded by a chunk, for catalogues whose text does
    not fit in memory); it is the entry models trained on that preparation read."""
    if (dataset is None) == (prepared is None):
        raise ConfigError("give a dataset name or --prepared FOLDER (one of them)")
    options = {"batch_size": batch_size, "max_length": max_length}
    if engine == "ray":
        enc: TextEncoder = RayEncoder(encoder, options, workers=workers, address=address)
    elif engine == "local":
        enc = load_encoder(encoder, **options)
    else:
        raise ConfigError(f"engine: {engine!r} is not one of local, ray")
    cache = EmbeddingCache()
    dtype = "float16" if float16 else "float32"
    started = time.perf_counter()
    if prepared is not None:
        folder = Path(prepared)
        if not (folder / "meta.json").is_file() or not (folder / "items.parquet").is_file():
            raise ConfigError(f"{folder} is not a prepared dataset folder (lmrec datasets prepare prints one)")
        chunks = ItemTextChunks(folder, template, chunk)
        _, has_text = encode_item_chunks(chunks, enc, cache, dtype=dtype)
        name, template = json.loads((folder / "meta.json").read_text())["dataset"], chunks.template
    else:
        assert dataset is not None
        ds = load_dataset(dataset, data_dir)
        name, template = dataset, template or default_template(ds.items)
        _, has_text = item_vectors(ds.items, enc, template, cache, dtype=dtype)
    return {"dataset": name, "encoder": encoder, "fingerprint": enc.fingerprint, "dim": enc.dim,
            "template": template, "items": len(has_text), "items_with_text": int(has_text.sum()),
            "seconds": time.perf_counter() - started, "cache": str(cache.root),
            "chunk": chunk if prepared is not None else None}


def demo(data_dir: str | Path | None = None, download: bool = True, runs_dir: str | Path = "runs",
         models: tuple[str, ...] = DEMO_MODELS) -> tuple[Prepared, LeaderboardRun, list[Recommendation]]:
    """The main job: prepare MovieLens-100K (leave-one-out), run the leaderboard of classical and
    language-model recommenders with an HTML report, and answer a free-text query (``DEMO_QUERY``).

    If the dataset is not in the data home and ``download`` is true, it is fetched from GroupLens first
    (checksum-verified).
    """
    _ensure_demo_data(data_dir, download)
    config = PrepareConfig(dataset=DEMO_DATASET, split="loo")
    prepared = prepare(config, data_dir=data_dir)
    params = {m: p for m, p in DEMO_PARAMS.items() if m in models}
    run = leaderboard(config, models, params=params, data_dir=data_dir, runs_dir=runs_dir, html_report=True)
    answers = recommend_from_text(DEMO_DATASET, DEMO_QUERY, k=5, data_dir=data_dir)
    return prepared, run, answers


DEMO_SERVE_MODEL = "lmcontent"  # reads text: the page's wishes, "why" with words, new items all work


def _ensure_demo_data(data_dir: str | Path | None, download: bool) -> None:
    if missing_files(get_spec(DEMO_DATASET, data_dir), data_dir):
        if not download:
            raise DatasetNotFound(f"{DEMO_DATASET} is not in the data home and downloading is off")
        logger.warning("%s not found in the data home; downloading it from GroupLens", DEMO_DATASET)
        download_dataset(DEMO_DATASET, data_dir)


def demo_bundle(data_dir: str | Path | None = None, runs_dir: str | Path = "runs", download: bool = True,
                params: dict[str, Any] | None = None) -> Path:
    """The bundle ``lmrec demo --serve`` serves: ``lmcontent`` on MovieLens-100K (leave-one-out), trained once
    into ``runs_dir/demo-lmcontent`` and reused while its data and model options are unchanged."""
    _ensure_demo_data(data_dir, download)
    config = PrepareConfig(dataset=DEMO_DATASET, split="loo")
    out = Path(runs_dir) / f"demo-{DEMO_SERVE_MODEL}"
    wanted = create(DEMO_SERVE_MODEL, ("ranker",), **(params or {})).config.model_dump()
    if (out / "bundle.json").is_file():
        try:
            bundle = Bundle.load(out)
            if (bundle.prepared.key == prepare(config, data_dir=data_dir).key
                    and bundle.model.config.model_dump() == wanted):
                return out
        except LmrecError as exc:
            logger.warning("the demo bundle %s is unusable (%s); training it again", out, exc)
    return train(config, DEMO_SERVE_MODEL, params, out, data_dir=data_dir).path


def demo_serve(data_dir: str | Path | None = None, runs_dir: str | Path = "runs", port: int = 8000,
               open_browser: bool = True) -> None:
    """Train (or reuse) the demo bundle and serve it with the web page on 127.0.0.1; writes need a key made
    for this run, passed to the page in the link's fragment (never sent to the server, never logged)."""
    import secrets
    import webbrowser

    bundle = demo_bundle(data_dir, runs_dir)
    key = secrets.token_urlsafe(24)
    os.environ["LMREC_API_KEY"] = key
    url = f"http://127.0.0.1:{port}/#key={key}"
    report("open %s (the page; the dashboard is at /dashboard). Ctrl-C stops the service.", url)
    if open_browser:
        threading.Timer(2.0, webbrowser.open, args=(url,)).start()  # once the server listens
    serve(bundle, port=port)


# --- bundles: train one model and keep it --------------------------------------------------------------------
@dataclass
class TrainRun:
    """What ``train`` produced: the bundle folder, the fitted model and its test result."""

    path: Path
    model: Any
    result: EvalResult | None  # None in the processes of a torchrun job other than rank 0 (which writes)
    fit_seconds: float


def train(config: PrepareConfig | str, model: str, params: dict[str, Any] | None = None,
          out: str | Path = "bundle", ks: tuple[int, ...] = (10, 20), data_dir: str | Path | None = None) -> TrainRun:
    """Fit one recommender on the split's train part (early stopping on valid), evaluate it on test (full
    ranking), and write a bundle (``lmrec.bundle``) to ``out``."""
    _check_ks(ks)
    recommender = create(model, ("ranker",), **(params or {}))  # config errors before any work
    prepared = prepare(config, data_dir=data_dir)
    validation = (Evaluator(prepared.split, "valid", ks=tuple(sorted({*ks, 10})))
                  if recommender.uses_validation else None)
    started = time.perf_counter()
    recommender.fit(prepared.split.train, prepared.items, validation=validation)
    fit_seconds = time.perf_counter() - started
    if not distributed.is_main():  # torchrun: rank 0 tests the model and writes the bundle
        return TrainRun(Path(out), recommender, None, fit_seconds)
    return _test_and_bundle(prepared, model, recommender, out, ks, fit_seconds)


def _test_and_bundle(prepared: Prepared, model: str, recommender: Any, out: str | Path, ks: tuple[int, ...],
                     fit_seconds: float) -> TrainRun:
    """Evaluate a fitted recommender on test (once) and write its bundle."""
    report("fitted %s in %.1f s", model, fit_seconds)
    result = Evaluator(prepared.split, "test", ks=ks, item_vectors=category_vectors(prepared.items)).evaluate(
        recommender, name=model)
    path = write_bundle(out, recommender, prepared,
                        {"dataset": prepared.config.model_dump(), "model": model,
                         "params": recommender.config.model_dump(), "ks": list(ks)},
                        {**training_metrics(recommender, result, fit_seconds), "ks": list(ks)}, test=result)
    return TrainRun(path, recommender, result, fit_seconds)


def evaluate_bundle(path: str | Path, part: Literal["test", "valid"] = "test",
                    ks: tuple[int, ...] | None = None) -> tuple[EvalResult, dict[str, float]]:
    """Evaluate a bundle's model on its own split from the folder alone; returns the result and, for the
    test part, the means recorded at training time (empty otherwise) to compare with."""
    bundle = Bundle.load(path)
    ks = ks or tuple(bundle.metrics.get("ks", (10, 20)))
    _check_ks(ks)
    result = Evaluator(bundle.prepared.split, part, ks=ks, item_vectors=category_vectors(bundle.prepared.items)
                       ).evaluate(bundle.model, name=bundle.model.name)
    return result, (bundle.metrics.get("test", {}) if part == "test" else {})


def federated(config: FederatedConfig, role: Literal["local", "server", "client"] = "local",
              address: str | None = None, client: int | None = None, data_dir: str | Path | None = None,
              out: str | Path | None = None) -> FederatedResult | None:
    """Federated training (``lmrec.federated``): ``local`` runs the server here and every client as a process on
    127.0.0.1; ``server`` / ``client`` run one side (for other machines). Returns the per-round results on the
    server side (written to ``out`` as JSON if given), None on a client."""
    if role == "client":
        if address is None or client is None:
            raise ConfigError("role client: give --address HOST:PORT and --client I")
        run_client(config, client, address, data_dir)
        return None
    if role == "server":
        if address is None:
            raise ConfigError("role server: give --address HOST:PORT to listen on")
        result = run_server(config, address)  # the server holds no data: weights in, weights out
    elif role == "local":
        result = federate(config, data_dir)
    else:
        raise ConfigError(f"role: {role!r} is not one of local, server, client")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    return result


def recommend_all_users(path: str | Path, out: str | Path, k: int = 10, chunk: int = 1024,
                        engine: BatchEngine = "local", workers: int | None = None,
                        address: str | None = None) -> dict[str, Any]:
    """Top ``k`` of a bundle's model for every user it knows, into a Parquet file (``lmrec.batch``)."""
    return recommend_all(path, out, k, chunk, engine, workers, address)


def recommend_from_bundle(path: str | Path, user: str | None = None, history: list[str] | None = None,
                          k: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
    """Top ``k`` items of a bundle's model for a known user (raw id; their history is every event the
    bundle holds for them) or for an anonymous session (``history``: raw item ids, oldest first)."""
    if k < 1:
        raise ConfigError(f"k: the number of items must be at least 1, got {k}")
    if (user is None) == (history is None):
        raise ConfigError("recommend: give either a user (raw id) or a history (raw item ids), not both")
    bundle = Bundle.load(path)
    users, items = bundle.users, bundle.items
    index, times = None, None
    if user is not None:
        if user not in users:
            raise DataError(f"user {user!r} is not in the bundle {path} (it knows {len(users):,} users); pass "
                            "their recent items as a history instead")
        index = users.index(user)
        seq = bundle.histories[index]
        if bundle.histories.times is not None:
            times = bundle.histories.times[bundle.histories.offsets[index]:bundle.histories.offsets[index + 1]]
    else:
        assert history is not None
        unknown = [h for h in history if h not in items]
        if unknown:
            raise DataError(f"item id(s) not in the bundle {path}: {', '.join(map(repr, unknown[:5]))}")
        seq = np.array([items.index(h) for h in history], dtype=np.int64)
    blocked = None if exclude_seen else np.zeros(len(items), dtype=bool)
    return bundle.recommend(seq, k, index, blocked, times)


def explain_from_bundle(path: str | Path, item: str, user: str | None = None, history: list[str] | None = None,
                        ) -> tuple[Explanation, Bundle]:
    """Why a bundle's model scores ``item`` as it does for a known user (their history in the bundle) or a
    session (``history``, raw item ids, oldest first); ``lmrec.explain``."""
    if (user is None) == (history is None):
        raise ConfigError("explain: give either a user (raw id) or a history (raw item ids), not both")
    bundle = Bundle.load(path)
    items = bundle.items
    unknown = [i for i in [item, *(history or [])] if i not in items]
    if unknown:
        raise DataError(f"item id(s) not in the bundle {path}: {', '.join(map(repr, unknown[:5]))}")
    if user is not None:
        if user not in bundle.users:
            raise DataError(f"user {user!r} is not in the bundle {path}; pass their recent items as a history")
        index, seq = bundle.users.index(user), bundle.histories[bundle.users.index(user)]
    else:
        index, seq = len(bundle.users), np.array([items.index(h) for h in history or []], dtype=np.int64)
    if len(seq) == 0:
        raise ConfigError("the history is empty: there is nothing to attribute the score to")
    return explain(bundle.model, seq, items.index(item), index, bundle.catalogue), bundle


def serve(bundle: str | Path, host: str = "127.0.0.1", port: int = 8000, store: str | Path | None = None,
          api_key_file: str | Path | None = None, keyed_reads: bool = False, workers: int = 1,
          retrieval: str = "auto", int8_queries: bool = False, threads: int = 1, ab: str | Path | None = None,
          split: float = 0.5) -> None:
    """Serve a bundle over HTTP until interrupted (``lmrec.serve``); the API key comes from
    ``api_key_file`` or ``LMREC_API_KEY``. ``workers`` > 1 runs that many processes on one port; they share
    the event store, which is what keeps their answers the same. ``threads``: torch threads per worker
    (1: a request's tensors are small, and more threads spin against each other and the HTTP work; scale
    with workers instead). ``ab``: a second bundle for an A/B test, answering the share ``split`` of users."""
    try:  # FastAPI and uvicorn are the optional 'serve' extra: import them only when serving
        import uvicorn

        from lmrec.serve.app import SERVE_ENV, api_key_from, create_app
    except ImportError as exc:
        raise ConfigError(f"serving needs the serve extra ({exc.name} is missing): pip install 'lmrec[serve]'") from None
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be at least 1, got {workers} and {threads}")
    if retrieval not in RETRIEVAL_KINDS:
        raise ConfigError(f"retrieval must be one of {', '.join(RETRIEVAL_KINDS)}, got {retrieval!r}")
    key = api_key_from(os.environ.get("LMREC_API_KEY"), api_key_file)
    if keyed_reads and key is None:
        raise ConfigError("keyed_reads needs an API key: set LMREC_API_KEY or pass an API key file")
    writes = "need the API key" if key else "are disabled (no API key set)"
    if workers == 1:
        torch.set_num_threads(threads)
        app = create_app(bundle, store, key, keyed_reads, retrieval, int8_queries, ab, split)  # type: ignore[arg-type]
        report("serving %s (%s) on http://%s:%d; writes %s", bundle, app.state.lmrec.state.model.name, host, port,
               writes)
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    Bundle.load(bundle)  # fail here, once, rather than in every worker
    # Worker processes build their app from the environment (uvicorn imports the factory in each).
    os.environ[SERVE_ENV] = json.dumps({"bundle": str(Path(bundle).resolve()), "keyed_reads": keyed_reads,
                                        "store": None if store is None else str(Path(store).resolve()),
                                        "retrieval": retrieval, "int8_queries": int8_queries, "threads": threads,
                                        "ab": None if ab is None else str(Path(ab).resolve()), "split": split})
    if key is not None:
        os.environ["LMREC_API_KEY"] = key
    report("serving %s with %d workers on http://%s:%d; writes %s", bundle, workers, host, port, writes)
    uvicorn.run("lmrec.serve.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


def refit(bundle: str | Path, store: str | Path | None = None, out: str | Path | None = None,
          params: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Train a bundle's model again on its data plus the events and items a service stored since
    (``lmrec.serve.refit``); ``store`` defaults to the service's default (BUNDLE.events.sqlite beside it),
    ``out`` to the bundle itself (replaced atomically: ``POST /admin/reload`` then serves it)."""
    from lmrec.serve.refit import refit as refit_bundle

    bundle = Path(bundle)
    store = Path(store) if store is not None else bundle.with_name(bundle.name + ".events.sqlite")
    return refit_bundle(bundle, store, bundle if out is None else out, params)


def forget(store: str | Path, user: str) -> dict[str, int]:
    """Delete ``user`` from a service's event store (``EventStore.forget``: events and served lists removed,
    the file vacuumed); a running service stops using the bundle's data on them at its next request, and
    ``refit`` then trains without them. Returns the counts deleted."""
    from lmrec.serve.store import EventStore

    store = Path(store)
    if not store.is_file():
        raise ConfigError(f"{store}: no event store there (the service writes BUNDLE.events.sqlite beside the bundle)")
    opened = EventStore(store)
    try:
        return opened.forget(user)
    finally:
        opened.close()


@dataclass
class TuneRun:
    """What ``tune`` produced: the search, the bundle of the best trial (tested once), the report files."""

    search: Any  # lmrec.tuning.SearchResult
    run: TrainRun
    report: Path
    study_dir: Path


def tune(config: PrepareConfig | str, model: str, trials: int = 20, out: str | Path = "bundle",
         metric: str = "ndcg@10", fixed: dict[str, Any] | None = None, space: str | Path | None = None,
         sampler: str = "tpe", pruner: Any = "median", timeout: float | None = None, jobs: int = 1,
         study_dir: str | Path = "runs/tune", ks: tuple[int, ...] = (10, 20), data_dir: str | Path | None = None,
         track: tuple[str, ...] | list[str] = ()) -> TuneRun:
    """Search ``model``'s hyperparameters on the valid part (``lmrec.tuning``; test locked meanwhile), then
    write the best trial's model as a bundle in ``out`` (test evaluated once, there): the model that trial
    fitted, saved during the search in ``best-trial/`` beside the study, or, where that is missing (a study
    resumed from a search that kept nothing), the configuration trained again. The study
    (SQLite, resumable), ``tune.json`` and ``history.png`` go to ``study_dir/<dataset>-<split>-<model>``;
    ``track`` logs each trial to mlflow and / or tensorboard there too (``lmrec.tuning.search``)."""
    from lmrec.tuning import importances, plot_history, search

    _check_ks(ks)
    if distributed.world().size > 1:
        raise ConfigError("lmrec tune runs in one process (its trials may run in parallel: --jobs); start it "
                          "without torchrun")
    prepared = prepare(config, data_dir=data_dir)
    folder = inside(Path(study_dir), f"{prepared.name}-{prepared.split.name}-{model}")
    found = search(prepared, model, trials, folder / "study.db", metric, fixed, space, sampler, pruner,  # type: ignore[arg-type]
                   timeout, jobs, track=track, keep=folder / "best-trial")
    kept = found.best_model()  # the best trial's own fitted model: the same configuration, not trained twice
    run = (train(prepared.config, model, found.best_params, out, ks, data_dir) if kept is None
           else _test_and_bundle(prepared, model, kept[0], out, ks, kept[1]))
    assert run.result is not None  # one process (checked above)
    summary = {"dataset": prepared.name, "split": prepared.split.name, "model": model, "metric": metric,
               "sampler": sampler, "trials": len(found.trials), "search_seconds": round(found.seconds, 1),
               "best_valid": found.best_value, "best_params": found.best_params, "importances": importances(found),
               "test": run.result.means(), "bundle": str(run.path), "trial_log": found.trials}
    (folder / "tune.json").write_text(json.dumps(summary, indent=2, default=str))
    plot_history(found, folder / "history.png")
    return TuneRun(found, run, folder / "tune.json", folder)


def online_report(store: str | Path, k: int = 10, window: float = 3600.0, bucket: float | None = 3600.0
                  ) -> dict[str, Any]:
    """Online metrics of the lists a service logged in ``store`` (``lmrec.serve.online``)."""
    from lmrec.serve.online import report
    from lmrec.serve.store import EventStore

    if not Path(store).is_file():
        raise ConfigError(f"{store}: no event store there")
    if k < 1 or window <= 0:
        raise ConfigError(f"k must be at least 1 and the window positive, got k={k}, window={window}")
    return report(EventStore(store), k, window, bucket)


def export_encoder(model_dir: str | Path, out: str | Path, side: Literal["item", "query"] = "item") -> Path:
    """A fine-tuned two-tower model's encoder (saved model folder or bundle) as an ordinary Hugging Face
    folder that every model takes as its ``encoder``."""
    model_dir = Path(model_dir)
    model = Bundle.load(model_dir).model if (model_dir / "bundle.json").is_file() else load_model(model_dir)
    if not isinstance(model, TwoTowerLM):
        raise ConfigError(f"{model_dir} holds a {model.name!r} model; only a fine-tuned encoder (twotower) "
                          "can be exported")
    return model.export_encoder(out, side)
