"""Replay a dataset's test events through the service in an A/B test; the online report must agree with
the offline evaluation.

Usage: python bench/online_replay.py runs/beauty-sasrec runs/beauty-lmcontent [--users 0]

Two bundles trained on the same split (leave-one-out) are served as arms A and B (`--ab`, split 0.5, users
assigned by a stable hash), with users' histories as of the end of validation (train + valid: what the
offline test ranking sees). The test events are replayed in time order: for each, the user asks for 10
items (`POST /recommend`), then the event is sent (`POST /events`). The online report (`lmrec.serve.online`)
gives each arm's hit@10 and NDCG@10 and Welch's test; offline, the Evaluator gives the same metrics for
the same users of each arm, and for all users with each model (the leaderboard). The winner and effect
size must agree. Results in bench/results/online_replay.json (stamped with commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from provenance import stamp
from scipy import stats

from lmrec.bundle import Bundle
from lmrec.eval import Evaluator
from lmrec.serve.app import create_app
from lmrec.serve.online import report
from lmrec.serve.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "online_replay.json"
KEY = "replay-" + "k" * 20
K = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--users", type=int, default=0, help="replay only this many test users (0: all)")
    args = ap.parse_args()
    a, b = Bundle.load(args.a), Bundle.load(args.b)
    split = a.prepared.split
    if b.meta["train_events_key"] != a.meta["train_events_key"]:
        raise SystemExit("the two bundles were not trained on the same split")
    test = split.test.positives()
    order = np.argsort(test.time, kind="stable") if test.time is not None else np.arange(len(test))
    if args.users:
        keep = set(np.random.default_rng(0).choice(test.user_ids(), args.users, replace=False).tolist())
        order = np.array([r for r in order if int(test.user[r]) in keep])
    users, items = split.train.users, split.train.items

    with tempfile.TemporaryDirectory() as scratch:
        store_path = Path(scratch) / "replay.sqlite"
        app = create_app(args.a, store_path, api_key=KEY, ab=args.b, split=0.5, history_parts=("train", "valid"))
        service = app.state.lmrec
        client = TestClient(app)
        started = time.perf_counter()
        arm_of = {}
        for n, row in enumerate(order):
            user, item = users.raw(int(test.user[row])), items.raw(int(test.item[row]))
            r = client.post("/recommend", json={"user_id": user, "k": K})
            r.raise_for_status()
            arm_of[int(test.user[row])] = r.json()["arm"]
            client.post("/events", json={"events": [{"user": user, "item": item}]}, headers={"X-API-Key": KEY}
                        ).raise_for_status()
            if (n + 1) % 2000 == 0:
                print(f"{n + 1:,} of {len(order):,} events replayed, {time.perf_counter() - started:.0f} s", flush=True)
        replay_seconds = time.perf_counter() - started
        online = report(EventStore(store_path), k=K, window=3600.0, bucket=None)
        assert service.arm_b is not None

    # offline: the same metric for the same users of each arm, and for every test user with each model
    evaluator = Evaluator(split, "test", ks=(K,))
    offline_all = {name: evaluator.evaluate(bundle.model, name=name) for name, bundle in (("A", a), ("B", b))}
    same = {}
    for arm, result in offline_all.items():
        mine = np.array([arm_of.get(int(u)) == arm for u in result.users])
        same[arm] = {f"hit@{K}": float(result.per_user[f"recall@{K}"][mine].mean()),
                     f"ndcg@{K}": float(result.per_user[f"ndcg@{K}"][mine].mean()), "users": int(mine.sum())}
    rows = {r["arm"]: r for r in online["versions"]}
    hits = [offline_all[arm].per_user[f"recall@{K}"][[arm_of.get(int(u)) == arm for u in offline_all[arm].users]]
            for arm in ("A", "B")]
    offline_test = stats.ttest_ind(hits[1], hits[0], equal_var=False)
    record = {
        "dataset": a.meta["dataset"]["dataset"], "a": f"{args.a.name} ({a.model.name})", "b": f"{args.b.name} ({b.model.name})",
        "events_replayed": int(len(order)), "replay_seconds": round(replay_seconds, 1),
        "online": {arm: {m: rows[arm][m] for m in ("lists", "judged", f"hit@{K}", f"ndcg@{K}", "click_through")}
                   for arm in ("A", "B")},
        "online_ab": online.get("ab"),
        "offline_same_users": same,
        "offline_same_users_welch_p": round(float(offline_test.pvalue), 6),
        "offline_all_users": {arm: {f"ndcg@{K}": round(r.means()[f"ndcg@{K}"], 4),
                                    f"hit@{K}": round(r.means()[f"recall@{K}"], 4)} for arm, r in offline_all.items()},
    }
    online_diff = record["online_ab"]["difference"] if record["online_ab"] else None
    offline_diff = same["B"][f"hit@{K}"] - same["A"][f"hit@{K}"]
    leaderboard_diff = record["offline_all_users"]["B"][f"hit@{K}"] - record["offline_all_users"]["A"][f"hit@{K}"]
    record["agreement"] = {
        "online_hit_difference_B_minus_A": online_diff, "offline_same_users_difference": round(offline_diff, 4),
        "leaderboard_difference": round(leaderboard_diff, 4),
        "same_winner": online_diff is not None and np.sign(online_diff) == np.sign(offline_diff) == np.sign(leaderboard_diff),
    }
    record["agreement"]["same_winner"] = bool(record["agreement"]["same_winner"])
    print(json.dumps(record, indent=1))
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    key = (record["a"], record["b"])
    RESULTS.write_text(json.dumps([r for r in old if (r["a"], r["b"]) != key] + [record | stamp()], indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
