"""Are the explanations faithful? The deletion test, per model, and the time one explanation takes.

Usage: python bench/explain.py [--dataset movielens-100k] [--models ease,itemknn,bpr,lmcontent,sasrec,textseq]
                               [--users 200] [--runs-dir runs]

Each model is trained with `lmrec train` (leave-one-out; a bundle already in RUNS/explain-DATASET-MODEL is
reused). For a sample of users with at least 3 history items (their train + valid events) and each item of
their top 10, the explanation ranks the history items by contribution; then the item's score and rank
(among all items outside the remaining history) are recomputed with one history item removed: the
top-attributed one, a random other one, the least-attributed one. Faithful explanations make the first
removal hurt most: the aim is that removing the top-attributed item drops the rank more than removing a
random one in at least 90% of cases (a tie, the same rank drop, counts as a failure; the share where the
score drops more is reported too, since a rank often does not move at all). Results in bench/results/explain.json (stamped with commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from provenance import stamp

from lmrec import pipeline
from lmrec.bundle import Bundle
from lmrec.data import Interactions, PrepareConfig
from lmrec.data.queries import Queries
from lmrec.explain import explain

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "explain.json"
K = 10


def rank_and_score(model, history: np.ndarray, item: int, user: int) -> tuple[int, float]:
    n = int(model.n_items_)
    scores = model.score(Queries.one(history, n, user))[0].astype(np.float64)
    allowed = np.ones(n, dtype=bool)
    allowed[history] = False
    return int(1 + np.sum(scores[allowed] > scores[item])), float(scores[item])


def bench_model(bundle: Bundle, n_users: int, seed: int = 0) -> dict:
    model, split = bundle.model, bundle.prepared.split
    seen = Interactions.concat([split.train, split.valid]).positives().sorted().sequences()
    rng = np.random.default_rng(seed)
    candidates = [u for u in split.users("test") if len(seen[int(u)]) >= 3]
    users = rng.choice(candidates, min(n_users, len(candidates)), replace=False)
    outcomes = {"top": [], "random": [], "least": []}
    score_drops = {"top": [], "random": [], "least": []}
    wins, ties, score_wins, seconds, method = 0, 0, 0, [], None
    for u in users:
        history = np.asarray(seen[int(u)], dtype=np.int64)
        for rec in bundle.recommend(history, K, int(u)):
            item = bundle.items.index(rec.item)
            found = explain(model, history, item, int(u), bundle.catalogue, words=False)
            seconds.append(found.seconds)
            method = found.method
            order = [c.item for c in found.history]
            picks = {"top": order[0], "least": order[-1], "random": int(rng.choice(order[1:]))}
            base_rank, base_score = rank_and_score(model, history, item, int(u))
            drops = {}
            for name, j in picks.items():
                rank, score = rank_and_score(model, history[history != j], item, int(u))
                drops[name] = rank - base_rank
                outcomes[name].append(drops[name])
                score_drops[name].append(base_score - score)
            wins += drops["top"] > drops["random"]
            ties += drops["top"] == drops["random"]
            score_wins += score_drops["top"][-1] > score_drops["random"][-1]
    n = len(outcomes["top"])
    ms = 1000 * np.asarray(seconds)
    words_ms = None
    if hasattr(model, "score_item_texts"):  # text models: the time with the words of the item's text too
        timed = []
        for u in users[:50]:
            history = np.asarray(seen[int(u)], dtype=np.int64)
            item = bundle.items.index(bundle.recommend(history, 1, int(u))[0].item)
            timed.append(explain(model, history, item, int(u), bundle.catalogue).seconds)
        words_ms = round(1000 * float(np.median(timed)), 2)
    return {"model": model.name, "method": method, "users": int(len(users)), "cases": n,
            "top_beats_random": round(wins / n, 4), "ties_with_random": round(ties / n, 4),
            "top_beats_random_by_score": round(score_wins / n, 4),
            **{f"mean_rank_drop_{k}": round(float(np.mean(v)), 2) for k, v in outcomes.items()},
            **{f"mean_score_drop_{k}": round(float(np.mean(v)), 5) for k, v in score_drops.items()},
            "explain_ms_p50": round(float(np.percentile(ms, 50)), 2), "explain_ms_p99": round(float(np.percentile(ms, 99)), 2),
            "explain_with_words_ms_p50": words_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--models", default="ease,itemknn,bpr,lmcontent,sasrec,textseq")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    args = ap.parse_args()
    records = []
    for name in args.models.split(","):
        path = args.runs_dir / f"explain-{args.dataset}-{name}"
        if not (path / "bundle.json").is_file():
            started = time.perf_counter()
            pipeline.train(PrepareConfig(dataset=args.dataset, split="loo"), name, {}, path)
            print(f"trained {name} in {time.perf_counter() - started:.0f} s", flush=True)
        bundle = Bundle.load(path)
        record = {"dataset": args.dataset, "test_ndcg@10": round(bundle.metrics["test"]["ndcg@10"], 4),
                  **bench_model(bundle, args.users)}
        print(json.dumps(record), flush=True)
        records.append(record | stamp())
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    keys = {(r["dataset"], r["model"]) for r in records}
    RESULTS.write_text(json.dumps([r for r in old if (r["dataset"], r["model"]) not in keys] + records, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
