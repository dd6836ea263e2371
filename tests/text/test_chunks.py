"""A catalogue's item texts read and encoded a chunk at a time (``lmrec encode --prepared DIR --chunk N``) give
the cache entry the in-memory path gives: the same key, the same vectors, the same items without text."""

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data import PrepareConfig, prepare
from lmrec.data.prepared import Prepared
from lmrec.errors import ConfigError, DataError
from lmrec.text import CacheError, EmbeddingCache, HashingEncoder
from lmrec.text import texts as texts_module
from lmrec.text.texts import ItemTextChunks, encode_item_chunks, item_vectors

N_ITEMS = 23


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A user's log over 23 items; items 4, 11 and 18 have neither name nor brand, some have no brand."""
    root = tmp_path_factory.mktemp("chunks")
    folder = root / "shop"
    folder.mkdir()
    rows = ["user,item,t"] + [f"u{u},i{(u * 3 + n) % N_ITEMS},{n}" for u in range(30) for n in range(6)]
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    names = {i: ("", "") if i in (4, 11, 18) else (f"thing {i}", "" if i % 3 else f"brand {i % 5}")
             for i in range(N_ITEMS)}
    (folder / "items.csv").write_text("item,name,brand\n" + "".join(f"i{i},{n},{b}\n" for i, (n, b) in names.items()))
    (folder / "lmrec.yaml").write_text("interactions: log.csv\nitems: items.csv\ncolumns: {user: user, item: item, "
                                       "time: t}\nitem_columns: {id: item}\n")
    return prepare(PrepareConfig(dataset="shop", split="loo"), data_dir=root, cache_dir=root / "cache")


@pytest.mark.parametrize("rows", [1, 4, 1000])
def test_chunked_entry_equals_the_in_memory_one(prepared, tmp_path, rows):
    enc = HashingEncoder(64)
    whole, has_whole = item_vectors(prepared.items, enc, None, EmbeddingCache(tmp_path / "a"))
    chunks = ItemTextChunks(prepared.path, rows=rows)
    assert chunks.columns == ["name", "brand"] and len(chunks) == -(-N_ITEMS // rows)
    entry, has = encode_item_chunks(chunks, enc, EmbeddingCache(tmp_path / "b"))
    assert has.tolist() == has_whole.tolist() and has.sum() == N_ITEMS - 3
    assert isinstance(entry, np.memmap) and entry.shape == (N_ITEMS - 3, 64)
    np.testing.assert_allclose(entry, whole[has_whole], atol=1e-6)
    keys = [sorted(p.name for p in (tmp_path / s / "entries").glob("*/*")) for s in ("a", "b")]
    assert keys[0] == keys[1] and len(keys[0]) == 1  # the same content key: either path reuses the other's entry
    again, _ = encode_item_chunks(chunks, enc, EmbeddingCache(tmp_path / "a"))  # served from the first's entry
    np.testing.assert_array_equal(again, entry)


def test_a_large_prepared_catalogue_gives_a_model_its_vectors_without_reading_all_text(prepared, tmp_path, monkeypatch):
    enc = HashingEncoder(64)
    whole, has_whole = item_vectors(prepared.items, enc, None, EmbeddingCache(tmp_path / "a"))
    monkeypatch.setattr(texts_module, "CHUNKED_FROM", 5)  # this 23-item catalogue counts as large
    loaded = Prepared.load(prepared.path)
    assert loaded.items.source == prepared.path
    vectors, has = item_vectors(loaded.items, enc, None, EmbeddingCache(tmp_path / "b"))
    np.testing.assert_allclose(vectors, whole, atol=1e-6)
    assert has.tolist() == has_whole.tolist()
    assert all(callable(v) for v in loaded.items._fields.values())  # no field was read whole
    # a table changed or derived in memory is no longer what the file holds: it takes the in-memory path
    assert loaded.items.subset(np.arange(5)).source is None
    loaded.items["name"] = ["x"] * N_ITEMS
    assert loaded.items.source is None


def test_a_template_reads_only_its_fields_and_bad_input_is_refused(prepared, tmp_path):
    chunks = ItemTextChunks(prepared.path, template="{brand}", rows=5)
    texts = [t for _, part in chunks for t in part]
    assert chunks.columns == ["brand"] and texts == [t for t in prepared.items.render("{brand}") if t]
    with pytest.raises(ConfigError, match="names field 'price'"):
        ItemTextChunks(prepared.path, template="{price}")
    with pytest.raises(ConfigError, match="at least 1"):
        ItemTextChunks(prepared.path, rows=0)
    cache, calls = EmbeddingCache(tmp_path), []

    def changing():  # a source that gives other texts the second time
        calls.append(1)
        return [["a pen", "an ink"]] if len(calls) == 1 else [["a pen"]]

    with pytest.raises(CacheError, match="changed between the two passes"):
        cache.encode_chunks(HashingEncoder(8), changing)
    assert not list(tmp_path.glob("entries/*/*"))  # nothing half-written is left to load
    with pytest.raises(DataError, match="no texts"):
        cache.encode_chunks(HashingEncoder(8), lambda: [[]])


def test_cli_encodes_a_prepared_folder_in_chunks(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path))
    r = CliRunner().invoke(app, ["encode", "--prepared", str(prepared.path), "--chunk", "5", "--encoder", "hash"])
    assert r.exit_code == 0, r.output
    assert f"{N_ITEMS - 3:,} of {N_ITEMS:,} items encoded" in r.output
    r = CliRunner().invoke(app, ["encode", "--prepared", str(tmp_path), "--encoder", "hash"])
    assert isinstance(r.exception, ConfigError) and "not a prepared dataset folder" in str(r.exception)
    r = CliRunner().invoke(app, ["encode", "--encoder", "hash"])
    assert isinstance(r.exception, ConfigError) and "one of them" in str(r.exception)
