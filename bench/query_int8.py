"""Free-text queries encoded with float32 vs a dynamically int8-quantised copy of the encoder (CPU).

Usage: python bench/query_int8.py [--dataset amazon-beauty] [--queries 300]

The catalogue's item vectors come from the float32 encoder (all-MiniLM-L6-v2, the default) in every case;
only the query side changes. Queries are a known-item search: the first four words of a random item's
title, one query per request as the service encodes them. Reported: encoding time per query (p50 / p99),
hit@10 of the item the words came from, overlap of the two top-10 lists, and the cosine between the two
query vectors. Results in bench/results/query_int8.json (stamped with commit, machine, date).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from provenance import stamp

from lmrec.data import prepare
from lmrec.data.queries import Queries
from lmrec.models.lm_content import LMContent
from lmrec.models.text_query import split_query

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "query_int8.json"
K = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    prepared = prepare(args.dataset)
    model = LMContent().fit(prepared.split.train, prepared.items)
    titles = prepared.items.titles()
    rng = np.random.default_rng(0)
    # titles of six words or more whose first four words hold no negation ("No Crease Hair Ties" would be one)
    pool = np.flatnonzero([len(str(t).split()) >= 6 and not split_query(" ".join(str(t).split()[:4]))[1]
                           for t in titles])
    sources = rng.choice(pool, min(args.queries, len(pool)), replace=False)
    texts = [" ".join(str(titles[i]).split()[:4]) for i in sources]
    empty = Queries(np.array([0]), sp.csr_matrix((1, len(titles)), dtype=np.float32), [np.zeros(0, dtype=np.int64)])

    runs = {}
    for mode in ("float32", "int8"):
        model.int8_queries = mode == "int8"
        encoder = model.query_encoder()
        encoder.encode(texts[:5])  # load and warm up
        times, tops, vectors = [], [], []
        for text in texts:
            started = time.perf_counter()
            vectors.append(encoder.encode([text])[0])
            times.append(time.perf_counter() - started)
            scores = model.score_text(empty, [text])[0]
            tops.append(np.argsort(-scores, kind="stable")[:K])
        runs[mode] = {"times": 1000 * np.asarray(times), "tops": tops, "vectors": np.stack(vectors)}

    records = []
    for mode, run in runs.items():
        hits = np.mean([src in top for src, top in zip(sources, run["tops"])])
        records.append({"dataset": args.dataset, "items": len(titles), "queries": len(texts), "query_encoder": mode,
                        "encode_ms_p50": round(float(np.percentile(run["times"], 50)), 2),
                        "encode_ms_p99": round(float(np.percentile(run["times"], 99)), 2),
                        f"hit@{K}": round(float(hits), 4)})
    overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(runs["float32"]["tops"], runs["int8"]["tops"])])
    cosine = np.mean(np.sum(runs["float32"]["vectors"] * runs["int8"]["vectors"], axis=1))
    for r in records:
        r |= {f"top{K}_overlap_fp32_int8": round(float(overlap), 4), "query_vector_cosine": round(float(cosine), 4),
              "speedup": round(records[0]["encode_ms_p50"] / records[-1]["encode_ms_p50"], 2)}
        print(json.dumps(r))
    RESULTS.write_text(json.dumps([r | stamp() for r in records], indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
