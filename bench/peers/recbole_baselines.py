"""LightGCN, Mult-VAE, GRU4Rec and BERT4Rec: lmrec against RecBole 1.2.1 on the same MovieLens-100K
leave-one-out split, back to back on one machine.

Usage (lmrec's environment, LMREC_DATA set):
    python bench/peers/recbole_baselines.py [--models lightgcn,multvae,gru4rec,bert4rec] [--recbole-epochs 100]

Data: the general models (LightGCN, Mult-VAE) read the lmrec-prepared split as RecBole benchmark files
(``recbole_run.export_atomic``); the sequential ones (GRU4Rec, BERT4Rec) one atomic file whose timestamps
are each user's event order, so RecBole's leave-one-out reproduces lmrec's split (``recbole_sasrec``).
Both sides: test part, full ranking, the user's train (+ valid) items masked; early stopping on validation
NDCG@10, the best epoch's weights tested. The architectures match (sizes below, from lmrec's defaults);
each side keeps its own training protocol otherwise (lmrec trains every position of each window in one
pass, RecBole one example per prefix; lmrec's LightGCN trains a fixed number of epochs, RecBole's stops
early). ``--recbole-epochs`` caps RecBole's epochs (the record says whether it stopped before the cap).
Results: ``bench/results/peer_recbole_baselines.json`` (one record per side and model, with the speed
ratio of RecBole's fit time to lmrec's).
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
from recbole_run import RESULTS, ensure_venv, export_atomic, numpy_aliases_for_recbole, scratch, stamp  # noqa: E402
from recbole_sasrec import NAME as SEQ_NAME  # noqa: E402
from recbole_sasrec import export_sequences, subprocess_run  # noqa: E402

OUT = RESULTS / "peer_recbole_baselines.json"
GENERAL_NAME = "ml100k-lmrec"
# lmrec name -> (RecBole name, lmrec options, RecBole options): the same sizes on both sides
MODELS = {
    "lightgcn": ("LightGCN", {"dim": 64, "layers": 3, "l2": 1e-4, "lr": 1e-3, "batch_size": 2048},
                 {"embedding_size": 64, "n_layers": 3, "reg_weight": 1e-4, "learning_rate": 1e-3,
                  "train_batch_size": 2048, "eval_step": 5, "stopping_step": 3}),
    "multvae": ("MultiVAE", {"hidden": 600, "latent": 200, "dropout": 0.5, "beta": 0.2, "batch_size": 256},
                {"mlp_hidden_size": [600], "latent_dimension": 200, "dropout_prob": 0.5, "anneal_cap": 0.2,
                 "total_anneal_steps": 20000, "train_batch_size": 256, "train_neg_sample_args": None,
                 "learning_rate": 1e-3, "stopping_step": 5}),
    "gru4rec": ("GRU4Rec", {"dim": 64, "layers": 1, "dropout": 0.2, "max_len": 50},
                {"embedding_size": 64, "hidden_size": 64, "num_layers": 1, "dropout_prob": 0.2, "loss_type": "CE",
                 "MAX_ITEM_LIST_LENGTH": 50, "train_neg_sample_args": None, "learning_rate": 1e-3,
                 "train_batch_size": 2048, "stopping_step": 5}),
    "bert4rec": ("BERT4Rec", {"dim": 64, "layers": 2, "heads": 2, "dropout": 0.2, "mask_prob": 0.2, "max_len": 50},
                 {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.2,
                  "attn_dropout_prob": 0.2, "mask_ratio": 0.2, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
                  "train_neg_sample_args": None, "learning_rate": 1e-3, "train_batch_size": 2048,
                  "stopping_step": 5}),
}
SEQUENTIAL = {"gru4rec", "bert4rec"}


def run_lmrec(model: str) -> dict:
    from lmrec.data import PrepareConfig, prepare
    from lmrec.eval import Evaluator
    from lmrec.registry import create

    p = prepare(PrepareConfig(dataset="movielens-100k", split="loo"))
    recommender = create(model, **MODELS[model][1])
    valid = Evaluator(p.split, "valid", ks=(10,)) if recommender.uses_validation else None
    started = time.perf_counter()
    recommender.fit(p.split.train, p.items, validation=valid)
    fit = time.perf_counter() - started
    m = Evaluator(p.split, "test", ks=(10,)).evaluate(recommender).means()
    r = getattr(recommender, "train_result_", None)
    return {"side": "lmrec", "model": model, "ndcg@10": round(m["ndcg@10"], 4), "recall@10": round(m["recall@10"], 4),
            "fit_seconds": round(fit, 1), "epochs": r.epochs_run if r else recommender.config.epochs,
            "best_epoch": r.best_epoch if r else None, "config": MODELS[model][1]}


def recbole_side(model: str, data_path: str, epochs: int) -> None:
    """Runs in RecBole's environment; prints one JSON record."""
    import logging

    numpy_aliases_for_recbole()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    logging.disable(logging.CRITICAL)
    rb_name, _, extra = MODELS[model]
    common = {"data_path": data_path, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
              "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
              "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "epochs": epochs,
              "eval_step": 1, "eval_batch_size": 4096, "device": "cpu", "use_gpu": False, "show_progress": False,
              "checkpoint_dir": str(scratch() / "saved"), "seed": 2020, "reproducibility": True}
    if model in SEQUENTIAL:
        common["eval_args"] = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
        dataset_name = SEQ_NAME
    else:
        common.update(benchmark_filename=["train", "valid", "test"],
                      eval_args={"group_by": "user", "order": "TO", "mode": "full"})
        dataset_name = GENERAL_NAME
    config = Config(model=rb_name, dataset=dataset_name, config_dict={**common, **extra})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model(rb_name)(config, train._dataset).to("cpu")
    trainer = get_trainer(config["MODEL_TYPE"], rb_name)(config, net)
    epochs_run = []
    train_epoch = trainer._train_epoch

    def counted(*a, **k):  # RecBole keeps no count of the epochs it ran
        epochs_run.append(1)
        return train_epoch(*a, **k)

    trainer._train_epoch = counted
    started = time.perf_counter()
    best_valid, _ = trainer.fit(train, valid, saved=True, show_progress=False)
    fit = time.perf_counter() - started
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    ran = len(epochs_run)
    print(json.dumps({"side": "recbole", "model": model, "recbole_model": rb_name,
                      "ndcg@10": round(float(result["ndcg@10"]), 4), "recall@10": round(float(result["recall@10"]), 4),
                      "fit_seconds": round(fit, 1), "valid_ndcg@10": round(float(best_valid), 4),
                      "epoch_cap": epochs, "epochs": ran, "test_users": len(test._dataset) if model in SEQUENTIAL else None,
                      "config": {k: v for k, v in extra.items()}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--recbole-epochs", type=int, default=100, help="cap on RecBole's epochs")
    ap.add_argument("--recbole-python", type=Path, help="RecBole's interpreter (default: bench/peers/.venv-recbole)")
    ap.add_argument("--recbole-side", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.recbole_side:
        model, data_path, epochs = args.recbole_side
        recbole_side(model, data_path, int(epochs))
        return
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    python = args.recbole_python or ensure_venv()
    old = json.loads(OUT.read_text())["records"] if OUT.is_file() else []
    models = args.models.split(",")
    records = [r for r in old if r["model"] not in models]
    general_path = export_atomic(GENERAL_NAME, "movielens-100k", "loo")
    sequence_path = export_sequences()
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    for model in models:
        if model not in MODELS:
            raise SystemExit(f"unknown model {model}; known: {', '.join(MODELS)}")
        data_path = sequence_path if model in SEQUENTIAL else general_path
        out = subprocess_run([str(python), __file__, "--recbole-side", model, str(data_path), str(args.recbole_epochs)],
                             env)
        theirs = json.loads(out.strip().splitlines()[-1])
        ours = run_lmrec(model)
        theirs["stopped_early"] = theirs["epochs"] is not None and theirs["epochs"] < args.recbole_epochs - 1
        ours["speed_ratio"] = round(theirs["fit_seconds"] / max(ours["fit_seconds"], 1e-9), 2)
        for rec in (theirs, ours):
            rec.update(stamp())
            print(json.dumps(rec), flush=True)
        records += [theirs, ours]
        OUT.write_text(json.dumps({"dataset": "movielens-100k", "split": "loo (lmrec-prepared, exported)",
                                   "evaluation": "test part, full ranking over all items, train+valid items masked",
                                   "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
