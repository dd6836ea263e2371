"""Property-based tests (Hypothesis): the generic reader and the command line on generated bad input.

The reader either loads a generated file correctly (checked against what was written) or raises the
project's one error type with a message naming the file; the command line answers bad arguments for every
command with exit code 2 and one line, never a traceback.
"""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrec.cli import main
from lmrec.data.readers import ColumnMap, read_generic
from lmrec.data.readers.generic import ItemColumns
from lmrec.errors import LmrecError

# derandomize: the same examples on every run, so CI is repeatable (a new seed is a code change)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

ID = st.text(alphabet="abcxyz0123_-é ", min_size=0, max_size=5)
SECONDS = st.integers(min_value=0, max_value=4_000_000_000)
TIME = st.one_of(
    SECONDS.map(lambda s: ("s", s)),
    SECONDS.map(lambda s: ("ms", s * 1000)),
    st.datetimes(min_value=pd.Timestamp("1971-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2100-01-01").to_pydatetime()).map(lambda d: ("date", d.isoformat())),
    st.sampled_from([("bad", "yesterday"), ("bad", ""), ("bad", "1e40"), ("bad", "-")]),
)
ROWS = st.lists(st.tuples(ID, ID, TIME), min_size=0, max_size=8)
CORRUPTION = st.sampled_from(["none", "truncate", "bad-byte", "bom", "drop-column", "empty"])


def write(path, frame, fmt, corruption):
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    data = path.read_bytes()
    if corruption == "truncate":
        data = data[: max(1, len(data) * 2 // 3)]
    elif corruption == "bad-byte":
        data = data[: len(data) // 2] + b"\xff\xfe" + data[len(data) // 2:]
    elif corruption == "bom":
        data = "\ufeff".encode() + data
    elif corruption == "empty":
        data = b""
    path.write_bytes(data)


def expected_seconds(times):
    """The unix seconds the reader must return, or None when the column is not one valid unit."""
    kinds = {k for k, _ in times}
    if not times or "bad" in kinds or len(kinds) > 1:
        return None
    if kinds == {"date"}:
        return [int(pd.Timestamp(v, tz="UTC").timestamp()) for _, v in times]
    if "date" in kinds:
        return None
    # numbers: all below 1e10 are seconds, all above are milliseconds, a mix is refused
    small = [v < 10_000_000_000 for _, v in times]
    if any(small) and not all(small):
        return None
    return [v if all(small) else v // 1000 for _, v in times]


@FUZZ
@given(rows=ROWS, fmt=st.sampled_from(["csv", "tsv", "jsonl", "parquet"]), corruption=CORRUPTION,
       user_col=st.sampled_from(["user_id", "who", "User ID"]), with_items=st.booleans())
def test_generic_reader_loads_correctly_or_names_the_file(tmp_path_factory, rows, fmt, corruption, user_col,
                                                         with_items):
    folder = tmp_path_factory.mktemp("fuzz")
    frame = pd.DataFrame({user_col: [u for u, _, _ in rows], "item_id": [i for _, i, _ in rows],
                          "t": [str(t) for _, _, (_, t) in rows]})
    if corruption == "drop-column":
        frame = frame.drop(columns=["item_id"])
    path = folder / f"logs.{fmt}"
    write(path, frame, fmt, corruption if fmt != "parquet" or corruption in ("none", "truncate", "empty") else "none")
    items_path = None
    if with_items:
        items_path = folder / "items.csv"
        pd.DataFrame({"item_id": sorted({i.strip() for _, i, _ in rows if i.strip()}) or ["z"],
                      "title": "a title"}).to_csv(items_path, index=False)
    try:
        ds = read_generic(path, ColumnMap(user=user_col, time="t"), items_path, ItemColumns(), name="fuzz")
    except LmrecError as exc:
        assert str(path) in str(exc) or (items_path is not None and str(items_path) in str(exc)), str(exc)
        assert "\n" not in str(exc)
        return
    # it loaded: when the file was intact, every row must be there, exactly
    if corruption in ("none", "bom") and fmt != "parquet" or (fmt == "parquet" and corruption == "none"):
        want = expected_seconds([t for _, _, t in rows])
        assert want is not None, "a file with a bad or mixed time column loaded"
        assert all(u.strip() and i.strip() for u, i, _ in rows), "an empty id loaded"
        inter = ds.interactions
        got = sorted(zip(inter.users.raws(inter.user), inter.items.raws(inter.item), inter.time.tolist()))
        assert got == sorted((u.strip(), i.strip(), s) for (u, i, _), s in zip(rows, want))


COMMANDS = [
    ["datasets", "list"], ["datasets", "info"], ["datasets", "prepare"], ["bench"], ["train"], ["evaluate"],
    ["recommend"], ["encode"], ["export-encoder"], ["pretrain"], ["transfer"], ["transfer-grid"],
]
BAD_TOKENS = st.sampled_from([
    "--bogus", "-k", "0", "-3", "abc", "", "--set", "x", "a.b=[", "--ks", "0,1", "x,,y", "--models", "--split",
    "nope", "--model", "--out", "../../etc", "--dataset", "movielens-100k", "--part", "train", "--fraction",
    "-1", "--mode", "sideways", "--user", "--history", "--k", "1e9", "\x00", "--rerank", "--rerank-weight", "2",
])


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory):
    return tmp_path_factory.mktemp("empty-home")


@FUZZ
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(BAD_TOKENS, min_size=1, max_size=4))
def test_bad_command_lines_exit_2_with_one_line(empty_home, capsys, command, tokens):
    # an empty data home: nothing can be found, so no command gets as far as real work
    code = main([*command, *tokens, "--data-dir", str(empty_home)] if command[0] != "evaluate" else [*command, *tokens])
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if code != 0:
        assert code == 2, (command, tokens, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), (command, tokens, err)


def test_long_work_reports_a_line_per_model_without_a_terminal(tmp_path, caplog, monkeypatch):
    from lmrec import pipeline
    from tests.data import fixtures

    fixtures.write_ml100k(tmp_path / "movielens-100k")
    monkeypatch.setenv("LMREC_PROGRESS", "0")  # what a log file or CI sees: no bars
    pipeline.leaderboard("movielens-100k", ["pop", "ease"], data_dir=tmp_path, runs_dir=tmp_path / "runs")
    lines = [r for r in caplog.records if r.getMessage().startswith("fitted ")]
    assert [r.getMessage().split()[1] for r in lines] == ["pop", "ease"]
    assert all(r.levelname == "WARNING" for r in lines)  # shown at the CLI's default level
    assert np.isfinite([float(r.getMessage().split()[3]) for r in lines]).all()
