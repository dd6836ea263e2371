"""Online evaluation: served lists logged, judged by the user's next event (hand-computed), A/B arms by a
stable hash, the report and its test, the command."""

import math

import pytest
from fastapi.testclient import TestClient

from lmrec.serve.app import create_app
from lmrec.serve.online import report
from lmrec.serve.store import EventStore

KEY = "o" * 24
H = {"X-API-Key": KEY}


def serve(client, user, k=3):
    r = client.post("/recommend", json={"user_id": user, "k": k})
    assert r.status_code == 200, r.text
    return r.json()


def event(client, user, item):
    assert client.post("/events", json={"events": [{"user": user, "item": item}]}, headers=H).status_code == 200


def test_served_lists_are_judged_by_what_the_user_did_next(bundles, tmp_path):
    store_path = tmp_path / "o.sqlite"
    client = TestClient(create_app(bundles["itemknn"], store_path, api_key=KEY))
    event(client, "u2", "i1")  # before any list: judges nothing
    first = serve(client, "u2")
    assert first["request_id"] and first["arm"] == "A"
    event(client, "u2", first["items"][1]["id"])  # took the 2nd item: hit, NDCG 1/log2(3), a click
    second = serve(client, "u4")
    outside = next(f"i{n}" for n in range(16) if f"i{n}" not in {x["id"] for x in second["items"]})
    event(client, "u4", outside)  # took something else: judged, a miss, no click
    serve(client, "u6")  # nothing after: not judged, no click
    client.post("/recommend", json={"history": ["i1"], "k": 3})  # anonymous: not logged

    found = report(EventStore(store_path), k=3, window=3600)
    (row,) = found["versions"]
    assert row["arm"] == "A" and row["lists"] == 3 and row["judged"] == 2 and row["users"] == 3
    assert row["hit@3"][0] == 0.5
    assert row["ndcg@3"][0] == pytest.approx(round((1 / math.log2(3)) / 2, 4))
    assert row["click_through"][0] == pytest.approx(round(1 / 3, 4))
    assert "ab" not in found
    # k=1: the 2nd item is no longer within the cut-off
    assert report(EventStore(store_path), k=1)["versions"][0]["hit@1"][0] == 0.0
    online = client.get("/metrics/online", params={"k": 3}).json()
    assert online["versions"][0]["hit@3"] == row["hit@3"] and online["versions"][0]["coverage"] > 0


def test_an_event_counts_for_the_latest_list_before_it(bundles, tmp_path):
    store_path = tmp_path / "o.sqlite"
    client = TestClient(create_app(bundles["itemknn"], store_path, api_key=KEY))
    a = serve(client, "u2")
    b = serve(client, "u2", k=5)
    event(client, "u2", b["items"][0]["id"])
    outcomes = report(EventStore(store_path), k=5)["versions"][0]
    assert outcomes["lists"] == 2 and outcomes["judged"] == 1  # the first list was followed by another list
    assert a["request_id"] != b["request_id"]


def test_ab_arms_are_stable_and_reported(bundles, tmp_path):
    store_path = tmp_path / "ab.sqlite"
    client = TestClient(create_app(bundles["itemknn"], store_path, api_key=KEY, ab=bundles["ease"], split=0.5))
    again = TestClient(create_app(bundles["itemknn"], tmp_path / "other.sqlite", ab=bundles["ease"], split=0.5))
    arms = {}
    for u in range(24):
        got = serve(client, f"u{u}")
        arms[f"u{u}"] = got["arm"]
        assert got["model"] == {"A": "itemknn", "B": "ease"}[got["arm"]]
        assert serve(again, f"u{u}")["arm"] == got["arm"]  # a hash, not a coin: the same in every process
        event(client, f"u{u}", got["items"][u % 2]["id"])
    assert set(arms.values()) == {"A", "B"}
    found = report(EventStore(store_path), k=3)
    assert [r["arm"] for r in found["versions"]] == ["A", "B"]
    assert all(r["hit@3"][0] == 1.0 for r in found["versions"])  # every user took an item of their list
    assert found["ab"]["difference"] == 0.0 and found["ab"]["lists"] == [list(arms.values()).count("A"),
                                                                         list(arms.values()).count("B")]
    r = client.post("/admin/reload", headers=H)
    assert r.status_code == 409 and "A/B test" in r.text
    with pytest.raises(Exception, match="strictly between 0 and 1"):
        create_app(bundles["itemknn"], tmp_path / "x.sqlite", ab=bundles["ease"], split=1.0)


def test_the_online_report_command(bundles, tmp_path, capsys):
    from lmrec.cli import main

    store_path = tmp_path / "o.sqlite"
    client = TestClient(create_app(bundles["itemknn"], store_path, api_key=KEY))
    got = serve(client, "u2")
    event(client, "u2", got["items"][0]["id"])
    code = main(["online-report", str(store_path), "-k", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "itemknn" in out and "1.0000" in out
    assert main(["online-report", str(tmp_path / "none.sqlite")]) == 2
