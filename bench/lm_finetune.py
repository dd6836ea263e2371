"""Fine-tuning the language model for recommendation (issue: two-tower, CTR cross-encoder).

Usage (LMREC_DATA=../shared/data):
    python bench/lm_finetune.py twotower [--datasets movielens-100k,amazon-scientific] [--modes frozen,lora,full]
        [--valid-users 1000] [--no-reference] [--save DIR]
    python bench/lm_finetune.py ctr [--samples 64,256,1024,all] [--models id-fm,frozen-mlp,cross-encoder]
    python bench/lm_finetune.py rerank [--dataset movielens-1m-collm] [--split loo] [--retrievers ease] [--reranker cross-encoder]
        [--rerank-k 100] [--rerank-train-rows N] [--rerank-weight W]   (the same as `lmrec bench --rerank ...`;
        CTR rerankers need a labelled dataset, relevance-mlp runs on any)
    python bench/lm_finetune.py compare --datasets amazon-scientific --artifacts DIR[,DIR...]
        (paired significance on test: each saved two-tower model vs LMContent and vs the one before it)
    python bench/lm_finetune.py table   (markdown tables of the results file)
Options: --set key=value (twotower / ctr: every model of the run; rerank: the reranker), --device.

two-tower: TwoTowerLM (MiniLM) per tuning mode vs the frozen-encoder LMContent model, leave-one-out, full
ranking, early stopping on valid. ctr: movielens-1m-collm time split, test AUC / log-loss per training
sample size (stratified samples of the train rows; validation on a fixed sample of valid rows).
Records are merged into bench/results/lm_finetune.json, replacing those of the same
(dataset, split, model, mode, train_samples, device, --set options).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from provenance import stamp

from lmrec.config import parse_options
from lmrec.ctr import ctr_examples
from lmrec.data import PrepareConfig, Prepared, prepare
from lmrec.eval import Evaluator, compare
from lmrec.pipeline import Rerank, leaderboard
from lmrec.registry import create, load_model

RESULTS = Path(__file__).parent / "results" / "lm_finetune.json"
SIGNIFICANCE = Path(__file__).parent / "results" / "lm_finetune_significance.json"




def merge(records: list[dict[str, Any]]) -> None:
    # the --set options are part of the key: a longer run of the same mode is a new row, not a replacement
    key = ("dataset", "split", "model", "mode", "train_samples", "device", "settings")

    def identity(r: dict[str, Any]) -> str:
        return json.dumps([r.get(k) for k in key])

    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    new = {identity(r) for r in records}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([r for r in old if identity(r) not in new] + records, indent=2))


def _two_tower_split(dataset: str) -> Prepared:  # the split the two-tower records use
    return prepare(PrepareConfig(dataset=dataset, split="predefined" if dataset == "amazon-scientific" else "loo"))


def two_tower(args: argparse.Namespace) -> None:
    records = []
    for dataset in args.datasets.split(","):
        p = _two_tower_split(dataset)
        test = Evaluator(p.split, "test", ks=(10, 20))
        valid_users = np.unique(p.split.valid.user)
        if args.valid_users and args.valid_users < len(valid_users):  # a fixed sample keeps validation cheap
            valid_users = np.random.default_rng(0).choice(valid_users, args.valid_users, replace=False)
        valid = Evaluator(p.split, "valid", ks=(10, 20), users=valid_users)
        runs = [("lmcontent", "frozen-lmcontent", create("lmcontent"))] if args.reference else []
        runs += [("twotower", mode, create("twotower", tuning=mode, device=args.device, **parse_options(args.set)))
                 for mode in args.modes.split(",")]
        for model_name, mode, model in runs:
            started = time.perf_counter()
            model.fit(p.split.train, p.items, validation=valid)
            seconds = time.perf_counter() - started
            m = test.evaluate(model).means()
            r = getattr(model, "train_result_", None)
            records.append({"dataset": dataset, "model": model_name, "mode": mode, "train_samples": None,
                            "metrics": {k: round(m[k], 4) for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")},
                            "trainable_params": getattr(model, "trainable_params_", 0), "train_seconds": round(seconds, 1),
                            # the Trainer's clock runs on across a resume from checkpoint; train_seconds does not
                            "trainer_seconds": round(r.seconds, 1) if r else None, "epochs": r.epochs_run if r else 0,
                            "settings": args.set, "device": args.device, **stamp(args.device)})
            print(records[-1])
            merge(records[-1:])
            if args.save and model_name == "twotower":  # the artifact, and its tower for other models' encoder=
                folder = model.save(args.save / f"{dataset}-{model_name}-{mode}")
                print("saved", folder, "and", model.export_encoder(folder / "encoder"))


def compare_artifacts(args: argparse.Namespace) -> None:
    """Saved two-tower models (``twotower --save``) against the frozen LMContent model and each against
    the one listed before it (e.g. a second training stage vs its start): paired t-test and Wilcoxon
    signed-rank over the test users, per metric."""
    if not args.artifacts or "," in args.datasets:
        raise SystemExit("compare needs --artifacts DIR[,DIR...] and one dataset in --datasets")
    dataset = args.datasets
    p = _two_tower_split(dataset)
    test = Evaluator(p.split, "test", ks=(10, 20))
    reference = create("lmcontent")
    reference.fit(p.split.train, p.items)
    results = {"lmcontent": test.evaluate(reference, name="lmcontent")}
    for folder in args.artifacts.split(","):
        results[folder] = test.evaluate(load_model(folder), name=folder)
    names = list(results)
    pairs = [(b, "lmcontent") for b in names[1:]] + [(b, a) for a, b in zip(names[1:], names[2:])]
    records = []
    for b, a in pairs:
        for metric in ("ndcg@10", "recall@10", "ndcg@20"):
            s = compare(results[b], results[a], metric)
            records.append({"dataset": dataset, "model": b, "baseline": a, "metric": metric, "users": s["users"],
                            "value": round(s["mean_a"], 4), "baseline_value": round(s["mean_b"], 4),
                            "relative_gain": round(s["diff"] / s["mean_b"], 4), "t_p": s["t_p"],
                            "wilcoxon_p": s["wilcoxon_p"], **stamp(args.device)})
            print(records[-1])
    keys = {(r["dataset"], r["model"], r["baseline"], r["metric"]) for r in records}
    old = json.loads(SIGNIFICANCE.read_text()) if SIGNIFICANCE.exists() else []
    SIGNIFICANCE.write_text(json.dumps(
        [r for r in old if (r["dataset"], r["model"], r["baseline"], r["metric"]) not in keys] + records, indent=2))


def ctr(args: argparse.Namespace) -> None:
    p = prepare("movielens-1m-collm")
    train, valid, test = (ctr_examples(p.split, part) for part in ("train", "valid", "test"))
    for samples in args.samples.split(","):
        n = None if samples == "all" else int(samples)
        for name in args.models.split(","):
            model = create(name, ("ctr",), **{"device": args.device, "valid_rows": 2000, **parse_options(args.set)})
            started = time.perf_counter()
            model.fit(train.sample(n), p.items, valid)
            seconds = time.perf_counter() - started
            m = model.evaluate(test)
            mode = getattr(model.config, "tuning", "-")
            if getattr(model.config, "head_lr", None) is not None:
                mode += f", head_lr {model.config.head_lr:g}"  # its own row: kept beside the plain runs
            record = {"dataset": "movielens-1m-collm", "model": name, "mode": mode,
                      "train_samples": n or len(train), "metrics": {k: round(v, 4) for k, v in m.items()},
                      "trainable_params": model.trainable_params_, "train_seconds": round(seconds, 1),
                      "steps": model.train_result_.steps if model.train_result_ else 0,
                      "trainer_seconds": round(model.train_result_.seconds, 1) if model.train_result_ else None,
                      "settings": args.set,
                      "device": args.device,
                      **stamp(args.device)}
            print(record)
            merge([record])


def rerank(args: argparse.Namespace) -> None:
    """`lmrec bench --rerank`: retrievers alone and followed by the reranker on their top k."""
    sets = {args.reranker: parse_options(args.set)} if args.set else {}
    dataset = PrepareConfig(dataset=args.dataset, split=args.split)  # split None: the dataset's default
    run = leaderboard(dataset, args.retrievers.split(","), ks=(10, 20), params=sets,
                      rerank=Rerank(args.reranker, args.rerank_k, args.rerank_train_rows, args.rerank_weight))
    metrics = json.loads((run.run_dir / "metrics.json").read_text())["models"]
    split = yaml.safe_load((run.run_dir / "config.yaml").read_text())["dataset"]["split"]
    records = []
    for name, m in metrics.items():
        reranked = "+" in name
        # "rerank@k": the reranker's order alone (weight 1); "fused": the weight chosen on validation
        mode = "retriever" if not reranked else f"rerank@{args.rerank_k}" + (" fused" if args.rerank_weight is None else
                                                                            f" weight {args.rerank_weight}")
        # what the reranker was trained on: labelled CTR rows, or candidate lists (relevance-mlp)
        samples = m.get("rerank_train_rows", m.get("rerank_train_lists")) if reranked else None
        records.append({"dataset": args.dataset, "split": split, "model": name, "mode": mode, "rerank_weight": m.get("rerank_weight"),
                        "train_samples": samples, "rerank_valid_best_weight": m.get("rerank_valid_best_weight"),
                        "rerank_valid_p": m.get("rerank_valid_p"), "rerank_fit_seconds": m.get("rerank_fit_s"),
                        "metrics": {k: round(m["means"][k], 4) for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")},
                        "rerank_ms_per_user": round(m.get("rerank_ms_per_user", 0.0), 1), "users": m["users"],
                        "train_seconds": round(m["fit_seconds"], 1), "settings": args.set, "device": args.device,
                        **stamp(args.device), "run_dir": str(run.run_dir)})
        print(records[-1])
    merge(records)


def _is_rerank(record: dict[str, Any]) -> bool:
    """Two-stage records (any dataset) carry the reranking latency."""
    return "rerank_ms_per_user" in record


def table(args: argparse.Namespace) -> None:
    """Markdown tables of bench/results/lm_finetune.json (what docs/benchmarks.md shows)."""
    records = json.loads(RESULTS.read_text())
    print("| dataset | model | mode | recall@10 | ndcg@10 | ndcg@20 | trainable params | epochs | train s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in records:
        if r["dataset"] != "movielens-1m-collm" and not _is_rerank(r):
            m = r["metrics"]
            print(f"| {r['dataset']} | {r['model']} | {r['mode']} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | "
                  f"{m['ndcg@20']:.4f} | {r['trainable_params']:,} | {r['epochs']} | {r['train_seconds']:.0f} |")
    ctr_rows = [r for r in records if r["dataset"] == "movielens-1m-collm" and "auc" in r["metrics"]]
    sizes = sorted({r["train_samples"] for r in ctr_rows})
    print("\n| model | " + " | ".join(f"{n:,} rows" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for model, mode in dict.fromkeys((r["model"], r["mode"]) for r in ctr_rows):
        cells = {r["train_samples"]: r for r in ctr_rows if (r["model"], r["mode"]) == (model, mode)}
        label = model if mode in ("-", "full") else f"{model} ({mode})"
        print(f"| {label} | " + " | ".join(f"{cells[n]['metrics']['auc']:.4f} ({cells[n]['train_seconds']:.0f} s)"
                                           if n in cells else "not run" for n in sizes) + " |")
    print("\n| dataset | pipeline | reranker weight | recall@10 | ndcg@10 | ndcg@20 | rerank ms / user | users |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in records:
        if _is_rerank(r):
            m = r["metrics"]
            # records before rank fusion existed used the reranker's order alone (weight 1)
            weight = "-" if r["mode"] == "retriever" else r.get("rerank_weight", 1.0)
            weight = f"{weight} (chosen on valid)" if r["mode"].endswith("fused") else weight
            print(f"| {r['dataset']} | {r['model']} | {weight} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {m['ndcg@20']:.4f} | "
                  f"{r['rerank_ms_per_user']:.1f} | {r['users']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["twotower", "ctr", "rerank", "compare", "table"])
    parser.add_argument("--datasets", default="movielens-100k,amazon-scientific")
    parser.add_argument("--modes", default="frozen,lora,full")
    parser.add_argument("--valid-users", type=int, default=1000, help="validate on a fixed sample of this many users")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the frozen LMContent reference (already recorded)")
    parser.add_argument("--save", type=Path, default=None,
                        help="twotower: save each model to DIR/DATASET-twotower-MODE (its fine-tuned tower in encoder/)")
    parser.add_argument("--artifacts", default=None,
                        help="compare: saved two-tower model folders, comma-separated (each also vs the one before)")
    parser.add_argument("--samples", default="64,256,1024,all")
    parser.add_argument("--models", default="id-fm,frozen-mlp,cross-encoder")
    parser.add_argument("--dataset", default="movielens-1m-collm", help="rerank: the dataset")
    parser.add_argument("--split", default=None, help="rerank: the split (default: the dataset's own)")
    parser.add_argument("--retrievers", default="ease", help="rerank: models whose top k is reranked")
    parser.add_argument("--reranker", default="cross-encoder")
    parser.add_argument("--rerank-k", type=int, default=100)
    parser.add_argument("--rerank-train-rows", type=int, default=None)
    parser.add_argument("--rerank-weight", type=float, default=None,
                        help="rerank: reranker's share of the fused rank (default: chosen on validation)")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    {"twotower": two_tower, "ctr": ctr, "rerank": rerank, "compare": compare_artifacts, "table": table}[args.task](args)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
