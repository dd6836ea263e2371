"""Deleting a user: `DELETE /users/{id}` and `lmrec forget` remove their events and served lists so that the
raw id is nowhere in the store's bytes; every worker stops using the bundle's data on them; `lmrec refit`
trains a bundle that holds no trace of them."""

import shutil

from fastapi.testclient import TestClient

from lmrec import pipeline
from lmrec.bundle import Bundle
from lmrec.cli import main
from lmrec.serve.app import create_app

KEY = "f" * 24
H = {"X-API-Key": KEY}
VISITOR = "visitor-7f3a9c-only-in-the-store"


def post(client, user, items):
    r = client.post("/events", json={"events": [{"user": user, "item": i} for i in items]}, headers=H)
    assert r.status_code == 200, r.text


def store_bytes(store):
    return b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))  # the file, its -wal and -shm


def test_a_deleted_user_leaves_no_trace(bundles, tmp_path):
    served = tmp_path / "ease"
    shutil.copytree(bundles["ease"], served)
    store = tmp_path / "ease.events.sqlite"
    client = TestClient(create_app(served, store, api_key=KEY))
    other_worker = TestClient(create_app(served, store, api_key=KEY))
    old = Bundle.load(served)
    post(client, VISITOR, ["i1", "i3", "i5"])
    post(client, "u3", ["i7", "i9"])
    for user in (VISITOR, "u3"):
        assert client.post("/recommend", json={"user_id": user, "k": 3}).json()["request_id"]
    assert other_worker.get(f"/users/{VISITOR}").status_code == 200
    assert VISITOR.encode() in store_bytes(store)  # the check below can fail

    r = client.delete(f"/users/{VISITOR}", headers=H)
    assert r.status_code == 200 and r.json() == {"id": VISITOR, "events_deleted": 3, "served_deleted": 1,
                                                 "in_bundle": False}
    assert VISITOR.encode() not in store_bytes(store)
    assert other_worker.get(f"/users/{VISITOR}").status_code == 404  # the other worker follows
    assert client.delete(f"/users/{VISITOR}", headers=H).status_code == 404
    assert client.delete("/users/u4").status_code == 401  # a write: the key is needed

    # a user the bundle was trained on: their bundle history and trained state are no longer used
    r = client.delete("/users/u3", headers=H)
    assert r.json()["in_bundle"] is True and r.json()["events_deleted"] == 2
    assert other_worker.post("/recommend", json={"user_id": "u3", "k": 3}).status_code == 404
    post(client, "u3", ["i11"])  # coming back later starts a new history
    user = other_worker.get("/users/u3").json()
    assert [h["id"] for h in user["history"]] == ["i11"] and user["known_in_training"] is False

    path, metrics = pipeline.refit(served, out=tmp_path / "next")
    new = Bundle.load(path)
    gone = old.users.index("u3")
    assert metrics["refit"]["forgotten_users"] == 1 and new.users.raw(gone) == "forgotten-0"
    assert (new.prepared.interactions.user == gone).sum() == 0
    assert VISITOR not in new.users and new.users.index("u3") != gone  # u3 again: only the event after deletion
    assert new.histories[new.users.index("u3")].tolist() == [new.items.index("i11")]
    others = old.prepared.interactions.user != gone
    assert len(new.prepared.interactions) == int(others.sum()) + 1
    # the deletion was applied to the data held then: a service on the refit bundle, and the next refit,
    # keep u3's later history
    again = TestClient(create_app(path, store, api_key=KEY))
    user = again.get("/users/u3").json()
    assert [h["id"] for h in user["history"]] == ["i11"] and user["known_in_training"] is True
    _, metrics = pipeline.refit(path, store, out=tmp_path / "after")
    assert metrics["refit"]["forgotten_users"] == 0
    assert Bundle.load(tmp_path / "after").histories[new.users.index("u3")].tolist() == [new.items.index("i11")]


def test_lmrec_forget(bundles, tmp_path, capsys):
    served = tmp_path / "itemknn"
    shutil.copytree(bundles["itemknn"], served)
    store = tmp_path / "itemknn.events.sqlite"
    client = TestClient(create_app(served, store, api_key=KEY))
    post(client, VISITOR, ["i2", "i4"])
    assert main(["forget", "--store", str(store), "--user", VISITOR]) == 0
    assert "deleted 2 events and 0 served lists" in capsys.readouterr().out
    assert VISITOR.encode() not in store_bytes(store)
    assert client.get(f"/users/{VISITOR}").status_code == 404
    assert main(["forget", "--store", str(tmp_path / "nothing.sqlite"), "--user", "x"]) == 2
