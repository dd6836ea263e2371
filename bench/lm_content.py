"""Language-model recommenders against classical ones, on all users and on cold-start items.

Usage: LMREC_DATA=../shared/data python bench/lm_content.py [--datasets movielens-100k,amazon-beauty]
For each dataset: the leave-one-out leaderboard (`lmrec bench --split loo`) and the cold-start-item
leaderboard (`--split cold-items`: 10% of items held out with all their interactions as test items,
10% as valid items) with pop, tfidf, lmcontent (MiniLM), hybridncf (MiniLM) and ease (the best classical
model on MovieLens-100K). Writes bench/results/lm_content.json and run folders under runs/.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from provenance import stamp

from lmrec.data import PrepareConfig
from lmrec.pipeline import leaderboard

MODELS = ("pop", "tfidf", "lmcontent", "hybridncf", "ease")
RESULTS = Path(__file__).parent / "results" / "lm_content.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="movielens-100k,amazon-beauty")
    args = ap.parse_args()
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    records = []
    for dataset in args.datasets.split(","):
        for split, slice_name in (("loo", "all users"), ("cold-items", "cold-start items")):
            run = leaderboard(PrepareConfig(dataset=dataset, split=split), MODELS, runs_dir="runs")
            for r in run.results:
                m = r.means()
                fit_s = float(run.table.loc[run.table.model == r.model, "fit_s"].iloc[0])
                records.append({"dataset": dataset, "split": split, "slice": slice_name, "model": r.model,
                                "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"], "users": len(r.users),
                                "fit_seconds": round(fit_s, 2), "eval_seconds": round(r.seconds, 2)})
                print(f"{dataset:15s} {split:10s} {r.model:10s} recall@10 {m['recall@10']:.4f} "
                      f"ndcg@10 {m['ndcg@10']:.4f} fit {fit_s:.1f}s", flush=True)
            print(f"  run folder: {run.run_dir}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        **stamp(), "records": records}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
