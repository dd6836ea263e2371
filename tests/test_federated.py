"""Federated training with Flower: clients hold disjoint users; a 2-client run on 127.0.0.1 (server here, each
client its own process) learns a planted pattern; a text model sends only its adaptor. Skipped where Flower is
not installed, failed instead under ``LMREC_REQUIRE_EXTRAS=1`` (CI)."""

import numpy as np
import pytest

from lmrec.data import PrepareConfig, prepare
from tests.conftest import optional_extra

N_USERS, N_ITEMS, LENGTH = 40, 20, 8


@pytest.fixture(scope="module")
def flower():
    return optional_extra("flwr", "federated")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Ring sequences: each user's next item is the current one + 1 (mod 20); item names say nothing."""
    root = tmp_path_factory.mktemp("fed")
    folder = root / "ring"
    folder.mkdir()
    rows = ["user,item,t"]
    for u in range(N_USERS):
        rows += [f"u{u},i{(u + n) % N_ITEMS},{1000 + n}" for n in range(LENGTH)]
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item,name\n" + "".join(f"i{i},thing number {i}\n" for i in range(N_ITEMS)))
    (folder / "lmrec.yaml").write_text("interactions: log.csv\nitems: items.csv\ncolumns: {user: user, item: item, "
                                       "time: t}\nitem_columns: {id: item}\n")
    return root


def test_clients_hold_disjoint_users_and_all_their_events(home, flower):
    from lmrec.federated import client_of_users, client_split

    prepared = prepare(PrepareConfig(dataset="ring", split="loo"), data_dir=home, cache_dir=home / "cache")
    owner = client_of_users(N_USERS, 3, seed=0)
    assert np.bincount(owner).tolist() == [14, 13, 13]
    shards = [client_split(prepared.split, owner, c) for c in range(3)]
    for part in ("train", "valid", "test"):
        users = [set(s.parts()[part].user.tolist()) for s in shards]
        assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
        assert sum(len(s.parts()[part]) for s in shards) == len(prepared.split.parts()[part])
    with pytest.raises(Exception, match="every client needs users"):
        client_of_users(3, 4)


def test_a_text_model_sends_only_its_adaptor(home, flower, monkeypatch):
    from lmrec.federated import FederatedConfig, RecClient

    monkeypatch.setenv("LMREC_CACHE", str(home / "cache"))
    config = FederatedConfig(dataset=PrepareConfig(dataset="ring", split="loo"), model="textseq", clients=2,
                             params={"encoder": "hash:512", "dim": 16, "layers": 1, "max_len": 8, "experts": 2})
    prepared = prepare(config.dataset, data_dir=home)
    client = RecClient(config, prepared, 0)
    start = client.get_parameters({})
    arrays, examples, metrics = client.fit(start, {})
    assert examples == len(client.split.train) and [a.shape for a in arrays] == [a.shape for a in start]
    private = RecClient(config.model_copy(update={"dp_noise": 1.0, "dp_clip": 1.0}), prepared, 0)
    assert private.fit(start, {})[1] == 1  # under DP FedAvg takes the plain mean the noise is calibrated to
    assert any(not np.array_equal(a, b) for a, b in zip(arrays, start))  # it trained
    assert metrics["bytes_sent"] == sum(a.nbytes for a in arrays)
    assert metrics["bytes_sent"] < metrics["full_model_bytes"] - 512 * N_ITEMS * 4  # the text vectors stay home
    loss, users, scores = client.evaluate(arrays, {})
    assert users == len(client.split.users("test")) and loss == pytest.approx(1 - scores["ndcg@10"])


def test_two_clients_on_127_0_0_1_learn_the_planted_pattern(home, flower, monkeypatch):
    from lmrec import pipeline
    from lmrec.federated import FederatedConfig
    from lmrec.registry import create

    monkeypatch.setenv("LMREC_CACHE", str(home / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = {"dim": 16, "layers": 1, "max_len": 8, "lr": 0.01}
    config = FederatedConfig(dataset=PrepareConfig(dataset="ring", split="loo"), model="sasrec", clients=2, rounds=3,
                             local_epochs=2, params=params)
    result = pipeline.federated(config, "local", data_dir=home, out=home / "fed.json")
    assert [r["round"] for r in result.rounds] == [1, 2, 3]
    assert all(r["clients"] == 2 for r in result.rounds)
    assert result.rounds[-1]["ndcg@10"] > 0.8  # chance is about 0.3 (10 of 20 items)
    train = prepare(config.dataset, data_dir=home).split.train
    weights = sum(a.nbytes for a in create("sasrec", **params).build(train).trainable_arrays())
    assert all(r["bytes_sent"] == 2 * weights == r["full_model_bytes"] for r in result.rounds)  # SASRec: all of it
    assert (home / "fed.json").is_file()
    # Flower's server-side DP: every client update clipped to a norm of 1e-6 (no noise) leaves the model where it
    # started, so nothing is learned: the wrapper is applied
    clipped = config.model_copy(update={"dp_noise": 0.0, "dp_clip": 1e-6})
    frozen = pipeline.federated(clipped, "local", data_dir=home)
    assert frozen.rounds[-1]["ndcg@10"] < result.rounds[-1]["ndcg@10"] - 0.3
    assert result.privacy is None and frozen.privacy["epsilon"] == float("inf")  # no noise: no guarantee
    assert all(r["epsilon"] == float("inf") for r in frozen.rounds)


def _exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """The tight epsilon of a Gaussian mechanism with sensitivity / noise = mu (Balle & Wang 2018), by bisection
    on delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)."""
    from scipy.stats import norm

    lo, hi = 0.0, 100.0
    for _ in range(200):
        eps = (lo + hi) / 2
        d = norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * norm.cdf(-eps / mu - mu / 2)
        lo, hi = (eps, hi) if d > delta else (lo, eps)
    return hi


def test_federated_dp_epsilon_is_accounted(flower):
    from lmrec.errors import ConfigError
    from lmrec.federated import FederatedConfig, dp_epsilon, federated_privacy

    # every client every round: R rounds of noise multiplier z compose to one Gaussian with mu = sqrt(R) / z; the
    # RDP accountant's epsilon is a valid bound (never below the tight value) and close to it
    for z, rounds in ((1.0, 10), (2.0, 30), (0.8, 5)):
        exact = _exact_gaussian_epsilon(np.sqrt(rounds) / z, 1e-5)
        assert exact <= dp_epsilon(z, rounds, 1.0, 1e-5) <= 1.15 * exact
    assert dp_epsilon(1.0, 10, 0.1, 1e-5) < dp_epsilon(1.0, 10, 1.0, 1e-5) / 3  # sampling clients amplifies
    assert dp_epsilon(0.0, 10, 1.0, 1e-5) == float("inf")
    config = FederatedConfig(dataset=PrepareConfig(dataset="ring"), clients=10, rounds=10, dp_noise=2.0, dp_clip=1.0)
    p = federated_privacy(config, 10)
    assert p["epsilon"] == dp_epsilon(2.0, 10, 1.0, 1e-5) and p["sample_rate"] == 1.0
    assert p["user_epsilon"] == dp_epsilon(1.0, 10, 1.0, 1e-5)  # a user changes one client's update by up to 2C
    sampled = federated_privacy(config.model_copy(update={"fraction_fit": 0.3}), 10)
    assert sampled["sample_rate"] == 0.3 and sampled["user_epsilon"] is None and sampled["epsilon"] < p["epsilon"]
    with pytest.raises(ConfigError, match="below 1 / clients"):
        federated_privacy(config.model_copy(update={"dp_delta": 0.2}), 10)
