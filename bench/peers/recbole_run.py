"""Side by side with RecBole 1.2.1 on exactly the same prepared split.

Usage (from the lmrec virtual environment, with LMREC_DATA set):
    python bench/peers/recbole_run.py              # ML-100K leave-one-out: Pop, ItemKNN, BPR, EASE on both sides
    python bench/peers/recbole_run.py --eval-speed # also RecBole's full-ranking eval time on Amazon-Beauty

What it does:
1. prepares the split with lmrec and exports it as RecBole atomic files
   (``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter``, used through ``benchmark_filename``);
2. fits and evaluates lmrec's models on it (test part, full ranking, history masked);
3. creates ``bench/peers/.venv-recbole`` if missing (torch 2.13 CPU wheel, ``pip install --no-deps
   recbole==1.2.1`` plus its listed dependencies) and runs RecBole's models there in a subprocess
   (numpy-2 aliases such as ``np.float_`` set before import; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``);
4. writes ``bench/results/peer_recbole_ml100k.json`` (records: side, model, recall@10, ndcg@10, mrr@10,
   fit_seconds, eval_seconds).

RecBole's test evaluation masks train + valid items of each user, as lmrec's does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-recbole"
WORK = HERE / "work"
RESULTS = HERE.parent / "results"
# pandas 3 makes the chained in-place fillna in RecBole 1.2.1's dataset.py a silent no-op (copy-on-write)
RECBOLE_DEPS = ["torch==2.13.0", "numpy<2.4", "scipy", "pandas<3", "tqdm", "colorlog==4.7.2", "colorama==0.4.4",
                "scikit-learn", "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable"]
MODELS = {  # lmrec name -> RecBole name, RecBole config (its defaults unless stated)
    "pop": ("Pop", {"epochs": 1}),
    "itemknn": ("ItemKNN", {}),
    "bpr": ("BPR", {"embedding_size": 64, "epochs": 200, "eval_step": 5, "stopping_step": 3,
                    "learning_rate": 0.001, "train_batch_size": 2048}),
    "ease": ("EASE", {}),
}


# ---------------------------------------------------------------------------------------------- lmrec side
def export_atomic(name: str, dataset: str, split_kind: str) -> Path:
    """Write the lmrec-prepared split as RecBole atomic files; returns the data_path folder."""
    from lmrec.data import PrepareConfig, prepare

    p = prepare(PrepareConfig(dataset=dataset, split=split_kind))
    folder = WORK / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        inter = getattr(p.split, part)
        with open(folder / f"{name}.{part}.inter", "w") as f:
            f.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for u, i, t in zip(inter.user, inter.item, inter.time):
                f.write(f"{u}\t{i}\t{t}\n")
    return WORK / "data"


def run_lmrec(dataset: str) -> list[dict]:
    from lmrec.data import prepare
    from lmrec.eval import Evaluator
    from lmrec.registry import create

    p = prepare(dataset)
    evaluator = Evaluator(p.split, "test", ks=(10,))
    records = []
    for name in MODELS:
        t = time.perf_counter()
        model = create(name).fit(p.split.train, p.items)
        fit_s = time.perf_counter() - t
        result = evaluator.evaluate(model)
        m = result.means()
        records.append({"side": "lmrec", "model": name, "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"],
                        "mrr@10": m["mrr@10"], "hit@10": m["hit@10"], "fit_seconds": round(fit_s, 3),
                        "eval_seconds": round(result.seconds, 3), "config": model.config.model_dump()})
        print(f"lmrec   {name:8s} ndcg@10 {m['ndcg@10']:.4f}  fit {fit_s:.2f}s  eval {result.seconds:.2f}s", flush=True)
    return records


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} (torch CPU wheel + RecBole 1.2.1 and its dependencies)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_DEPS], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "recbole==1.2.1"], check=True)
    return python


def run_recbole_side(python: Path, args: list[str]) -> list[dict]:
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    out = subprocess.run([str(python), __file__, "--recbole-side", *args], env=env, check=True,
                         capture_output=True, text=True, cwd=scratch())
    for line in out.stderr.splitlines()[-5:]:
        print("  recbole:", line)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- RecBole side
def numpy_aliases_for_recbole() -> None:
    """RecBole 1.2.1 still uses aliases numpy 2 removed (np.float_, ...) and ``dok_matrix._update``, which
    scipy 1.12+ dropped (LightGCN builds its adjacency with it): restore them before importing it."""
    import numpy as np
    import scipy.sparse as sp

    for alias, target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, alias):
            setattr(np, alias, target)
    if not hasattr(sp.dok_matrix, "_update"):  # a bulk insert of {(row, col): value} without checks
        sp.dok_matrix._update = lambda self, data: self._dict.update(
            {(int(r), int(c)): v for (r, c), v in data.items()})


def recbole_side(data_path: str, name: str, models: list[str], eval_speed_only: bool) -> None:
    """Runs inside the RecBole venv; prints one JSON line of records on stdout."""
    import logging

    numpy_aliases_for_recbole()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    logging.disable(logging.CRITICAL)
    records = []
    for lm_name in models:
        rb_name, extra = MODELS[lm_name] if not eval_speed_only else ("BPR", {"embedding_size": 64, "epochs": 1})
        cfg = {
            "data_path": data_path, "benchmark_filename": ["train", "valid", "test"],
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
            "metrics": ["Recall", "NDCG", "MRR", "Hit"], "topk": [10], "valid_metric": "NDCG@10",
            "eval_batch_size": 4096, "device": "cpu", "use_gpu": False, "show_progress": False,
            "checkpoint_dir": str(WORK / "saved"), "seed": 2020, "reproducibility": True, **extra,
        }
        config = Config(model=rb_name, dataset=name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
        model = get_model(rb_name)(config, train._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], rb_name)(config, model)
        t = time.perf_counter()
        trainer.fit(train, valid, saved=True, show_progress=False)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        result = trainer.evaluate(test, load_best_model=True, show_progress=False)
        eval_s = time.perf_counter() - t
        records.append({"side": "recbole", "model": lm_name, "recbole_model": rb_name,
                        "recall@10": float(result["recall@10"]), "ndcg@10": float(result["ndcg@10"]),
                        "mrr@10": float(result["mrr@10"]), "hit@10": float(result["hit@10"]),
                        "fit_seconds": round(fit_s, 3), "eval_seconds": round(eval_s, 3),
                        "users": int(test._dataset.user_num - 1), "items": int(test._dataset.item_num - 1),
                        "config": {k: extra[k] for k in extra}})
        print(f"{rb_name} ndcg@10 {result['ndcg@10']:.4f} fit {fit_s:.2f}s eval {eval_s:.2f}s", file=sys.stderr)
        if eval_speed_only:
            break
    print(json.dumps(records))


def scratch() -> Path:
    """Where RecBole runs: it writes log_tensorboard/ and log/ into its working folder (gitignored here)."""
    WORK.mkdir(parents=True, exist_ok=True)
    return WORK


def stamp(device: str | None = None) -> dict[str, str]:
    """Commit, lmrec version, machine, date (bench/provenance.py; imported here because the RecBole side of
    this script runs in RecBole's own venv, without lmrec)."""
    sys.path.insert(0, str(HERE.parent))
    from provenance import stamp as provenance_stamp

    return provenance_stamp(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-speed", action="store_true", help="also time RecBole's full-ranking eval on Beauty")
    ap.add_argument("--recbole-side", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.recbole_side is not None:
        data_path, name, models, speed = args.recbole_side
        recbole_side(data_path, name, models.split(","), speed == "1")
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    python = ensure_venv()
    data_path = export_atomic("ml100k-lmrec", "movielens-100k", "loo")
    records = run_lmrec("movielens-100k")
    records += run_recbole_side(python, [str(data_path), "ml100k-lmrec", ",".join(MODELS), "0"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"dataset": "movielens-100k", "split": "loo (lmrec-prepared, exported to RecBole atomic files)",
           "evaluation": "test part, full ranking over all items, train+valid items masked",
           **stamp(), "records": records}
    (RESULTS / "peer_recbole_ml100k.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'peer_recbole_ml100k.json'}")
    if args.eval_speed:
        data_path = export_atomic("beauty-lmrec", "amazon-beauty", "loo")
        (rec,) = run_recbole_side(python, [str(data_path), "beauty-lmrec", "bpr", "1"])
        rec.update({"side": "recbole", "dataset": "amazon-beauty", "split": "loo", "model": "bpr-64 (RecBole)",
                    **stamp()})
        path = RESULTS / "eval_speed.json"
        records = [r for r in (json.loads(path.read_text()) if path.is_file() else []) if r["side"] != "recbole"]
        path.write_text(json.dumps(records + [rec], indent=2) + "\n")
        print(f"RecBole full-ranking eval on Beauty: {rec['eval_seconds']} s; wrote {path}")


if __name__ == "__main__":
    main()
