"""Federated training (Flower, FedAvg) against centralised training of the same model: test NDCG@10 per round
and the bytes that travel.

Usage: LMREC_DATA=../shared/data python bench/federated.py [--dataset amazon-scientific] [--models sasrec,textseq]
           [--clients 10] [--rounds 10] [--local-epochs 1]
       python bench/federated.py --table | --plot

Protocol. The dataset's default split; its users are dealt at random (seed 0) to C clients, each holding all
events of its users. Federated: the server and C client processes on 127.0.0.1 (gRPC), R rounds of FedAvg,
every client training E local epochs per round from the round's global weights; after each round every
client ranks all items for its own test users with the global model (history masked) and the server takes
the mean over all test users, which is what a central evaluation of that model gives. Centralised: the same
model and options trained on all users for R x E epochs (fixed, no early stopping) and tested once the same
way. Bytes: what the clients send per round (the server sends the same amount back), next to the whole model
(network plus the language model's item vectors). Records merged into bench/results/federated.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from provenance import stamp

from lmrec import pipeline
from lmrec.data import PrepareConfig, prepare
from lmrec.eval import Evaluator
from lmrec.federated import FederatedConfig
from lmrec.registry import create

RESULTS = Path(__file__).parent / "results" / "federated.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "federated.png"
MODELS: dict[str, dict[str, Any]] = {"sasrec": {}, "textseq": {}}


def central(dataset: PrepareConfig, model: str, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    prepared = prepare(dataset)
    started = time.perf_counter()
    fitted = create(model, **{**params, "epochs": epochs}).fit(prepared.split.train, prepared.items)
    seconds = time.perf_counter() - started
    means = Evaluator(prepared.split, "test", ks=(10,)).evaluate(fitted).means()
    return {"central_ndcg@10": round(float(means["ndcg@10"]), 5), "central_recall@10": round(float(means["recall@10"]), 5),
            "central_epochs": epochs, "central_seconds": round(seconds, 1)}


def run(dataset: str, model: str, clients: int, rounds: int, local_epochs: int) -> dict[str, Any]:
    config = FederatedConfig(dataset=PrepareConfig(dataset=dataset), model=model, params=MODELS[model],
                             clients=clients, rounds=rounds, local_epochs=local_epochs)
    # centralised first: a text model's item vectors are then in the cache for the client processes
    record: dict[str, Any] = {"dataset": dataset, "model": model, "clients": clients, "rounds": rounds,
                              "local_epochs": local_epochs, **central(config.dataset, model, MODELS[model],
                                                                      rounds * local_epochs)}
    result = pipeline.federated(config, "local")
    record.update({
        "federated_seconds": result.seconds,
        "per_round": [{"round": r["round"], "ndcg@10": round(r["ndcg@10"], 5)} for r in result.rounds],
        "bytes_sent_per_round": int(result.rounds[0]["bytes_sent"]),  # the clients' uploads in one round
        "full_model_bytes_per_round": int(result.rounds[0]["full_model_bytes"]),  # the same if whole models travelled
        "config": result.config,
    })
    record["federated_ndcg@10"] = record["per_round"][-1]["ndcg@10"]
    return record


def merge(records: list[dict[str, Any]]) -> None:
    key = ("dataset", "model", "clients", "rounds", "local_epochs")
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    new = {tuple(r[k] for k in key) for r in records}
    RESULTS.write_text(json.dumps([r for r in old if tuple(r[k] for k in key) not in new] +
                                  [{**r, **stamp()} for r in records], indent=2) + "\n")


def markdown_table() -> str:
    rows = ["| dataset | model | clients | rounds x local epochs | federated NDCG@10 | centralised NDCG@10 | share | "
            "MB sent per round (all clients) | MB if whole models | federated s | centralised s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in json.loads(RESULTS.read_text()):
        rows.append(f"| {r['dataset']} | {r['model']} | {r['clients']} | {r['rounds']} x {r['local_epochs']} | "
                    f"{r['federated_ndcg@10']:.4f} | {r['central_ndcg@10']:.4f} | "
                    f"{r['federated_ndcg@10'] / r['central_ndcg@10']:.0%} | {r['bytes_sent_per_round'] / 1e6:.2f} | "
                    f"{r['full_model_bytes_per_round'] / 1e6:.2f} | {r['federated_seconds']:.0f} | {r['central_seconds']:.0f} |")
    return "\n".join(rows)


def plot() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest: dict[str, dict[str, Any]] = {}  # per model, its longest run (the shorter ones are its first rounds)
    for r in json.loads(RESULTS.read_text()):
        if r["rounds"] >= longest.get(r["model"], {}).get("rounds", 0):
            longest[r["model"]] = r
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(longest.values()):
        colour = f"C{i}"
        ax.plot([p["round"] for p in r["per_round"]], [p["ndcg@10"] for p in r["per_round"]], ".-", color=colour,
                label=f"{r['model']} federated ({r['clients']} clients)")
        ax.axhline(r["central_ndcg@10"], color=colour, linestyle="--",
                   label=f"{r['model']} centralised ({r['central_epochs']} epochs)")
    ax.set_xlabel("round (each client: local epochs on its users)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title("FedAvg vs centralised training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)
    return f"wrote {PLOT}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--models", default="sasrec,textseq")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--plot", action="store_true")
    args = ap.parse_args()
    if args.table:
        print(markdown_table())
        return
    if args.plot:
        print(plot())
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    for model in args.models.split(","):
        record = run(args.dataset, model, args.clients, args.rounds, args.local_epochs)
        print(json.dumps({k: v for k, v in record.items() if k != "config"}), flush=True)
        merge([record])
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
