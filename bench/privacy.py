"""Privacy-utility curves: test NDCG@10 and membership-attack AUC of models trained with DP-SGD at several
epsilon (user level), against the same models trained without privacy.

Usage: LMREC_DATA=../shared/data python bench/privacy.py --dataset movielens-100k
           [--models sasrec,textseq,transfer-adapter] [--epsilons inf,8,4,2,1] [--set model.key=value ...]
           [--base runs/transfer-base]   (transfer-adapter: the artifact of ``bench/transfer.py pretrain``)
           [--variant LABEL]   (a recipe probe: recorded beside the curve's points, not over them)
       python bench/privacy.py --table | --plot

Protocol. The dataset's users are split at random (seed 0) into members (80%) and non-members (20%).
Every model trains on the members' train events only, stops early on their valid part and is tested once
on their test part (full ranking, history masked). The membership attack (lmrec.privacy, loss threshold)
then tries to tell members from non-members by the model's next-item loss on the last 10 items of each
user's train sequence: AUC 0.5 = no better than a coin. epsilon = inf is ordinary training (no clipping,
no noise); finite epsilon is DP-SGD with delta = 0.1 / members, the noise calibrated to the planned steps.

Records (dataset, model, epsilon, epsilon spent, delta, noise multiplier, sample rate, steps, NDCG / Recall
@10, attack AUC, fit seconds, config) are merged into bench/results/privacy.json, replacing earlier
records of the same (dataset, model, epsilon, variant). A run with ``--variant LABEL`` (e.g. a longer private
schedule set with ``--set``) is kept apart from the curve: the table lists it, the plot draws only the curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from provenance import stamp

from lmrec.config import parse_sets
from lmrec.data import PrepareConfig, prepare
from lmrec.data.split import Split
from lmrec.eval import Evaluator
from lmrec.privacy import membership_attack, sequence_losses
from lmrec.registry import create
from lmrec.transfer import PretrainedArtifact
from lmrec.transfer.workflow import mode_params

RESULTS = Path(__file__).parent / "results" / "privacy.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "privacy_utility.png"
SPLITS = {"movielens-100k": "loo", "amazon-scientific": "predefined"}
MEMBER_SHARE = 0.8

# What a model trains with. Private runs: larger batches than the defaults (a higher sampling rate per step
# lets the same epsilon afford less noise per step) and a fixed number of epochs the noise is calibrated to.
# On Amazon Scientific the private runs use a sampled softmax over 256 negatives drawn uniformly and 10
# epochs (exact per-user gradients of the full softmax over the 4,373-item catalogue cost ~1 minute per epoch
# for SASRec and ~8 for TextSeqRec on this 2-core CPU).
PRIVATE = {"batch_size": 128, "lr": 3e-3, "epochs": 30, "patience": 30}
PRIVATE_BY_DATASET: dict[str, dict[str, Any]] = {
    "amazon-scientific": {"batch_size": 512, "epochs": 10, "patience": 10, "loss": "sampled_softmax", "negatives": 256},
}
MODELS: dict[str, dict[str, Any]] = {
    "sasrec": {},
    "textseq": {},  # the language-model vectors are frozen inputs: what they know costs no privacy budget
    # only the adaptor learns (the transformer stays at its random initialisation)
    "textseq-adaptor": {"model": "textseq", "freeze": ["encoder"]},
    # the pretrained transfer model (bench/transfer.py pretrain: Beauty + Arts + Office) with only its adapter
    # (adaptor + layer norms) trained on the target: the transformer's pretrained knowledge costs no budget
    "transfer-adapter": {"model": "textseq", "transfer": "adapter"},
}
BASE = Path("runs/transfer-base")  # --base: the pretrained artifact transfer-adapter starts from


def members_split(n_users: int, seed: int = 0) -> np.ndarray:
    """bool per user: in the training data (member) or held out entirely (non-member)."""
    rng = np.random.default_rng(seed)
    return rng.random(n_users) < MEMBER_SHARE


def run(dataset: str, name: str, epsilon: float, overrides: dict[str, Any], base: Path = BASE,
        variant: str | None = None) -> dict[str, Any]:
    p = prepare(PrepareConfig(dataset=dataset, split=SPLITS[dataset]))
    split = p.split
    member = members_split(split.n_users)
    member_users = np.flatnonzero(member)
    # the members' split: same id maps, non-members' events left out of every part
    members = Split(*(part.select(member[part.user]) for part in (split.train, split.valid, split.test)),
                    name=f"{split.name}-members")
    train = members.train
    valid = Evaluator(members, "valid", ks=(10,))
    test = Evaluator(members, "test", ks=(10,))
    spec = dict(MODELS[name])
    model_name = spec.pop("model", name)
    mode = spec.pop("transfer", None)
    params: dict[str, Any] = {**spec}
    if mode is not None:  # the artifact's architecture and training settings, its weights, what mode trains
        params.update(mode_params(base, PretrainedArtifact.load(base), mode))
    if math.isfinite(epsilon):
        params.update(PRIVATE)
        params.update(PRIVATE_BY_DATASET.get(dataset, {}))
        params["privacy"] = {"epsilon": epsilon}
    params.update(overrides)
    model = create(model_name, **params)
    started = time.perf_counter()
    model.fit(train, p.items, validation=valid)
    fit_seconds = time.perf_counter() - started
    means = test.evaluate(model).means()
    seqs = split.train.sequences()
    in_seqs = [seqs[u] for u in member_users if len(seqs[u]) >= 2]
    out_seqs = [seqs[u] for u in np.flatnonzero(~member) if len(seqs[u]) >= 2]
    attack = membership_attack(sequence_losses(model, in_seqs, split.n_items),
                               sequence_losses(model, out_seqs, split.n_items))
    privacy = model.privacy_ or {}
    r = model.train_result_
    return {"dataset": dataset, "split": SPLITS[dataset], "model": name, "epsilon": epsilon, "variant": variant,
            "epsilon_spent": privacy.get("epsilon", math.inf), "delta": privacy.get("delta"),
            "noise_multiplier": privacy.get("noise_multiplier"), "sample_rate": privacy.get("sample_rate"),
            "steps": r.steps, "epochs": r.epochs_run, "best_epoch": r.best_epoch,
            "valid_ndcg@10": None if r.best_metric is None else round(r.best_metric, 4),
            "ndcg@10": round(means["ndcg@10"], 4), "recall@10": round(means["recall@10"], 4),
            "attack_auc": round(attack.auc, 4), "members": attack.members, "non_members": attack.non_members,
            "test_users": len(test.users), "fit_seconds": round(fit_seconds, 1), **stamp("cpu"),
            "config": {k: v for k, v in model.config.model_dump(mode="json").items() if k not in ("device", "loggers")}}


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["dataset"], r["model"], r["epsilon"], r.get("variant")


def merge(records: list[dict[str, Any]], path: Path = RESULTS) -> None:
    old = json.loads(path.read_text()) if path.is_file() else []
    new_keys = {_key(r) for r in records}
    kept = [r for r in old if _key(r) not in new_keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept + records, indent=2, default=str) + "\n")


def _load(path: Path) -> list[dict[str, Any]]:
    # JSON has no infinity: json.dumps writes Infinity, which json.loads reads back as float("inf")
    return json.loads(path.read_text())


def markdown_table(path: Path = RESULTS) -> str:
    rows = ["| dataset | model | epsilon (spent) | noise multiplier | steps | NDCG@10 | Recall@10 | share of "
            "non-private NDCG@10 | attack AUC | fit s |", "|" + "---|" * 10]
    records = _load(path)
    base = {(r["dataset"], r["model"]): r["ndcg@10"] for r in records
            if not math.isfinite(r["epsilon"]) and not r.get("variant")}
    for r in sorted(records, key=lambda r: (r["dataset"], r["model"], r.get("variant") or "", -r["epsilon"])):
        eps = "inf" if not math.isfinite(r["epsilon"]) else f"{r['epsilon']:g} ({r['epsilon_spent']:.2f})"
        ref = base.get((r["dataset"], r["model"]))
        share = f"{r['ndcg@10'] / ref:.0%}" if ref else "-"
        sigma = "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.2f}"
        model = f"{r['model']} [{r['variant']}]" if r.get("variant") else r["model"]
        rows.append(f"| {r['dataset']} | {model} | {eps} | {sigma} | {r['steps']} | {r['ndcg@10']:.4f} | "
                    f"{r['recall@10']:.4f} | {share} | {r['attack_auc']:.3f} | {r['fit_seconds']} |")
    return "\n".join(rows)


def plot(path: Path = RESULTS, out: Path = PLOT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in _load(path) if not r.get("variant")]  # the curves; recipe probes are in the table
    datasets = sorted({r["dataset"] for r in records})
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 7), squeeze=False)
    for col, dataset in enumerate(datasets):
        for model in sorted({r["model"] for r in records if r["dataset"] == dataset}):
            rs = sorted((r for r in records if r["dataset"] == dataset and r["model"] == model),
                        key=lambda r: r["epsilon"])
            finite = [r for r in rs if math.isfinite(r["epsilon"])]
            xs = [r["epsilon"] for r in finite]
            line = axes[0][col].plot(xs, [r["ndcg@10"] for r in finite], marker="o", label=model)[0]
            axes[1][col].plot(xs, [r["attack_auc"] for r in finite], marker="o", label=model, color=line.get_color())
            for r in rs:
                if not math.isfinite(r["epsilon"]):  # the non-private level as a dashed line
                    axes[0][col].axhline(r["ndcg@10"], ls="--", color=line.get_color(), lw=1)
                    axes[1][col].axhline(r["attack_auc"], ls="--", color=line.get_color(), lw=1)
        axes[0][col].set_title(f"{dataset}: test NDCG@10 (dashed: no privacy)")
        axes[1][col].set_title("membership attack AUC (dashed: no privacy)")
        axes[1][col].axhline(0.5, color="grey", lw=0.5)
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("epsilon (user level)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(SPLITS), default="movielens-100k")
    ap.add_argument("--models", default="sasrec,textseq")
    ap.add_argument("--epsilons", default="inf,8,4,2,1")
    ap.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE", help="config override")
    ap.add_argument("--base", type=Path, default=BASE, help="pretrained artifact for transfer-adapter")
    ap.add_argument("--variant", help="label of a recipe probe (e.g. '30 epochs'), recorded apart from the curve")
    ap.add_argument("--table", action="store_true", help="print the results as a markdown table and exit")
    ap.add_argument("--plot", action="store_true", help=f"draw {PLOT.name} from the results and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table())
        return
    if args.plot:
        print(plot())
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    overrides = parse_sets(args.set)
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        for eps in (float(e) for e in args.epsilons.split(",")):
            rec = run(args.dataset, name, eps, overrides.get(name, {}), args.base, args.variant)
            print(json.dumps({k: v for k, v in rec.items() if k != "config"}, default=str), flush=True)
            merge([rec])
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
