"""LightGCN with item attributes as graph nodes against the same model without them.

Usage: LMREC_DATA=../shared/data python bench/lightgcn_attributes.py [--seeds 0,1] [--splits loo,cold-items]

MovieLens-100K, whose item table has a real attribute field (``genres``, up to six per film: "Animation,
Children's, Comedy"). LightGCN runs with the configuration the leaderboard tuned for MovieLens-100K
(``bench/results/leaderboard.json``; defaults where that record is missing) twice per seed: as tuned, and with
``attributes=["genres"]`` (one graph node per genre, linked to its films). Two splits:
* ``loo``: leave-one-out, every test item has training interactions;
* ``cold-items``: 10% of the items held out with all their interactions, so every test item is new to the
  graph and reaches the users only through its genres (without attributes it keeps its random start).
Each pair is compared per test user (paired t-test on NDCG@10, ``lmrec runs compare``). Writes
``bench/results/lightgcn_attributes.json``; bundles under ``runs/lightgcn_attributes/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from provenance import stamp

from lmrec import pipeline
from lmrec.data import PrepareConfig
from lmrec.runs import compare_runs

DATASET = "movielens-100k"
RESULTS = Path(__file__).parent / "results" / "lightgcn_attributes.json"
LEADERBOARD = Path(__file__).parent / "results" / "leaderboard.json"
RUNS = Path("runs/lightgcn_attributes")


def tuned_params() -> dict[str, Any]:
    """The leaderboard's tuned LightGCN configuration for MovieLens-100K, so the comparison starts from a
    model that is already as good as the shared budget made it."""
    if LEADERBOARD.is_file():
        for r in json.loads(LEADERBOARD.read_text())["records"]:
            if r["dataset"] == DATASET and r["model"] == "lightgcn":
                return dict(r["params"])
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1", help="comma-separated training seeds (one pair per seed)")
    ap.add_argument("--splits", default="loo,cold-items")
    ap.add_argument("--epochs", type=int, help="override the training epochs (a quick check; not for the record)")
    args = ap.parse_args()
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    base = tuned_params() | ({"epochs": args.epochs} if args.epochs else {})
    records = []
    for split in args.splits.split(","):
        config = PrepareConfig(dataset=DATASET, split=split)
        for seed in (int(s) for s in args.seeds.split(",")):
            bundles = {}
            for variant, extra in (("ids only", {}), ("+ genre nodes", {"attributes": ["genres"]})):
                params = {**base, **extra, "seed": seed}
                out = RUNS / split / f"seed{seed}-{'genres' if extra else 'plain'}"
                started = time.perf_counter()
                run = pipeline.train(config, "lightgcn", params, out=out)
                m = run.result.means()
                bundles[variant] = str(out)
                records.append({"dataset": DATASET, "split": split, "seed": seed, "variant": variant,
                                "params": params, "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"],
                                "ci95_ndcg@10": run.result.ci95()["ndcg@10"], "users": len(run.result.users),
                                "attribute_nodes": int(run.model.n_attribute_nodes_),
                                "fit_seconds": round(run.fit_seconds, 1),
                                "wall_seconds": round(time.perf_counter() - started, 1), "bundle": str(out),
                                **stamp()})
                print(f"{split:10s} seed {seed} {variant:14s} recall@10 {m['recall@10']:.4f} "
                      f"ndcg@10 {m['ndcg@10']:.4f} fit {run.fit_seconds:.0f}s", flush=True)
            c = compare_runs(bundles["+ genre nodes"], bundles["ids only"], "ndcg@10")
            records[-1].update(gain_ndcg10_vs_ids_only=c["diff"] / c["mean_b"] if c["mean_b"] else None,
                               p_ndcg10_vs_ids_only=c["t_p"])
            print(f"  genre nodes vs ids only: {c['diff']:+.4f} NDCG@10, p = {c['t_p']:.2g}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"protocol": __doc__.split("Two splits:")[0].strip(), "records": records},
                                  indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
