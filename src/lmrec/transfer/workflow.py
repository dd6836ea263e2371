"""Transfer a pretrained artifact to a target domain (``lmrec transfer``) and run the modes x fractions
grid (``lmrec transfer-grid``).

Modes (all share the artifact's architecture, so only what is trained differs):
``zero-shot`` no target training (target item texts encoded, users inferred from their histories);
``adapter`` trains the text adaptor (whitening + experts + gate) and the layer norms;
``lora`` trains LoRA updates of the transformer's linear layers (``peft``) plus the adaptor;
``full`` trains everything (optionally with target ID embeddings: ``id_mode=add``);
``scratch`` the same model from a random init (the control).
``fraction`` keeps that share of the target's training users; validation and test stay complete, so
runs at different fractions are comparable (users left out are still evaluated from their histories).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.interactions import Interactions
from lmrec.errors import ConfigError
from lmrec.eval import EvalResult, Evaluator, compare
from lmrec.eval.report import to_markdown
from lmrec.models.base import Recommender
from lmrec.models.pretrained import PretrainedArtifact
from lmrec.models.textseq import TextSeqRec
from lmrec.progress import logger
from lmrec.registry import create
from lmrec.text.encoder import load_encoder
from lmrec.transfer.domains import Domain, load_domain

MODES = ("zero-shot", "adapter", "lora", "full", "scratch")
PARAMETER_EFFICIENT = ("adapter", "lora")
FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
REFERENCES = ("pop", "sasrec")  # models fitted on the same target users, for comparison
# Artifact keys a target run does not inherit: the pretraining's own run folder, objective and schedule
# length (every mode, scratch included, trains with TextSeqRec's defaults: up to 100 epochs, patience 5).
_NOT_INHERITED = ("checkpoint_dir", "pretrained", "tuning", "freeze", "loss", "epochs", "patience")


@dataclass
class TransferRun:
    """One model on one target at one fraction: its test result and what its training cost."""

    mode: str  # a transfer mode, or a reference model's name
    fraction: float
    result: EvalResult
    trainable_params: int
    train_seconds: float
    epochs: int
    train_users: int
    extra: dict[str, float] = field(default_factory=dict)

    def record(self, target: str) -> dict[str, Any]:
        m = self.result.means()
        return {"target": target, "mode": self.mode, "fraction": self.fraction,
                **{k: m[k] for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20") if k in m},
                "trainable_params": self.trainable_params, "train_seconds": round(self.train_seconds, 2),
                "epochs": self.epochs, "train_users": self.train_users, "test_users": len(self.result.users),
                **self.extra}


def mode_params(artifact_path: str | Path, artifact: PretrainedArtifact, mode: str,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """TextSeqRec parameters for ``mode``: the artifact's architecture and training settings, full-softmax
    training on the target, then ``overrides``."""
    if mode not in MODES:
        raise ConfigError(f"unknown transfer mode {mode!r}; choose one of {', '.join(MODES)}")
    params = {k: v for k, v in artifact.config.items() if k not in _NOT_INHERITED}
    if mode == "scratch":
        params.update(pretrained=None, tuning="full")
    else:
        params.update(pretrained=str(artifact_path),
                      tuning={"zero-shot": "none", "adapter": "adapter", "lora": "lora", "full": "full"}[mode])
    return {**params, **(overrides or {})}


def keep_users(train: Interactions, fraction: float, seed: int = 0) -> Interactions:
    """The training events of a random ``fraction`` of the training users (all of a kept user's events)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    users = train.user_ids()
    n = int(round(fraction * len(users)))
    if n == 0:
        raise ConfigError(f"fraction {fraction} keeps no training users (the target has {len(users)}); "
                          f"use at least {1 / len(users):.2g}")
    if n == len(users):
        return train
    kept = np.random.default_rng(seed).choice(users, n, replace=False)
    return train.select(np.isin(train.user, kept))


class Target:
    """A target domain prepared once for many runs: its split, item vectors and evaluators."""

    def __init__(self, dataset: str, artifact: PretrainedArtifact, data_dir: str | Path | None = None,
                 ks: tuple[int, ...] = (10, 20)):
        c = artifact.config
        self.name = dataset
        self.domain: Domain = load_domain(dataset, load_encoder(c["encoder"], max_length=c["max_text_length"]),
                                          c.get("template"), data_dir)
        split = self.domain.split
        self.valid = Evaluator(split, "valid", ks=tuple(sorted({*ks, 10})))
        self.test = Evaluator(split, "test", ks=ks)

    def train_part(self, fraction: float, seed: int = 0) -> Interactions:
        train = keep_users(self.domain.split.train, fraction, seed)
        self.valid.allow_fit_on(train)
        self.test.allow_fit_on(train)
        return train

    def run(self, model: Recommender, mode: str, fraction: float, seed: int = 0) -> TransferRun:
        train = self.train_part(fraction, seed) if fraction > 0 else self.domain.split.train
        started = time.perf_counter()
        model.fit(train, self.domain.prepared.items, validation=self.valid)
        seconds = time.perf_counter() - started
        result = self.test.evaluate(model, name=f"{mode} @ {fraction:g}")
        trained = getattr(model, "train_result_", None)
        trainable = getattr(model, "trainable_params_", None)
        run = TransferRun(mode, fraction, result, int(trainable) if trainable is not None else -1, seconds,
                          trained.epochs_run if trained is not None else 0, int(len(train.user_ids())),
                          {"ndcg@10_items_unseen_in_fit": _unseen_target_ndcg(result, self.test, train)})
        logger.info("%s on %s at fraction %g: ndcg@10 %.4f, %s trainable parameters, %.1f s", mode, self.name,
                    fraction, result.means()["ndcg@10"], run.trainable_params, seconds)
        return run


def transfer(source: str | Path, target: str, mode: str, fraction: float = 1.0, params: dict[str, Any] | None = None,
             data_dir: str | Path | None = None, ks: tuple[int, ...] = (10, 20), seed: int = 0,
             prepared_target: Target | None = None) -> tuple[TextSeqRec, TransferRun]:
    """Transfer the artifact at ``source`` to ``target`` with ``mode`` on ``fraction`` of its training
    users; returns the fitted model and its test result. ``zero-shot`` ignores ``fraction``."""
    artifact = PretrainedArtifact.load(source)
    tgt = prepared_target or Target(target, artifact, data_dir, ks)
    model = TextSeqRec(**mode_params(source, artifact, mode, params))
    fraction = 0.0 if mode == "zero-shot" else fraction
    if fraction:
        keep_users(tgt.domain.split.train, fraction, seed)  # a bad fraction fails before any work
    return model, tgt.run(model, mode, fraction, seed)


def _unseen_target_ndcg(result: EvalResult, evaluator: Evaluator, train: Interactions) -> float:
    """Mean NDCG@10 over users whose held-out item never occurs in ``train`` (cold for this fit)."""
    seen = np.zeros(train.n_items, dtype=bool)
    seen[train.item] = True
    tgt = evaluator.targets
    cold = np.array([not seen[tgt.indices[tgt.indptr[r]:tgt.indptr[r + 1]]].all() for r in range(tgt.shape[0])])
    values = result.per_user["ndcg@10"][cold]
    return float(values.mean()) if len(values) else float("nan")


# --- the grid ------------------------------------------------------------------------------------------------
@dataclass
class GridRun:
    out: Path
    runs: list[TransferRun]
    significance: list[dict[str, Any]]
    seconds: float

    def records(self, target: str) -> list[dict[str, Any]]:
        return [r.record(target) for r in self.runs]


def transfer_grid(source: str | Path, target: str, out: str | Path, modes: tuple[str, ...] = MODES,
                  fractions: tuple[float, ...] = FRACTIONS, references: tuple[str, ...] = REFERENCES,
                  params: dict[str, dict[str, Any]] | None = None, data_dir: str | Path | None = None,
                  seed: int = 0) -> GridRun:
    """Every mode at every fraction (zero-shot once, as fraction 0), plus the reference models at every
    fraction; writes ``transfer.md``, ``transfer.png`` and ``transfer.json`` into ``out``.
    ``params`` maps a mode or reference name to its overrides (key ``"*"``: every TextSeqRec mode)."""
    params = params or {}
    for name in params:
        if name not in (*MODES, *references, "*"):
            raise ConfigError(f"options name {name!r}, which is neither a mode nor a reference model of this grid")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown transfer mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    started = time.perf_counter()
    artifact = PretrainedArtifact.load(source)
    tgt = Target(target, artifact, data_dir)
    for f in fractions:
        keep_users(tgt.domain.split.train, f, seed)  # every fraction is valid before the first run
    runs: list[TransferRun] = []
    if "zero-shot" in modes:
        runs.append(transfer(source, target, "zero-shot", params={**params.get("*", {}), **params.get("zero-shot", {})},
                             prepared_target=tgt)[1])
    for fraction in fractions:
        for mode in modes:
            if mode != "zero-shot":
                overrides = {**params.get("*", {}), **params.get(mode, {})}
                runs.append(transfer(source, target, mode, fraction, overrides, seed=seed, prepared_target=tgt)[1])
        for name in references:
            runs.append(tgt.run(create(name, **params.get(name, {})), name, fraction, seed))
    significance = _significance(runs, fractions)
    grid = GridRun(Path(out), runs, significance, time.perf_counter() - started)
    write_grid(grid, target, artifact)
    return grid


def _significance(runs: list[TransferRun], fractions: tuple[float, ...]) -> list[dict[str, Any]]:
    """At each fraction: the best parameter-efficient mode vs scratch and vs SASRec (paired across users)."""
    out = []
    for f in fractions:
        at = {r.mode: r for r in runs if r.fraction == f}
        efficient = [at[m] for m in PARAMETER_EFFICIENT if m in at]
        if not efficient:
            continue
        best = max(efficient, key=lambda r: r.result.means()["ndcg@10"])
        for other in ("scratch", "sasrec"):
            if other in at:
                a, b = best.result.means()["ndcg@10"], at[other].result.means()["ndcg@10"]
                out.append({"fraction": f, "a": best.mode, "b": other, "ndcg@10 a": a, "ndcg@10 b": b,
                            "relative gain": (a - b) / b if b > 0 else float("inf"),
                            **compare(best.result, at[other].result, "ndcg@10")})
    return out


def write_grid(grid: GridRun, target: str, artifact: PretrainedArtifact) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    grid.out.mkdir(parents=True, exist_ok=True)
    records = grid.records(target)
    frame = pd.DataFrame(records)
    sources = ", ".join(artifact.domain_names)
    (grid.out / "transfer.json").write_text(json.dumps(
        {"target": target, "pretrained_on": artifact.domain_names, "seconds": grid.seconds, "records": records,
         "significance": grid.significance}, indent=2))
    cols = ["mode", "fraction", "train_users", "recall@10", "ndcg@10", "ndcg@10_items_unseen_in_fit",
            "trainable_params", "epochs", "train_seconds"]
    sig = pd.DataFrame(grid.significance)
    md = [f"# Transfer to {target} (pretrained on {sources})", "",
          f"Test part, full ranking over all {artifact.config.get('encoder')}-encoded target items; fraction = "
          f"share of the target's training users used (valid and test complete). Grid wall time "
          f"{grid.seconds / 60:.1f} min.", "", to_markdown(frame[cols])]
    if len(sig):
        md += ["", "## Best parameter-efficient mode vs scratch and SASRec (paired across test users)", "",
               to_markdown(sig[["fraction", "a", "b", "ndcg@10 a", "ndcg@10 b", "relative gain", "t_p", "wilcoxon_p"]])]
    (grid.out / "transfer.md").write_text("\n".join(md) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in frame["mode"].unique():
        rows = frame[frame["mode"] == mode].sort_values("fraction")
        if mode == "zero-shot":
            ax.axhline(rows["ndcg@10"].iloc[0], color="grey", linestyle=":", label="zero-shot")
        else:
            style = "--" if mode in REFERENCES else "-"
            ax.plot(rows["fraction"], rows["ndcg@10"], style, marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("share of target training users")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{target}: transfer from {sources}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(grid.out / "transfer.png", dpi=120)
    plt.close(fig)
