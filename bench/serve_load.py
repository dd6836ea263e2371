"""Load on `lmrec serve` over loopback: throughput and latency per endpoint and concurrency, and how soon
feedback shows.

Usage: python bench/serve_load.py runs/beauty-sasrec [runs/beauty-textseq ...] [--requests 400] [--workers 2]

For each bundle a real server process (`lmrec serve`, `--workers` processes) is started on 127.0.0.1; a
client process (this one, threads with keep-alive connections) sends a fixed number of requests per
endpoint at concurrency 1, 8 and 32: `/recommend` by user, by history (3 random items), by query (3 words
of a random item title; text models only) and `/events` (one event). Every request must succeed (the run
fails on any non-2xx). Then: the time from an acknowledged `POST /events` to a `/recommend` that reflects
it (the next request must already differ), and for text models the time from `POST /items` to the first
`/recommend` that returns the new item. Results merge into bench/results/serve.json (stamped with
commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from provenance import stamp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serve.json"
KEY = "bench-" + "k" * 20
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle: Path, store: Path, port: int, workers: int = 1) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lmrec.cli", "serve", str(bundle), "--port", str(port),
                             "--store", str(store), "--workers", str(workers)], env={**os.environ, "LMREC_API_KEY": KEY})
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{bundle}: the server did not become ready")


def run_load(base: str, make_request, n: int, concurrency: int) -> dict[str, float]:
    """``n`` requests from ``concurrency`` threads; latency per request, throughput over the wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                method, path, body = make_request(rng, i)
                started = time.perf_counter()
                r = client.request(method, path, json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if r.status_code >= 300:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    ms = np.asarray(latencies) * 1000
    return {"requests": n, "concurrency": concurrency, "rps": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "errors": 0}


def bench_bundle(bundle: Path, n: int, workers: int) -> list[dict]:
    meta = json.loads((bundle / "bundle.json").read_text())
    ids = json.loads((bundle / "data" / "idmaps.json").read_text())
    users, items = ids["users"], ids["items"]
    titles = [t for t in pd.read_parquet(bundle / "data" / "items.parquet")["title"].tolist() if len(t.split()) >= 3]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        server = start(bundle, Path(scratch) / "events.sqlite", port, workers)
        try:
            endpoints = {
                "recommend_by_user": lambda rng, i: ("POST", "/recommend",
                                                     {"user_id": users[rng.integers(len(users))], "k": 10}),
                "recommend_by_history": lambda rng, i: ("POST", "/recommend",
                                                        {"history": [items[j] for j in rng.integers(len(items), size=3)],
                                                         "k": 10}),
                "events": lambda rng, i: ("POST", "/events", {"events": [
                    {"user": f"load-{rng.integers(1000)}", "item": items[rng.integers(len(items))]}]}),
            }
            reads_text = httpx.post(f"{base}/recommend", json={"query": "gift"}).status_code == 200
            if reads_text:
                endpoints["recommend_by_query"] = lambda rng, i: ("POST", "/recommend", {
                    "query": " ".join(titles[rng.integers(len(titles))].split()[:3]), "k": 10})
            records = []
            common = {"bundle": bundle.name, "model": meta["model"], "workers": workers}
            for name, make in endpoints.items():
                run_load(base, make, min(50, n), 4)  # warm-up, not recorded
                for c in CONCURRENCY:
                    rec = {**common, "dataset": meta["dataset"]["dataset"], "items": len(items), "endpoint": name,
                           **run_load(base, make, n, c)}
                    print(json.dumps(rec), flush=True)
                    records.append(rec)
            records.append({**common, "endpoint": "event_to_changed_recommend", **feedback_delay(base, items)})
            print(json.dumps(records[-1]), flush=True)
            if reads_text:
                records.append({**common, "endpoint": "cold_item_to_recommendable", **cold_item_delay(base, titles)})
                print(json.dumps(records[-1]), flush=True)
            return records
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def feedback_delay(base: str, items: list[str], trials: int = 20) -> dict[str, float]:
    """For a fresh user: acknowledge one event, then ask; the answer must already reflect it."""
    rng = np.random.default_rng(1)
    delays, reflected = [], 0
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30) as client:
        for t in range(trials):
            user = f"fresh-{t}"
            first, second = (items[j] for j in rng.integers(len(items), size=2))
            client.post("/events", json={"events": [{"user": user, "item": first}]}).raise_for_status()
            before = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
            started = time.perf_counter()
            client.post("/events", json={"events": [{"user": user, "item": second}]}).raise_for_status()
            after = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
            delays.append(time.perf_counter() - started)
            reflected += before != after
    return {"trials": trials, "next_request_reflects": reflected, "ack_plus_recommend_ms_p50":
            round(1000 * float(np.median(delays)), 2)}


def cold_item_delay(base: str, titles: list[str], trials: int = 10) -> dict[str, float]:
    """Add an item (a known item's title under a new name), then ask for it: the first `/recommend` after the
    acknowledgement, restricted to its title by a filter, must return it (a finite score: rankable)."""
    rng = np.random.default_rng(2)
    add_ms, total_ms, found = [], [], 0
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client:
        for t in range(trials):
            title = f"{titles[rng.integers(len(titles))]} (new {t})"
            started = time.perf_counter()
            client.post("/items", json={"id": f"new-{t}-{time.time_ns()}", "fields": {"title": title}}).raise_for_status()
            added = time.perf_counter()
            got = client.post("/recommend", json={"query": title, "k": 1, "filters": {"title": title}}).json()["items"]
            total_ms.append(1000 * (time.perf_counter() - started))
            add_ms.append(1000 * (added - started))
            found += bool(got) and got[0]["title"] == title
    return {"trials": trials, "first_recommend_returns_it": found,
            "add_ms_p50": round(float(np.median(add_ms)), 2), "add_plus_recommend_ms_p50": round(float(np.median(total_ms)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--requests", type=int, default=400, help="requests per endpoint and concurrency")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = ap.parse_args()
    records = [r | stamp() for b in args.bundles for r in bench_bundle(b, args.requests, args.workers)]
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []

    def key(r: dict) -> tuple:
        return r["bundle"], r["endpoint"], r.get("concurrency"), r.get("workers", 1)

    keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in keys] + records
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
