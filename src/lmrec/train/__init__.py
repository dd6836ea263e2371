"""Training machinery shared by every neural model."""

from lmrec.train.trainer import TrainConfig, Trainer, TrainingError, TrainResult, resolve_device

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingError", "resolve_device"]
