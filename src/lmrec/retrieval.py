"""Top-k at serving time: every item scored exactly for small catalogues, a FAISS index for large ones.

A model whose scores are inner products (``retrieval_items`` / ``retrieval_queries``: the sequence models,
``lmcontent`` at power 1) can be searched with an approximate nearest-neighbour index (inner product; HNSW,
or IVF for the largest catalogues). The index proposes candidates; each candidate is then re-scored exactly
with the model's own float32 vectors, so every returned score is the model's score and the order is exact
among the candidates. What an index can miss is an item outside its candidates: ``bench/retrieval.py`` measures how
often (recall of the exact top-k) against the time saved.

Queries the index cannot serve fall back to exact scoring: models without an inner-product form, free-text
queries, empty histories (popularity), and requests whose filters leave out most of the catalogue.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from lmrec.data.queries import Queries
from lmrec.errors import ConfigError
from lmrec.eval import recommend

RetrievalKind = Literal["auto", "exact", "hnsw", "ivf"]
KINDS = ("auto", "exact", "hnsw", "ivf")
EXACT_UP_TO = 100_000  # auto: below this many items, exact scoring is fast enough (a few ms on 2 cores)
IVF_FROM = 2_000_000  # auto: from this many items, IVF (no graph: about half the memory of HNSW)


class Retriever:
    """``top_k(queries, k, exclude)`` like ``lmrec.eval.recommend``, through an index where it pays.

    ``candidates``: how many the index proposes per query, as a multiple of ``k`` (plus the items the query
    excludes, which are dropped after the search)."""

    def __init__(self, model: Any, kind: RetrievalKind = "auto", candidates: int = 4, hnsw_m: int = 32,
                 ef_search: int = 128, nprobe: int = 32):
        if kind not in KINDS:
            raise ConfigError(f"retrieval must be one of {', '.join(KINDS)}, got {kind!r}")
        if candidates < 1:
            raise ConfigError(f"candidates must be at least 1 (a multiple of k), got {candidates}")
        self.model, self.requested = model, kind
        self.candidates, self.hnsw_m, self.ef_search, self.nprobe = candidates, hnsw_m, ef_search, nprobe
        self._index: Any = None
        self._vectors: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """The method in use: ``exact``, ``hnsw`` or ``ivf`` (``auto`` resolved by the catalogue's size)."""
        n = int(self.model.n_items_)
        if self.requested != "auto":
            return self.requested
        return "exact" if n < EXACT_UP_TO else "hnsw" if n < IVF_FROM else "ivf"

    def top_k(self, queries: Queries, k: int, exclude: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [B, k], scores [B, k])`` best first; excluded slots beyond the available items are ``-inf``."""
        n = int(self.model.n_items_)
        if self.kind == "exact" or exclude.getnnz(axis=1).max(initial=0) > n // 2:
            return recommend(self.model, queries, k, exclude)
        q = self.model.retrieval_queries(queries)
        vectors = self.build()
        if q is None or vectors is None:
            return recommend(self.model, queries, k, exclude)
        q = np.ascontiguousarray(q, dtype=np.float32)
        want = min(n, self.candidates * k + int(exclude.getnnz(axis=1).max(initial=0)))
        _, found = self._index.search(q, want)
        ids = np.zeros((len(q), k), dtype=np.int64)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for row in range(len(q)):
            cand = found[row][found[row] >= 0]
            cand = cand[~np.isin(cand, exclude.indices[exclude.indptr[row]:exclude.indptr[row + 1]])]
            exact = vectors[cand] @ q[row]  # the model's own scores for the candidates
            order = np.lexsort((cand, -exact))[:k]  # best first, ties by the lower item index (as exact top-k)
            ids[row, :len(order)], scores[row, :len(order)] = cand[order], exact[order]
        return ids, scores

    def items_added(self) -> None:
        """The model's catalogue grew (``add_items``): add the new items' vectors to a built index."""
        if self._index is None:
            return
        vectors = self.model.retrieval_items()
        if vectors is None:
            self._index = self._vectors = None
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index.add(vectors[self._index.ntotal:])
        self._vectors = vectors

    def build(self) -> np.ndarray | None:
        """Build the index (done on first use; the item vectors are fixed for a loaded model); the vectors."""
        if self._index is None:
            vectors = self.model.retrieval_items()
            if vectors is None:
                return None
            self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index = build_index(self._vectors, self.kind, self.hnsw_m, self.ef_search, self.nprobe)
        return self._vectors


def build_index(vectors: np.ndarray, kind: str, hnsw_m: int = 32, ef_search: int = 128, nprobe: int = 32) -> Any:
    """A FAISS inner-product index over ``vectors`` (``hnsw`` or ``ivf``)."""
    try:
        import faiss
    except ImportError:
        raise ConfigError("an index needs FAISS: pip install 'lmrec[serve]' (or faiss-cpu); or use retrieval "
                          "'exact'") from None
    n, d = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants about 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ConfigError(f"unknown index kind {kind!r}: hnsw or ivf")
    index.add(vectors)
    return index
