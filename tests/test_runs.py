"""`lmrec runs list | show | compare`: every kind of run is found and read back, and a comparison pairs the
same users' test metrics (checked against scipy on the recorded per-user values)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmrec import pipeline
from lmrec.cli import main
from lmrec.data import PrepareConfig
from lmrec.errors import ConfigError
from lmrec.runs import compare_runs, find_runs, read_run
from tests.serve.conftest import write_parity_dataset


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A leaderboard run of two models, a trained bundle, and a search, all on one split."""
    root = tmp_path_factory.mktemp("runs")
    home = write_parity_dataset(root / "home")
    config = PrepareConfig(dataset="parity", split="loo")
    runs_dir = root / "runs"
    bench = pipeline.leaderboard(config, ["pop", "itemknn"], (10,), runs_dir=runs_dir, data_dir=home)
    trained = pipeline.train(config, "ease", {"l2": 5.0}, out=runs_dir / "ease", ks=(10,), data_dir=home)
    tuned = pipeline.tune(config, "itemknn", trials=2, out=runs_dir / "knn-tuned", sampler="random",
                          study_dir=runs_dir / "tune", ks=(10,), data_dir=home)
    return {"home": home, "runs": runs_dir, "bench": bench, "trained": trained, "tuned": tuned}


def test_every_kind_of_run_is_listed_and_read(made):
    found = {r.path: r for r in find_runs(made["runs"])}
    bench, bundle, search = (found[made["bench"].run_dir], found[made["trained"].path], found[made["tuned"].study_dir])
    assert (bench.kind, bundle.kind, search.kind) == ("bench", "bundle", "tune")
    assert found[made["tuned"].run.path].kind == "bundle"  # the search's best trial, trained
    assert len(found) == 4
    assert bench.models == ["pop", "itemknn"] and bundle.models == ["ease"] and search.models == ["itemknn"]
    assert bundle.test["ease"]["ndcg@10"] == pytest.approx(made["trained"].result.means()["ndcg@10"])
    assert search.extra["trials"] == 2 and search.dataset == bundle.dataset == bench.dataset
    with pytest.raises(ConfigError, match="is not a run"):
        read_run(made["home"])


def test_compare_pairs_the_same_users(made):
    bench_dir, ease = made["bench"].run_dir, made["trained"]
    c = compare_runs(f"{bench_dir}:itemknn", str(ease.path))
    knn = next(r for r in made["bench"].results if r.model == "itemknn")
    x, y = knn.per_user["ndcg@10"], ease.result.per_user["ndcg@10"]
    assert np.array_equal(knn.users, ease.result.users) and c["users"] == len(x)
    assert c["mean_a"] == pytest.approx(x.mean()) and c["mean_b"] == pytest.approx(y.mean())
    assert c["t_p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    # a search compares through the bundle its best trial was trained into
    assert compare_runs(str(made["tuned"].study_dir), str(ease.path))["mean_a"] == pytest.approx(
        made["tuned"].run.result.means()["ndcg@10"])


def test_a_bundle_without_per_user_metrics_is_evaluated_again(made, tmp_path):
    import shutil

    copy = tmp_path / "old-bundle"
    shutil.copytree(made["trained"].path, copy)
    (copy / "per_user.parquet").unlink()
    c = compare_runs(str(copy), str(made["trained"].path))
    assert c["diff"] == 0 and c["mean_a"] == pytest.approx(made["trained"].result.means()["ndcg@10"])


def test_bad_comparisons_are_refused(made, tmp_path):
    bench_dir = made["bench"].run_dir
    with pytest.raises(ConfigError, match="holds 2 models \\(pop, itemknn\\): name one"):
        compare_runs(str(bench_dir), str(made["trained"].path))
    with pytest.raises(ConfigError, match="no model 'ease'"):
        compare_runs(f"{bench_dir}:ease", str(made["trained"].path))
    with pytest.raises(ConfigError, match="no per-user 'ndcg@50'"):
        compare_runs(f"{bench_dir}:pop", f"{bench_dir}:itemknn", metric="ndcg@50")
    other = pipeline.train(PrepareConfig(dataset="parity", split="random"), "pop", out=tmp_path / "pop-random",
                           ks=(10,), data_dir=made["home"])
    with pytest.raises(ConfigError, match="needs the same prepared split"):
        compare_runs(str(other.path), str(made["trained"].path))


def test_cli(made, capsys):
    runs_dir, bench_dir = made["runs"], made["bench"].run_dir
    assert main(["runs", "list", "--runs-dir", str(runs_dir)]) == 0
    listed = capsys.readouterr().out
    assert "bench" in listed and "tune" in listed and "ease" in listed
    assert main(["runs", "show", str(bench_dir)]) == 0
    assert "itemknn" in capsys.readouterr().out
    assert main(["runs", "compare", f"{bench_dir}:itemknn", f"{bench_dir}:pop"]) == 0
    shown = capsys.readouterr().out
    knn, pop = (pd.read_parquet(bench_dir / "per_user.parquet").groupby("model")["ndcg@10"].mean()[m]
                for m in ("itemknn", "pop"))
    assert f"A - B = {knn - pop:+.4f}" in shown and "Wilcoxon signed-rank p" in shown
    assert main(["runs", "compare", str(bench_dir), str(made["trained"].path)]) == 2
