"""Cross-domain transfer benchmark: pretrain on Beauty + Arts + Office, transfer to Scientific.

Usage (LMREC_DATA=../shared/data; each step reuses the previous one's output):
    python bench/transfer.py pretrain    # -> runs/transfer-base (artifact), ~20 min on a 2-core CPU
    python bench/transfer.py grid        # modes x fractions on amazon-scientific -> bench/results/transfer_scientific.json
    python bench/transfer.py seeds --fractions 0.05,0.1   # seed variance -> bench/results/transfer_scientific_seeds.json
    python bench/transfer.py coldstart [--modes zero-shot,adapter] [--targets amazon-office]   # cold-start users
                                         # -> bench/results/transfer_coldstart.json
    python bench/transfer.py table       # the markdown tables of docs/benchmarks.md
Options: --base DIR (artifact folder), --set key=value (pretraining / every transfer mode), --fractions,
--modes, --device, --seeds, --targets, --results FILE (under bench/results; each step has its own default).

Every number is on the test part with full ranking over the target's whole catalogue, history masked;
training stops early on the valid part. Fractions subsample the target's training users (seeded);
valid and test users are always all of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from provenance import stamp

from lmrec.config import parse_options
from lmrec.registry import create
from lmrec.transfer import PretrainedArtifact, pretrain, transfer, transfer_grid
from lmrec.transfer.workflow import Target

RESULTS = Path(__file__).parent / "results"
SOURCES = ["amazon-beauty", "amazon-arts", "amazon-office"]
TARGET = "amazon-scientific"
DEFAULT_MODES = {"grid": "zero-shot,adapter,lora,full,scratch", "seeds": "adapter,scratch", "coldstart": "zero-shot"}
DEFAULT_RESULTS = {"grid": "transfer_scientific.json", "table": "transfer_scientific.json",
                   "seeds": "transfer_scientific_seeds.json", "coldstart": "transfer_coldstart.json"}
# Pretraining schedule (chosen on the source domains' valid parts): patience 3 keeps it near 20 minutes here.
PRETRAIN: dict[str, Any] = {"epochs": 40, "patience": 3}


def cmd_pretrain(args: argparse.Namespace) -> None:
    run = pretrain(SOURCES, {**PRETRAIN, "device": args.device, **parse_options(args.set)}, args.base)
    print(json.dumps(run.artifact.summary | stamp(getattr(args, "device", None)), indent=2, default=str))


def cmd_grid(args: argparse.Namespace) -> None:
    fractions = tuple(float(f) for f in args.fractions.split(","))
    modes = tuple(args.modes.split(","))
    common = {"device": args.device, **parse_options(args.set)}
    out = Path(args.base) / f"transfer-{TARGET}"
    grid = transfer_grid(args.base, TARGET, out, modes, fractions, ("pop", "sasrec"),
                         {"*": common, "sasrec": {"device": args.device}})
    payload = {"target": TARGET, "pretrained_on": SOURCES, **stamp(getattr(args, "device", None)),
               "grid_seconds": round(grid.seconds, 1),
               "pretrain": PretrainedArtifact.load(args.base).summary | {"pretrain_config": None},
               "records": grid.records(TARGET), "significance": grid.significance}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(json.dumps(payload, indent=2))
    print((out / "transfer.md").read_text())


def cmd_seeds(args: argparse.Namespace) -> None:
    """Seed variance of the small-fraction comparison: each seed draws its own subsample of training users
    and its own initialisation; records every run and the per-seed relative gain of the first mode over
    the last (e.g. adapter over scratch)."""
    fractions = [float(f) for f in args.fractions.split(",")]
    modes = args.modes.split(",")
    common = {"device": args.device, **parse_options(args.set)}
    tgt = Target(TARGET, PretrainedArtifact.load(args.base))
    records = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for fraction in fractions:
            for mode in modes:
                _, run = transfer(args.base, TARGET, mode, fraction, {**common, "seed": seed}, seed=seed,
                                  prepared_target=tgt)
                records.append(run.record(TARGET) | {"seed": seed})
                print(f"seed {seed} fraction {fraction:g} {mode}: ndcg@10 {records[-1]['ndcg@10']:.4f}", flush=True)
    summary = []
    for fraction in fractions:
        by_mode = {m: [r["ndcg@10"] for r in records if r["mode"] == m and r["fraction"] == fraction] for m in modes}
        gains = [a / b - 1 for a, b in zip(by_mode[modes[0]], by_mode[modes[-1]])]
        summary.append({"fraction": fraction, **{f"ndcg@10 {m} mean": sum(v) / len(v) for m, v in by_mode.items()},
                        f"gain {modes[0]} vs {modes[-1]} per seed": gains})
    payload = {"target": TARGET, "base": args.base, **stamp(getattr(args, "device", None)),
               "records": records, "summary": summary}
    (RESULTS / args.results).write_text(json.dumps(payload, indent=2))
    print(json.dumps(summary, indent=2))


def cmd_coldstart(args: argparse.Namespace) -> None:
    """Arts / Office test users never occur in training (the URLLM split is user-disjoint): each is
    recommended for from their history alone. ``--modes`` (default zero-shot) are applied to the pretrained
    model: zero-shot (it saw the Arts / Office *training* users during pretraining, never these users) and
    any trained mode, fitted on all of the domain's training users; references are fitted on the same."""
    artifact = PretrainedArtifact.load(args.base)
    common = {"device": args.device, **parse_options(args.set)}
    records = []
    for target in args.targets.split(","):
        tgt = Target(target, artifact)
        assert len(tgt.domain.split.cold_users("test")) == len(tgt.test.users), "test users must all be cold"
        runs = [transfer(args.base, target, mode, 1.0, common, prepared_target=tgt)[1]
                for mode in args.modes.split(",")]
        runs += [tgt.run(create(name, **({"device": args.device} if name == "sasrec" else {})), name, 1.0)
                 for name in ("pop", "sasrec")]
        records += [r.record(target) | stamp(getattr(args, "device", None)) | {"base": args.base} for r in runs]
        for r in runs:
            print(target, r.mode, {k: round(v, 4) for k, v in r.result.means().items() if k in ("recall@10", "ndcg@10")},
                  f"{r.train_seconds:.0f} s", flush=True)
    (RESULTS / args.results).write_text(json.dumps({**stamp(getattr(args, "device", None)), "records": records}, indent=2))


def cmd_table(args: argparse.Namespace) -> None:
    """Markdown tables for docs/benchmarks.md from the two result files."""
    grid = json.loads((RESULTS / args.results).read_text())
    print(f"Grid wall time {grid['grid_seconds'] / 60:.1f} min on {grid['machine']} ({grid['date']}).\n")
    print("| mode | fraction | train users | Recall@10 | NDCG@10 | NDCG@10, test item unseen in fit | trainable params | epochs | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in grid["records"]:
        params = f"{r['trainable_params']:,}" if r["trainable_params"] >= 0 else "-"
        print(f"| {r['mode']} | {r['fraction']:g} | {r['train_users']:,} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | "
              f"{r['ndcg@10_items_unseen_in_fit']:.4f} | {params} | {r['epochs']} | {r['train_seconds']:.0f} |")
    print("\n| fraction | best parameter-efficient | vs | NDCG@10 | vs NDCG@10 | relative gain | t-test p | Wilcoxon p |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for s in grid["significance"]:
        print(f"| {s['fraction']:g} | {s['a']} | {s['b']} | {s['ndcg@10 a']:.4f} | {s['ndcg@10 b']:.4f} | "
              f"{100 * s['relative gain']:+.1f}% | {s['t_p']:.2g} | {s['wilcoxon_p']:.2g} |")
    cold = RESULTS / "transfer_coldstart.json"
    if cold.is_file():
        # quality only: these fits shared the CPU with other work, so their times are not reported
        print("\n| target (cold test users) | model | test users | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in json.loads(cold.read_text())["records"]:
            print(f"| {r['target']} | {r['mode']} | {r['test_users']:,} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | "
                  f"{r['recall@20']:.4f} | {r['ndcg@20']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["pretrain", "grid", "seeds", "coldstart", "table"])
    parser.add_argument("--base", default="runs/transfer-base", help="artifact folder")
    parser.add_argument("--set", action="append", default=[], help="key=value option (repeatable)")
    parser.add_argument("--fractions", default="0.05,0.1,0.25,0.5,1.0")
    parser.add_argument("--modes", help="transfer modes (default per step: " +
                        ", ".join(f"{k}: {v}" for k, v in DEFAULT_MODES.items()) + ")")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--targets", default="amazon-arts,amazon-office", help="coldstart: cold-start targets")
    parser.add_argument("--seeds", default="0,1,2", help="seeds: seeds to repeat the runs with")
    parser.add_argument("--results", help="results file under bench/results (default per step: " +
                        ", ".join(f"{k}: {v}" for k, v in DEFAULT_RESULTS.items()) + ")")
    args = parser.parse_args()
    # each step has its own defaults, so a step never overwrites another step's results by accident
    args.modes = args.modes or DEFAULT_MODES.get(args.step, "")
    args.results = args.results or DEFAULT_RESULTS.get(args.step, "")
    {"pretrain": cmd_pretrain, "grid": cmd_grid, "seeds": cmd_seeds, "coldstart": cmd_coldstart,
     "table": cmd_table}[args.step](args)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
