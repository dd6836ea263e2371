"""A tiny training job for the distributed tests, started by torchrun (``python -m torch.distributed.run``).

Every user walks a ring of items, so the next item is always the current one + 1: a model that learns
predicts it. Each process writes its final weights (``weights-RANK.safetensors``); rank 0 also writes the
training history (``result.json``). ``--fail-at N`` raises inside the Nth loss call (a process killed)."""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from lmrec.data import IdMap, Interactions
from lmrec.data.batching import SequenceWindows, query_batch
from lmrec.models.sasrec import SASRecConfig, SASRecNet
from lmrec.nn.losses import FullSoftmaxCE
from lmrec.train import TrainConfig, Trainer

N_ITEMS, USERS, LENGTH = 20, 64, 9


def ring(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(N_ITEMS) + np.arange(LENGTH)) % N_ITEMS for _ in range(USERS)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint-dir", default=None)
    ap.add_argument("--fail-at", type=int, default=0)
    args = ap.parse_args()
    seqs = ring(0)
    inter = Interactions(np.repeat(np.arange(USERS), LENGTH), np.concatenate(seqs), IdMap(range(USERS)),
                         IdMap(range(N_ITEMS)), time=np.tile(np.arange(LENGTH), USERS))
    windows = SequenceWindows(inter.sequences(), max_len=4, batch_size=16)
    held_out = ring(1)
    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, SASRecConfig(dim=16, heads=2, layers=1, max_len=4, dropout=0.1))

    def validate() -> dict[str, float]:  # hit@1 of the next item on users never trained on
        batch = query_batch([s[:-1] for s in held_out], 4)
        scores = net.similarity(net.encode_queries(batch), net.item_table())
        return {"ndcg@10": float((scores.argmax(1).numpy() == np.array([s[-1] for s in held_out])).mean())}

    ce, calls = FullSoftmaxCE(), [0]

    def loss(model, batch):
        calls[0] += 1
        if calls[0] == args.fail_at:
            raise SystemExit(3)  # this process dies mid-run
        return ce(model, batch)

    config = TrainConfig(epochs=12, lr=5e-3, seed=0, checkpoint_dir=args.checkpoint_dir, checkpoint_every=5,
                         patience=100, device="cpu")
    result = Trainer(config).fit(net, loss, windows, validate)
    rank = int(os.environ.get("RANK", "0"))
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out / f"weights-{rank}.safetensors"))
    if rank == 0:
        (args.out / "result.json").write_text(json.dumps({"steps": result.steps, "best": result.best_metric,
                                                          "history": result.history}))


if __name__ == "__main__":
    main()
