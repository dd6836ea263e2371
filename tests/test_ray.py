"""The Ray engine (``pip install 'lmrec[ray]'``) gives the local engine's results: encoding writes the same
cache with the same vectors, recommending for every user writes the same top k. A local Ray with 2 CPUs on
127.0.0.1; skipped where Ray is not installed, failed instead under ``LMREC_REQUIRE_EXTRAS=1`` (CI)."""

import numpy as np
import pandas as pd
import pytest

from lmrec import pipeline
from lmrec.batch import recommend_all
from lmrec.raydata import RayEncoder
from lmrec.text.cache import EmbeddingCache
from lmrec.text.encoder import load_encoder
from tests.conftest import optional_extra
from tests.serve.conftest import write_parity_dataset
from tests.text.tiny_models import tiny_bert

WORDS = "gadget even odd model a b c d e f g h i j k l m n o p".split() + [str(i) for i in range(16)]


@pytest.fixture(scope="module")
def local_ray():
    ray = optional_extra("ray", "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS))


def test_ray_encoding_gives_the_local_vectors_and_cache(local_ray, tiny_encoder, tmp_path, monkeypatch):
    texts = [" ".join(WORDS[i % 29:i % 29 + 1 + i % 7]) for i in range(40)]  # lengths vary: batches pad differently
    options = {"batch_size": 4, "max_length": 16, "device": "cpu"}
    local = load_encoder(tiny_encoder, **options)
    remote = RayEncoder(tiny_encoder, options, workers=2, rows_per_batch=8)
    assert remote.fingerprint == local.fingerprint and remote.dim == local.dim
    np.testing.assert_allclose(remote.encode(texts), local.encode(texts), atol=1e-6, rtol=0)

    home = write_parity_dataset(tmp_path / "home")
    entries = {}
    for engine in ("local", "ray"):
        monkeypatch.setenv("LMREC_CACHE", str(tmp_path / f"cache-{engine}"))
        info = pipeline.encode_items("parity", tiny_encoder, batch_size=4, max_length=16, data_dir=home,
                                     engine=engine, workers=2)
        assert info["items_with_text"] == 16 and info["fingerprint"] == local.fingerprint
        entries[engine] = sorted((tmp_path / f"cache-{engine}" / "embeddings" / "entries").rglob("emb.npy"))
    assert [p.parent.name for p in entries["local"]] == [p.parent.name for p in entries["ray"]]  # the same key
    for a, b in zip(entries["local"], entries["ray"]):
        np.testing.assert_allclose(np.load(a), np.load(b), atol=1e-6, rtol=0)
    cache = EmbeddingCache(tmp_path / "cache-ray" / "embeddings")  # and the local engine reads Ray's entry
    assert len(list(cache.root.rglob("meta.json"))) == 1


def test_ray_recommends_every_user_as_the_local_engine_does(local_ray, tmp_path, capsys):
    from lmrec.cli import main
    from lmrec.data import PrepareConfig

    home = write_parity_dataset(tmp_path / "home")
    config = PrepareConfig(dataset="parity", split="loo")
    for name, params in (("ease", {}), ("sasrec", {"epochs": 2, "dim": 16, "layers": 1, "max_len": 8})):
        bundle = pipeline.train(config, name, params, tmp_path / name, data_dir=home).path
        recommend_all(bundle, tmp_path / f"{name}-local.parquet", k=5, chunk=7)
        info = recommend_all(bundle, tmp_path / f"{name}-ray.parquet", k=5, chunk=7, engine="ray", workers=2)
        assert info["users"] == 24 and info["rows"] == 120
        local, ray = (pd.read_parquet(tmp_path / f"{name}-{e}.parquet") for e in ("local", "ray"))
        pd.testing.assert_frame_equal(local.drop(columns="score"), ray.drop(columns="score"))  # identical top k
        np.testing.assert_allclose(local["score"], ray["score"], rtol=1e-5, atol=1e-6)
    assert main(["recommend", "--model", str(tmp_path / "ease"), "--all-users", "--out", str(tmp_path / "cli.parquet"),
                 "--engine", "ray", "--workers", "1"]) == 0
    assert "(ray," in capsys.readouterr().out
    recommend_all(tmp_path / "ease", tmp_path / "local10.parquet", k=10)
    cli, local10 = pd.read_parquet(tmp_path / "cli.parquet"), pd.read_parquet(tmp_path / "local10.parquet")
    pd.testing.assert_frame_equal(cli.drop(columns="score"), local10.drop(columns="score"))
