"""A bundle: the one folder ``lmrec train`` writes and everything downstream reads (evaluate, recommend,
later the service). It is the unit a product deploys.

Layout::

    bundle.json    kind, format, lmrec version, model name, dataset preparation, data and encoder
                   fingerprints, SHA-256 of every data file
    model/         the saved model (lmrec.models.base: model.json + safetensors)
    data/          the prepared split it was trained on: events with their part (train / valid / test),
                   raw-id maps, item (and user) table with text
    metrics.json   test metrics, the validation curve and timings of the training run
    config.yaml    what was run

Loading checks the format, every file's checksum, and that the model was fitted on the bundle's own
training events; any problem is one ``ArtifactError`` line naming the file.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmrec import __version__
from lmrec.data.interactions import events_key
from lmrec.data.prepared import Prepared
from lmrec.errors import ArtifactError, ConfigError
from lmrec.fsutil import atomic_dir, folder_checksums, read_description, verify_checksums
from lmrec.models.base import Model
from lmrec.registry import load_model

KIND = "lmrec-bundle"
FORMAT = 1
BUNDLE_JSON = "bundle.json"
MODEL_DIR, DATA_DIR = "model", "data"
METRICS_JSON, CONFIG_YAML = "metrics.json", "config.yaml"


@dataclass
class Bundle:
    path: Path
    model: Any  # a fitted Recommender
    prepared: Prepared
    meta: dict[str, Any]
    metrics: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Read and check a bundle (module docstring)."""
        path = Path(path)
        file = path / BUNDLE_JSON
        meta = read_description(file, "bundle", ("kind", "data_files"), FORMAT,
                                "train the bundle again (lmrec train)")
        if meta["kind"] != KIND:
            raise ArtifactError(f"{file}: kind {meta['kind']!r} is not {KIND!r}")
        problem = verify_checksums(path / DATA_DIR, meta["data_files"])
        if problem:
            raise ArtifactError(f"bundle {path}: {problem}")
        model = load_model(path / MODEL_DIR)
        try:
            prepared = Prepared.load(path / DATA_DIR)
        except Exception as exc:  # checksums passed, so this is a bundle from a broken writer
            raise ArtifactError(f"{path / DATA_DIR}: unreadable ({type(exc).__name__}: {exc})") from None
        if getattr(model, "fit_key_", None) != events_key(prepared.split.train):
            raise ArtifactError(f"{path / MODEL_DIR}: the model was not fitted on this bundle's training events")
        try:
            metrics = json.loads((path / METRICS_JSON).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path / METRICS_JSON}: unreadable ({exc})") from None
        return cls(path, model, prepared, meta, metrics)


def write_bundle(out: str | Path, model: Model, prepared: Prepared, config: dict[str, Any],
                 metrics: dict[str, Any]) -> Path:
    """Write a bundle folder ``out`` atomically (a folder already there is replaced only if it is a bundle)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / BUNDLE_JSON).is_file())):
        raise ConfigError(f"{out} exists and is not a bundle: write the bundle into a new or empty folder")
    with atomic_dir(out) as tmp:
        model.save(tmp / MODEL_DIR)
        shutil.copytree(prepared.path, tmp / DATA_DIR)
        meta = {"kind": KIND, "format": FORMAT, "lmrec_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model": model.name, "dataset": prepared.config.model_dump(mode="json"),
                "train_events_key": events_key(prepared.split.train),
                "encoder_fingerprint": getattr(model, "encoder_fingerprint_", None),
                "data_files": folder_checksums(tmp / DATA_DIR)}
        (tmp / METRICS_JSON).write_text(json.dumps(metrics, indent=2))
        (tmp / CONFIG_YAML).write_text(yaml.safe_dump({"lmrec_version": __version__, **config}, sort_keys=False))
        (tmp / BUNDLE_JSON).write_text(json.dumps(meta, indent=2))
    return out
