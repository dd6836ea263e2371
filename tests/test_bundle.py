"""Bundles: `lmrec train` keeps a model; `lmrec evaluate` reproduces its test metrics from the folder alone;
`lmrec recommend --model` answers by user and by session with raw ids and titles; damage is one line."""

import json

import pytest

from lmrec import pipeline
from lmrec.bundle import BUNDLE_JSON, Bundle
from lmrec.cli import main
from lmrec.data import PrepareConfig
from lmrec.errors import ArtifactError, DataError
from tests.data import fixtures


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bundle(tmp_path, capsys):
    fixtures.write_ml100k(tmp_path / "data" / "movielens-100k")
    code, out, err = run(capsys, "train", "--dataset", "movielens-100k", "--model", "pop", "--out",
                         tmp_path / "b", "--ks", "1,2", "--data-dir", tmp_path / "data")
    assert code == 0, err
    assert "bundle:" in out
    return tmp_path / "b"


def test_a_bundle_holds_everything_it_needs(bundle):
    assert {p.name for p in bundle.iterdir()} == {BUNDLE_JSON, "model", "data", "metrics.json", "config.yaml",
                                                  "per_user.parquet"}
    meta = json.loads((bundle / BUNDLE_JSON).read_text())
    assert meta["model"] == "pop" and meta["dataset"]["dataset"] == "movielens-100k"
    loaded = Bundle.load(bundle)
    assert loaded.prepared.items.titles().tolist() == ["Toy Story (1995)", "Café au lait (1993)", "Heat (1995)"]
    assert loaded.metrics["ks"] == [1, 2] and "ndcg@2" in loaded.metrics["test"]


def test_evaluate_reproduces_the_recorded_metrics(bundle, capsys):
    result, recorded = pipeline.evaluate_bundle(bundle)
    assert result.means() == pytest.approx(recorded, abs=0, nan_ok=True)  # exactly
    code, out, err = run(capsys, "evaluate", bundle)
    assert code == 0, err
    assert "ndcg@2" in out and "recorded at training" in out


def test_recommend_by_user_and_by_session(bundle, capsys):
    # user 3 has seen only item 2 in the whole bundle; popularity recommends the others, most popular first
    code, out, err = run(capsys, "recommend", "--model", bundle, "--user", "3", "-k", "5")
    assert code == 0, err
    assert "Toy Story (1995)" in out and "Heat (1995)" in out and "Café au lait" not in out
    recs = pipeline.recommend_from_bundle(bundle, history=["1", "3"], k=5)
    assert [r.item for r in recs] == ["2"] and recs[0].title == "Café au lait (1993)"
    everything = pipeline.recommend_from_bundle(bundle, history=["1"], k=5, exclude_seen=False)
    assert {r.item for r in everything} == {"1", "2", "3"}


def test_recommend_errors_are_one_line(bundle, capsys):
    for args, message in [
        (["--user", "nobody"], "user 'nobody' is not in the bundle"),
        (["--history", "1,999"], "item id(s) not in the bundle"),
        (["--user", "1", "--history", "1"], "either a user"),
        (["--user", "1", "-k", "0"], "Invalid value"),
        (["--user", "1", "-k", "-3"], "Invalid value"),
    ]:
        code, _, err = run(capsys, "recommend", "--model", bundle, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    with pytest.raises(DataError):
        pipeline.recommend_from_bundle(bundle, user="nobody")


def test_a_tampered_or_truncated_bundle_fails_with_one_line(bundle, capsys):
    events = bundle / "data" / "interactions.parquet"
    events.write_bytes(events.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="interactions.parquet: checksum differs"):
        Bundle.load(bundle)
    code, _, err = run(capsys, "evaluate", bundle)
    assert code == 2 and "checksum differs" in err and len(err.strip().splitlines()) == 1
    (bundle / BUNDLE_JSON).write_text(json.dumps({**json.loads((bundle / BUNDLE_JSON).read_text()), "format": 99}))
    with pytest.raises(ArtifactError, match="bundle format 99"):
        Bundle.load(bundle)
    code, _, err = run(capsys, "evaluate", bundle.parent / "nothing")
    assert code == 2 and "is not a bundle" in err


def test_bench_save_keeps_every_model_as_a_bundle(tmp_path, capsys):
    fixtures.write_ml100k(tmp_path / "data" / "movielens-100k")
    code, out, err = run(capsys, "bench", "--dataset", "movielens-100k", "--models", "pop,ease", "--save",
                         "--data-dir", tmp_path / "data", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    board = json.loads((run_dir / "metrics.json").read_text())["models"]
    for name in ("pop", "ease"):
        result, recorded = pipeline.evaluate_bundle(run_dir / "models" / name)
        assert result.means() == pytest.approx(board[name]["means"], abs=0, nan_ok=True)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("model,params", [
    ("pop", {}), ("ease", {}), ("sasrec", {"epochs": 3}), ("textseq", {"epochs": 2}),
])
def test_train_then_evaluate_reproduces_the_test_metrics_on_movielens_100k(staged_home, tmp_path, model, params):
    run_ = pipeline.train(PrepareConfig(dataset="movielens-100k", split="loo"), model, params, tmp_path / model)
    result, recorded = pipeline.evaluate_bundle(tmp_path / model)
    assert recorded == run_.result.means()
    assert result.means() == recorded  # exactly: same scores, same ties, same users
    recs = pipeline.recommend_from_bundle(tmp_path / model, user="1", k=3)
    assert len(recs) == 3 and all(r.title for r in recs)


def test_a_model_from_another_dataset_is_refused(bundle, tmp_path, capsys):
    import shutil

    fixtures.write_ml1m(tmp_path / "data" / "movielens-1m")
    code, _, err = run(capsys, "train", "--dataset", "movielens-1m", "--split", "random", "--model", "pop", "--out",
                       tmp_path / "other", "--data-dir", tmp_path / "data")
    assert code == 0, err
    shutil.rmtree(bundle / "model")
    shutil.copytree(tmp_path / "other" / "model", bundle / "model")
    with pytest.raises(ArtifactError, match="model: the model was not fitted on this bundle's training events"):
        Bundle.load(bundle)
