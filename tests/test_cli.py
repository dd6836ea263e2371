"""The CLI: commands work, and user errors print one line without a traceback and exit non-zero."""

import subprocess
import sys

from lmrec.cli import main
from tests.data import fixtures


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_everywhere(capsys):
    for args in ([], ["datasets"], ["datasets", "prepare"], ["demo"]):
        code, out, _ = run(capsys, *args, "--help")
        assert code == 0 and "Usage: lmrec" in out


def test_list_info_prepare_on_a_small_data_home(capsys, tmp_path):
    fixtures.write_ml100k(tmp_path / "movielens-100k")
    code, out, _ = run(capsys, "datasets", "list", "--data-dir", str(tmp_path))
    assert code == 0 and "movielens-100k" in out and "found" in out
    assert "amazon-beauty: missing Beauty.txt, items.csv; to get it:" in out.replace("\n", " ")
    code, out, _ = run(capsys, "datasets", "info", "movielens-100k", "--data-dir", str(tmp_path))
    assert code == 0
    assert "users 3  items 3 (catalogue 3)  interactions 6" in out
    assert "predefined splits: u1" in out
    code, out, _ = run(capsys, "datasets", "prepare", "movielens-100k", "--split", "random", "--data-dir", str(tmp_path))
    assert code == 0 and "split 'random'" in out and "stored at" in out


def test_errors_are_one_line_without_traceback(capsys, tmp_path):
    code, out, err = run(capsys, "datasets", "info", "movielens-10k", "--data-dir", str(tmp_path))
    assert code == 2
    assert err.strip().startswith("error: unknown dataset 'movielens-10k'; did you mean movielens-100k")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run(capsys, "datasets", "prepare", "movielens-100k", "--split", "bogus", "--data-dir", str(tmp_path))
    assert code == 2 and "split: Input should be" in err


def test_console_script_exit_code_and_stderr(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lmrec.cli", "datasets", "info", "movielens-100k", "--data-dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "dataset 'movielens-100k' not found: folder is missing" in proc.stderr


def test_bench_writes_a_complete_run_folder(capsys, tmp_path):
    import json

    fixtures.write_ml100k(tmp_path / "data" / "movielens-100k")
    code, out, err = run(capsys, "bench", "--dataset", "movielens-100k", "--split", "loo", "--models", "pop,ease",
                         "--set", "ease.l2=1.0", "--ks", "1,2", "--html", "--data-dir", str(tmp_path / "data"),
                         "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "metrics.json", "per_user.parquet", "leaderboard.md", "report.html",
            "metrics_with_ci.png", "ndcg@1_by_history_length.png"} <= names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"pop", "ease"}
    board = (run_dir / "leaderboard.md").read_text()
    assert "| ease |" in board
    # the accuracy columns follow --ks (they were hard-coded to 10 / 20 and vanished for other cut-offs)
    assert all(f"{m}@{k}" in board for m in ("recall", "ndcg", "mrr") for k in (1, 2))
    assert "l2: 1.0" in (run_dir / "config.yaml").read_text()
    code, _, err = run(capsys, "bench", "--dataset", "movielens-100k", "--models", "pop", "--set", "ease.l2=1",
                       "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    # the library names the settings; the command line adds the flags that set them
    assert code == 2 and "options are set for model(s) not in models: ease" in err
    assert "(set with --set / --models)" in err


def test_recommend_from_text_and_encode(capsys, tmp_path):
    fixtures.write_ml100k(tmp_path / "movielens-100k")
    code, out, err = run(capsys, "recommend", "--dataset", "movielens-100k", "--query", "comedy heat, not action",
                         "-k", "2", "--encoder", "hash:512", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert "Café au lait (1993)" in out or "Toy Story (1995)" in out
    code, out, err = run(capsys, "encode", "--dataset", "movielens-100k", "--encoder", "hash",
                         "--data-dir", str(tmp_path))
    assert code == 0, err
    assert "3 of 3 items encoded with hash (dim 256)" in out
    code, _, err = run(capsys, "recommend", "--dataset", "movielens-100k", "--query", "x", "--encoder",
                       str(tmp_path / "missing-model"), "--data-dir", str(tmp_path))
    assert code == 2 and "cannot load encoder" in err


def test_dataset_names_cannot_reach_outside_the_data_home_or_cache(capsys, tmp_path, monkeypatch):
    # a real dataset one level above the data home: before names were checked, `prepare ../outside` read it
    # and wrote its preparation outside the cache's prepared/ folder
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "logs.csv").write_text("u,i\n1,a\n1,b\n2,a\n2,b\n3,a\n3,b\n")
    (outside / "lmrec.yaml").write_text("interactions: logs.csv\ncolumns: {user: u, item: i}\n")
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("LMREC_CACHE", str(cache))
    for name in ["../outside", str(outside), "a/b", "..", "x" * 200]:
        code, _, err = run(capsys, "datasets", "prepare", name, "--data-dir", str(home))
        assert code == 2 and "is not a folder name" in err and "Traceback" not in err, (name, err)
    assert not cache.exists() and sorted(p.name for p in outside.iterdir()) == ["lmrec.yaml", "logs.csv"]
