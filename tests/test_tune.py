"""`lmrec tune`: the search chooses on validation with test locked, resumes from its SQLite study, prunes
on the validation curve, and writes the best configuration as a bundle tested once."""

import json
import shutil

import pytest

from lmrec import pipeline
from lmrec.data import PrepareConfig, prepare
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator, lock_test_part
from lmrec.registry import model_class
from lmrec.tuning import load_space, search
from tests.serve.conftest import write_parity_dataset


@pytest.fixture
def home(tmp_path):
    return write_parity_dataset(tmp_path / "home")


@pytest.fixture
def config():
    return PrepareConfig(dataset="parity", split="loo")


def test_the_test_part_is_locked_during_a_search(home, config):
    split = prepare(config, data_dir=home).split
    with lock_test_part("a search runs"):
        with pytest.raises(ConfigError, match="test part is locked while a search runs"):
            Evaluator(split, "test")
        Evaluator(split, "valid")  # validation stays open
    Evaluator(split, "test")  # and test reopens afterwards


def test_tune_searches_resumes_and_tests_the_best_once(home, config, tmp_path, monkeypatch):
    tested = []
    original = Evaluator.__init__

    def counting(self, split, part="test", *args, **kwargs):
        tested.append(part)
        original(self, split, part, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "__init__", counting)
    run = pipeline.tune(config, "itemknn", trials=5, out=tmp_path / "best", sampler="random",
                        study_dir=tmp_path / "studies", data_dir=home)
    assert tested.count("test") == 1  # once, for the chosen configuration
    report = json.loads(run.report.read_text())
    assert report["trials"] == 5 and report["test"]["ndcg@10"] > 0
    assert report["trial_log"][0]["params"] == {"k": 100, "shrink": 10.0}  # the defaults come first
    space = load_space("itemknn")
    assert 5 <= report["best_params"]["k"] <= 1000 and space["shrink"]["low"] <= report["best_params"]["shrink"]
    assert report["best_valid"] == max(t["value"] for t in report["trial_log"])
    assert (run.study_dir / "study.db").is_file() and (run.study_dir / "history.png").stat().st_size > 5000
    assert pipeline.Bundle.load(run.run.path).model.config.k == report["best_params"]["k"]
    # a second call resumes the study: 3 more trials make 8
    again = pipeline.tune(config, "itemknn", trials=8, out=tmp_path / "best", sampler="random",
                          study_dir=tmp_path / "studies", data_dir=home)
    assert len(again.search.trials) == 8
    assert [t["params"] for t in again.search.trials[:5]] == [t["params"] for t in report["trial_log"]]


def test_the_bundle_holds_the_best_trials_own_model_without_training_it_again(home, config, tmp_path, monkeypatch):
    fits = []
    knn = model_class("itemknn")
    original = knn.fit
    monkeypatch.setattr(knn, "fit", lambda self, *a, **k: fits.append(self.config.k) or original(self, *a, **k))
    run = pipeline.tune(config, "itemknn", trials=4, out=tmp_path / "best", sampler="random",
                        study_dir=tmp_path / "studies", data_dir=home)
    assert len(fits) == 4  # the four trials; the bundle is the best one's model, not a fifth fit
    kept = json.loads((run.study_dir / "best-trial" / "kept.json").read_text())
    assert kept["trial"] == run.search.study.best_trial.number and kept["params"] == run.search.best_params
    first = json.loads(run.report.read_text())["test"]
    assert pipeline.Bundle.load(run.run.path).model.config.k == run.search.best_params["k"]
    # without the kept model (a study from a search that kept nothing) the configuration is trained again,
    # and for this deterministic model that gives the same test result
    shutil.rmtree(run.study_dir / "best-trial")
    again = pipeline.tune(config, "itemknn", trials=4, out=tmp_path / "again", sampler="random",
                          study_dir=tmp_path / "studies", data_dir=home)
    assert len(fits) == 5 and fits[-1] == run.search.best_params["k"]
    assert json.loads(again.report.read_text())["test"] == first


def test_poor_trials_are_pruned_on_their_validation_curve(home, config, tmp_path):
    import optuna

    prepared = prepare(config, data_dir=home)
    space = tmp_path / "space.yaml"
    space.write_text("sasrec:\n  lr: {type: float, low: 0.0005, high: 0.01, log: true}\n"
                     "  dropout: {type: float, low: 0.0, high: 0.5}\n")
    fixed = {"epochs": 3, "dim": 16, "layers": 1, "max_len": 8, "patience": 10}
    # a threshold no trial reaches: each is stopped at its first validation, so none completes
    with pytest.raises(ConfigError, match="no trial of sasrec completed"):
        search(prepared, "sasrec", 2, tmp_path / "a.db", fixed=fixed, space_file=space, sampler="random",
               pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    found = search(prepared, "sasrec", 2, tmp_path / "b.db", fixed=fixed, space_file=space, sampler="random",
                   pruner="none")
    assert [t["state"] for t in found.trials] == ["complete", "complete"]
    assert all(0.0005 <= t["params"]["lr"] <= 0.01 for t in found.trials)
    assert found.best_params["dim"] == 16  # the fixed options are part of the best configuration


def test_bad_searches_are_refused(home, config, tmp_path):
    prepared = prepare(config, data_dir=home)
    space = tmp_path / "space.yaml"
    space.write_text("ease:\n  lambda: {type: float, low: 1, high: 10}\n")
    with pytest.raises(ConfigError, match="'lambda' is not one of its options"):
        search(prepared, "ease", 1, tmp_path / "s.db", space_file=space)
    with pytest.raises(ConfigError, match="fixed with --set and also searched"):
        search(prepared, "ease", 1, tmp_path / "s.db", fixed={"l2": 5.0})
    with pytest.raises(ConfigError, match="no search space for 'pop'"):
        search(prepared, "pop", 1, tmp_path / "s.db")
    with pytest.raises(ConfigError, match="metric 'ndcg'"):
        search(prepared, "ease", 1, tmp_path / "s.db", metric="ndcg")
    with pytest.raises(ConfigError, match="grid search needs every parameter as categorical"):
        search(prepared, "ease", 1, tmp_path / "s.db", sampler="grid")


def test_trials_are_tracked_in_mlflow_and_tensorboard(home, config, tmp_path, monkeypatch):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = pipeline.tune(config, "itemknn", trials=3, out=tmp_path / "best", sampler="random",
                        study_dir=tmp_path / "studies", data_dir=home, track=["mlflow", "tensorboard"])
    trials = {t["number"]: t for t in json.loads(run.report.read_text())["trial_log"]}
    mlflow.set_tracking_uri(f"sqlite:///{run.study_dir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[run.search.study.study_name], output_format="list")
    assert len(runs) == 3
    for r in runs:
        t = trials[int(r.info.run_name.split()[-1])]
        assert r.data.metrics["ndcg_at_10"] == pytest.approx(t["value"])
        assert int(r.data.params["k"]) == t["params"]["k"] and r.data.tags["state"] == "complete"
    events = EventAccumulator(str(run.study_dir / "tensorboard"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("ndcg@10")} == pytest.approx({n: t["value"] for n, t in trials.items()})
    with pytest.raises(ConfigError, match="unknown tracker\\(s\\) wandb"):
        pipeline.tune(config, "itemknn", trials=4, out=tmp_path / "best", study_dir=tmp_path / "studies",
                      data_dir=home, track=["wandb"])
