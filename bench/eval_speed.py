"""Full-ranking evaluation speed: all Amazon-Beauty test users over all items with a 64-d factor model.

Usage: LMREC_DATA=../shared/data python bench/eval_speed.py
Fits ALS (64 factors) on the leave-one-out train part (not timed), then times
``Evaluator(split, "test").evaluate(model)`` (metrics at 10 and 20 + AUC + beyond-accuracy) and reports
the process's peak resident memory. Writes bench/results/eval_speed.json. The RecBole side of the
comparison is measured by bench/peers/recbole_run.py --eval-speed, which adds its record to the same file.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

from provenance import stamp

from lmrec.data import prepare
from lmrec.eval import Evaluator
from lmrec.registry import create

RESULTS = Path(__file__).parent / "results" / "eval_speed.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports kB


def main() -> None:
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    p = prepare("amazon-beauty")
    model = create("als", factors=64, iterations=15).fit(p.split.train)
    rss_before = peak_rss_mb()
    t = time.perf_counter()
    evaluator = Evaluator(p.split, "test", ks=(10, 20))
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluator.evaluate(model)
    t_eval = time.perf_counter() - t
    record = {
        "side": "lmrec", "dataset": "amazon-beauty", "split": "loo", "users": int(len(result.users)),
        "items": int(p.split.n_items), "model": "als-64", "build_seconds": round(t_build, 3),
        "eval_seconds": round(t_eval, 3), "total_seconds": round(t_build + t_eval, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "peak_rss_before_eval_mb": round(rss_before, 1),
        "ndcg@10": result.means()["ndcg@10"], "recall@10": result.means()["recall@10"],
        **stamp(),
    }
    records = [r for r in (json.loads(RESULTS.read_text()) if RESULTS.is_file() else []) if r["side"] != "lmrec"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(records + [record], indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
