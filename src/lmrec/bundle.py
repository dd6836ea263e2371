"""A bundle: the one folder ``lmrec train`` writes and everything downstream reads (evaluate, recommend,
later the service). It is the unit a product deploys.

Layout::

    bundle.json    kind, format, lmrec version, model name, dataset preparation, data and encoder
                   fingerprints, SHA-256 of every data file; for a bundle ``lmrec refit`` wrote, the event
                   store and the sequence numbers its data reach (``store``)
    model/         the saved model (lmrec.models.base: model.json + safetensors)
    data/          the prepared split it was trained on: events with their part (train / valid / test),
                   raw-id maps, item (and user) table with text
    metrics.json   test metrics, the validation curve and timings of the training run
    per_user.parquet  each test user's metrics (``lmrec runs compare`` pairs them); absent after a refit
    config.yaml    what was run

Loading checks the format, every file's checksum, and that the model was fitted on the bundle's own
training events; any problem is one ``ArtifactError`` line naming the file.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml

from lmrec import __version__
from lmrec.data.idmap import IdMap
from lmrec.data.interactions import Interactions, Sequences, events_key
from lmrec.data.items import ItemTable
from lmrec.data.prepared import Prepared
from lmrec.data.queries import Queries
from lmrec.errors import ArtifactError, ConfigError
from lmrec.eval import EvalResult, recommend
from lmrec.eval.report import per_user_frame
from lmrec.fsutil import atomic_dir, folder_checksums, read_description, verify_checksums
from lmrec.models.base import Model
from lmrec.registry import load_model
from lmrec.retrieval import Retriever

KIND = "lmrec-bundle"
FORMAT = 1
BUNDLE_JSON = "bundle.json"
MODEL_DIR, DATA_DIR = "model", "data"
METRICS_JSON, CONFIG_YAML, PER_USER_PARQUET = "metrics.json", "config.yaml", "per_user.parquet"


@dataclass
class Recommendation:
    """One recommended item: raw id, display title, score."""

    item: str
    title: str
    score: float


@dataclass
class Bundle:
    path: Path
    model: Any  # a fitted Recommender
    prepared: Prepared
    meta: dict[str, Any]
    metrics: dict[str, Any]
    # Which parts of the split make up a user's history (None: all). ("train", "valid") serves the bundle as of
    # the end of validation, so that replaying the test events online can be compared with offline metrics.
    history_parts: tuple[str, ...] | None = None

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

    # --- answering from the bundle (lmrec recommend --model, the service) ------------------------------------
    @property
    def users(self) -> IdMap:
        return self.prepared.split.train.users

    @property
    def items(self) -> IdMap:
        """The catalogue's ids: the bundle's items, then any added since it was loaded (``add_items``)."""
        return self.catalogue.ids

    @cached_property
    def catalogue(self) -> ItemTable:
        """Every item's fields (the bundle's, then any added since it was loaded)."""
        return self.prepared.items

    @cached_property
    def histories(self) -> Sequences:
        """Each user's items in the bundle (every part of the split, or ``history_parts``; likes only), in time
        order."""
        parts = self.prepared.split.parts()
        unknown = set(self.history_parts or ()) - set(parts)
        if unknown:
            raise ConfigError(f"history parts {sorted(unknown)} are not parts of this split ({', '.join(parts)})")
        chosen = [parts[p] for p in (self.history_parts or parts)]
        return Interactions.concat(chosen).positives().sorted().sequences()

    @cached_property
    def titles(self) -> np.ndarray:
        return self.catalogue.titles()

    @cached_property
    def retriever(self) -> Retriever:
        """How ``recommend`` finds the top k: exact for small catalogues, a FAISS index for large ones
        (``lmrec.retrieval``; replace it to choose, e.g. ``Retriever(bundle.model, "hnsw")``)."""
        return Retriever(self.model)

    def new_items(self, ids: list[str], fields: list[dict[str, str]]) -> np.ndarray:
        """Vectors for items not in the catalogue yet, after checking their ids and fields and that the model
        can rank them from their text; changes nothing (``add_items`` does)."""
        table, new = self._appended(ids, fields)
        return self.model.encode_new_items(table, new)

    def add_items(self, ids: list[str], fields: list[dict[str, str]], vectors: np.ndarray | None = None) -> None:
        """Add items to the catalogue in memory (the folder stays as trained); the model ranks them from their
        text from now on. ``vectors``: ``new_items``' answer, when already computed."""
        table, new = self._appended(ids, fields)
        self.model.add_items(table, new, self.model.encode_new_items(table, new) if vectors is None else vectors)
        self.catalogue = table
        self.__dict__.pop("titles", None)
        self.retriever.items_added()

    def _appended(self, ids: list[str], fields: list[dict[str, str]]) -> tuple[ItemTable, np.ndarray]:
        table = self.catalogue.appended(ids, fields)
        assert isinstance(table, ItemTable)
        return table, np.arange(len(self.catalogue), len(table))

    def recommend(self, history: np.ndarray, k: int, user: int | None = None, blocked: np.ndarray | None = None,
                  times: np.ndarray | None = None, text: str | None = None) -> list[Recommendation]:
        """Top ``k`` for one user given ``history`` (item indices, oldest first; ``times`` theirs if known).
        ``user``: the user's index when the bundle knows them (ID-based models use it), else a new user.
        ``blocked``: bool ``[n_items]`` of items never to recommend (default: the history).
        ``text``: what the person asks for in their own words (text models read it after the history)."""
        n_items = len(self.items)
        history = np.asarray(history, dtype=np.int64)
        queries = Queries.one(history, n_items, len(self.users) if user is None else user, times,
                              self.prepared.split.train.time_unit)
        if blocked is None:
            blocked = np.zeros(n_items, dtype=bool)
            blocked[history] = True
        cols = np.flatnonzero(blocked)
        exclude = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
                                shape=(1, n_items))
        if text is None:
            ids, scores = self.retriever.top_k(queries, k, exclude)
        else:  # free text: scored exactly (the index holds what histories are compared with)
            ids, scores = recommend(_TextScorer(self.model, text), queries, k, exclude)
        return [Recommendation(str(self.items.raw(int(i))), str(self.titles[i]), float(s))
                for i, s in zip(ids[0], scores[0]) if np.isfinite(s)]

    def recommend_users(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for many known users at once (user indices ``[B]``), each from their history in the bundle
        with that history excluded, as ``recommend`` does for one: ``(ids [B, k], scores [B, k])``, best first;
        ``-inf`` scores where fewer than ``k`` items are left."""
        users = np.asarray(users, dtype=np.int64)
        seqs = self.histories
        sequences = [seqs[int(u)] for u in users]
        times = None if seqs.times is None else [seqs.times[seqs.offsets[u]:seqs.offsets[u + 1]] for u in users]
        rows = np.repeat(np.arange(len(users)), [len(s) for s in sequences])
        cols = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        seen = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(users), len(self.items)))
        seen.sum_duplicates()
        seen.data[:] = 1.0
        queries = Queries(users, seen, sequences, times, self.prepared.split.train.time_unit)
        return self.retriever.top_k(queries, k, seen)


@dataclass
class _TextScorer:
    """A model's scores with a free-text query read after the history."""

    model: Any
    text: str

    def score(self, queries: Queries) -> np.ndarray:
        return self.model.score_text(queries, [self.text] * len(queries))


def write_bundle(out: str | Path, model: Model, prepared: Prepared, config: dict[str, Any],
                 metrics: dict[str, Any], store: dict[str, Any] | None = None, test: EvalResult | None = None,
                 ) -> Path:
    """Write a bundle folder ``out`` atomically (a folder already there is replaced only if it is a bundle).
    ``store``: for a refit bundle, the event store and how far into it the data reach (``lmrec.serve.refit``);
    ``test``: the test evaluation, kept per user."""
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
                "encoder_fingerprint": _text_or_none(getattr(model, "encoder_fingerprint_", None)),
                "data_files": folder_checksums(tmp / DATA_DIR)}
        if store is not None:
            meta["store"] = store
        if getattr(model, "privacy_", None) is not None:  # trained with DP-SGD: the guarantee travels with it
            meta["privacy"] = model.privacy_
        (tmp / METRICS_JSON).write_text(json.dumps(metrics, indent=2))
        if test is not None:
            per_user_frame([test]).to_parquet(tmp / PER_USER_PARQUET, index=False)
        (tmp / CONFIG_YAML).write_text(yaml.safe_dump({"lmrec_version": __version__, **config}, sort_keys=False))
        (tmp / BUNDLE_JSON).write_text(json.dumps(meta, indent=2))
    return out


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)  # some models keep it as a 0-d string array
