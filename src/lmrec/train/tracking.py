"""The optional experiment trackers (``pip install 'lmrec[tracking]'``): MLflow and TensorBoard, used by the
Trainer (``loggers: [mlflow, tensorboard]``, one point per epoch) and by ``lmrec tune --track`` (one MLflow
run / TensorBoard point per trial). One place imports them and says what to install when they are absent.

MLflow writes where ``MLFLOW_TRACKING_URI`` points; unset, to a local SQLite store (MLflow's file store is
deprecated) whose path the caller chooses, e.g. ``runs/mlflow.db``: ``mlflow ui --backend-store-uri
sqlite:///runs/mlflow.db`` shows it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmrec.errors import ConfigError

INSTALL = "pip install 'lmrec[tracking]'"


def mlflow_client(default_store: Path) -> Any:
    """The ``mlflow`` module, pointed at ``$MLFLOW_TRACKING_URI`` or else at SQLite file ``default_store``."""
    try:
        import mlflow  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError(f"MLflow tracking needs the mlflow package: {INSTALL}") from None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        default_store.parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{default_store.resolve()}")
    return mlflow


def tensorboard_writer(folder: Path | None) -> Any:
    """A TensorBoard ``SummaryWriter`` writing event files into ``folder`` (its default ``runs/`` when None)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter(log_dir=str(folder) if folder is not None else None)


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold '@': ndcg@10 -> ndcg_at_10."""
    return name.replace("@", "_at_")
