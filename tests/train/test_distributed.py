"""Distributed data-parallel training (torchrun, gloo on 127.0.0.1): two processes train like one, stay in
step with each other, and a killed two-process run resumes exactly."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmrec.train import distributed

JOB = Path(__file__).with_name("ddp_job.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(processes: int, out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMREC_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", str(JOB), "--out", str(out), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    torchrun(1, base / "one")
    torchrun(2, base / "two")
    return base


def test_two_processes_learn_what_one_learns(one_and_two):
    one, two = result(one_and_two / "one"), result(one_and_two / "two")
    assert one["steps"] == two["steps"]  # the same global batches: each process takes half of each
    # planted pattern: the next item is the current one + 1; chance is 1/20
    assert one["best"] > 0.9 and two["best"] > 0.9
    final = [h["valid"]["ndcg@10"] for h in (one["history"][-1], two["history"][-1])]
    assert abs(final[0] - final[1]) <= 0.1  # the stated tolerance: dropout masks and float sums differ
    losses = [h["loss"] for h in one["history"]], [h["loss"] for h in two["history"]]
    assert abs(losses[0][-1] - losses[1][-1]) < 0.25 * losses[0][0]


def test_every_process_ends_with_the_same_weights(one_and_two):
    a, b = (load_file(str(one_and_two / "two" / f"weights-{r}.safetensors")) for r in (0, 1))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_a_killed_two_process_run_resumes_exactly(one_and_two, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    # every process dies in its 30th loss call (step 30 of 48), after the checkpoint at step 25
    killed = torchrun(2, tmp_path / "killed", "--checkpoint-dir", ckpt, "--fail-at", "30", check=False)
    assert killed.returncode != 0 and (tmp_path / "ckpt" / "checkpoint.pt").is_file()
    assert torch.load(tmp_path / "ckpt" / "checkpoint.pt", weights_only=True)["loop"]["step"] == 25
    torchrun(2, tmp_path / "resumed", "--checkpoint-dir", ckpt)
    reference = torchrun_with_checkpoints(tmp_path)
    a = load_file(str(tmp_path / "resumed" / "weights-0.safetensors"))
    b = load_file(str(reference / "weights-0.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert [h["loss"] for h in result(tmp_path / "resumed")["history"]] == [h["loss"] for h in result(reference)["history"]]


def torchrun_with_checkpoints(tmp_path: Path) -> Path:
    """The same two-process run, uninterrupted, checkpointing at the same steps."""
    out = tmp_path / "uninterrupted"
    torchrun(2, out, "--checkpoint-dir", str(tmp_path / "ckpt-ref"))
    return out


def test_one_process_without_torchrun_is_not_distributed(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.world() == distributed.World(0, 1, 0) and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(Exception, match="not within WORLD_SIZE"):
        distributed.world()
