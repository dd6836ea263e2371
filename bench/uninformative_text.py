"""Does the LM fusion fall back to collaborative signal when item text says nothing, or says the wrong thing?

Usage: LMREC_DATA=../shared/data python bench/uninformative_text.py [--dataset movielens-100k]
       [--variants real,codes,shuffled]

The leaderboard's datasets all have telling item text. Here one of them (MovieLens-100K by default, on the
leaderboard's split) is run three times with the same events and only the item text changed:
* ``real``: the dataset's text (title, year, genres), the control;
* ``codes``: every item's text replaced by a meaningless product code (``"SKU 3F9A-27C1"``, random per item),
  the "names only / codes" case: the text vectors tell items apart but say nothing about them;
* ``shuffled``: every item gets another item's real text (a random permutation), text that misleads.
Per variant the text models are fitted with the configurations the leaderboard tuned for the dataset
(``bench/results/leaderboard.json``; defaults where a record is missing): TextSeqRec and lmcontent, and two
LM fusions with the fallback, as on the leaderboard: ``fusion`` (TextSeqRec + SASRec + EASE) and
``fusion-5`` (lmcontent + TextSeqRec + ItemKNN + EASE + SASRec). The ID models (ItemKNN, EASE, SASRec) and the
no-text twins ``fusion-id`` / ``fusion-5-id`` do not read text and are fitted once. Each LM row is compared per
test user (paired t-test on NDCG@10) with its no-text twin and with the best single ID model; the test part
is read once per model. Writes ``bench/results/uninformative_text.json`` (one record per dataset and row,
a dataset run again replaces its own); models under ``runs/uninformative_text/<dataset>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from leaderboard import DATASETS
from leaderboard import load as leaderboard_records
from provenance import stamp

from lmrec.data import PrepareConfig, prepare
from lmrec.data.items import ItemTable
from lmrec.eval import Evaluator
from lmrec.eval.results import compare
from lmrec.registry import create

RESULTS = Path(__file__).parent / "results" / "uninformative_text.json"
RUNS = Path("runs/uninformative_text")
ID_MODELS = ("itemknn", "ease", "sasrec")
TEXT_MODELS = ("textseq", "lmcontent")
VARIANTS = ("real", "codes", "shuffled")
# fusion name -> (components, indices of the non-text ones: the fallback)
FUSIONS = {"fusion": (("textseq", "sasrec", "ease"), [1, 2]),
           "fusion-5": (("lmcontent", "textseq", "itemknn", "ease", "sasrec"), [2, 3, 4])}


def tuned_params(dataset: str) -> dict[str, dict[str, Any]]:
    """The leaderboard's tuned configuration of each model on ``dataset``."""
    return {r["model"]: dict(r["params"]) for r in leaderboard_records()
            if r["dataset"] == dataset and not r["model"].startswith("fusion")}


def text_variant(items: ItemTable, variant: str, seed: int) -> ItemTable:
    """The item table a variant's text models read (same ids, so the same events apply)."""
    if variant == "real":
        return items
    rng = np.random.default_rng(seed)
    if variant == "codes":
        codes = [f"SKU {a:04X}-{b:04X}" for a, b in rng.integers(0, 16 ** 4, size=(len(items), 2))]
        return ItemTable(items.ids, {"title": np.array(codes, dtype=object)})
    if variant == "shuffled":
        order = rng.permutation(len(items))
        return ItemTable(items.ids, {f: items[f][order] for f in items.fields}, template=items.template,
                         title_field=items.title_field)
    raise AssertionError(variant)  # main() checks the names first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=list(DATASETS), default="movielens-100k")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=0, help="seed of the codes and of the permutation")
    args = ap.parse_args()
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"unknown variant {unknown[0]}; known: {', '.join(VARIANTS)}")
    p = prepare(PrepareConfig(dataset=args.dataset, split=DATASETS[args.dataset]))
    params = tuned_params(args.dataset)
    runs = RUNS / args.dataset
    valid, test = Evaluator(p.split, "valid", ks=(10,)), Evaluator(p.split, "test", ks=(10,))
    results: dict[str, Any] = {}
    records: list[dict[str, Any]] = []

    def fit(name: str, model_name: str, items: ItemTable, options: dict[str, Any]) -> tuple[Any, float]:
        model = create(model_name, **options)
        started = time.perf_counter()
        model.fit(p.split.train, items, validation=valid if model.uses_validation else None)
        seconds = time.perf_counter() - started
        results[name] = test.evaluate(model)
        model.save(runs / name)
        m = results[name].means()
        print(f"{name:24s} ndcg@10 {m['ndcg@10']:.4f}  recall@10 {m['recall@10']:.4f}  fit {seconds:.0f}s", flush=True)
        return model, seconds

    def record(name: str, variant: str | None, seconds: float, against: list[str], **more: Any) -> None:
        m = results[name].means()
        rec = {"dataset": args.dataset, "name": name, "variant": variant, "ndcg@10": round(m["ndcg@10"], 4),
               "recall@10": round(m["recall@10"], 4), "fit_seconds": round(seconds, 1), **more}
        for other in against:
            c = compare(results[name], results[other], "ndcg@10")
            rec[f"vs {other}"] = {"diff": round(c["diff"], 4), "p": float(f"{c['t_p']:.2g}")}
        records.append(rec | stamp())

    def fusion(name: str, sources: list[str], fallback: list[int], items: ItemTable) -> tuple[Any, float]:
        components = [{"saved": str(runs / s)} for s in sources]
        return fit(name, "fusion", items, {"components": components, "fallback": fallback})

    for m in ID_MODELS:
        _, seconds = fit(m, m, p.items, params.get(m, {}))
        record(m, None, seconds, [])
    best_id = max(ID_MODELS, key=lambda m: results[m].means()["ndcg@10"])
    for f, (parts, fallback) in FUSIONS.items():
        model, seconds = fusion(f"{f}-id", [parts[i] for i in fallback], [], p.items)
        record(f"{f}-id", None, seconds, [best_id], weights=dict(zip([parts[i] for i in fallback],
                                                                      model.weights_.tolist())))
    for variant in variants:
        items = text_variant(p.items, variant, args.seed)
        for m in TEXT_MODELS:
            _, seconds = fit(f"{m}-{variant}", m, items, params.get(m, {}))
            record(f"{m}-{variant}", variant, seconds, [best_id])
        for f, (parts, fallback) in FUSIONS.items():
            sources = [f"{c}-{variant}" if c in TEXT_MODELS else c for c in parts]
            model, seconds = fusion(f"{f}-{variant}", sources, fallback, items)
            record(f"{f}-{variant}", variant, seconds, [f"{f}-id", best_id],
                   weights=dict(zip(parts, model.weights_.tolist())))
    old = json.loads(RESULTS.read_text())["records"] if RESULTS.is_file() else []
    kept = [r for r in old if r["dataset"] != args.dataset]
    RESULTS.write_text(json.dumps({"evaluation": "the leaderboard's split; test part, full ranking, train+valid "
                                                 "items masked; p: paired t-test over test users on NDCG@10",
                                   "records": kept + records}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
