"""Scale measurements on synthetic data (no network, no dataset needed).

Usage: python bench/scale.py --part prepare [--events 10000000,50000000] [--engines memory,duckdb]
       python bench/scale.py --part eval  [--items 10000,100000,1000000] [--users 2000,8000,32000]
       python bench/scale.py --part train [--processes 1,2] [--epochs 3]
       python bench/scale.py --part encode [--catalogues 1000000,5000000] [--modes memory,training,chunked]
       python bench/scale.py --part load [--catalogues 1000000]   (Prepared.load: text read when first used)
       python bench/scale.py --table | --plot   (docs/images/scale.png)

(a) ``prepare``: ``lmrec datasets prepare`` of a generated log (Parquet: string user and item ids, unix
times, 1-5 ratings; 1 user per 50 events, 200k items, Zipf-like item popularity, repeated pairs) with
rating >= 4, dedup, 5-core and leave-one-out, by the in-memory and the out-of-core (DuckDB, memory limit
``--memory-limit``) engines; seconds and peak resident memory of a fresh process per run.
(c) ``eval``: full-ranking evaluation (lmrec.eval.Evaluator: every item scored for every user, history
masked, top-k, metrics) of a 64-d inner-product model over catalogues of growing size and growing numbers of
users; users per second and the peak resident memory of a fresh process per configuration.
(d) ``train``: SASRec training samples (windows) per second on 1 and 2 processes (torchrun, gloo,
DistributedDataParallel) with the same global batch, synthetic sequences; every process gets
``cores / processes`` threads.
(b') ``encode``: a catalogue's item texts (title + ~250-character description per item) into the embedding
cache, 384-d (MiniLM's width; the hashing encoder, so that the pipeline's memory is measured, not a
language model's speed): the whole item table loaded and encoded at once (``Prepared.load`` + ``item_vectors``,
what training does) against ``lmrec encode --prepared DIR`` (``ItemTextChunks``: 65,536 items at a time into
the memory-mapped entry); seconds and peak resident memory of a fresh process per run.

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


# --- (a) preparing a log ---------------------------------------------------------------------------------------
PREPARE_ITEMS = 200_000
EVENTS_PER_USER = 50


def write_log(n_events: int, home: Path) -> Path:
    """A synthetic log in ``home/synthetic-N`` (written once, in 5M-row chunks so writing it needs little memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = home / f"synthetic-{n_events}"
    log = folder / "log.parquet"
    if log.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n_users = n_events // EVENTS_PER_USER
    chunk = 5_000_000
    tmp = log.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                                          ("timestamp", pa.int64()), ("rating", pa.int8())])) as writer:
        for start in range(0, n_events, chunk):
            n = min(chunk, n_events - start)
            users = rng.integers(0, n_users, n)
            items = np.minimum(rng.pareto(1.2, n) * 500, PREPARE_ITEMS - 1).astype(np.int64)
            items = (items * 7919 + users % 13) % PREPARE_ITEMS  # popular items spread over the id range
            writer.write_table(pa.table({
                "user_id": pc.binary_join_element_wise("u", pc.cast(pa.array(users), pa.string()), ""),
                "item_id": pc.binary_join_element_wise("i", pc.cast(pa.array(items), pa.string()), ""),
                "timestamp": pa.array(1_500_000_000 + rng.integers(0, 365 * 86_400, n)),
                "rating": pa.array(rng.integers(1, 6, n).astype(np.int8)),
            }))
    tmp.rename(log)
    (folder / "lmrec.yaml").write_text("interactions: log.parquet\ncolumns: {user: user_id, item: item_id, "
                                       "time: timestamp, rating: rating}\n")
    return folder


def prepare_child(n_events: int, engine: str, home: Path, memory_limit: str) -> dict[str, Any]:
    import tempfile

    from lmrec.data.prepared import PrepareConfig, prepare_on_disk, prepared_summary

    config = PrepareConfig(dataset=f"synthetic-{n_events}", split="loo", min_rating=4, dedup="first", k_core=5)
    with tempfile.TemporaryDirectory(dir=home) as cache:
        started = time.perf_counter()
        path = prepare_on_disk(config, data_dir=home, cache_dir=cache, engine=engine,  # type: ignore[arg-type]
                               memory_limit=memory_limit if engine == "duckdb" else None)
        seconds = time.perf_counter() - started
        stats = prepared_summary(path)["stats"]
        out_mb = (path / "interactions.parquet").stat().st_size / 2**20
    return {"part": "prepare", "events": n_events, "engine": engine, "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "memory_limit": memory_limit if engine == "duckdb" else None,
            "kept_events": stats["dataset"]["interactions"], "users": stats["dataset"]["users"],
            "items": stats["dataset"]["items"], "test_events": stats["split"]["test"]["interactions"],
            "output_mb": round(out_mb, 1)}


# --- (b') encoding a catalogue -----------------------------------------------------------------------------------
ENCODE_DIM = 384
WORDS = np.array("pen ink paper desk lamp chair board marker clip folder stapler tape glue scissors ruler "
                 "notebook envelope label printer toner cable charger stand drawer shelf organiser red blue "
                 "green black white large small classic premium refill pack set of two three ten".split())


def write_catalogue(n_items: int, home: Path) -> Path:
    """A prepared dataset (out-of-core engine) of ``n_items`` items with text, one event per item and user."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmrec.data.prepared import PrepareConfig, prepare_on_disk

    folder = home / f"catalogue-{n_items}"
    done = folder / "prepared.txt"
    if done.is_file():
        return Path(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    chunk = 500_000
    with pq.ParquetWriter(folder / "items.parquet", pa.schema([("item_id", pa.string()), ("title", pa.string()),
                                                               ("description", pa.string())])) as writer:
        for start in range(0, n_items, chunk):
            n = min(chunk, n_items - start)
            words = WORDS[rng.integers(0, len(WORDS), (n, 45))]
            writer.write_table(pa.table({
                "item_id": [f"i{i}" for i in range(start, start + n)],
                "title": [" ".join(w[:4]) + f" {i}" for i, w in zip(range(start, start + n), words)],
                "description": [" ".join(w[4:]) for w in words]}))
    users = np.arange(n_items) // 5  # five items per user: every item once, users of five events
    pq.write_table(pa.table({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in range(n_items)],
                             "timestamp": np.arange(n_items, dtype=np.int64)}), folder / "log.parquet")
    (folder / "lmrec.yaml").write_text("interactions: log.parquet\nitems: items.parquet\ncolumns: {user: user_id, "
                                       "item: item_id, time: timestamp}\nitem_columns: {id: item_id}\n")
    path = prepare_on_disk(PrepareConfig(dataset=folder.name, split="loo"), data_dir=home, cache_dir=folder / "cache",
                           engine="duckdb")
    done.write_text(str(path))
    return path


def encode_child(n_items: int, mode: str, home: Path) -> dict[str, Any]:
    import tempfile

    from lmrec.data.prepared import Prepared
    from lmrec.text import EmbeddingCache, HashingEncoder
    from lmrec.text import texts as texts_module
    from lmrec.text.texts import ItemTextChunks, encode_item_chunks, item_vectors

    path = Path((home / f"catalogue-{n_items}" / "prepared.txt").read_text())
    encoder = HashingEncoder(ENCODE_DIM)
    with tempfile.TemporaryDirectory(dir=home) as cache_dir:
        cache = EmbeddingCache(cache_dir)
        started = time.perf_counter()
        if mode == "memory":  # the whole table in memory, rendered and encoded in one go
            texts_module.CHUNKED_FROM = sys.maxsize
            _, has_text = item_vectors(Prepared.load(path).items, encoder, None, cache)
        elif mode == "training":  # what a text model's fit does: a large prepared table goes by chunks
            _, has_text = item_vectors(Prepared.load(path).items, encoder, None, cache)
        else:  # lmrec encode --prepared DIR --chunk 65536
            _, has_text = encode_item_chunks(ItemTextChunks(path, rows=65_536), encoder, cache)
        seconds = time.perf_counter() - started
        entry_mb = sum(f.stat().st_size for f in Path(cache_dir).rglob("emb.npy")) / 2**20
    return {"part": "encode", "items": n_items, "engine": mode, "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "dim": ENCODE_DIM, "items_with_text": int(has_text.sum()),
            "entry_mb": round(entry_mb, 1)}


def load_child(n_items: int, reads: str, home: Path) -> dict[str, Any]:
    """Load the prepared catalogue as training and serving do; read no text (an ID model), the titles (the
    service's display names) or every text field (a text model, or the whole table as loads did before)."""
    from lmrec.data.prepared import Prepared

    path = Path((home / f"catalogue-{n_items}" / "prepared.txt").read_text())
    started = time.perf_counter()
    items = Prepared.load(path).items
    for field in {"none": [], "titles": [items.display_field], "all": items.fields}[reads]:
        items[field]
    return {"part": "load", "items": n_items, "engine": f"text read: {reads}",
            "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


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

    key = ("part", "items", "users", "processes", "events", "engine")
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    stamped = [{**r, **stamp("cpu")} for r in records]
    new = {tuple(r.get(k) for k in key) for r in stamped}
    RESULTS.write_text(json.dumps([r for r in old if tuple(r.get(k) for k in key) not in new] + stamped, indent=2)
                       + "\n")


def table() -> str:
    records = json.loads(RESULTS.read_text())
    rows = ["| events | engine | seconds | peak RSS (MB) | kept events | users | items |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in records if r["part"] == "prepare"):
        engine = r["engine"] + (f" (limit {r['memory_limit']})" if r.get("memory_limit") else "")
        rows.append(f"| {r['events']:,} | {engine} | failed: {r['failed']} | | | | |" if "failed" in r else
                    f"| {r['events']:,} | {engine} | {r['seconds']:,} | {r['peak_rss_mb']:,} | {r['kept_events']:,} | "
                    f"{r['users']:,} | {r['items']:,} |")
    rows += ["", "| catalogue items | item table | seconds | peak RSS (MB) | cache entry (MB) |", "|---|---|---|---|---|"]
    rows += [f"| {r['items']:,} | {r['engine']} | failed: {r['failed']} | | |" if "failed" in r else
             f"| {r['items']:,} | {r['engine']} | {r['seconds']:,} | {r['peak_rss_mb']:,} | {r['entry_mb']:,} |"
             for r in records if r["part"] == "encode"]
    rows += ["", "| catalogue items | Prepared.load, then | seconds | peak RSS (MB) |", "|---|---|---|---|"]
    rows += [f"| {r['items']:,} | {r['engine']} | failed: {r['failed']} | |" if "failed" in r else
             f"| {r['items']:,} | {r['engine']} | {r['seconds']:,} | {r['peak_rss_mb']:,} |"
             for r in records if r["part"] == "load"]
    rows += ["", "| items | users | users/s | peak RSS (MB) |", "|---|---|---|---|"]
    rows += [f"| {r['items']:,} | {r['users']:,} | {r['users_per_s']:,} | {r['peak_rss_mb']:,} |"
             for r in records if r["part"] == "eval"]
    rows += ["", "| processes | threads each | samples/s | train s |", "|---|---|---|---|"]
    rows += [f"| {r['processes']} | {r['threads_per_process']} | {r['samples_per_s']:,} | {r['train_seconds']} |"
             for r in records if r["part"] == "train"]
    return "\n".join(rows)


PLOT = ROOT / "docs" / "images" / "scale.png"


def plot() -> str:
    """Peak memory of preparing a log (both engines) against its size; evaluation memory against users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = json.loads(RESULTS.read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for engine, style in (("memory", "o-"), ("duckdb", "s-")):
        rows = sorted((r for r in records if r["part"] == "prepare" and r["engine"] == engine and "failed" not in r),
                      key=lambda r: r["events"])
        label = engine + (f" (limit {rows[0]['memory_limit']})" if rows and rows[0].get("memory_limit") else "")
        left.plot([r["events"] / 1e6 for r in rows], [r["peak_rss_mb"] / 1024 for r in rows], style, label=label)
    left.axhline(4, color="grey", linestyle=":", label="aim: 4 GB at 50M")
    left.set_xlabel("events in the log (millions)")
    left.set_ylabel("peak resident memory (GB)")
    left.set_title("lmrec datasets prepare")
    left.legend()
    rows = sorted((r for r in records if r["part"] == "eval" and r["items"] == 100_000), key=lambda r: r["users"])
    right.plot([r["users"] for r in rows], [r["peak_rss_mb"] / 1024 for r in rows], "o-", label="peak memory (GB)")
    right.set_ylim(0, max(r["peak_rss_mb"] / 1024 for r in rows) * 1.3)
    right.set_xscale("log")
    right.set_xticks([r["users"] for r in rows], [f"{r['users']:,}" for r in rows])
    right.minorticks_off()
    right.set_xlabel("users evaluated (100k items, full ranking)")
    right.set_ylabel("peak resident memory (GB)")
    right.set_title("evaluation memory is flat in users")
    twin = right.twinx()
    twin.plot([r["users"] for r in rows], [r["users_per_s"] for r in rows], "s--", color="C1", label="users/s")
    twin.set_ylabel("users per second")
    right.legend(loc="lower left")
    twin.legend(loc="lower right")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    return f"wrote {PLOT}"


def child(args: list[str], what: dict[str, Any]) -> dict[str, Any]:
    """This script's record from a fresh process (its peak memory is that run's alone); a run that fails (e.g.
    killed for memory) is recorded as failed, not hidden."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, "LMREC_PROGRESS": "0"})
    if done.returncode:
        return {**what, "failed": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:] or ''}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["prepare", "encode", "load", "eval", "train"])
    ap.add_argument("--events", default="10000000,50000000")
    ap.add_argument("--engines", default="memory,duckdb")
    ap.add_argument("--memory-limit", default="2GB", help="DuckDB's memory limit in the out-of-core runs")
    ap.add_argument("--home", type=Path, default=Path("/tmp/lmrec-scale-data"), help="where generated logs go")
    ap.add_argument("--items", default="10000,100000,1000000")
    ap.add_argument("--users", default="2000,8000,32000")
    ap.add_argument("--catalogues", default="1000000,5000000", help="items per catalogue for --part encode")
    ap.add_argument("--modes", default="memory,training,chunked",
                    help="--part encode: memory (whole table) | training (a text model's fit) | chunked")
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--eval-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--prepare-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--train-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--encode-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--load-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare_child:
        print(json.dumps(prepare_child(int(args.prepare_child[0]), args.prepare_child[1], args.home, args.memory_limit)))
        return
    if args.eval_child:
        print(json.dumps(eval_child(*args.eval_child)))
        return
    if args.encode_child:
        print(json.dumps(encode_child(int(args.encode_child[0]), args.encode_child[1], args.home)))
        return
    if args.load_child:
        print(json.dumps(load_child(int(args.load_child[0]), args.load_child[1], args.home)))
        return
    if args.train_child:
        train_child(args.epochs, args.train_child)
        return
    if args.table:
        print(table())
        return
    if args.plot:
        print(plot())
        return
    records = []
    if args.part == "prepare":
        for n_events in (int(x) for x in args.events.split(",")):
            write_log(n_events, args.home)
            for engine in args.engines.split(","):
                records.append(child(["--prepare-child", str(n_events), engine, "--home", str(args.home),
                                      "--memory-limit", args.memory_limit],
                                     {"part": "prepare", "events": n_events, "engine": engine}))
                print(records[-1], flush=True)
    elif args.part == "encode":
        for n_items in (int(x) for x in args.catalogues.split(",")):
            write_catalogue(n_items, args.home)
            for mode in args.modes.split(","):
                records.append(child(["--encode-child", str(n_items), mode, "--home", str(args.home)],
                                     {"part": "encode", "items": n_items, "engine": mode}))
                print(records[-1], flush=True)
    elif args.part == "load":
        for n_items in (int(x) for x in args.catalogues.split(",")):
            write_catalogue(n_items, args.home)
            for reads in ("none", "titles", "all"):
                records.append(child(["--load-child", str(n_items), reads, "--home", str(args.home)],
                                     {"part": "load", "items": n_items, "engine": f"text read: {reads}"}))
                print(records[-1], flush=True)
    elif args.part == "eval":
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
        raise SystemExit("choose --part prepare, encode, load, eval or train (or --table / --plot)")
    merge(records)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
