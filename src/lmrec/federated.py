"""Federated training with Flower (``pip install 'lmrec[federated]'``): every client holds a disjoint set of
users with all their events; only model weights leave a client.

- Server: Flower's FedAvg (weights averaged by each client's number of training events), optionally
  wrapped in Flower's ``DifferentialPrivacyServerSideFixedClipping`` (each client's update clipped to
  ``dp_clip``, Gaussian noise of ``dp_noise * dp_clip / sampled clients`` added to the average). Under DP the
  average is unweighted (every client reports one example), which the sensitivity ``dp_clip / sampled clients``
  assumes, and lmrec accounts the epsilon (``dp_epsilon``): Opacus' RDP accountant over the rounds.
- Client: the sequence model (``sasrec``, ``gru4rec``, ``bert4rec``, ``textseq``) with the round's global
  weights, trained ``local_epochs`` on its own users, sends back the weights training changes
  (``trainable_arrays``): all of SASRec; for TextSeqRec only the adaptor, while the language model and its
  item vectors stay on the client (each client computes them from the public catalogue text). Each round
  reports the bytes sent next to the size of the whole model (network plus item vectors).
- Evaluation is federated too: each client ranks every item for its own test users with the global model
  and reports NDCG@k and its number of test users; the server's weighted mean is the metric over all
  users, as a central evaluation would give.

Processes talk over gRPC (``start_server`` / ``start_client``): ``lmrec federated`` runs the server and C
client processes on 127.0.0.1; ``--role server`` / ``--role client --client I`` run one of them, e.g. on
other machines. Here a client takes its users from the shared prepared dataset (``client_of_users``); on
real devices each would read only its own log.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data import PrepareConfig, prepare
from lmrec.data.prepared import Prepared
from lmrec.data.split import Split
from lmrec.errors import ConfigError
from lmrec.eval import Evaluator
from lmrec.progress import report
from lmrec.registry import create

try:
    import flwr
    from flwr.client import NumPyClient
except ImportError:  # the optional extra is absent: say how to get it when federated training is asked for
    flwr = None
    NumPyClient = object  # type: ignore[assignment,misc]

FEDERATED_MODELS = ("sasrec", "gru4rec", "bert4rec", "textseq")
Role = Literal["local", "server", "client"]


class FederatedConfig(BaseModel):
    """What a federated run is; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")
    dataset: PrepareConfig
    model: str = "sasrec"
    params: dict[str, Any] = Field(default_factory=dict)  # the model's options (its local training included)
    clients: int = Field(10, ge=1)
    rounds: int = Field(10, ge=1)
    local_epochs: int = Field(1, ge=1)
    fraction_fit: float = Field(1.0, gt=0, le=1)  # share of clients training in each round
    seed: int = 0
    k: int = Field(10, ge=1)
    dp_noise: float | None = Field(None, ge=0)
    dp_clip: float | None = Field(None, gt=0)
    dp_delta: float = Field(1e-5, gt=0, lt=1)  # the delta the epsilon is reported at; below 1 / clients

    @property
    def private(self) -> bool:
        return self.dp_noise is not None or self.dp_clip is not None


def _require_flower() -> None:
    if flwr is None:
        raise ConfigError("federated training needs Flower: pip install 'lmrec[federated]'")


def client_of_users(n_users: int, clients: int, seed: int = 0) -> np.ndarray:
    """The client (0 .. clients - 1) holding each user: a seeded shuffle dealt round-robin, so the clients
    hold disjoint sets of users of equal size (within one)."""
    if clients > n_users:
        raise ConfigError(f"clients: {clients} clients for {n_users} users; every client needs users")
    owner = np.empty(n_users, dtype=np.int64)
    owner[np.random.default_rng(seed).permutation(n_users)] = np.arange(n_users) % clients
    return owner


def client_split(split: Split, owner: np.ndarray, client: int) -> Split:
    """The events of one client's users, over the dataset's id maps (the catalogue is shared)."""
    keep = {part: inter.select(owner[inter.user] == client) for part, inter in split.parts().items()}
    return Split(keep["train"], keep["valid"], keep["test"], keep.get("context"), name=f"{split.name}-client{client}")


# --- client ------------------------------------------------------------------------------------------------------
class RecClient(NumPyClient):  # type: ignore[misc,valid-type]
    """A Flower client over one user shard: local training and evaluation of the global weights."""

    def __init__(self, config: FederatedConfig, prepared: Prepared, client: int):
        self.config, self.items, self.client = config, prepared.items, client
        owner = client_of_users(prepared.split.n_users, config.clients, config.seed)
        self.split = client_split(prepared.split, owner, client)
        if len(self.split.train) == 0:
            raise ConfigError(f"client {client} holds no training events")
        self.params = {**config.params, "epochs": config.local_epochs, "seed": config.seed}
        self.model = create(config.model, ("ranker",), **self.params).build(self.split.train, self.items)

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return self.model.trainable_arrays()

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        self.model.set_trainable_arrays(parameters)
        local = create(self.config.model, ("ranker",), **self.params)
        local.warm_start(self.model)  # this round's global weights, then local epochs on this client's users
        local.fit(self.split.train, self.items)
        self.model = local
        arrays = local.trainable_arrays()
        steps = local.train_result_.steps if local.train_result_ else 0
        sent = sum(a.nbytes for a in arrays)
        # the whole model as it would travel without the split: every tensor of the network plus the language
        # model's item vectors (TextSeqRec's inputs; SASRec has none, so there the two are equal)
        full = sum(t.numel() * t.element_size() for t in local.net_.state_dict().values()) + \
            sum(np.asarray(a).nbytes for a in (local.inputs_ or {}).values())
        # Under DP every client weighs the same (FedAvg then takes the plain mean the noise is calibrated to)
        weight = 1 if self.config.private else max(1, len(self.split.train))
        return arrays, weight, {"bytes_sent": sent, "full_model_bytes": full, "steps": steps}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict]:
        self.model.set_trainable_arrays(parameters)
        users = self.split.users("test")
        if len(users) == 0:
            return 0.0, 0, {}
        result = Evaluator(self.split, "test", ks=(self.config.k,)).evaluate(self.model)
        ndcg = float(result.means()[f"ndcg@{self.config.k}"])
        return 1.0 - ndcg, int(len(users)), {f"ndcg@{self.config.k}": ndcg}


def run_client(config: FederatedConfig, client: int, address: str, data_dir: str | Path | None = None) -> None:
    """One client process: connect to the server at ``address`` and serve its rounds until the server ends."""
    _require_flower()
    _quiet_flower()
    prepared = prepare(config.dataset, data_dir=data_dir)
    flwr.client.start_client(server_address=address, client=RecClient(config, prepared, client).to_client())


# --- server ------------------------------------------------------------------------------------------------------
@dataclass
class FederatedResult:
    """Per round: the global model's test metric over all clients' users and the bytes that travelled."""

    rounds: list[dict[str, Any]]
    config: dict[str, Any]
    seconds: float
    privacy: dict[str, Any] | None = None


def dp_epsilon(noise_multiplier: float, rounds: int, sample_rate: float, delta: float) -> float:
    """Epsilon of ``rounds`` rounds of the sampled Gaussian mechanism (Opacus' RDP accountant): each round adds
    noise of ``noise_multiplier`` times the sensitivity to a mean in which each client takes part with
    probability ``sample_rate``. Infinite without noise."""
    if noise_multiplier <= 0:
        return float("inf")
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, rounds)]
    return float(accountant.get_epsilon(delta))


def federated_privacy(config: FederatedConfig, rounds: int) -> dict[str, Any]:
    """What server-side DP guarantees after ``rounds`` rounds (``dp_noise`` and ``dp_clip`` set).

    Client level (add or remove one client's whole data; DP-FedAvg, McMahan et al. 2018): the unweighted mean
    of updates clipped to C over m sampled clients moves by at most C / m, the noise is ``dp_noise * C / m``,
    and each client takes part with probability ``fraction_fit``. Flower samples exactly m clients per round,
    where the accountant assumes each is taken independently (Poisson): the usual approximation.
    User level: a user's events live in one client, so changing them moves that client's clipped update by at
    most 2C: the Gaussian mechanism at half the noise multiplier. Accounted only where every client trains
    every round (``fraction_fit`` 1: no sampling to approximate); None otherwise.
    """
    assert config.dp_noise is not None and config.dp_clip is not None
    if config.dp_delta >= 1 / config.clients:
        raise ConfigError(f"dp_delta {config.dp_delta:g} must be below 1 / clients ({1 / config.clients:g})")
    fit_clients = max(1, int(round(config.fraction_fit * config.clients)))
    rate = fit_clients / config.clients
    return {"epsilon": dp_epsilon(config.dp_noise, rounds, rate, config.dp_delta),
            "user_epsilon": dp_epsilon(config.dp_noise / 2, rounds, 1.0, config.dp_delta) if rate == 1 else None,
            "delta": config.dp_delta, "noise_multiplier": config.dp_noise, "clipping_norm": config.dp_clip,
            "sample_rate": rate, "rounds": rounds, "accountant": "rdp (Opacus)",
            "mechanism": "server-side fixed clipping (Flower), unweighted FedAvg, Gaussian noise"}


def _weighted_mean(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in results)
    keys = {k for _, m in results for k in m}
    return {k: float(sum(n * m.get(k, 0.0) for n, m in results) / max(total, 1)) for k in keys}


def _sum(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    keys = {k for _, m in results for k in m}
    return {k: float(sum(m.get(k, 0.0) for _, m in results)) for k in keys} | {"clients": len(results)}


def run_server(config: FederatedConfig, address: str) -> FederatedResult:
    """The server: FedAvg over ``config.rounds`` rounds (optionally with server-side DP); blocks until done."""
    _require_flower()
    _quiet_flower()
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    fit_clients = max(1, int(round(config.fraction_fit * config.clients)))
    strategy: Any = FedAvg(
        fraction_fit=config.fraction_fit, fraction_evaluate=1.0, min_fit_clients=fit_clients,
        min_evaluate_clients=config.clients, min_available_clients=config.clients,
        fit_metrics_aggregation_fn=_sum, evaluate_metrics_aggregation_fn=_weighted_mean)
    if config.private:
        if config.dp_noise is None or config.dp_clip is None:
            raise ConfigError("dp_noise and dp_clip go together (the noise is dp_noise * dp_clip)")
        federated_privacy(config, config.rounds)  # refuses a bad delta before any client waits
        strategy = DifferentialPrivacyServerSideFixedClipping(strategy, noise_multiplier=config.dp_noise,
                                                              clipping_norm=config.dp_clip,
                                                              num_sampled_clients=fit_clients)
    started = time.perf_counter()
    history = flwr.server.start_server(server_address=address, strategy=strategy,
                                       config=flwr.server.ServerConfig(num_rounds=config.rounds))
    rounds: list[dict[str, Any]] = [{"round": r} for r in range(1, config.rounds + 1)]
    for metrics in (history.metrics_distributed, history.metrics_distributed_fit):  # {name: [(round, value)]}
        for key, values in metrics.items():
            for r, value in values:
                if 1 <= r <= config.rounds:
                    rounds[r - 1][key] = value
    privacy = None
    if config.private:
        for r in rounds:  # the budget spent so far, round by round
            r["epsilon"] = federated_privacy(config, r["round"])["epsilon"]
        privacy = federated_privacy(config, config.rounds)
    return FederatedResult(rounds, config.model_dump(), round(time.perf_counter() - started, 2), privacy)


def federate(config: FederatedConfig, data_dir: str | Path | None = None, port: int | None = None) -> FederatedResult:
    """A whole run on this machine: the server here, each client a separate process on 127.0.0.1."""
    _require_flower()
    if config.model not in FEDERATED_MODELS:
        raise ConfigError(f"model: federated training takes {', '.join(FEDERATED_MODELS)}, not {config.model!r}")
    prepare(config.dataset, data_dir=data_dir)  # once here: the clients then read the cached preparation
    address = f"127.0.0.1:{port or _free_port()}"
    command = [sys.executable, "-m", "lmrec", "federated", "--role", "client", "--address", address,
               "--config-json", config.model_dump_json()]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    with tempfile.TemporaryDirectory(prefix="lmrec-federated-") as logs:  # a file, not a pipe: never fills up
        log_files = [open(Path(logs) / f"client-{c}.log", "wb") for c in range(config.clients)]
        procs = [subprocess.Popen([*command, "--client", str(c)], stdout=subprocess.DEVNULL, stderr=log_files[c])
                 for c in range(config.clients)]
        report("federated: server on %s, %d client processes, %d rounds", address, config.clients, config.rounds)
        try:
            result = run_server(config, address)
        finally:
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in log_files:
                f.close()
        failed = [c for c, p in enumerate(procs) if p.returncode]
        if failed:
            lines = (Path(logs) / f"client-{failed[0]}.log").read_text(errors="replace").strip().splitlines()
            raise ConfigError(f"federated client {failed[0]} failed (exit {procs[failed[0]].returncode}): "
                              f"{lines[-1] if lines else 'no output'}")
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quiet_flower() -> None:
    """Flower logs every message at INFO and warns that start_server / start_client are deprecated (they are
    its process-per-client API, the one that runs without a SuperLink); lmrec reports rounds itself."""
    logging.getLogger("flwr").setLevel(logging.ERROR)


__all__ = ["FederatedConfig", "FederatedResult", "RecClient", "client_of_users", "client_split", "dp_epsilon",
           "federate", "federated_privacy", "run_client", "run_server"]
