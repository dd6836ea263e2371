"""``lmrec`` command line: thin commands, one pipeline call each; errors print one line, no traceback."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

try:  # typer carries its own copy of click (typer._click) from 0.29 on; its usage errors are caught in main()
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # typer 0.20 (which Flower, the federated extra, pins) runs on click itself
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from lmrec import __version__, pipeline, runs
from lmrec.config import parse_options, parse_sets, validate
from lmrec.data import PrepareConfig
from lmrec.errors import ConfigError, LmrecError, one_line

app = typer.Typer(
    help="lmrec: language-model knowledge for recommender systems.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
datasets_app = typer.Typer(help="List, inspect, download and prepare datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
runs_app = typer.Typer(help="Earlier runs (leaderboards, bundles, searches): list, show, compare.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

# Wide enough for paths and tables when output is piped (rich assumes 80 columns off a terminal).
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

DataDir = typer.Option(
    None, "--data-dir", help="Folder holding one sub-folder per dataset (default: $LMREC_DATA, "
    "else ~/.cache/lmrec/datasets).", file_okay=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what lmrec is doing."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),  # eager: works without a command
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@datasets_app.command("list")
def datasets_list(data_dir: Optional[Path] = DataDir) -> None:
    """Known datasets: where each was found, or what is missing and how to get it."""
    rows = pipeline.list_datasets(data_dir)
    table = Table("dataset", "status", "folder", "description")
    for row in rows:
        status = {"found": "[green]found[/]", "missing": "[red]missing[/]"}.get(row["status"], "[red]invalid[/]")
        table.add_row(row["name"], status, row["where"], row["description"])
    out.print(table)
    for row in rows:
        if row["status"] == "missing":
            out.print(f"{row['name']}: missing {row['missing']}; to get it: {row['how_to_get']}", markup=False)
        elif row["status"] == "invalid":
            out.print(f"{row['name']}: {row['how_to_get']}", markup=False)


@datasets_app.command("info")
def datasets_info(name: str = typer.Argument(..., help="Dataset name, e.g. movielens-100k."),
                  data_dir: Optional[Path] = DataDir) -> None:
    """Users, items, interactions, density, text coverage, sequence lengths and time range."""
    info = pipeline.dataset_info(name, data_dir)
    out.print(f"[bold]{info['name']}[/]: {info['description']}")
    _print_stats(info)
    out.print(f"predefined splits: {', '.join(info['predefined_splits']) or 'none'} "
              f"(default split: {info['default_split']})")
    cov = Table("item field", "coverage (used items)", "coverage (catalogue)")
    for field, c in info["text_coverage"].items():
        cov.add_row(field, f"{c:.2%}", f"{info['catalogue_text_coverage'][field]:.2%}")
    out.print(cov)
    out.print(f"title field: {info['title_field'] or 'none'}; default text template: {info['text_template']!r}",
              markup=False)
    if info["user_fields"]:
        out.print(f"user fields: {', '.join(info['user_fields'])}")


@datasets_app.command("prepare")
def datasets_prepare(
    name: str = typer.Argument(..., help="Dataset name."),
    split: Optional[str] = typer.Option(
        None, help="loo | temporal | random | cold-items | cold-users | predefined "
        "(default: predefined where the dataset ships a split, else loo)."),
    predefined: Optional[str] = typer.Option(None, help="Which predefined split (e.g. u1..u5, ua, ub for movielens-100k)."),
    valid_frac: float = typer.Option(0.1, help="Share for validation (temporal/random/cold splits)."),
    test_frac: float = typer.Option(0.1, help="Share for test (temporal/random/cold splits)."),
    seed: int = typer.Option(0, help="Seed for random and cold-start splits."),
    min_rating: Optional[float] = typer.Option(None, help="Keep ratings >= this (explicit -> implicit)."),
    positives_only: bool = typer.Option(False, help="Keep only label == 1 events (CTR data)."),
    dedup: Optional[str] = typer.Option(None, help="Keep one event per user-item pair: first | last."),
    k_core: Optional[int] = typer.Option(None, help="Iterative k-core on users and items."),
    drop_items_without_text: bool = typer.Option(False, help="Drop events on items with no text."),
    compact: bool = typer.Option(False, help="Renumber to the users/items left after filtering."),
    force: bool = typer.Option(False, help="Prepare again even if an identical preparation exists."),
    engine: str = typer.Option("memory", help="memory | duckdb: duckdb prepares a log larger than RAM out of core "
                               "(your own logs; loo and temporal splits); both write the same result."),
    memory_limit: Optional[str] = typer.Option(None, help="With --engine duckdb: cap on its memory, e.g. 2GB "
                                               "(default: 80% of RAM); past it, work spills to disk."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Preprocess and split a dataset once; later runs reload the Parquet + JSON result."""
    config = validate(PrepareConfig, dict(
        dataset=name, split=split, predefined=predefined, valid_frac=valid_frac, test_frac=test_frac, seed=seed,
        min_rating=min_rating, positives_only=positives_only, dedup=dedup, k_core=k_core,
        drop_items_without_text=drop_items_without_text, compact=compact,
    ))
    path = pipeline.prepare_dataset_on_disk(config, data_dir, force=force, engine=engine,  # type: ignore[arg-type]
                                            memory_limit=memory_limit)
    _print_prepared(pipeline.prepared_summary(path))


@datasets_app.command("download")
def datasets_download(name: str = typer.Argument(..., help="Dataset with a public download (movielens-100k, movielens-1m)."),
                      force: bool = typer.Option(False, help="Download again even if present."),
                      data_dir: Optional[Path] = DataDir) -> None:
    """Download a public dataset into the data home (checksum-verified)."""
    path = pipeline.download_dataset(name, data_dir, force=force)
    out.print(f"{name}: ready at {path}")


@app.command()
def demo(data_dir: Optional[Path] = DataDir,
         runs_dir: Path = typer.Option(Path("runs"), help="Where the run folder is written."),
         serve_page: bool = typer.Option(False, "--serve", help="Instead: train a small text model on "
                                         "MovieLens-100K and serve it with the web page on 127.0.0.1."),
         port: int = typer.Option(8000, min=1, max=65535, help="With --serve: the TCP port."),
         no_browser: bool = typer.Option(False, "--no-browser", help="With --serve: do not open a browser.")) -> None:
    """The main job on the embedded defaults: MovieLens-100K, leave-one-out split, a leaderboard of
    classical and language-model recommenders, an HTML report and a free-text query. With --serve: the
    quickest way to see lmrec work, a page to pick users, ask in words, click and see why."""
    if serve_page:
        pipeline.demo_serve(data_dir, runs_dir, port, open_browser=not no_browser)
        return
    prepared, run, answers = pipeline.demo(data_dir, runs_dir=runs_dir)
    out.print("[bold]lmrec demo[/]: MovieLens-100K, leave-one-out split")
    _print_prepared(pipeline.prepared_summary(prepared.path))
    _print_leaderboard(run)
    out.print(f"\nfree-text query {pipeline.DEMO_QUERY!r} (MiniLM, `lmrec recommend`):")
    for n, r in enumerate(answers, 1):
        out.print(f"  {n}. {r.title}  ({r.score:.3f})")


@app.command()
def bench(
    dataset: str = typer.Option(..., help="Dataset name, e.g. movielens-100k."),
    split: Optional[str] = typer.Option(None, help="loo | temporal | random | cold-items | cold-users | predefined."),
    models: str = typer.Option(",".join(pipeline.DEFAULT_MODELS), help="Comma-separated model names."),
    ks: str = typer.Option("10,20", help="Comma-separated cut-offs K."),
    set_: list[str] = typer.Option([], "--set", help="Model option, e.g. --set ease.l2=100 (repeatable)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where the run folder is written."),
    html: bool = typer.Option(False, "--html", help="Also write report.html."),
    rerank: Optional[str] = typer.Option(None, help="Also evaluate each model with this reranker on its top "
                                         "--rerank-k: a CTR model (id-fm | frozen-mlp | cross-encoder; needs a "
                                         "labelled dataset such as movielens-1m-collm) or relevance-mlp (trained on "
                                         "each model's own candidates; any dataset). Options: "
                                         "--set cross-encoder.epochs=1."),
    rerank_k: int = typer.Option(100, help="Candidates per user the reranker reorders."),
    rerank_train_rows: Optional[int] = typer.Option(None, help="Fit a CTR reranker on a stratified sample of "
                                                    "this many labelled train rows (default: all)."),
    rerank_weight: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="Reranker's share of the fused rank of the candidates: 1 = the reranker's "
        "order alone, 0 = the retriever's (default: chosen per model on the valid users, grid 0, 0.1, ..., 1)."),
    save: bool = typer.Option(False, "--save", help="Keep every fitted model as a bundle in RUN/models/NAME "
                              "(for `lmrec evaluate`, `lmrec recommend --model`)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Fit baselines on the train part and evaluate them on test (full ranking): a leaderboard; with
    --rerank, also each model followed by a reranker (two-stage), with the added latency per user and
    the rank-fusion weight used."""
    config = validate(PrepareConfig, {"dataset": dataset, "split": split})
    run = pipeline.leaderboard(config, _names(models), _cutoffs(ks), parse_sets(set_), runs_dir=runs_dir,
                               data_dir=data_dir, html_report=html,
                               rerank=(pipeline.Rerank(rerank, rerank_k, rerank_train_rows, rerank_weight)
                                       if rerank else None), save_models=save)
    _print_leaderboard(run)
    if save:
        out.print(f"bundles: {run.run_dir / 'models'}")


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _cutoffs(ks: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in ks.split(","))
    except ValueError:
        raise ConfigError(f"ks: cut-offs must be comma-separated integers, got {ks!r}") from None


@app.command()
def train(
    dataset: str = typer.Option(..., help="Dataset name, e.g. movielens-100k."),
    model: str = typer.Option(..., help="Model name, e.g. pop, ease, sasrec, textseq."),
    out_dir: Path = typer.Option(..., "--out", help="Bundle folder to write (new, or a bundle to replace)."),
    split: Optional[str] = typer.Option(None, help="loo | temporal | random | cold-items | cold-users | predefined."),
    set_: list[str] = typer.Option([], "--set", help="Model option, e.g. --set epochs=20 (repeatable)."),
    ks: str = typer.Option("10,20", help="Comma-separated cut-offs K for the test metrics."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Train one model and keep it: a bundle folder with the model, raw-id maps, item table, split,
    fingerprints, config, validation curve and test metrics."""
    config = validate(PrepareConfig, {"dataset": dataset, "split": split})
    run = pipeline.train(config, model, parse_options(set_), out_dir, _cutoffs(ks), data_dir)
    if run.result is None:  # a torchrun process other than rank 0: rank 0 reports
        return
    means = run.result.means()
    out.print(f"{model} on {dataset}: fitted in {run.fit_seconds:.1f} s; test " +
              "  ".join(f"{m} {means[m]:.4f}" for m in means if m.split("@")[0] in ("recall", "ndcg")))
    privacy = getattr(run.model, "privacy_", None)
    if privacy is not None:
        out.print(f"differentially private (user level): epsilon {privacy['epsilon']:.3g}, delta "
                  f"{privacy['delta']:.3g} ({privacy['accountant']} accountant, {privacy['steps']} steps)")
    out.print(f"bundle: {run.path}")


@app.command()
def federated(
    dataset: Optional[str] = typer.Option(None, help="Dataset name, e.g. amazon-scientific."),
    model: str = typer.Option("sasrec", help="sasrec | gru4rec | bert4rec | textseq (TextSeqRec sends only its "
                              "adaptor; the language model stays on each client)."),
    clients: int = typer.Option(10, min=1, help="Clients, each holding a disjoint set of users."),
    rounds: int = typer.Option(10, min=1, help="FedAvg rounds."),
    local_epochs: int = typer.Option(1, min=1, help="Epochs each client trains in a round."),
    fraction_fit: float = typer.Option(1.0, help="Share of the clients that train in each round."),
    split: Optional[str] = typer.Option(None, help="loo | temporal | random | predefined (default: the dataset's)."),
    set_: list[str] = typer.Option([], "--set", help="Model option, e.g. --set dim=64 (repeatable; a client's "
                                   "epochs per round are --local-epochs)."),
    dp_noise: Optional[float] = typer.Option(None, help="Server-side DP (Flower's fixed clipping): noise "
                                             "multiplier; with --dp-clip."),
    dp_clip: Optional[float] = typer.Option(None, help="Server-side DP: the norm each client's update is clipped to."),
    dp_delta: float = typer.Option(1e-5, help="Server-side DP: the delta the accounted epsilon is for (< 1 / clients)."),
    seed: int = typer.Option(0, help="Seed: which users each client holds, initial weights."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the per-round results here (JSON)."),
    role: str = typer.Option("local", help="local (server and client processes here) | server | client."),
    address: Optional[str] = typer.Option(None, help="With --role server / client: HOST:PORT of the server."),
    client: Optional[int] = typer.Option(None, min=0, help="With --role client: which client this is (0-based)."),
    config_json: Optional[str] = typer.Option(None, hidden=True, help="The whole run as JSON (client processes)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Federated training with Flower: clients hold disjoint users; only weights travel (FedAvg)."""
    if config_json is not None:
        config = validate(pipeline.FederatedConfig, json.loads(config_json))
    else:
        if dataset is None:
            raise ConfigError("--dataset is needed")
        config = validate(pipeline.FederatedConfig, dict(
            dataset={"dataset": dataset, "split": split}, model=model, params=parse_options(set_), clients=clients,
            rounds=rounds, local_epochs=local_epochs, fraction_fit=fraction_fit, seed=seed, dp_noise=dp_noise,
            dp_clip=dp_clip, dp_delta=dp_delta))
    result = pipeline.federated(config, role, address, client, data_dir, out_file)  # type: ignore[arg-type]
    if result is None:  # a client: the server reports
        return
    private = result.privacy is not None
    table = Table("round", "ndcg@10", "clients", "bytes sent by clients", "full model bytes",
                  *(["epsilon so far"] if private else []), title=f"federated {config.model}, {config.clients} clients")
    for r in result.rounds:
        table.add_row(str(r["round"]), f"{r.get('ndcg@10', float('nan')):.4f}", f"{int(r.get('clients', 0))}",
                      f"{int(r.get('bytes_sent', 0)):,}", f"{int(r.get('full_model_bytes', 0)):,}",
                      *([f"{r['epsilon']:.3g}"] if private else []))
    out.print(table)
    if result.privacy is not None:
        p = result.privacy
        user = "" if p["user_epsilon"] is None else f"; user level epsilon {p['user_epsilon']:.3g}"
        out.print(f"differentially private (client level): epsilon {p['epsilon']:.3g}, delta {p['delta']:.3g} "
                  f"(RDP accountant, {p['rounds']} rounds, sampling rate {p['sample_rate']:.3g}){user}")
    if out_file is not None:
        out.print(f"results: {out_file}")


@app.command()
def tune(
    dataset: str = typer.Option(..., help="Dataset name, e.g. movielens-100k."),
    model: str = typer.Option(..., help="Model name, e.g. ease, sasrec, textseq."),
    out_dir: Path = typer.Option(..., "--out", help="Bundle folder for the best trial's model (tested once)."),
    split: Optional[str] = typer.Option(None, help="loo | temporal | random | cold-items | cold-users | predefined."),
    trials: int = typer.Option(20, min=1, help="Trials the study ends with (a resumed study runs the rest)."),
    metric: str = typer.Option("ndcg@10", help="Validation metric to maximise (ndcg@K, recall@K, hit@K, mrr@K, ...)."),
    sampler: str = typer.Option("tpe", help="tpe | random | grid (grid: categorical choices only)."),
    pruner: str = typer.Option("median", help="median | none: stop poor trials early on their validation curve."),
    space: Optional[Path] = typer.Option(None, help="YAML search spaces (default: the shipped ones)."),
    set_: list[str] = typer.Option([], "--set", help="Fix a model option for every trial, e.g. --set epochs=20."),
    timeout: Optional[float] = typer.Option(None, min=1, help="Stop starting trials after this many seconds."),
    jobs: int = typer.Option(1, min=1, help="Trials run at once (threads)."),
    study_dir: Path = typer.Option(Path("runs/tune"), help="Where studies (SQLite), reports and plots go."),
    track: list[str] = typer.Option([], help="Also log each trial to mlflow and / or tensorboard (repeatable; "
                                    "pip install 'lmrec[tracking]'); MLflow's local store is mlflow.db beside the study."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Tune a model's hyperparameters on the validation part (Optuna; test locked during the search), then
    train the best configuration as a bundle and evaluate it on test once. A killed search resumes."""
    config = validate(PrepareConfig, {"dataset": dataset, "split": split})
    found = pipeline.tune(config, model, trials, out_dir, metric, parse_options(set_), space, sampler, pruner,
                          timeout, jobs, study_dir, data_dir=data_dir, track=track)
    s = found.search
    out.print(f"{model} on {dataset}: {len(s.trials)} trials ({sum(t['state'] == 'pruned' for t in s.trials)} pruned), "
              f"{s.seconds:.0f} s; best valid {metric} {s.best_value:.4f} with {s.best_params}")
    means = found.run.result.means()
    out.print("test (once): " + "  ".join(f"{m} {means[m]:.4f}" for m in means if m.split("@")[0] in ("recall", "ndcg")))
    out.print(f"bundle: {found.run.path}; report: {found.report}")


@runs_app.command("list")
def runs_list(
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where runs were written.", file_okay=False),
    metric: str = typer.Option("ndcg@10", help="Test metric shown per model."),
) -> None:
    """Every run under --runs-dir, oldest first: leaderboard runs (`lmrec bench`), bundles (`lmrec train`,
    `lmrec tune`, `lmrec refit`) and searches (`lmrec tune`), with each model's test metric."""
    found = runs.find_runs(runs_dir)
    table = Table("run", "kind", "dataset / split", f"test {metric} by model", "created")
    table.columns[0].overflow = "fold"
    for r in found:
        scores = ", ".join(f"{m} {r.test[m][metric]:.4f}" if metric in r.test.get(m, {}) else f"{m} -"
                           for m in r.models)
        table.add_row(escape(str(r.path)), r.kind, escape(r.label), escape(scores), r.created)
    out.print(table)
    if not found:
        out.print(f"no runs under {runs_dir}", markup=False)


@runs_app.command("show")
def runs_show(run: Path = typer.Argument(..., help="A run folder (see `lmrec runs list`).")) -> None:
    """What a run was (dataset, split, models, search results) and every test metric it recorded."""
    r = runs.read_run(run)
    out.print(f"{r.path}: {r.kind}, {r.label}, created {r.created}", markup=False)
    for key, value in r.extra.items():
        if value not in (None, [], {}):
            out.print(f"{key}: {value}", markup=False)
    metrics = sorted({m for means in r.test.values() for m in means})
    table = Table("model", *metrics, title="test")
    for model in r.models:
        table.add_row(escape(model), *(f"{r.test[model][m]:.4f}" if m in r.test.get(model, {}) else "-" for m in metrics))
    out.print(table)


@runs_app.command("compare")
def runs_compare(
    a: str = typer.Argument(..., help="A run folder, or FOLDER:MODEL for a leaderboard run of several models."),
    b: str = typer.Argument(..., help="The run to compare it with (same dataset and split)."),
    metric: str = typer.Option("ndcg@10", help="Per-user test metric to pair."),
) -> None:
    """Paired comparison per test user (t-test and Wilcoxon signed-rank) of two runs on the same split."""
    c = runs.compare_runs(a, b, metric)
    out.print(f"{c['dataset']}: {metric} over {c['users']:,} users both evaluated", markup=False)
    out.print(f"  A {a}: {c['mean_a']:.4f}\n  B {b}: {c['mean_b']:.4f}\n  A - B = {c['diff']:+.4f} "
              f"({c['diff'] / c['mean_b']:+.1%} of B)" if c["mean_b"] else f"  A - B = {c['diff']:+.4f}", markup=False)
    out.print(f"  paired t-test p = {c['t_p']:.3g}; Wilcoxon signed-rank p = {c['wilcoxon_p']:.3g}", markup=False)


@app.command()
def evaluate(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `lmrec train` or `lmrec bench --save`."),
    part: str = typer.Option("test", help="test | valid: which part of the bundle's split."),
    ks: Optional[str] = typer.Option(None, help="Comma-separated cut-offs K (default: the bundle's)."),
) -> None:
    """Evaluate a bundle's model on its own split, from the folder alone (full ranking, history masked)."""
    if part not in ("test", "valid"):
        raise ConfigError(f"--part must be test or valid, got {part!r}")
    result, recorded = pipeline.evaluate_bundle(bundle, part, _cutoffs(ks) if ks else None)  # type: ignore[arg-type]
    table = Table("metric", "value", "recorded at training", title=f"{bundle} ({part}, {len(result.users):,} users)")
    for metric, value in result.means().items():
        table.add_row(metric, f"{value:.4f}", f"{recorded[metric]:.4f}" if metric in recorded else "-")
    out.print(table)


@app.command()
def recommend(
    model: Optional[Path] = typer.Option(None, "--model", help="Bundle folder (`lmrec train`): recommend with its "
                                         "model for --user or --history."),
    dataset: Optional[str] = typer.Option(None, help="Dataset whose items to recommend for --query (no --model)."),
    query: Optional[str] = typer.Option(None, help='What the person likes, e.g. "sci-fi about time travel, not horror".'),
    k: int = typer.Option(10, "-k", "--k", min=1, help="How many items (at least 1)."),
    user: Optional[str] = typer.Option(None, help="Raw user id: with --model, recommend for this user; with --query, "
                                       "blend in their history (and do not re-recommend it)."),
    history: Optional[str] = typer.Option(None, help="With --model: comma-separated raw item ids of an anonymous "
                                          "session, oldest first."),
    encoder: str = typer.Option("minilm", help="Text encoder for --query (minilm, hash, st:NAME, a Hugging Face id or folder)."),
    template: Optional[str] = typer.Option(None, help="Item text template for --query, e.g. '{title}. Genres: {genres}'."),
    history_weight: float = typer.Option(0.3, help="Share of the user's history in the query vector (0..1)."),
    all_users: bool = typer.Option(False, "--all-users", help="With --model and --out: every user the bundle "
                                   "knows, into a Parquet file (columns user, rank, item, score)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="With --all-users: the Parquet file to write."),
    engine: str = typer.Option("local", help="With --all-users: local | ray (Ray Data, one bundle per worker; "
                               "pip install 'lmrec[ray]')."),
    chunk: int = typer.Option(1024, min=1, help="With --all-users: users scored at a time (bounds memory)."),
    workers: Optional[int] = typer.Option(None, min=1, help="With --engine ray: workers (default: one per CPU, "
                                          "or per GPU)."),
    address: Optional[str] = typer.Option(None, help="With --engine ray: the cluster (e.g. auto, or "
                                          "ray://HOST:10001; default: a running one, else a local one)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Recommend items: with --model, from a trained bundle for a user or a session, or --all-users into a
    Parquet file; with --dataset and --query, from a natural-language description of what a person likes."""
    if all_users:
        if model is None or out_file is None:
            raise ConfigError("--all-users needs --model BUNDLE and --out FILE.parquet")
        if user is not None or history is not None or query is not None:
            raise ConfigError("--all-users recommends for every user; drop --user / --history / --query")
        info = pipeline.recommend_all_users(model, out_file, k, chunk, engine, workers, address)  # type: ignore[arg-type]
        out.print(f"{info['rows']:,} recommendations for {info['users']:,} users written to {info['out']} "
                  f"({info['engine']}, {info['seconds']:.1f} s)")
        return
    if model is not None:
        if query is not None or dataset is not None:
            raise ConfigError("--model recommends for --user or --history; --query goes with --dataset")
        recs = pipeline.recommend_from_bundle(model, user, _names(history) if history is not None else None, k)
        title = f"{model}: " + (f"user {user}" if user is not None else f"session of {len(_names(history or ''))} items")
    else:
        if dataset is None or query is None:
            raise ConfigError("give --model BUNDLE with --user / --history, or --dataset with --query")
        recs = pipeline.recommend_from_text(dataset, query, k, encoder, template, user, history_weight, data_dir)
        title = f"{dataset}: {query!r}"
    table = Table("#", "item", "title", "score", title=title)
    for n, r in enumerate(recs, 1):
        table.add_row(str(n), r.item, r.title, f"{r.score:.3f}")
    out.print(table)


@app.command()
def encode(
    dataset: Optional[str] = typer.Option(None, help="Dataset whose item texts to encode."),
    encoder: str = typer.Option("minilm", help="Text encoder (minilm, hash, st:NAME, a Hugging Face id or folder)."),
    template: Optional[str] = typer.Option(None, help="Item text template (default: the dataset's descriptive fields)."),
    batch_size: int = typer.Option(64, help="Texts per batch."),
    max_length: int = typer.Option(128, help="Tokens per text (longer texts are truncated)."),
    float16: bool = typer.Option(False, "--float16", help="Store the vectors as float16."),
    engine: str = typer.Option("local", help="local | ray (Ray Data, one encoder per worker, GPU workers where "
                               "the cluster has GPUs; pip install 'lmrec[ray]'). Both write the same cache."),
    workers: Optional[int] = typer.Option(None, min=1, help="With --engine ray: encoders (default: one per CPU, "
                                          "or per GPU)."),
    address: Optional[str] = typer.Option(None, help="With --engine ray: the cluster (e.g. auto, or "
                                          "ray://HOST:10001; default: a running one, else a local one)."),
    prepared: Optional[Path] = typer.Option(None, help="Instead of --dataset: a prepared dataset's folder (as "
                                            "`lmrec datasets prepare` prints), its item table read --chunk items "
                                            "at a time: for catalogues whose text does not fit in memory.",
                                            file_okay=False),
    chunk: int = typer.Option(65_536, min=1, help="With --prepared: items read and encoded at a time."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Encode a dataset's item texts into the embedding cache (only texts not cached yet are encoded)."""
    info = pipeline.encode_items(dataset, encoder, template, batch_size, max_length, float16, data_dir,
                                 engine, workers, address, prepared, chunk)  # type: ignore[arg-type]
    out.print(f"{info['items_with_text']:,} of {info['items']:,} items encoded with {info['encoder']} "
              f"(dim {info['dim']}) in {info['seconds']:.2f} s; template {info['template']!r}")
    out.print(f"cache: {info['cache']}")


@app.command()
def serve(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `lmrec train` or `lmrec bench --save`."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    store: Optional[Path] = typer.Option(None, help="SQLite event store (default: BUNDLE.events.sqlite beside "
                                         "the bundle folder)."),
    api_key_file: Optional[Path] = typer.Option(None, help="File whose first line is the API key for writes "
                                                "(default: $LMREC_API_KEY; without one, writes are refused)."),
    keyed_reads: bool = typer.Option(False, "--keyed-reads", help="Require the API key for reads too."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes on the one port (they share the store)."),
    retrieval: str = typer.Option("auto", help="How the top k are found: exact | hnsw | ivf (FAISS, re-scored "
                                  "exactly) | auto (exact below 100,000 items)."),
    int8_queries: bool = typer.Option(False, "--int8-queries", help="Encode free-text queries with an int8 copy "
                                      "of the model's encoder (CPU; see docs/benchmarks.md for speed and quality)."),
    threads: int = typer.Option(1, min=1, max=256, help="Torch threads per worker (more workers scale better)."),
    ab: Optional[Path] = typer.Option(None, "--ab", help="A second bundle for an A/B test (arm B); users are "
                                      "assigned by a stable hash of their id."),
    split: float = typer.Option(0.5, min=0.0, max=1.0, help="With --ab: the share of users in arm B."),
) -> None:
    """Serve a bundle over HTTP: recommendations by user, session, free text or item, a feedback loop
    (POST /events) that changes the next answer, cold-start items (POST /items) and a swap to a refit
    bundle (POST /admin/reload). API docs at /docs, schema at /openapi.json."""
    pipeline.serve(bundle, host, port, store, api_key_file, keyed_reads, workers, retrieval, int8_queries, threads,
                   ab, split)


@app.command()
def explain(
    model: Path = typer.Option(..., "--model", help="Bundle folder (`lmrec train`)."),
    item: str = typer.Option(..., help="Raw id of the recommended item to explain."),
    user: Optional[str] = typer.Option(None, help="Raw user id (their history in the bundle)."),
    history: Optional[str] = typer.Option(None, help="Comma-separated raw item ids of a session, oldest first."),
    top: int = typer.Option(10, min=1, help="How many history items and words to show."),
) -> None:
    """Why a bundle's model recommends an item: each history item's contribution to the item's score (exact
    where the score is a sum over the history, occlusion otherwise) and, for text models, the words of the
    item's text that raise its score most."""
    found, bundle = pipeline.explain_from_bundle(model, item, user, _names(history) if history is not None else None)
    titles, items = bundle.titles, bundle.items
    table = Table("history item", "title", "contribution",
                  title=f"{item} ({titles[found.item]}): score {found.score:.4f}, {found.method}, "
                        f"{1000 * found.seconds:.1f} ms")
    for c in found.history[:top]:
        table.add_row(items.raw(c.item), str(titles[c.item]), f"{c.contribution:+.4f}")
    out.print(table)
    if found.words:
        out.print("words: " + ", ".join(f"{w.word} {w.contribution:+.4f}" for w in found.words[:top]))
    if found.history_words:
        out.print(f"matched in {items.raw(found.history[0].item)}: " +
                  ", ".join(f"{w.word} {w.contribution:+.4f}" for w in found.history_words[:top]))


@app.command()
def refit(
    bundle: Path = typer.Argument(..., help="Bundle folder the service serves."),
    events: Optional[Path] = typer.Option(None, "--events", help="The service's event store (default: "
                                          "BUNDLE.events.sqlite beside the bundle, where `lmrec serve` writes)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Bundle folder to write (default: replace BUNDLE "
                                           "atomically, so POST /admin/reload serves the new one)."),
    set_: list[str] = typer.Option([], "--set", help="Change a model option, e.g. --set epochs=5 (repeatable)."),
) -> None:
    """Train a served bundle's model again on its data plus the events and items the service stored since:
    warm-started where the model trains in epochs, validated on each user's most recent stored event."""
    path, metrics = pipeline.refit(bundle, events, out_dir, parse_options(set_))
    info = metrics["refit"]
    valid = metrics["valid"]
    out.print(f"refit {path}: {info['new_events']:,} stored events, {info['new_items']:,} new items, "
              f"{info['new_users']:,} new users; fitted in {metrics['fit_seconds']:.1f} s"
              + (" (warm start)" if info["warm_start"] else "")
              + ("; valid " + "  ".join(f"{m} {v:.4f}" for m, v in valid.items() if m.split("@")[0] in ("recall", "ndcg"))
                 if valid else ""))


@app.command()
def forget(
    store: Path = typer.Option(..., "--store", help="The service's event store (BUNDLE.events.sqlite)."),
    user: str = typer.Option(..., "--user", help="The user's raw id."),
) -> None:
    """Delete a user: their events and served lists leave the store (overwritten, the file vacuumed); a running
    service stops using the bundle's data on them; `lmrec refit` then trains a bundle without them."""
    done = pipeline.forget(store, user)
    out.print(f"deleted {done['events']:,} events and {done['served']:,} served lists of {user!r} from {store}; "
              "run `lmrec refit` to train a bundle without them", markup=False)


@app.command("online-report")
def online_report(
    store: Path = typer.Argument(..., help="The service's store (BUNDLE.events.sqlite beside the bundle)."),
    k: int = typer.Option(10, "-k", "--k", min=1, help="Cut-off K of hit@K and NDCG@K."),
    window: float = typer.Option(3600.0, help="Seconds after a list within which the user's next event counts."),
) -> None:
    """How the served lists did, from what each user did next: hit@K, NDCG@K and click-through per A/B arm
    and model version (95% intervals), and whether the arms differ significantly."""
    found = pipeline.online_report(store, k, window)
    table = Table("arm", "model version", "lists", "judged", f"hit@{k}", f"ndcg@{k}", "click-through",
                  title=f"{store}: online, window {window:g} s")

    def cell(v: list) -> str:
        if v[0] is None:
            return "-"
        return f"{v[0]:.4f}" + ("" if v[1] is None else f" [{v[1]:.4f}, {v[2]:.4f}]")

    for r in found["versions"]:
        table.add_row(r["arm"], r["model"], str(r["lists"]), str(r["judged"]), cell(r[f"hit@{k}"]),
                      cell(r[f"ndcg@{k}"]), cell(r["click_through"]))
    out.print(table)
    if "ab" in found:
        ab = found["ab"]
        test = ("no test (both arms constant)" if ab["p"] is None else
                f"Welch t {ab['welch_t']}, p {ab['p']:.4g}: " +
                ("significant at 0.05" if ab["significant_at_0.05"] else "not significant at 0.05"))
        out.print(f"A/B: {ab['b']} - {ab['a']} hit@{k} {ab['difference']:+.4f}; {test}")


@app.command("export-encoder")
def export_encoder(
    model: Path = typer.Argument(..., help="Saved twotower model folder (model.json) or a bundle holding one."),
    out_dir: Path = typer.Argument(..., help="New folder for the Hugging Face model (config, weights, tokenizer)."),
    side: str = typer.Option("item", help="Which tower: item or query (the same model when the encoder is shared)."),
) -> None:
    """Write a fine-tuned two-tower model's encoder as an ordinary Hugging Face folder, usable as
    `--encoder FOLDER` / `--set encoder=FOLDER` by every other command and model."""
    if side not in ("item", "query"):
        raise ConfigError(f"--side must be item or query, got {side!r}")
    out.print(f"{side} encoder of {model} written to {pipeline.export_encoder(model, out_dir, side)}")  # type: ignore[arg-type]


SourceOption = typer.Option(..., "--from", help="Artifact folder written by `lmrec pretrain`.")
TargetOption = typer.Option(..., help="Target dataset (name or name:split).")


@app.command("pretrain")
def pretrain_cmd(
    datasets: str = typer.Option(..., help="Comma-separated source datasets (name or name:split), e.g. "
                                 "amazon-beauty,amazon-arts,amazon-office."),
    model: str = typer.Option("textseq", help="Model to pretrain (textseq is the transferable one)."),
    out_dir: Path = typer.Option(Path("runs/base"), "--out", help="Artifact folder (checkpoints in OUT/train)."),
    set_: list[str] = typer.Option([], "--set", help="Option, e.g. --set epochs=20 --set seq_weight=0.1 (repeatable)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Pretrain one text-based sequence model on several domains at once (domain-balanced batches,
    sequence-item contrastive loss); writes a self-describing artifact for `lmrec transfer`."""
    if model != "textseq":
        raise ConfigError(f"only textseq can be pretrained for transfer (its items are text), not {model!r}")
    names = [d.strip() for d in datasets.split(",") if d.strip()]
    run = pipeline.pretrain(names, parse_options(set_), out_dir, data_dir)
    s = run.artifact.summary
    out.print(f"pretrained on {', '.join(names)}: {s['epochs_run']} epochs (best {s['best_epoch']}), "
              f"{s['seconds']:.0f} s; mean valid ndcg@10 {run.result.best_metric:.4f}")
    out.print(f"artifact: {run.path}")


@app.command("transfer")
def transfer_cmd(
    source: Path = SourceOption,
    target: str = TargetOption,
    mode: str = typer.Option("adapter", help="zero-shot | adapter | lora | full | scratch."),
    fraction: float = typer.Option(1.0, help="Share of the target's training users to train on (valid/test stay full)."),
    set_: list[str] = typer.Option([], "--set", help="Model option, e.g. --set lr=1e-3 --set id_mode=add (repeatable)."),
    save: Optional[Path] = typer.Option(None, help="Also save the transferred model to this folder."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Transfer a pretrained model to a target domain and evaluate it on the target's test part."""
    model, run = pipeline.transfer(source, target, mode, fraction, parse_options(set_), data_dir)
    _print_transfer_runs(target, [run.record(target)])
    if save is not None:
        out.print(f"model saved to {model.save(save)}")


@app.command("transfer-grid")
def transfer_grid_cmd(
    source: Path = SourceOption,
    target: str = TargetOption,
    modes: str = typer.Option("zero-shot,adapter,lora,full,scratch", help="Comma-separated transfer modes."),
    fractions: str = typer.Option("0.05,0.1,0.25,0.5,1.0", help="Comma-separated shares of the target's training users."),
    references: str = typer.Option("pop,sasrec", help="Reference models trained on the same users ('' for none)."),
    set_: list[str] = typer.Option([], "--set", help="MODE.option=value, *.option=value (every mode) or "
                                   "sasrec.option=value (repeatable)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where transfer.md/png/json go (default: "
                                           "FROM/transfer-TARGET)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Every transfer mode at every fraction, with references: a table and a plot of NDCG@10 vs fraction."""
    try:
        shares = tuple(float(f) for f in fractions.split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--fractions must be comma-separated numbers, got {fractions!r}") from None
    out_dir = out_dir or source / f"transfer-{target.replace(':', '-')}"
    grid = pipeline.transfer_grid(source, target, out_dir, tuple(m.strip() for m in modes.split(",") if m.strip()), shares,
                         tuple(r.strip() for r in references.split(",") if r.strip()), parse_sets(set_), data_dir)
    _print_transfer_runs(target, grid.records(target))
    out.print(f"grid: {grid.seconds / 60:.1f} min; {out_dir / 'transfer.md'}, {out_dir / 'transfer.png'}")


def _print_transfer_runs(target: str, records: list[dict[str, Any]]) -> None:
    table = Table("mode", "fraction", "recall@10", "ndcg@10", "trainable params", "train s", title=f"transfer to {target}")
    for r in records:
        table.add_row(r["mode"], f"{r['fraction']:g}", f"{r['recall@10']:.4f}", f"{r['ndcg@10']:.4f}",
                      f"{r['trainable_params']:,}", f"{r['train_seconds']:.1f}")
    out.print(table)


def _print_leaderboard(run: pipeline.LeaderboardRun) -> None:
    table = Table(*[str(c) for c in run.table.columns], title="leaderboard (test, full ranking)")
    for row in run.table.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    out.print(table)
    out.print(f"run folder: {run.run_dir}")
    if run.report is not None:
        out.print(f"report: {run.report}")


def _print_stats(s: dict[str, Any]) -> None:
    out.print(f"users {s['users']:,}  items {s['items']:,} (catalogue {s['catalogue_items']:,})  "
              f"interactions {s['interactions']:,}  density {s['density']:.4%}")
    sl = s.get("sequence_length") or {}
    if sl:
        out.print("interactions per user: " + "  ".join(
            f"{k} {v:g}" for k, v in sl.items() if k in ("p0", "p25", "p50", "p75", "p90", "p100", "mean")))
    t = s.get("time", {})
    if "from" in t:
        out.print(f"time: {t['from']} .. {t['to']}")
    else:
        out.print(f"time: {t.get('unit', 'none')}")
    if "positive_share" in s:
        out.print(f"positive labels: {s['positive_share']:.2%}")


def _print_prepared(summary: dict[str, Any]) -> None:
    stats = summary["stats"]
    _print_stats(stats["dataset"])
    table = Table("part", "interactions", "users", "items", title=f"split {summary['split_name']!r}")
    for part, c in stats["split"].items():
        table.add_row(part, f"{c['interactions']:,}", f"{c['users']:,}", f"{c['items']:,}")
    out.print(table)
    out.print(f"cold-start test items: {stats['cold_test_items']:,}  cold-start test users: "
              f"{stats['cold_test_users']:,}")
    out.print(f"stored at {summary['path']}")


# Library errors name settings; on the command line, say which flag sets them.
FLAG_HINTS = (
    ("options are set for model", "--set / --models"),
    ("models:", "--models"),
    ("ks:", "--ks"),
    ("k:", "-k"),
    ("rerank model", "--rerank"),
    ("rerank train_rows", "--rerank-train-rows"),
    ("split:", "--split"),
    ("predefined:", "--predefined"),
    ("min_rating:", "--min-rating"),
    ("options name", "--set"),
)


def _with_flag(message: str) -> str:
    for start, flags in FLAG_HINTS:
        if message.startswith(start):
            return f"{message} (set with {flags})"
    return message


def main(argv: list[str] | None = None) -> int:
    """Run the app and return its exit code; a user-caused error (a bad option included) prints one line on
    stderr and exits 2, never a traceback."""
    command = typer.main.get_command(app)
    try:
        # not standalone: usage errors come back here to be printed as one line, like every other error
        command.main(args=sys.argv[1:] if argv is None else argv, prog_name="lmrec", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a group without its command: show what it offers
        out.print(exc.ctx.get_help() if exc.ctx else "", markup=False)
        return 2
    except UsageError as exc:  # a bad option or argument: one line, and where the help is
        path = exc.ctx.command_path if exc.ctx else "lmrec"
        _error(f"{one_line(exc.format_message())} (see: {path} --help)")
        return 2
    except LmrecError as exc:
        _error(_with_flag(one_line(str(exc))))
        return 2
    except OSError as exc:  # a read-only or full disk, a folder that vanished: say which file
        _error((f"{exc.filename}: " if exc.filename else "") + (exc.strerror or one_line(str(exc))))
        return 2
    except typer.Abort:  # Ctrl-C
        _error("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _error(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
