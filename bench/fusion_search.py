"""The fusion's weight search, per weight vector: validation metric on per-user shortlists against ranking the
whole catalogue, on the same components and the same vectors (the values must be equal to the last bit).

Usage: LMREC_DATA=../shared/data python bench/fusion_search.py [--dataset amazon-beauty --vectors 20]
       ... --bundles runs/leaderboard/amazon-beauty --components lmcontent,textseq,itemknn,...
Fits five collaborative components with their defaults (pop, ItemKNN, EASE, ALS, BPR; not timed), or loads
the named components from the leaderboard's bundles (``bench/leaderboard.py``; not timed), then times
on the valid part: building the shortlists (each component scored once) against filling the catalogue path's
cache of standardised score matrices (also scored once), and each of ``--vectors`` weight vectors drawn from the
fusion's grid both ways. Reports the bytes each path holds and how many users the shortlist path had to rank
over the catalogue, then fits the fusion on the saved components (loading them and the whole search, shortlist path) and times it.
Writes bench/results/fusion_search.json (one record per dataset and set of components).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import stamp

from lmrec.data import PrepareConfig, prepare
from lmrec.eval import Evaluator
from lmrec.eval.blend import ShortlistBlend
from lmrec.models.fusion import FusionConfig, _WeightedScores, standardised
from lmrec.registry import create, load_model

RESULTS = Path(__file__).parent / "results" / "fusion_search.json"
DEFAULTS = ["pop", "itemknn", "ease", "als", "bpr"]
METRIC = "ndcg@10"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--split", default="loo")
    ap.add_argument("--vectors", type=int, default=20, help="weight vectors timed both ways")
    ap.add_argument("--bundles", type=Path, help="a folder of fitted bundles, one per component (the leaderboard's)")
    ap.add_argument("--components", default=",".join(DEFAULTS), help="components, comma-separated")
    ap.add_argument("--skip-fit", action="store_true", help="time the vectors only, not the fusion's whole search")
    args = ap.parse_args()
    names = args.components.split(",")
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    prepared = prepare(PrepareConfig(dataset=args.dataset, split=args.split))
    split = prepared.split
    if args.bundles:
        components = [load_model(args.bundles / name / "model") for name in names]
    else:
        components = [create(name).fit(split.train) for name in names]
    valid = Evaluator(split, "valid", ks=(10,))
    sources = [lambda q, c=c: standardised(c.score(q)) for c in components]

    t = time.perf_counter()
    shortlist = ShortlistBlend(valid, sources, METRIC)
    build = time.perf_counter() - t
    catalogue = _WeightedScores(components, split.n_items, components[0].fit_key_)
    t = time.perf_counter()
    valid.evaluate(catalogue)  # fills the cache of every component's standardised scores
    fill = time.perf_counter() - t

    grid = FusionConfig().grid
    rng = np.random.default_rng(0)
    vectors = [v for v in rng.choice(grid, size=(args.vectors * 2, len(components))) if v.any()][:args.vectors]
    fast, slow, ranked_in_full = [], [], []
    for weights in vectors:
        t = time.perf_counter()
        a = shortlist.value(weights)
        fast.append(time.perf_counter() - t)
        ranked_in_full.append(shortlist.ranked_in_full)
        catalogue.weights = weights
        t = time.perf_counter()
        b = valid.evaluate(catalogue).means()[METRIC]
        slow.append(time.perf_counter() - t)
        if a != b:
            raise SystemExit(f"values differ for {weights.tolist()}: shortlist {a!r}, catalogue {b!r}")

    held_shortlist = sum(ids.nbytes + scores.nbytes + bounds.nbytes for _, ids, scores, bounds in shortlist.chunks)
    held_shortlist += sum(rows.nbytes for rows in shortlist.full_rows.values())
    held_catalogue = sum(m.nbytes for m in catalogue.cache.values())
    catalogue.cache.clear()  # the fusion below builds its own shortlists
    fit: dict[str, object] = {}
    if not args.skip_fit:
        with tempfile.TemporaryDirectory() as folder:  # the fusion takes the fitted components as saved models
            saved = [{"saved": str(c.save(Path(folder) / name))} for name, c in zip(names, components)]
            t = time.perf_counter()
            fusion = create("fusion", components=saved).fit(split.train, validation=valid)
            fit = {"fusion_fit_seconds": round(time.perf_counter() - t, 1), "fusion_vectors_tried": len(fusion.search_),
                   "fusion_weights": dict(zip(names, fusion.weights_.tolist()))}
    record = {
        "dataset": args.dataset, "split": args.split, "components": names,
        "fitted": f"bundles in {args.bundles}" if args.bundles else "defaults, by this script", "metric": METRIC,
        "valid_users": int(len(valid.users)), "items": int(split.n_items), "vectors": len(vectors), "depth": shortlist.depth,
        "shortlist_build_seconds": round(build, 2), "catalogue_cache_fill_seconds": round(fill, 2),
        "shortlist_seconds_per_vector": round(float(np.mean(fast)), 4),
        "catalogue_seconds_per_vector": round(float(np.mean(slow)), 4),
        "speedup_per_vector": round(float(np.mean(slow) / np.mean(fast)), 1),
        "users_ranked_in_full_per_vector": round(float(np.mean(ranked_in_full)), 1),
        "values_equal": True,
        "held_mb_shortlist": round(held_shortlist / 2**20, 1),
        "held_mb_catalogue": round(held_catalogue / 2**20, 1),
        **fit, **stamp(),
    }
    records = [r for r in (json.loads(RESULTS.read_text()) if RESULTS.is_file() else [])
               if (r["dataset"], r["components"]) != (args.dataset, names)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(records + [record], indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
