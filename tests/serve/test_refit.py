"""`lmrec refit`: a bundle trained again on its data plus the store's events and items, and a service that
swaps to it with nothing counted twice and nothing lost."""

import shutil

import numpy as np
from fastapi.testclient import TestClient

from lmrec import pipeline
from lmrec.bundle import Bundle
from lmrec.serve.app import create_app

KEY = "r" * 24
H = {"X-API-Key": KEY}


def post_events(client, rows):
    r = client.post("/events", json={"events": [{"user": u, "item": i, "type": t} for u, i, t in rows]}, headers=H)
    assert r.status_code == 200, r.text


def test_refit_folds_the_store_into_a_new_bundle(bundles, tmp_path):
    served = tmp_path / "sasrec"
    shutil.copytree(bundles["sasrec"], served)
    store = tmp_path / "sasrec.events.sqlite"
    client = TestClient(create_app(served, store, api_key=KEY))
    rows = [("n1", "i1", "view"), ("n1", "i3", "view"), ("n1", "i5", "purchase"), ("n1", "i2", "dislike"),
            ("u2", "i9", "view")]
    post_events(client, rows)
    old = Bundle.load(served)

    path, metrics = pipeline.refit(served, out=tmp_path / "next", params={"epochs": 2})
    new = Bundle.load(path)
    info = metrics["refit"]
    assert info["new_events"] == 4 and info["new_users"] == 1 and info["events_through"] == 5  # the dislike left out
    assert info["warm_start"] is True and len(metrics["valid_curve"]) == 2
    assert len(new.prepared.interactions) == len(old.prepared.interactions) + 4
    assert new.users.to_list()[: len(old.users)] == old.users.to_list() and "n1" in new.users
    assert new.meta["store"]["events_through"] == 5
    # validation: each user's most recent stored event of an item new to them
    valid = new.prepared.split.valid
    assert sorted(zip(new.users.raws(valid.user), new.items.raws(valid.item))) == [("n1", "i5"), ("u2", "i9")]
    assert new.histories[new.users.index("n1")].tolist() == [new.items.index(i) for i in ("i1", "i3", "i5")]

    # a service on the refit bundle and the same store counts no stored event twice
    again = TestClient(create_app(path, store, api_key=KEY))
    assert [h["id"] for h in again.get("/users/n1").json()["history"]] == ["i5", "i3", "i1"]
    assert again.get("/users/n1").json()["known_in_training"] is True
    post_events(again, [("n1", "i7", "view")])
    assert [h["id"] for h in again.get("/users/n1").json()["history"]][:2] == ["i7", "i5"]


def test_reload_swaps_in_the_refit_bundle(bundles, tmp_path):
    served = tmp_path / "lmcontent"
    shutil.copytree(bundles["lmcontent"], served)
    store = tmp_path / "lmcontent.events.sqlite"
    client = TestClient(create_app(served, store, api_key=KEY))
    assert client.post("/items", json={"id": "i99", "fields": {"name": "gadget odd model 99", "kind": "odd"}},
                       headers=H).status_code == 200
    post_events(client, [("n2", "i99", "view"), ("n2", "i1", "view")])
    before = client.post("/recommend", json={"user_id": "n2", "k": 5}).json()["items"]

    pipeline.refit(served)  # replaces the served folder; the running service still answers from memory
    assert client.get("/ready").json()["generation"] == 1
    r = client.post("/admin/reload", headers=H)  # no body: the folder served, read again
    assert r.status_code == 200 and r.json()["generation"] == 2 and r.json()["items"] == 17
    after = client.post("/recommend", json={"user_id": "n2", "k": 5}).json()["items"]
    # the same data and a deterministic model: the answer is the same, now from the bundle's own data
    assert [(x["id"], round(x["score"], 5)) for x in after] == [(x["id"], round(x["score"], 5)) for x in before]
    user = client.get("/users/n2").json()
    assert user["known_in_training"] is True and [h["id"] for h in user["history"]] == ["i1", "i99"]
    assert np.isclose(client.app.state.lmrec.state.bundle.model.item_vectors_.shape[0], 17)


def test_refit_needs_a_store(bundles, tmp_path):
    import pytest

    from lmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="no event store there"):
        pipeline.refit(bundles["itemknn"], store=tmp_path / "missing.sqlite", out=tmp_path / "x")
