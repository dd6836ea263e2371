"""Scale measurements on synthetic data (no network, no dataset needed).

Usage: python bench/scale.py --part eval  [--items 10000,100000,1000000] [--users 2000,8000,32000]
       python bench/scale.py --part train [--processes 1,2] [--epochs 3]
       python bench/scale.py --table

(c) ``eval``: full-ranking evaluation (lmrec.eval.Evaluator: every item scored for every user, history
masked, top-k, metrics) of a 64-d inner-product model over catalogues of growing size and growing numbers of
users; users per second and the peak resident memory of a fresh process per configuration.
(d) ``train``: SASRec training samples (windows) per second on 1 and 2 processes (torchrun, gloo,
DistributedDataParallel) with the same global batch, synthetic sequences; every process gets
``cores / processes`` threads.

Retrieval at 100k and 1M items (b) is measured by bench/retrieval.py. Results are merged into
bench/results/scale.json (stamped with commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"
DIM, HISTORY = 64, 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- (c) evaluation ---------------------------------------------------------------------------------------------
def eval_child(n_items: int, n_users: int) -> dict[str, Any]:
    from lmrec.data import IdMap, Interactions
    from lmrec.data.split import Split
    from lmrec.eval import Evaluator

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), HISTORY + 2)
    items = rng.integers(0, n_items, len(users))
    times = np.tile(np.arange(HISTORY + 2), n_users)
    last, prev = times == HISTORY + 1, times == HISTORY
    maps = IdMap(range(n_users)), IdMap(range(n_items))
    part = [Interactions(users[m], items[m], *maps, time=times[m]) for m in (times < HISTORY, prev, last)]
    split = Split(*part, name="synthetic")
    item_vectors = rng.standard_normal((n_items, DIM), dtype=np.float32)
    user_vectors = rng.standard_normal((n_users, DIM), dtype=np.float32)

    class InnerProduct:
        name = "inner-product"

        def score(self, queries: Any) -> np.ndarray:
            return user_vectors[queries.users] @ item_vectors.T

    before = peak_rss_mb()
    evaluator = Evaluator(split, "test", ks=(10,), check_leakage=False)
    started = time.perf_counter()
    result = evaluator.evaluate(InnerProduct())
    seconds = time.perf_counter() - started
    return {"part": "eval", "items": n_items, "users": n_users, "seconds": round(seconds, 2),
            "users_per_s": round(n_users / seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_eval_mb": round(before, 1), "ndcg@10": round(float(result.means()["ndcg@10"]), 5)}


# --- (d) training -----------------------------------------------------------------------------------------------
def train_child(epochs: int, out: Path) -> None:
    """Run under torchrun: SASRec on synthetic ring sequences, rank 0 writes samples per second."""
    import torch

    from lmrec.data import IdMap, Interactions
    from lmrec.data.batching import SequenceWindows
    from lmrec.models.sasrec import SASRecConfig, SASRecNet
    from lmrec.nn.losses import FullSoftmaxCE
    from lmrec.train import TrainConfig, Trainer

    n_users, n_items, length = 4000, 2000, 51
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_items, n_users)
    seqs = (starts[:, None] + np.arange(length)[None, :]) % n_items
    inter = Interactions(np.repeat(np.arange(n_users), length), seqs.ravel(), IdMap(range(n_users)),
                         IdMap(range(n_items)), time=np.tile(np.arange(length), n_users))
    windows = SequenceWindows(inter.sequences(), max_len=50, batch_size=256)
    torch.manual_seed(0)
    net = SASRecNet(n_items, SASRecConfig())
    result = Trainer(TrainConfig(epochs=epochs, device="cpu", patience=100)).fit(net, FullSoftmaxCE(), windows)
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps({"samples_per_s": round(len(windows) * epochs / result.train_seconds, 1),
                                   "train_seconds": round(result.train_seconds, 1), "windows": len(windows),
                                   "epochs": epochs, "global_batch": 256, "final_loss": result.history[-1]["loss"]}))


def train_run(processes: int, epochs: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    threads = max(1, cores // processes)
    out = Path(f"/tmp/lmrec-scale-train-{processes}.json")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LMREC_PROGRESS": "0"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                    "--master-addr=127.0.0.1", f"--master-port={port}", __file__, "--train-child", str(out),
                    "--epochs", str(epochs)], env=env, check=True)
    record = json.loads(out.read_text())
    return {"part": "train", "processes": processes, "threads_per_process": threads, **record}


# --- driver -----------------------------------------------------------------------------------------------------
def merge(records: list[dict[str, Any]]) -> None:
    from provenance import stamp

    key = ("part", "items", "users", "processes")
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    stamped = [{**r, **stamp("cpu")} for r in records]
    new = {tuple(r.get(k) for k in key) for r in stamped}
    RESULTS.write_text(json.dumps([r for r in old if tuple(r.get(k) for k in key) not in new] + stamped, indent=2)
                       + "\n")


def table() -> str:
    records = json.loads(RESULTS.read_text())
    rows = ["| items | users | users/s | peak RSS (MB) |", "|---|---|---|---|"]
    rows += [f"| {r['items']:,} | {r['users']:,} | {r['users_per_s']:,} | {r['peak_rss_mb']:,} |"
             for r in records if r["part"] == "eval"]
    rows += ["", "| processes | threads each | samples/s | train s |", "|---|---|---|---|"]
    rows += [f"| {r['processes']} | {r['threads_per_process']} | {r['samples_per_s']:,} | {r['train_seconds']} |"
             for r in records if r["part"] == "train"]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["eval", "train"])
    ap.add_argument("--items", default="10000,100000,1000000")
    ap.add_argument("--users", default="2000,8000,32000")
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--eval-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--train-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.eval_child:
        print(json.dumps(eval_child(*args.eval_child)))
        return
    if args.train_child:
        train_child(args.epochs, args.train_child)
        return
    if args.table:
        print(table())
        return
    records = []
    if args.part == "eval":
        for n_items in (int(x) for x in args.items.split(",")):
            for n_users in (int(x) for x in args.users.split(",")):
                # a fresh process per configuration: its peak memory is this configuration's alone
                done = subprocess.run([sys.executable, __file__, "--eval-child", str(n_items), str(n_users)],
                                      capture_output=True, text=True, check=True, env={**os.environ, "LMREC_PROGRESS": "0"})
                records.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(records[-1], flush=True)
    elif args.part == "train":
        for p in (int(x) for x in args.processes.split(",")):
            records.append(train_run(p, args.epochs))
            print(records[-1], flush=True)
    else:
        raise SystemExit("choose --part eval or --part train (or --table)")
    merge(records)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
