"""SASRec speed and quality: lmrec against RecBole 1.2.1 on the same MovieLens-100K leave-one-out split.

Usage (lmrec's environment, LMREC_DATA set):
    python bench/peers/recbole_sasrec.py [--device cpu|cuda] [--recbole-epochs N] [--skip-lmrec]

Both sides: hidden 64, 2 layers, 2 heads, feed-forward 256, last 50 items, full-softmax cross-entropy,
Adam(W) at lr 1e-3, validation NDCG@10 after every epoch, early stopping with patience 10 (RecBole's
``stopping_step``), test evaluated with the best epoch's weights, full ranking, train (+valid) masked.
They differ in what an epoch is: RecBole trains one example per prefix of every training sequence
(97,171 prefixes, batch 2048); lmrec trains all positions of each window of 50 items in one forward
pass (2,412 windows, batch 128). Each side keeps its own defaults for dropout (RecBole 0.5, lmrec 0.2).

The split is exported as one RecBole atomic file whose timestamps are each user's event order, so
RecBole's leave-one-out ('LS': valid_and_test, time order) reproduces lmrec's split exactly (the record
carries RecBole's test-user count to compare with lmrec's 943). ``--recbole-epochs`` caps RecBole's epochs when a full run does not
fit in the time available (the record then says so).

Time to RecBole's quality: RecBole runs first; lmrec's side then also records when its validation NDCG@10
first reaches RecBole's best (``to_target``: seconds, epoch, and the test metrics of the weights at that
point, measured after training so the timed run is not slowed). The target comes from a RecBole run to
convergence on the same device, else on another device (an epoch-capped CPU run has not converged;
``target_from`` says which). Both sides' validation curves (seconds since start, NDCG@10) are kept.
Results: bench/results/seqrec_peer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from recbole_run import RESULTS, WORK, ensure_venv, numpy_aliases_for_recbole, scratch, stamp  # noqa: E402

NAME = "ml100k-seq"
OUT = RESULTS / "seqrec_peer.json"
COMMON = {"dim": 64, "layers": 2, "heads": 2, "max_len": 50, "lr": 1e-3, "patience": 10, "epochs": 300}


def export_sequences() -> Path:
    """One ``NAME.inter`` with all events; timestamp = position in the user's time-ordered history."""
    from lmrec.data import Interactions, PrepareConfig, prepare

    p = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    seqs = Interactions.concat([p.split.train, p.split.valid, p.split.test]).sequences()
    folder = WORK / "data" / NAME
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{NAME}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(len(seqs)):
            for order, item in enumerate(seqs[u]):
                f.write(f"{u}\t{item}\t{order}\n")
    return WORK / "data"


class FirstToTarget:
    """The validation Evaluator, plus: the first evaluation whose NDCG@10 reaches ``target`` (RecBole's best
    validation NDCG@10) is remembered with its wall time since ``started`` and a copy of the weights, so
    the test metrics at that point can be measured after training without adding to the timed run."""

    def __init__(self, evaluator, target: float | None, started: float):
        self.evaluator, self.target, self.started = evaluator, target, started
        self.seconds: float | None = None
        self.evaluations = 0
        self.epoch_reached: int | None = None  # with eval_every 1, evaluations count epochs
        self.weights: dict | None = None

    def evaluate(self, model, name: str | None = None):
        result = self.evaluator.evaluate(model, name=name)
        self.evaluations += 1
        if self.target is not None and self.seconds is None and result.means()["ndcg@10"] >= self.target:
            self.seconds = time.perf_counter() - self.started
            self.epoch_reached = self.evaluations
            self.weights = {k: v.detach().clone() for k, v in model.net_.state_dict().items()}
        return result


def run_lmrec(device: str, target: float | None) -> dict:
    from lmrec.data import PrepareConfig, prepare
    from lmrec.eval import Evaluator
    from lmrec.registry import create

    p = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    model = create("sasrec", **COMMON, device=device)
    test = Evaluator(p.split, "test", ks=(10,))
    started = time.perf_counter()
    validation = FirstToTarget(Evaluator(p.split, "valid", ks=(10,)), target, started)
    model.fit(p.split.train, validation=validation)
    wall = time.perf_counter() - started
    r = model.train_result_
    m = test.evaluate(model).means()
    rec = {"side": "lmrec", "device": device, "seconds_per_epoch": round(r.seconds_per_epoch, 2),
           "epochs": r.epochs_run, "best_epoch": r.best_epoch, "seconds_to_best": round(r.seconds_to_best, 1),
           "wall_seconds": round(wall, 1), "valid_ndcg@10": round(r.best_metric, 4),
           "ndcg@10": round(m["ndcg@10"], 4), "recall@10": round(m["recall@10"], 4),
           "valid_curve": [[round(h["seconds"], 1), round(h["valid"]["ndcg@10"], 4)] for h in r.history if "valid" in h],
           "config": {k: v for k, v in model.config.model_dump().items() if k not in ("loggers",)}}
    if target is not None:
        rec["target_valid_ndcg@10"] = target
        if validation.weights is not None:
            model.net_.load_state_dict(validation.weights)
            at = test.evaluate(model).means()
            rec["to_target"] = {"seconds": round(validation.seconds, 1), "epoch": validation.epoch_reached,
                                "ndcg@10": round(at["ndcg@10"], 4), "recall@10": round(at["recall@10"], 4)}
        else:
            rec["to_target"] = None  # never reached RecBole's validation NDCG@10
    return rec


def run_recbole(python: Path, data_path: Path, device: str, epochs: int) -> dict:
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    out = subprocess_run([str(python), __file__, "--recbole-side", str(data_path), device, str(epochs)], env)
    return json.loads(out.strip().splitlines()[-1])


def subprocess_run(cmd: list[str], env: dict[str, str]) -> str:
    import subprocess

    # stderr passes through: RecBole's side reports each epoch as it ends
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=scratch())
    if proc.returncode:
        raise SystemExit(f"RecBole side failed (exit {proc.returncode})")
    return proc.stdout


def recbole_side(data_path: str, device: str, epochs: int) -> None:
    """Runs in RecBole's environment; prints one JSON record."""
    import logging

    import numpy as np

    numpy_aliases_for_recbole()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    logging.disable(logging.CRITICAL)
    cfg = {
        "data_path": data_path, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "loss_type": "CE",
        "train_neg_sample_args": None, "epochs": epochs, "stopping_step": 10, "eval_step": 1,
        "learning_rate": 1e-3, "train_batch_size": 2048, "eval_batch_size": 4096,
        "device": device, "use_gpu": device != "cpu", "show_progress": False,
        "checkpoint_dir": str(WORK / "saved"), "seed": 2020, "reproducibility": True,
    }
    config = Config(model="SASRec", dataset=NAME, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = SASRec(config, train._dataset).to(config["device"])
    trainer = Trainer(config, model)
    epoch_times, evals = [], []
    started = time.perf_counter()
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **k):
        t = time.perf_counter()
        out = train_epoch(*a, **k)
        epoch_times.append(time.perf_counter() - t)
        return out

    def timed_valid(*a, **k):
        out = valid_epoch(*a, **k)
        evals.append((time.perf_counter() - started, float(out[0])))
        print(f"recbole epoch {len(evals)}: {epoch_times[-1]:.1f} s training, valid NDCG@10 {evals[-1][1]:.4f}, "
              f"{evals[-1][0]:.0f} s since start", file=sys.stderr, flush=True)
        return out

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    trainer.fit(train, valid, saved=True, show_progress=False)
    wall = time.perf_counter() - started
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    best = int(np.argmax([s for _, s in evals]))
    print(json.dumps({
        "side": "recbole", "device": device, "seconds_per_epoch": round(float(np.mean(epoch_times)), 2),
        "epochs": len(epoch_times), "best_epoch": best + 1, "seconds_to_best": round(evals[best][0], 1),
        "wall_seconds": round(wall, 1), "valid_ndcg@10": round(evals[best][1], 4),
        "ndcg@10": round(float(result["ndcg@10"]), 4), "recall@10": round(float(result["recall@10"]), 4),
        "epoch_cap": epochs, "stopped_early": len(epoch_times) < epochs,
        "valid_curve": [[round(t, 1), round(v, 4)] for t, v in evals],  # (seconds since start, valid NDCG@10)
        "train_examples": len(train._dataset), "test_users": len(test._dataset),
        "config": {k: cfg[k] for k in ("MAX_ITEM_LIST_LENGTH", "loss_type", "learning_rate", "train_batch_size",
                                       "stopping_step")} | {"hidden_size": config["hidden_size"],
                                                            "n_layers": config["n_layers"],
                                                            "hidden_dropout_prob": config["hidden_dropout_prob"]},
    }))


def recbole_target(records: list[dict], device: str) -> dict | None:
    """The RecBole record whose best validation NDCG@10 lmrec's side must reach: a run to convergence
    (stopped early) on the same device if there is one, else one on another device (same config and
    seed; an epoch-capped CPU run has not reached RecBole's final quality yet)."""
    recbole = [r for r in records if r["side"] == "recbole"]
    for wanted in ([r for r in recbole if r["device"] == device and r.get("stopped_early")],
                   [r for r in recbole if r.get("stopped_early")]):
        if wanted:
            return wanted[0]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument("--recbole-epochs", type=int, default=300, help="cap on RecBole's epochs")
    ap.add_argument("--skip-lmrec", action="store_true")
    ap.add_argument("--skip-recbole", action="store_true")
    ap.add_argument("--recbole-python", type=Path, help="RecBole's interpreter (default: create bench/peers/.venv-recbole)")
    ap.add_argument("--recbole-side", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.recbole_side:
        data_path, device, epochs = args.recbole_side
        recbole_side(data_path, device, int(epochs))
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    old = json.loads(OUT.read_text()) if OUT.is_file() else []
    records = []
    # RecBole first: its best validation NDCG@10 is the target whose first crossing lmrec's side times
    if not args.skip_recbole:
        data_path = export_sequences()
        python = args.recbole_python or ensure_venv()
        rec = run_recbole(python, data_path, args.device, args.recbole_epochs)
        print(json.dumps(rec), flush=True)
        records.append(rec)
    if not args.skip_lmrec:
        target = recbole_target(records + old, args.device)
        rec = run_lmrec(args.device, target["valid_ndcg@10"] if target else None)
        if target:
            rec["target_from"] = {k: target[k] for k in ("device", "epochs", "stopped_early")}
        print(json.dumps(rec), flush=True)
        records.append(rec)
    for rec in records:
        rec.update({"dataset": "movielens-100k", "split": "loo", "model": "sasrec", **stamp(args.device)})
    keys = {(r["side"], r["device"]) for r in records}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps([r for r in old if (r["side"], r["device"]) not in keys] + records, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
