"""The leaderboard of record: every model tuned with the same budget, tested once, LM rows against the best
non-LM row with a paired test per user.

Usage:
    LMREC_DATA=../shared/data python bench/leaderboard.py --dataset movielens-100k [--trials 8] [--minutes 4]
                                                         [--models ease,sasrec,...] [--force]
    python bench/leaderboard.py --table            # markdown tables (docs/leaderboard.md) from the JSON

Protocol, per dataset (its published split where it has one):
* every model with a search space runs ``lmrec tune`` (Optuna TPE, median pruning on the validation curve,
  the model's defaults as the first trial) until it has ``--trials`` trials or ``--minutes`` of search have
  passed (a trial already running finishes); the best trial on validation NDCG@10 (its own fitted model,
  kept during the search) is written as a bundle and evaluated on test once. ``pop`` has nothing to tune
  and is trained once. ``textseq+id`` is TextSeqRec with a trainable ID embedding added to each item's text
  vector (``id_mode: add`` fixed for every trial), searched like the rest.
* ``fusion`` (LM) learns on validation how to weigh the tuned TextSeqRec, SASRec and EASE bundles (their
  scores standardised per user); ``fusion-id`` (non-LM ablation) does the same with SASRec and EASE only, so
  the gain the text component brings is measured, not assumed. ``fusion-all`` / ``fusion-all-id``: the same
  over every tuned model, with and without the text models. Their budget is their components' plus the
  weight search. An LM fusion names its non-LM components as its ``fallback``: their weight search (its no-text
  twin's) runs first and the full search also starts from its end, so it cannot end below its twin on
  validation. With ``--bags N`` (0 by default: the one search) every fusion row's weights are the mean of
  that search's results on N bootstrap resamples of the validation users (each scaled to sum 1). Ten bags
  were tried on four datasets and raised five of sixteen fusion rows on test, lowered eleven
  (``docs/leaderboard.md``), so the table of record keeps the one search.
* each row: test Recall/NDCG@10 and @20 with 95% CIs over users, trials run, search and final-fit seconds
  (wall) and CPU seconds (process time, all threads), the best parameters, the command that reproduces it;
  then a paired t-test of each row's per-user NDCG@10 against the best non-LM row's.

Records merge into ``bench/results/leaderboard.json`` (one per dataset and model); a model already recorded
for a dataset is skipped unless ``--force`` (so an interrupted run continues where it stopped; ``--force``
starts the model's search afresh). Bundles and studies go to ``runs/leaderboard/<dataset>/``, which git does
not keep: on a fresh checkout a recorded row whose bundle is missing (the paired tests and the fusions need
it) is first fitted again from its recorded parameters, without a search, and its record notes the refit and
whether the test metrics came out the same.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from provenance import stamp

from lmrec import pipeline
from lmrec.data import PrepareConfig
from lmrec.runs import compare_runs

RESULTS = Path(__file__).parent / "results" / "leaderboard.json"
RUNS = Path("runs/leaderboard")
DATASETS = {"movielens-100k": "loo", "amazon-beauty": "loo", "amazon-scientific": "predefined",
            "amazon-arts": "predefined", "amazon-office": "predefined"}
NON_LM = ["pop", "itemknn", "ease", "als", "bpr", "lightgcn", "multvae", "gru4rec", "bert4rec", "sasrec"]
LM = ["lmcontent", "textseq", "textseq+id"]
# Rows that are a registered model with options fixed for every trial of their search: the row name, the model.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"textseq+id": ("textseq", {"id_mode": "add"})}
# fusion / fusion-id: the text sequence model with the two usual strongest non-LM models, and without it;
# fusion-all / fusion-all-id: every tuned model with something to tune, with and without the text models
# (the weights, zeros included, chosen on validation). Each LM fusion has its no-text twin as a non-LM row.
TUNED_NON_LM = [m for m in NON_LM if m != "pop"]
FUSIONS = {"fusion-id": ["sasrec", "ease"], "fusion": ["textseq", "sasrec", "ease"],
           "fusion-all-id": TUNED_NON_LM, "fusion-all": LM + TUNED_NON_LM}
LM_ROWS = set(LM) | {"fusion", "fusion-all"}
# Options fixed for every trial where a dataset needs them to fit the CPU budget (docs/benchmarks.md,
# "CPU budget recipe"): TextSeqRec on Beauty trains a fixed 24 epochs with warm-up and cosine decay.
FIXED: dict[tuple[str, str], dict[str, Any]] = {
    ("amazon-beauty", "textseq"): {"schedule": "cosine", "warmup_steps": 100, "epochs": 24, "eval_every": 2,
                                   "patience": 3},
}
KS = (10, 20)
# Defaults changed after rows were recorded with them: (model, option, the old value, the commit that changed
# it). A row recorded before that commit, without the option among its parameters, is refitted with the old
# value, so that the refit reproduces the row (GRU4Rec trained in batches of 128 until dba421a; LMContent scored
# by the mean history vector, power 1, until 9ac43b1).
FORMER_DEFAULTS = [("gru4rec", "batch_size", 128, "dba421a"), ("lmcontent", "power", 1.0, "9ac43b1")]


def fusion_params(folder: Path, rows: list[str], fallback: bool, bags: int) -> dict[str, Any]:
    """A fusion's options: the bundles of ``rows`` in the dataset's folder and, with ``fallback`` (an LM
    fusion), its non-LM components as the ``fallback`` (their own search first, which is the no-text twin's
    search, and the full search also from its end: the LM row cannot end below its twin on validation). Rows
    recorded before the option are refitted as they ran, without it. ``bags``: bootstrap resamples of the
    validation users whose searches' weights are averaged (0: the one search)."""
    params: dict[str, Any] = {"components": [{"saved": str(folder / c)} for c in rows], "bags": bags}
    if fallback:
        params["fallback"] = [i for i, c in enumerate(rows) if c not in LM]
    return params


def model_and_fixed(dataset: str, row: str) -> tuple[str, dict[str, Any]]:
    """The registered model a (non-fusion) row trains and the options fixed for every trial of its search."""
    model, options = VARIANTS.get(row, (row, {}))
    return model, {**FIXED.get((dataset, model), {}), **options}


def study_dir(folder: Path, row: str) -> Path:
    """Where a row's search study lives: studies are named by dataset, split and model, so a variant of a
    model gets a folder of its own."""
    return folder / "tune" / row if row in VARIANTS else folder / "tune"


def run_model(dataset: str, split: str, model: str, trials: int, minutes: float, folder: Path,
              bags: int) -> dict[str, Any]:
    config = PrepareConfig(dataset=dataset, split=split)
    out = folder / model
    wall, cpu = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"dataset": dataset, "split": split, "model": model, "lm": model in LM_ROWS}
    if model in FUSIONS:
        params = fusion_params(folder, FUSIONS[model], fallback=model in LM_ROWS, bags=bags)
        run = pipeline.train(config, "fusion", params, out=out, ks=KS)
        fallback = {} if run.model.fallback_ is None else {"fallback": params["fallback"],
                                                           "fallback_weights": run.model.fallback_["weights"]}
        sets = "".join(f" --set {k}='{json.dumps(v)}'" for k, v in params.items())
        record.update(trials=1, search_seconds=0.0, params={"components": FUSIONS[model], **fallback,
                                                            "bags": bags, "weights": run.model.weights_.tolist()},
                      command=f"lmrec train --dataset {dataset} --split {split} --model fusion --out {out}{sets}")
    elif model == "pop":
        run = pipeline.train(config, "pop", out=out, ks=KS)
        record.update(trials=0, search_seconds=0.0, params={},
                      command=f"lmrec train --dataset {dataset} --split {split} --model pop --out {out}")
    else:
        registered, fixed = model_and_fixed(dataset, model)
        studies = study_dir(folder, model)
        found = pipeline.tune(config, registered, trials, out, fixed=fixed, timeout=minutes * 60, study_dir=studies,
                              ks=KS)
        run = found.run
        sets = "".join(f" --set {k}={v}" for k, v in fixed.items())
        record.update(trials=len(found.search.trials),
                      pruned=sum(t["state"] == "pruned" for t in found.search.trials),
                      search_seconds=round(found.search.seconds, 1), params=found.search.best_params,
                      best_valid=found.search.best_value,
                      command=f"lmrec tune --dataset {dataset} --split {split} --model {registered} --trials {trials} "
                              f"--timeout {minutes * 60:g} --out {out} --study-dir {studies}{sets}")
    means, ci = run.result.means(), run.result.ci95()
    record.update({m: means[m] for m in means if m.split("@")[0] in ("recall", "ndcg")},
                  ci95={m: ci[m] for m in ("recall@10", "ndcg@10")}, fit_seconds=round(run.fit_seconds, 1),
                  wall_seconds=round(time.perf_counter() - wall, 1), cpu_seconds=round(time.process_time() - cpu, 1),
                  users=len(run.result.users), bundle=str(out), **stamp())
    return record


def refit_missing(dataset: str, split: str, records: list[dict[str, Any]], folder: Path,
                  replaced: frozenset[str] = frozenset()) -> int:
    """Fit again every recorded row of ``dataset`` whose bundle is missing, from the row's recorded parameters
    (no search: the tuned choice is kept), fusions last since they read their components' bundles. Models are
    seeded, so the test metrics should come out as recorded; the record keeps the first run's numbers under
    ``refit.recorded`` and takes the new bundle's, so that every row describes the bundle its paired test reads.
    Rows in ``replaced`` (run again by this ``--force`` invocation) are not refitted: their new search replaces them.
    Updates ``records`` in place and saves them after each row; returns how many rows were fitted again."""
    config = PrepareConfig(dataset=dataset, split=split)
    rows = sorted((r for r in records if r["dataset"] == dataset and r["model"] not in replaced
                   and not (folder / r["model"] / "bundle.json").is_file()),
                  key=lambda r: r["model"] in FUSIONS)
    for r in rows:
        model, out = r["model"], folder / r["model"]
        print(f"{dataset} {model}: bundle missing, fitting it again from the recorded parameters", flush=True)
        if model in FUSIONS:
            params = fusion_params(folder, r["params"]["components"], fallback="fallback" in r["params"],
                                   bags=r["params"].get("bags", 0))
            run = pipeline.train(config, "fusion", params, out=out, ks=KS)
        else:
            run = pipeline.train(config, model_and_fixed(dataset, model)[0], recorded_params(r), out=out, ks=KS)
        means, ci = run.result.means(), run.result.ci95()
        recorded = {m: r[m] for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")}
        r.update({m: means[m] for m in recorded}, ci95={m: ci[m] for m in ("recall@10", "ndcg@10")}, bundle=str(out))
        r["refit"] = {"recorded": recorded, "same": all(abs(means[m] - v) < 1e-6 for m, v in recorded.items()),
                      "fit_seconds": round(run.fit_seconds, 1), **stamp()}
        print(f"  NDCG@10 {means['ndcg@10']:.4f} (recorded {recorded['ndcg@10']:.4f})", flush=True)
        save([r])  # after each row: a long refit that is stopped keeps what it fitted
    return len(rows)


def recorded_params(record: dict[str, Any]) -> dict[str, Any]:
    """The options a recorded row trained with: its dataset's fixed ones, its tuned ones, and the defaults of
    the time for those whose default has changed since (``FORMER_DEFAULTS``)."""
    params = {**model_and_fixed(record["dataset"], record["model"])[1], **record["params"]}
    for model, option, value, changed_in in FORMER_DEFAULTS:
        if record["model"] == model and option not in params and not _descends(record["commit"], changed_in):
            params[option] = value
    return params


def _descends(commit: str, ancestor: str) -> bool:
    """Whether ``commit`` (a record's, maybe ``-dirty``) has ``ancestor`` in its history."""
    sha = commit.removesuffix("-dirty")
    return subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, sha], capture_output=True,
                          cwd=Path(__file__).parent).returncode == 0


def paired_tests(records: list[dict[str, Any]]) -> None:
    """Each row's NDCG@10 against the best non-LM row's, per user (paired t-test). A row whose bundle is
    missing (one a ``--force`` run replaces later, not refitted first) is left out until it is run again."""
    present = [r for r in records if (Path(r["bundle"]) / "bundle.json").is_file()]
    base = max((r for r in present if not r["lm"]), key=lambda r: r["ndcg@10"], default=None)
    if base is None:
        return
    for r in present:
        r["vs_best_non_lm"] = base["model"]
        if r is base:
            r["gain_ndcg@10"], r["p_ndcg@10"] = 0.0, None
            continue
        c = compare_runs(r["bundle"], base["bundle"], "ndcg@10")
        r["gain_ndcg@10"] = c["diff"] / c["mean_b"] if c["mean_b"] else None
        r["p_ndcg@10"] = c["t_p"]


def load() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text())["records"] if RESULTS.is_file() else []


def save(rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` into the results file, replacing the records of the same dataset and model and keeping
    every other record as the file has it now: runs on different datasets may save at the same time (under a
    lock), and none overwrites what the other recorded since it started."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = {(r["dataset"], r["model"]) for r in rows}
        records = [r for r in load() if (r["dataset"], r["model"]) not in keys] + rows
        protocol = __doc__.split("Protocol, per dataset")[1].split("Records merge")[0].strip() if __doc__ else ""
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps({"protocol": protocol, "records": records}, indent=2))
        tmp.replace(RESULTS)


def table(records: list[dict[str, Any]]) -> str:
    lines = []
    for dataset in DATASETS:
        rows = sorted((r for r in records if r["dataset"] == dataset), key=lambda r: -r["ndcg@10"])
        if not rows:
            continue
        cpu = sum(r["cpu_seconds"] for r in rows) / 60
        lines += [f"### {dataset} ({rows[0]['split']}, {rows[0]['users']:,} test users; {cpu:.0f} CPU minutes in all)",
                  "", "| model | LM | Recall@10 | NDCG@10 (95% CI) | NDCG@20 | vs best non-LM | p | trials | "
                  "search s | fit s | CPU min |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lo, hi = r["ci95"]["ndcg@10"]
            gain = "" if r.get("gain_ndcg@10") is None else f"{r['gain_ndcg@10']:+.1%}"
            p = "" if r.get("p_ndcg@10") is None else f"{r['p_ndcg@10']:.2g}"
            lines.append(f"| {r['model']} | {'yes' if r['lm'] else ''} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} "
                         f"({lo:.4f}-{hi:.4f}) | {r['ndcg@20']:.4f} | {gain} | {p} | {r['trials']} | "
                         f"{r['search_seconds']:.0f} | {r['fit_seconds']:.0f} | {r['cpu_seconds'] / 60:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=list(DATASETS))
    ap.add_argument("--models", default=",".join(NON_LM + LM + list(FUSIONS)))
    ap.add_argument("--trials", type=int, default=8, help="trials per model (the same for every model)")
    ap.add_argument("--minutes", type=float, default=4.0, help="search minutes per model (the same for every model)")
    ap.add_argument("--bags", type=int, default=0, help="fusion rows: bootstrap resamples of the validation "
                    "users whose weight searches are averaged (0: one search on all of them)")
    ap.add_argument("--force", action="store_true", help="run models already recorded again")
    ap.add_argument("--table", action="store_true", help="print the markdown tables and exit")
    args = ap.parse_args()
    records = load()
    if args.table:
        print(table(records))
        return
    if not args.dataset:
        ap.error("--dataset is needed (or --table)")
    split, folder = DATASETS[args.dataset], RUNS / args.dataset
    models = args.models.split(",")
    refit_missing(args.dataset, split, records, folder, frozenset(models if args.force else ()))
    for model in models:
        if model in FUSIONS:
            missing = [c for c in FUSIONS[model] if not (folder / c / "bundle.json").is_file()]
            if missing:
                print(f"skip {model}: tune {', '.join(missing)} first")
                continue
        done = any(r["dataset"] == args.dataset and r["model"] == model for r in records)
        if done and not args.force:
            print(f"{args.dataset} {model}: recorded already (--force to run again)")
            continue
        if done:  # --force: a new search, not the resumed old study (lmrec tune resumes a study it finds)
            for study in study_dir(folder, model).glob(f"*-{model_and_fixed(args.dataset, model)[0]}"):
                shutil.rmtree(study)
        record = run_model(args.dataset, split, model, args.trials, args.minutes, folder, args.bags)
        records = [r for r in records if not (r["dataset"] == args.dataset and r["model"] == model)] + [record]
        rows = [r for r in records if r["dataset"] == args.dataset]
        paired_tests(rows)
        save(rows)
        print(f"{args.dataset} {model}: NDCG@10 {record['ndcg@10']:.4f}, {record['trials']} trials, "
              f"{record['cpu_seconds'] / 60:.1f} CPU min", flush=True)
    print(table([r for r in records if r["dataset"] == args.dataset]))


if __name__ == "__main__":
    main()
