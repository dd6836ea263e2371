"""Time load + prepare of Amazon Beauty and MovieLens-100K: first run and cached reload.

Usage: LMREC_DATA=../shared/data python bench/data_load.py [--repeats 5]
Writes bench/results/data_load.json. Times are wall-clock seconds inside one warm Python process
(imports excluded), median over repeats; each first run uses a fresh, empty cache folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from provenance import stamp

from lmrec.data import PrepareConfig, prepare

DATASETS = [("amazon-beauty", "loo"), ("movielens-100k", "loo")]
RESULTS = Path(__file__).parent / "results" / "data_load.json"




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    records = []
    for name, split in DATASETS:
        cfg = PrepareConfig(dataset=name, split=split)
        first, cached = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                t = time.perf_counter()
                p = prepare(cfg, cache_dir=cache)
                first.append(time.perf_counter() - t)
                t = time.perf_counter()
                q = prepare(cfg, cache_dir=cache)
                cached.append(time.perf_counter() - t)
                assert q.path == p.path
        s = p.stats["dataset"]
        records.append({
            "dataset": name, "split": split, "users": s["users"], "items": s["items"],
            "interactions": s["interactions"],
            "first_prepare_s": round(statistics.median(first), 3),
            "cached_reload_s": round(statistics.median(cached), 3),
            "first_prepare_all_s": [round(x, 3) for x in first],
            "cached_reload_all_s": [round(x, 3) for x in cached],
        })
        print(f"{name:16s} first prepare {records[-1]['first_prepare_s']:.3f} s   "
              f"cached reload {records[-1]['cached_reload_s']:.3f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        **stamp(), "repeats": args.repeats, "results": records,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
