"""Neural sequential recommenders (SASRec, TextSeqRec) on published splits, full ranking.

Usage: LMREC_DATA=../shared/data python bench/seqrec.py [--only amazon-scientific] [--models sasrec,textseq]
                                                        [--device auto] [--set model.key=value ...]

Each run trains on the split's train part, stops early on its valid part (NDCG@10, patience 5; the
best epoch's weights are kept) and is evaluated once on test: every item ranked, the user's history
masked. Records (dataset, split, model, recall/ndcg@10/20, epochs, train_seconds, seconds_per_epoch,
seconds_to_best, device, machine, config) are merged into bench/results/seqrec.json, replacing earlier
records of the same (dataset, split, model, device).

Configurations: the defaults below were chosen on validation only; docs/benchmarks.md lists what else
was tried.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from provenance import stamp

from lmrec.config import parse_sets
from lmrec.data import PrepareConfig, prepare
from lmrec.eval import Evaluator
from lmrec.registry import create
from lmrec.train import resolve_device

RESULTS = Path(__file__).parent / "results" / "seqrec.json"

# (dataset, split) pairs of the benchmark; the split is the dataset's published one where it has one
DATASETS = {
    "movielens-100k": "loo",
    "amazon-scientific": "predefined",  # the UniSRec split
    "amazon-beauty": "loo",  # the S3-Rec / P5 / TIGER protocol
    "amazon-beauty:cold-items": "cold-items",
}
MODEL_PARAMS: dict[str, dict[str, Any]] = {"sasrec": {}, "textseq": {}}
# CPU budget recipes (each run must finish within 20 minutes on a 2-core CPU): TextSeqRec on Beauty needs
# ~80 epochs at the default constant lr 2e-3 (~45 minutes there; 4.6 on a GPU), so on a CPU it trains a
# fixed 24 epochs, warm-up then cosine decay from lr 5e-3, validating every 2nd epoch. Chosen on validation
# (one configuration tried); --set overrides it.
CPU_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("amazon-beauty", "textseq"): {"lr": 5e-3, "schedule": "cosine", "warmup_steps": 100, "epochs": 24,
                                   "eval_every": 2, "patience": 3},
}




def run(dataset_key: str, model_name: str, params: dict[str, Any], device: str) -> dict[str, Any]:
    dataset = dataset_key.split(":")[0]
    split_kind = DATASETS[dataset_key]
    p = prepare(PrepareConfig(dataset=dataset, split=split_kind))
    valid = Evaluator(p.split, "valid", ks=(10, 20))
    test = Evaluator(p.split, "test", ks=(10, 20))
    budget = CPU_PARAMS.get((dataset_key, model_name), {}) if resolve_device(device).type == "cpu" else {}
    model = create(model_name, **{**MODEL_PARAMS[model_name], **budget, "device": device, **params})
    started = time.perf_counter()
    model.fit(p.split.train, p.items, validation=valid)
    fit_seconds = time.perf_counter() - started
    r = model.train_result_
    m = test.evaluate(model).means()
    dev = resolve_device(device)
    return {"dataset": dataset, "split": split_kind, "model": model_name,
            "recall@10": round(m["recall@10"], 4), "ndcg@10": round(m["ndcg@10"], 4),
            "recall@20": round(m["recall@20"], 4), "ndcg@20": round(m["ndcg@20"], 4),
            "valid_ndcg@10": round(r.best_metric, 4), "epochs": r.epochs_run, "best_epoch": r.best_epoch,
            "train_seconds": round(fit_seconds, 1), "seconds_per_epoch": round(r.seconds_per_epoch, 2),
            "seconds_to_best": round(r.seconds_to_best, 1), "device": dev.type, **stamp(dev.type), "users": len(test.users), "items": p.split.n_items,
            "config": {k: v for k, v in model.config.model_dump().items() if k not in ("device", "loggers")}}


def merge(records: list[dict[str, Any]], path: Path = RESULTS) -> None:
    key = ("dataset", "split", "model", "device")
    old = json.loads(path.read_text()) if path.is_file() else []
    new_keys = {tuple(r[k] for k in key) for r in records}
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = [r for r in old if tuple(r[k] for k in key) not in new_keys]
    path.write_text(json.dumps(kept + records, indent=2) + "\n")


def markdown_table(path: Path = RESULTS) -> str:
    """The results file as one markdown table (what docs/benchmarks.md shows)."""
    rows = ["| dataset | split | model | device | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | epochs (best) | "
            "s/epoch | s to best | train s |", "|" + "---|" * 12]
    for r in json.loads(path.read_text()):
        rows.append(f"| {r['dataset']} | {r['split']} | {r['model']} | {r['device']} | {r['recall@10']:.4f} | "
                    f"{r['ndcg@10']:.4f} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['epochs']} ({r['best_epoch']}) | "
                    f"{r['seconds_per_epoch']} | {r['seconds_to_best']} | {r['train_seconds']} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(DATASETS), help=f"comma-separated subset of {', '.join(DATASETS)}")
    ap.add_argument("--models", default="sasrec,textseq")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE", help="config override")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--table", action="store_true", help="print the results file as a markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(args.out))
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    overrides = parse_sets(args.set)
    for dataset_key in args.only.split(","):
        if dataset_key not in DATASETS:
            raise SystemExit(f"unknown dataset {dataset_key!r}; choose from {', '.join(DATASETS)}")
        for model_name in args.models.split(","):
            rec = run(dataset_key, model_name, overrides.get(model_name, {}), args.device)
            print(json.dumps({k: v for k, v in rec.items() if k != "config"}), flush=True)
            merge([rec], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
