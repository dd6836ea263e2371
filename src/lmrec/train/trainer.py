"""One training loop for every neural model.

AdamW, linear warmup then cosine decay, gradient clipping, early stopping on a validation metric (best
weights restored), atomic checkpoints with exact resume, a ``metrics.jsonl`` log, optional TensorBoard /
MLflow, device auto-selection and mixed precision on GPU.

Exact resume: the data order of an epoch depends only on ``(seed, epoch)`` (see ``SequenceWindows``), and
a checkpoint holds the weights, optimiser, schedule, RNG states and position inside the epoch, so a run
killed after a checkpoint and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from lmrec.errors import ArtifactError, ConfigError, LmrecError
from lmrec.progress import logger, progress_bar, report
from lmrec.train import distributed
from lmrec.train.private import PrivacyConfig, PrivateTraining
from lmrec.train.tracking import metric_key, mlflow_client, tensorboard_writer

CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"


class TrainingError(LmrecError):
    """Training cannot go on (e.g. the loss became NaN); the message says what was kept."""


class TrainConfig(BaseModel):
    """Options of the training loop; neural model configs extend this class."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(100, ge=1, description="upper bound; early stopping usually ends sooner")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps before the schedule")
    schedule: Literal["cosine", "constant"] = "constant"
    clip_norm: float | None = Field(1.0, gt=0, description="max gradient norm; None = no clipping")
    monitor: str = Field("ndcg@10", description="validation metric for early stopping (higher is better)")
    patience: int = Field(5, ge=1, description="evaluations without improvement before stopping")
    eval_every: int = Field(1, ge=1, description="validate every this many epochs")
    checkpoint_dir: str | None = Field(None, description="folder for checkpoint.pt and metrics.jsonl; "
                                       "an existing checkpoint there is resumed")
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every this many steps (0 = at evaluations)")
    seed: int = 0
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    amp: bool = Field(True, description="mixed precision on CUDA (bfloat16 where supported)")
    loggers: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="DP-SGD: privacy.epsilon=E "
                                   "(privacy.delta=D) or privacy.noise_multiplier=S (lmrec.train.private)")


class BatchSource(Protocol):
    """Deterministic epochs: ``epoch(e)`` yields the same batches in the same order for the same ``e``."""

    @property
    def steps_per_epoch(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[Any]: ...


@dataclass
class TrainResult:
    best_metric: float | None
    best_epoch: int
    epochs_run: int
    steps: int
    train_seconds: float  # optimisation only
    seconds: float  # wall time including validation
    seconds_to_best: float  # wall time until the best validation result
    history: list[dict[str, Any]] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # the DP guarantee of a private run (PrivateTraining.record)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available (use device=auto or cpu)")
    return device


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    """``Trainer(config).fit(module, loss, data, validate)``: ``loss(module, batch) -> scalar``;
    ``validate() -> {metric: value}`` is called in eval mode under ``no_grad``."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.run_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        self._writes = True  # False in the processes of a distributed run other than rank 0

    # ------------------------------------------------------------------------------------------ pieces
    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        # No weight decay on biases, norms and embeddings' padding rows: decay only matrices. A parameter
        # may carry an ``lr_scale`` attribute (e.g. a freshly initialised head beside a pretrained body):
        # its group learns at ``lr * lr_scale``; the schedule scales every group alike.
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("nothing to train: every parameter of the model is frozen")
        groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
        for p in params:
            groups.setdefault((p.ndim >= 2, float(getattr(p, "lr_scale", 1.0))), []).append(p)
        # decayed groups first: without lr_scale this is the two-group layout older checkpoints were saved with
        ordered = sorted(groups.items(), key=lambda g: (not g[0][0], g[0][1]))
        return torch.optim.AdamW([{"params": ps, "weight_decay": self.config.weight_decay if decay else 0.0,
                                   "lr": self.config.lr * scale} for (decay, scale), ps in ordered],
                                 lr=self.config.lr)

    def _schedule(self, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        c = self.config

        def factor(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            if c.schedule == "constant":
                return 1.0
            progress = (step - c.warmup_steps) / max(1, total_steps - c.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _autocast(self) -> Any:
        if self.device.type != "cuda" or not self.config.amp:
            return nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    # ------------------------------------------------------------------------------------------ loop
    def fit(self, module: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], data: BatchSource,
            validate: Callable[[], dict[str, float]] | None = None) -> TrainResult:
        c = self.config
        seed_everything(c.seed)
        self.device = distributed.device_for(self.device)
        here = distributed.setup(self.device)  # one process unless started by torchrun
        if here.size > 1 and c.privacy.enabled:
            raise ConfigError("private training runs in one process: per-user sampling and accounting are not "
                              "split across torchrun processes")
        module.to(self.device)
        optimizer = self._optimizer(module)
        steps_per_epoch = data.steps_per_epoch
        scheduler = self._schedule(optimizer, c.epochs * steps_per_epoch)
        private = c.privacy.enabled
        # DP-SGD computes per-user gradients in full precision: no mixed precision, no loss scaling
        use_scaler = self.device.type == "cuda" and c.amp and not torch.cuda.is_bf16_supported() and not private
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        state = _LoopState()
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if (self.run_dir / CHECKPOINT).exists():
                state = self._resume(module, optimizer, scheduler, scaler)
        dp: PrivateTraining | None = None
        if private:
            dp = PrivateTraining(c.privacy, data, loss, c.epochs * steps_per_epoch, steps_done=state.step,
                                 noise_multiplier=state.noise_multiplier)
            state.noise_multiplier = dp.noise_multiplier
            optimizer = dp.wrap(optimizer)
        if here.size > 1:  # after resuming: DDP starts every process from rank 0's weights
            loss = distributed.data_parallel_loss(module, loss, self.device)
        self._writes = here.is_main  # checkpoints, logs, validation: rank 0 only
        loggers = _Loggers(list(c.loggers) if here.is_main else [], self.run_dir)
        bar = progress_bar("train", total=c.epochs * steps_per_epoch, unit="step", enabled=here.is_main)
        bar.update(state.step)
        clock = time.perf_counter() - state.seconds
        module.train()
        try:
            while state.epoch < c.epochs and not state.stopped:
                epoch_started = time.perf_counter()
                for batch in islice(data.epoch(state.epoch), state.step_in_epoch, None):
                    if distributed.too_small(batch, here):
                        state.step_in_epoch += 1
                        continue
                    batch = batch.to(self.device)
                    if dp is not None and not dp.budget_left():
                        logger.info("privacy budget spent after %d steps: training stops", state.step)
                        state.stopped = True
                        break
                    optimizer.zero_grad(set_to_none=True)
                    if dp is not None:
                        # per-user gradients; the DPOptimizer clips them, adds the noise and averages
                        value = dp.backward(module, batch)
                        self._check_finite(value, state)
                        optimizer.step()
                        dp.stepped()
                    else:
                        with self._autocast():
                            loss_value = loss(module, batch)
                        value = distributed.mean_over_processes(float(loss_value.detach()))
                        self._check_finite(value, state)
                        scaler.scale(loss_value).backward()
                        if c.clip_norm is not None:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(module.parameters(), c.clip_norm)
                        scaler.step(optimizer)
                        scaler.update()
                    scheduler.step()
                    state.step += 1
                    state.step_in_epoch += 1
                    if value is not None:  # None: a private step nobody was sampled into
                        state.loss_sum += value
                        state.loss_count += 1
                    bar.update(1)
                    bar.set_postfix(loss=_fmt(value), **{c.monitor: _fmt(state.last_metric)})
                    if self.run_dir is not None and c.checkpoint_every and state.step % c.checkpoint_every == 0:
                        state.seconds = time.perf_counter() - clock
                        self._checkpoint(module, optimizer, scheduler, scaler, state)
                state.train_seconds += time.perf_counter() - epoch_started
                if state.stopped:  # the privacy budget ran out inside the epoch
                    break
                state.epoch += 1
                state.step_in_epoch = 0
                record: dict[str, Any] = {"epoch": state.epoch, "step": state.step,
                                          "loss": state.loss_sum / max(state.loss_count, 1),
                                          "lr": scheduler.get_last_lr()[0]}
                state.loss_sum, state.loss_count = 0.0, 0
                if validate is not None and (state.epoch % c.eval_every == 0 or state.epoch == c.epochs):
                    self._validate(module, validate, state, record, clock)
                record["seconds"] = time.perf_counter() - clock
                if here.is_main:
                    report("epoch %d: loss %.4f, %s %s, %.1f s", state.epoch, record["loss"], c.monitor,
                           _fmt(record.get("valid", {}).get(c.monitor)), record["seconds"])
                state.history.append(record)
                loggers.log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", **{c.monitor: _fmt(state.last_metric)})
                if self.run_dir is not None:
                    state.seconds = time.perf_counter() - clock
                    self._checkpoint(module, optimizer, scheduler, scaler, state)
        finally:
            bar.close()
            loggers.close()
        if state.best_state is not None:
            module.load_state_dict(state.best_state)
        module.eval()
        return TrainResult(state.best_metric, state.best_epoch or state.epoch, state.epoch, state.step,
                           state.train_seconds, time.perf_counter() - clock,
                           state.seconds_to_best if state.best_state is not None else time.perf_counter() - clock,
                           state.history, dp.record() if dp is not None else None)

    def _check_finite(self, value: float | None, state: _LoopState) -> None:
        if value is None or math.isfinite(value):
            return
        kept = (f"the last good checkpoint (step {state.checkpoint_step}) is kept in {self.run_dir}"
                if state.checkpoint_step is not None else "no checkpoint was written")
        raise TrainingError(f"training stopped: the loss became {value} at epoch {state.epoch + 1}, step "
                            f"{state.step + 1}; {kept}. Try a lower learning rate (lr={self.config.lr}) or "
                            "gradient clipping (clip_norm)")

    def _validate(self, module: nn.Module, validate: Callable[[], dict[str, float]], state: _LoopState,
                  record: dict[str, Any], clock: float) -> None:
        c = self.config
        value = None
        if self._writes:
            module.eval()
            with torch.no_grad():
                metrics = validate()
            module.train()
            if c.monitor not in metrics:
                raise ConfigError(f"monitor metric {c.monitor!r} is not among the validation metrics "
                                  f"({', '.join(sorted(metrics))})")
            value = float(metrics[c.monitor])
            record["valid"] = {k: float(v) for k, v in metrics.items()
                               if k.split("@")[0] in ("recall", "ndcg", "mrr", "hit", "auc", "logloss")}
        # the other processes take rank 0's value, so all stop early and keep the best weights together
        value = distributed.from_main(value)
        state.last_metric = value
        if state.best_metric is None or value > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_evals = value, state.epoch, 0
            state.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            state.seconds_to_best = time.perf_counter() - clock
        else:
            state.bad_evals += 1
            if state.bad_evals >= c.patience:
                state.stopped = True
                logger.info("early stop after epoch %d: best %s %.4f at epoch %d", state.epoch, c.monitor,
                            state.best_metric, state.best_epoch)

    # ------------------------------------------------------------------------------------------ checkpoints
    def _checkpoint(self, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                    state: _LoopState) -> None:
        """Write ``checkpoint.pt`` atomically (temp file + rename) and rewrite ``metrics.jsonl`` to match."""
        assert self.run_dir is not None
        if not self._writes:
            return
        state.checkpoint_step = state.step
        payload = {"config": self.config.model_dump(mode="json"), "model": module.state_dict(),
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "scaler": scaler.state_dict(), "loop": state.to_dict(),
                   "torch_rng": torch.get_rng_state(), "numpy_rng": _numpy_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        tmp = self.run_dir / f".{CHECKPOINT}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)
        _write_jsonl(self.run_dir / METRICS_LOG, state.history)

    def _resume(self, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> _LoopState:
        assert self.run_dir is not None
        path = self.run_dir / CHECKPOINT
        try:
            # weights_only: tensors and plain containers only; a planted pickle cannot run code here
            payload = torch.load(path, map_location="cpu", weights_only=True)
            saved, now = payload["config"], self.config.model_dump(mode="json")
        except Exception as exc:  # truncated, not a checkpoint, or holding objects that are not allowed
            raise ArtifactError(f"{path}: not a checkpoint lmrec can read safely ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}); delete it to start over") from None
        differ = sorted(k for k in now if k not in ("epochs", "patience", "device", "loggers") and saved.get(k) != now[k])
        if differ:
            raise ConfigError(f"{path} was written with a different configuration ({', '.join(differ)}); "
                              f"use another checkpoint_dir or delete the checkpoint to start over")
        module.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["torch_rng"])
        _set_numpy_rng_state(payload["numpy_rng"])
        if payload["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        state = _LoopState.from_dict(payload["loop"])
        logger.info("resuming from %s at epoch %d, step %d", path, state.epoch + 1, state.step)
        return state


@dataclass
class _LoopState:
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    bad_evals: int = 0
    stopped: bool = False
    last_metric: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    train_seconds: float = 0.0
    seconds_to_best: float = 0.0
    checkpoint_step: int | None = None
    noise_multiplier: float | None = None  # DP-SGD's, fixed when the run starts (kept for resume)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return copy.copy(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _LoopState:
        return cls(**d)


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as plain values and a tensor (what a weights-only load accepts)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state((state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                         state["cached"]))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


class _Loggers:
    """Optional TensorBoard / MLflow sinks (``lmrec.train.tracking``); each must be installed when asked for.
    MLflow's local store, when none is configured, is ``mlflow.db`` in the run folder (else ``runs/``)."""

    def __init__(self, names: list[str], run_dir: Path | None):
        self.tb: Any = None
        self.mlflow: Any = None
        if "tensorboard" in names:
            self.tb = tensorboard_writer(run_dir / "tensorboard" if run_dir else None)
        if "mlflow" in names:
            self.mlflow = mlflow_client((run_dir or Path("runs")) / "mlflow.db")
            # named, not MLflow's remembered active experiment: that id may belong to another store
            experiment = self.mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "lmrec"))
            self.mlflow.start_run(experiment_id=experiment.experiment_id)

    def log(self, record: dict[str, Any]) -> None:
        flat = {"loss": record["loss"], "lr": record["lr"],
                **{f"valid/{k}": v for k, v in record.get("valid", {}).items()}}
        if self.tb is not None:
            for k, v in flat.items():
                self.tb.add_scalar(k, v, record["step"])
        if self.mlflow is not None:
            self.mlflow.log_metrics({metric_key(k): v for k, v in flat.items()}, step=record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
