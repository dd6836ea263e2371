"""The main job on real MovieLens-100K (needs LMREC_DATA): the leaderboard must rank sensibly."""

import pytest

from lmrec import pipeline
from tests.conftest import staged_folder

pytestmark = pytest.mark.data


@pytest.mark.slow
def test_demo_leaderboard_on_movielens_100k(monkeypatch, tmp_path):
    folder = staged_folder("movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(folder.parent))
    models = (*pipeline.DEFAULT_MODELS, "lmcontent")  # hybridncf's 30 s fit is left to `make demo`
    prepared, run, answers = pipeline.demo(runs_dir=tmp_path, models=models)
    assert prepared.stats["split"]["test"]["users"] == 943
    ndcg = {r.model: r.means()["ndcg@10"] for r in run.results}
    assert set(ndcg) == set(models)
    assert len(answers) == 5 and any("Time" in a.title or "Back to the Future" in a.title for a in answers)
    # collaborative models clearly beat popularity on this data; EASE is among the best
    for name in ("itemknn", "userknn", "ease", "als"):
        assert ndcg[name] > 1.3 * ndcg["pop"], (name, ndcg)
    assert ndcg["ease"] >= max(ndcg.values()) - 0.01
    assert run.report is not None and run.report.stat().st_size > 10_000


def test_demo_bundle_for_the_page_is_trained_once_and_reused(monkeypatch, tmp_path):
    folder = staged_folder("movielens-100k")
    monkeypatch.setenv("LMREC_DATA", str(folder.parent))
    params = {"encoder": "hash:512"}  # the demo uses MiniLM; the hashing encoder keeps this test quick
    path = pipeline.demo_bundle(runs_dir=tmp_path, params=params)
    written = (path / "bundle.json").stat().st_mtime_ns
    assert pipeline.demo_bundle(runs_dir=tmp_path, params=params) == path
    assert (path / "bundle.json").stat().st_mtime_ns == written  # reused, not trained again
    bundle = pipeline.Bundle.load(path)
    assert bundle.model.name == "lmcontent" and len(bundle.items) == 1682
    # other model options: trained again
    pipeline.demo_bundle(runs_dir=tmp_path, params={"encoder": "hash:256"})
    assert (path / "bundle.json").stat().st_mtime_ns != written
