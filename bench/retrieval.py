"""Exact scoring vs a FAISS index (lmrec.retrieval): time per request and how much of the exact top 10 the
index finds, on real bundles and on large synthetic catalogues.

Usage: python bench/retrieval.py runs/beauty-sasrec runs/beauty-textseq [--users 500] [--sizes 100000,1000000]
       python bench/retrieval.py --sizes 5000000 [--dim 64] [--methods hnsw,ivf]

Bundles: for `--users` test users, one query at a time (as the service asks), the exact top 10 (every item
scored) and the index's (HNSW, then IVF), both leaving out the user's history; recall@10 = the share of the
exact top 10 the index returns (compared by score, so exact ties do not count as misses).

Synthetic: a catalogue of N item vectors (``--dim``, 64 by default, drawn around 1,000 cluster centres, as
learned item tables are clustered) and queries drawn the same way; the same measurements, plus the index
build time and the memory the index adds (resident memory after the build minus before). Results in
bench/results/retrieval.json (stamped with commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from provenance import stamp

from lmrec.bundle import Bundle
from lmrec.data.queries import Queries
from lmrec.eval import recommend
from lmrec.retrieval import Retriever

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "retrieval.json"
K = 10


class VectorCatalogue:
    """A synthetic catalogue as the scoring protocol sees it: scores are inner products of given vectors."""

    name = "synthetic"

    def __init__(self, items: np.ndarray, queries: np.ndarray):
        self.items, self.queries, self.n_items_ = items, queries, len(items)

    def score(self, queries: Queries) -> np.ndarray:
        return self.queries[queries.users] @ self.items.T

    def retrieval_items(self) -> np.ndarray:
        return self.items

    def retrieval_queries(self, queries: Queries) -> np.ndarray:
        return self.queries[queries.users]


def one_query(user: int, history: np.ndarray, n_items: int) -> tuple[Queries, sp.csr_matrix]:
    query = Queries.one(history, n_items, user)
    return query, query.history


def rss_mb() -> float:
    """Resident memory of this process now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(model, queries: list[tuple[Queries, sp.csr_matrix]], kinds: list[str]) -> list[dict]:
    exact = [recommend(model, q, K, ex) for q, ex in queries]
    out = []
    for kind in ["exact", *kinds]:
        retriever = Retriever(model, kind)
        before = rss_mb()
        started = time.perf_counter()
        if kind != "exact":
            retriever.build()  # outside the timed requests
        build = time.perf_counter() - started
        index_mb = rss_mb() - before
        times, recalls = [], []
        for (q, ex), (_, exact_scores) in zip(queries, exact):
            started = time.perf_counter()
            _, scores = retriever.top_k(q, K, ex)
            times.append(time.perf_counter() - started)
            recalls.append(float(np.mean(scores[0] >= exact_scores[0, -1] - 1e-5)))
        ms = 1000 * np.asarray(times)
        out.append({"method": kind, "build_s": round(build, 2), "index_mb": round(index_mb, 1), "queries": len(queries),
                    "ms_p50": round(float(np.percentile(ms, 50)), 3), "ms_p99": round(float(np.percentile(ms, 99)), 3),
                    f"recall@{K}": round(float(np.mean(recalls)), 4)})
        print(json.dumps(out[-1]), flush=True)
    return out


def bench_bundle(path: Path, n_users: int) -> list[dict]:
    bundle = Bundle.load(path)
    split = bundle.prepared.split
    rng = np.random.default_rng(0)
    test_users = rng.choice(split.users("test"), min(n_users, len(split.users("test"))), replace=False)
    queries = [one_query(int(u), bundle.histories[int(u)], len(bundle.items)) for u in test_users]
    return [{"catalogue": path.name, "model": bundle.model.name, "items": len(bundle.items), **r}
            for r in measure(bundle.model, queries, ["hnsw", "ivf"])]


def bench_synthetic(n_items: int, n_queries: int, dim: int = 64, methods: tuple[str, ...] = ("hnsw", "ivf")) -> list[dict]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    items = centres[rng.integers(1000, size=n_items)]
    for start in range(0, n_items, 1_000_000):  # noise in slices: no float64 copy of a 5M-item catalogue
        stop = min(start + 1_000_000, n_items)
        items[start:stop] += 0.5 * rng.normal(size=(stop - start, dim)).astype(np.float32)
    users = centres[rng.integers(1000, size=n_queries)] + 0.5 * rng.normal(size=(n_queries, dim)).astype(np.float32)
    model = VectorCatalogue(items.astype(np.float32, copy=False), users.astype(np.float32))
    queries = [one_query(u, np.zeros(0, dtype=np.int64), n_items) for u in range(n_queries)]
    name = f"synthetic-{n_items}" + (f"-{dim}d" if dim != 64 else "")
    return [{"catalogue": name, "model": "inner product", "items": n_items, "dim": dim, **r}
            for r in measure(model, queries, list(methods))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="*", type=Path)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--sizes", default="100000,1000000", help="synthetic catalogue sizes (comma-separated)")
    ap.add_argument("--dim", type=int, default=64, help="dimension of the synthetic item vectors")
    ap.add_argument("--methods", default="hnsw,ivf", help="indexes to measure against exact scoring")
    args = ap.parse_args()
    records = [r for b in args.bundles for r in bench_bundle(b, args.users)]
    methods = tuple(m for m in args.methods.split(",") if m)
    records += [r for n in (int(x) for x in args.sizes.split(",") if x)
                for r in bench_synthetic(n, 200, args.dim, methods)]
    records = [r | stamp() for r in records]
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    keys = {(r["catalogue"], r["method"]) for r in records}
    RESULTS.write_text(json.dumps([r for r in old if (r["catalogue"], r["method"]) not in keys] + records, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
