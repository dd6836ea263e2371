import json

import numpy as np
import pytest

from lmrec.text import CacheError, EmbeddingCache, HashingEncoder


class Counting(HashingEncoder):
    """A real (hashing) encoder that records which texts it was asked to encode."""

    def __init__(self):
        super().__init__(32)
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return super().encode(texts)


def test_second_request_is_served_from_the_cache_memory_mapped(tmp_path):
    enc, cache = Counting(), EmbeddingCache(tmp_path)
    texts = ["red pen", "blue ink", "red pen"]
    first = cache.encode(enc, texts, template="{title}")
    assert enc.calls == [["red pen", "blue ink"]]  # duplicates encoded once
    np.testing.assert_array_equal(first, HashingEncoder(32).encode(texts))
    again = cache.encode(enc, texts, template="{title}")
    assert len(enc.calls) == 1 and isinstance(again, np.memmap)
    np.testing.assert_array_equal(again, first)


def test_incremental_only_new_texts_are_encoded(tmp_path):
    enc, cache = Counting(), EmbeddingCache(tmp_path)
    cache.encode(enc, ["a pen", "an ink"], template="t1")
    out = cache.encode(enc, ["an ink", "a pad", "a pen"], template="t2")  # new entry, one new text
    assert enc.calls[-1] == ["a pad"]
    np.testing.assert_array_equal(out, HashingEncoder(32).encode(["an ink", "a pad", "a pen"]))


def test_meta_mismatch_is_an_error_not_a_silent_reuse(tmp_path):
    enc, cache = Counting(), EmbeddingCache(tmp_path)
    cache.encode(enc, ["a pen"])
    (meta_path,) = tmp_path.glob("entries/*/*/meta.json")
    meta = json.loads(meta_path.read_text())
    meta["fingerprint"] = "something-else"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="does not match the request"):
        cache.encode(enc, ["a pen"])


def test_float16_storage(tmp_path):
    enc, cache = Counting(), EmbeddingCache(tmp_path)
    half = cache.encode(enc, ["a pen", "an ink"], dtype="float16")
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, HashingEncoder(32).encode(["a pen", "an ink"]), atol=1e-3)
    with pytest.raises(CacheError):  # same texts asked as float32 must not reuse the float16 entry silently
        meta = next(tmp_path.glob("entries/*/*/meta.json"))
        meta.write_text(meta.read_text().replace('"float16"', '"float32"'))
        cache.encode(enc, ["a pen", "an ink"], dtype="float16")


def test_a_killed_write_leaves_nothing_that_loads(tmp_path, monkeypatch):
    enc, cache = Counting(), EmbeddingCache(tmp_path)

    def boom(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(np, "save", boom)
        with pytest.raises(KeyboardInterrupt):
            cache.encode(enc, ["a pen"])
    assert not list(tmp_path.glob("entries/*/*/meta.json"))
    assert not list(tmp_path.glob("entries/*/.*"))  # no temporary folder left behind
    np.testing.assert_array_equal(cache.encode(enc, ["a pen"]), HashingEncoder(32).encode(["a pen"]))


def test_a_corrupt_entry_or_pool_is_rebuilt_not_fatal(tmp_path):
    enc, cache = Counting(), EmbeddingCache(tmp_path)
    want = HashingEncoder(32).encode(["a pen", "an ink"])
    cache.encode(enc, ["a pen", "an ink"])
    (emb,) = tmp_path.glob("entries/*/*/emb.npy")
    emb.write_bytes(emb.read_bytes()[:40])  # truncated
    np.testing.assert_array_equal(cache.encode(enc, ["a pen", "an ink"]), want)
    (emb.parent / "meta.json").unlink()  # a missing meta.json used to fail until deleted by hand
    np.testing.assert_array_equal(cache.encode(enc, ["a pen", "an ink"]), want)
    (pool,) = tmp_path.glob("pools/*/pool.safetensors")
    pool.write_bytes(b"garbage")
    calls = len(enc.calls)
    np.testing.assert_array_equal(cache.encode(enc, ["a pen", "a pad"], template="other"),
                                  HashingEncoder(32).encode(["a pen", "a pad"]))
    assert sorted(enc.calls[calls]) == ["a pad", "a pen"]  # the unreadable pool was started again


WRITER = """
import sys
from lmrec.text import EmbeddingCache, HashingEncoder
root, who = sys.argv[1], sys.argv[2]
for round_ in range(12):
    texts = [f"{who} text {round_} {i}" for i in range(40)] + [f"shared text {i}" for i in range(5)]
    EmbeddingCache(root).encode(HashingEncoder(32), texts, template=f"{who}-{round_}")
"""


def test_two_processes_writing_one_pool_keep_every_text_with_its_own_vector(tmp_path):
    import subprocess
    import sys

    from lmrec.text.cache import _read_pool

    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who]) for who in ("alpha", "beta")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    (pool,) = tmp_path.glob("pools/*")
    hashes, vectors = _read_pool(pool, 32)
    texts = [f"{who} text {r} {i}" for who in ("alpha", "beta") for r in range(12) for i in range(40)]
    texts += [f"shared text {i}" for i in range(5)]
    from lmrec.text.cache import text_hashes

    expected = dict(zip(text_hashes(texts).tolist(), HashingEncoder(32).encode(texts)))
    assert len(hashes) == len(expected) == len(set(hashes.tolist()))  # nothing lost, nothing twice
    for h, v in zip(hashes.tolist(), vectors):
        np.testing.assert_array_equal(v, expected[h])
