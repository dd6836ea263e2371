"""Ray Data as lmrec's engine for work that splits into independent pieces: encoding item texts (here) and
recommending for every user (``lmrec.batch``) (``pip install 'lmrec[ray]'``).

Each pipeline is ``map_batches`` over an actor pool: every Ray worker loads one encoder, or one bundle, once,
and then takes batches. Results come back in input order (``preserve_order``), so the caller writes the
same cache entry (``EmbeddingCache``) and the same Parquet file as the local path does.

On a cluster, every worker must be able to read the bundle's folder and load the encoder: use shared storage
(or the same path on every node) and a Hugging Face cache the nodes can reach.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from lmrec.errors import ConfigError
from lmrec.progress import logger, progress_enabled
from lmrec.text.encoder import check_texts, load_encoder

try:
    import ray
    import ray.data
except ImportError:  # the optional extra is absent: say how to get it when Ray is asked for
    ray = None


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``: a running one), or start a local one when ``address`` is
    None and none is running; order-preserving Ray Data, progress bars only where lmrec shows them."""
    if ray is None:
        raise ConfigError("engine ray: Ray is not installed; pip install 'lmrec[ray]'")
    if not ray.is_initialized():
        logger.info("connecting to Ray at %s", address or "a new local cluster")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress_enabled()
    if not progress_enabled():  # Ray Data's own lines about each run: lmrec's output stays its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def _pool(workers: int | None) -> tuple[Any, float]:
    """The actor pool (``workers`` actors; default one per CPU, or per GPU where the cluster has GPUs) and the
    GPUs each actor asks for."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    size = workers or (gpus if gpus else max(1, int(resources.get("CPU", 1))))
    if size < 1:
        raise ConfigError(f"workers: needs at least 1, got {size}")
    return ray.data.ActorPoolStrategy(size=size), (1.0 if gpus else 0.0)


def _blocks(table: pa.Table, rows: int) -> Any:
    """A Ray dataset of ``table`` in blocks of ``rows`` rows: a block is what one actor takes at a time, so one
    block for everything would keep every actor but one idle."""
    return ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])


# --- encoding ---------------------------------------------------------------------------------------------
class _EncodeWorker:
    """One encoder per Ray actor."""

    def __init__(self, name: str, options: dict[str, Any], fingerprint: str):
        self.encoder = load_encoder(name, **options)
        if self.encoder.fingerprint != fingerprint:  # another model revision on this node: its vectors differ
            raise ConfigError(f"encoder {name!r} on this Ray worker has fingerprint {self.encoder.fingerprint}, the "
                              f"driver's has {fingerprint}: give every node the same model files")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"vector": np.asarray(self.encoder.encode([str(t) for t in batch["text"]]), dtype=np.float32)}


class RayEncoder:
    """A ``TextEncoder`` whose ``encode`` runs on Ray: the same fingerprint and vectors as ``load_encoder(name,
    **options)``, so ``EmbeddingCache`` stores and reuses them as it does the local encoder's."""

    def __init__(self, name: str, options: dict[str, Any] | None = None, workers: int | None = None,
                 address: str | None = None, rows_per_batch: int | None = None):
        self.name, self.options = name, dict(options or {})
        self.local = load_encoder(name, **self.options)  # the fingerprint and dim the workers must match
        self.workers, self.address = workers, address
        self.rows_per_batch = rows_per_batch or int(self.options.get("batch_size", 64)) * 4

    @property
    def fingerprint(self) -> str:
        return self.local.fingerprint

    @property
    def dim(self) -> int:
        return self.local.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` in the order of ``texts``."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        connect(self.address)
        # longest first, as the local encoder batches: similar lengths share a batch, little padding
        order = np.argsort([-len(t) for t in texts], kind="stable")
        compute, gpus = _pool(self.workers)
        table = pa.table({"text": pa.array([texts[i] for i in order], pa.string())})
        data = _blocks(table, self.rows_per_batch)
        encoded = data.map_batches(
            _EncodeWorker, batch_size=self.rows_per_batch, batch_format="numpy", compute=compute, num_gpus=gpus,
            fn_constructor_kwargs={"name": self.name, "options": self.options, "fingerprint": self.fingerprint})
        parts = [np.asarray(b["vector"], dtype=np.float32) for b in encoded.iter_batches(batch_format="numpy",
                                                                                         batch_size=None)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise RuntimeError(f"Ray returned {vectors.shape} vectors for {len(texts)} texts")
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def __repr__(self) -> str:
        return f"RayEncoder({self.local!r}, workers={self.workers})"


# --- any ordered map ---------------------------------------------------------------------------------------
def map_in_order(rows: pa.Table, worker: type, constructor_kwargs: dict[str, Any], address: str | None = None,
                 workers: int | None = None) -> Iterator[pa.Table]:
    """``worker(**constructor_kwargs)`` on each Ray actor, called on one row of ``rows`` at a time (a
    ``pyarrow.Table`` of one row, returning a table); the results in the order of ``rows``."""
    connect(address)
    compute, gpus = _pool(workers)
    data = _blocks(rows, 1)
    done = data.map_batches(worker, batch_size=1, batch_format="pyarrow", compute=compute, num_gpus=gpus,
                            fn_constructor_kwargs=constructor_kwargs)
    yield from done.iter_batches(batch_format="pyarrow", batch_size=None)
