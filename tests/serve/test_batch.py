"""`lmrec recommend --all-users`: every user's top k into Parquet, chunk by chunk, equal to asking one user at a
time (on the service's bundles: the planted parity pattern, ID and text models)."""

import numpy as np
import pandas as pd
import pytest

from lmrec import pipeline
from lmrec.batch import recommend_all
from lmrec.bundle import Bundle
from lmrec.cli import main
from lmrec.errors import ConfigError


@pytest.mark.parametrize("name", ["itemknn", "sasrec", "textseq"])
def test_every_user_gets_what_recommend_gives_them_one_by_one(bundles, name, tmp_path):
    info = recommend_all(bundles[name], tmp_path / "recs.parquet", k=4, chunk=5)
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    bundle = Bundle.load(bundles[name])
    assert info["users"] == len(bundle.users) and info["rows"] == len(recs) == 4 * len(bundle.users)
    assert recs.columns.tolist() == ["user", "rank", "item", "score"]
    assert (recs["rank"].dtype, recs["score"].dtype) == (np.int16, np.float32)
    for user, rows in recs.groupby("user", sort=False):
        one = pipeline.recommend_from_bundle(bundles[name], user=user, k=4)
        assert rows["rank"].tolist() == [1, 2, 3, 4]
        assert rows["item"].tolist() == [r.item for r in one], user
        np.testing.assert_allclose(rows["score"], [r.score for r in one], rtol=1e-5, atol=1e-6)
        seen = set(bundle.items.raws(bundle.histories[bundle.users.index(user)]))
        assert not seen & set(rows["item"]), "a user's own history is never recommended back"
    assert recs["user"].tolist()[::4] == bundle.users.to_list()  # users in id-map order
    if name == "itemknn":  # it learns the planted pattern: the best item left has the user's parity
        parity = recs[recs["rank"] == 1].apply(lambda r: int(r["user"][1:]) % 2 == int(r["item"][1:]) % 2, axis=1)
        assert parity.mean() > 0.9


def test_chunks_change_nothing_and_bad_requests_are_refused(bundles, tmp_path):
    recommend_all(bundles["itemknn"], tmp_path / "one.parquet", k=3, chunk=1)
    recommend_all(bundles["itemknn"], tmp_path / "all.parquet", k=3, chunk=10_000)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "all.parquet"))
    for kwargs, message in (({"k": 0}, "k: the number of items must be in 1..10000"),
                            ({"chunk": 0}, "chunk: users per chunk must be at least 1"),
                            ({"engine": "spark"}, "engine: 'spark' is not one of local, ray")):
        with pytest.raises(ConfigError, match=message):
            recommend_all(bundles["itemknn"], tmp_path / "x.parquet", **kwargs)
    with pytest.raises(ConfigError, match="should be a .parquet file"):
        recommend_all(bundles["itemknn"], tmp_path / "x.csv")
    assert not (tmp_path / "x.parquet").exists() and not list(tmp_path.glob(".*tmp"))


def test_cli_all_users(bundles, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--model", str(bundles["ease"]), "--all-users", "--out", str(out), "-k", "2"]) == 0
    assert "recommendations for 24 users written to" in capsys.readouterr().out
    assert len(pd.read_parquet(out)) == 48
    assert main(["recommend", "--model", str(bundles["ease"]), "--all-users"]) == 2
    assert "--all-users needs --model BUNDLE and --out FILE.parquet" in capsys.readouterr().err
