"""Two CPU processes (gloo, via accelerate launch) give the same gradients as one process on the
same global batch, replicated (DDP) or sharded (FSDP2): the loss is normalised by the global token
count and gradients are summed."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cahl.testing import adapter_tensors, metric_lines, tiny_model, train_args

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}


TWO_PROCESSES = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                 "--dynamo_backend", "no"]


def _launch_two(launch: list[str], program: list[str], env: dict | None = None) -> str:
    """`accelerate launch` 2 CPU processes (gloo; `launch`: TWO_PROCESSES or a config file of 2) on
    a free port, so parallel runs do not collide; returns their stdout."""
    for attempt in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *launch, "--main_process_port",
                               str(port), *program], capture_output=True, text=True, timeout=240,
                              env={**os.environ, **(env or {})})
        # Known, rare (~1 in 20 sharded launches here): gloo aborts one process in interpreter
        # teardown after all work is done (pytorch/pytorch#90549). Only that exact failure is retried.
        if not (done.returncode and "terminate called without an active exception" in done.stderr):
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_process_gradients_equal_one_process(tmp_path, mode):
    model = tiny_model(tmp_path / "tiny")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(WORKER), model, str(one)], check=True, timeout=240)
    # what accelerate launch sets for a config with distributed_type: FSDP, fsdp_version: 2
    _launch_two(TWO_PROCESSES, [str(WORKER), model, str(two)], FSDP_ENV if mode == "fsdp" else None)
    g1, g2 = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert (tmp_path / "world.txt").read_text() == f"2 {mode}"  # really two processes, sharded as asked
    assert len(g1) == len(g2) > 0
    assert any(float(g.abs().sum()) > 0 for g in g1)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.timeout(600)
def test_sharded_training_matches_replicated_and_resumes_exactly(tmp_path):
    """The tiny training (SFT + joint GRPO, both roles) on 2 CPU processes, sharded with
    configs/accelerate/fsdp_cpu.yaml: the same metrics and adapters as the replicated (DDP) run,
    a run resumed from its second-to-last checkpoint ends with the same adapters, and that
    checkpoint also resumes in one unsharded process."""
    model = tiny_model(tmp_path / "tiny")
    runs = {mode: tmp_path / mode for mode in ("ddp", "fsdp")}
    for mode, run in runs.items():
        config = ROOT / "configs" / "accelerate" / f"{mode}_cpu.yaml"
        out = _launch_two(["--config_file", str(config)], ["-m", *train_args(model, run, steps=2)[2:]])
        assert f"cahl: 2 processes, {'sharded (FSDP2)' if mode == 'fsdp' else 'replicated (DDP)'}" in out
    ddp, fsdp = (metric_lines(run) for run in runs.values())
    assert len(ddp) == len(fsdp) == 2 and any(line.get("train/planner/trajectories", 0) > 0 for line in fsdp)
    for a, b in zip(ddp, fsdp):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], (int, float)):
                assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
            else:
                assert a[key] == b[key], key

    final = adapter_tensors(runs["fsdp"] / "final")
    assert final.keys() == adapter_tensors(runs["ddp"] / "final").keys() and len(final) == 2
    for name, tensors in adapter_tensors(runs["ddp"] / "final").items():
        for key, value in tensors.items():
            torch.testing.assert_close(final[name][key], value, rtol=1e-3, atol=1e-5)

    # resume: drop the last checkpoint and the final adapters (read above), continue from step 1
    resumed = runs["fsdp"]
    shutil.rmtree(resumed / "checkpoints" / "step_000002")
    shutil.rmtree(resumed / "final")
    config = ROOT / "configs" / "accelerate" / "fsdp_cpu.yaml"
    out = _launch_two(["--config_file", str(config)], ["-m", *train_args(model, resumed, steps=2)[2:], "--resume"])
    assert "resumed from" in out and "step_000001" in out
    again = adapter_tensors(resumed / "final")
    for name, tensors in final.items():
        for key, value in tensors.items():
            assert torch.equal(again[name][key], value), (name, key)

    # the sharded checkpoint (optimizer state keyed by name) also resumes in one unsharded process
    shutil.rmtree(resumed / "checkpoints" / "step_000002")
    shutil.rmtree(resumed / "final")
    done = subprocess.run(train_args(model, resumed, steps=2) + ["--resume"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "resumed from" in done.stdout, done.stderr[-3000:]
    assert adapter_tensors(resumed / "final").keys() == final.keys()


@pytest.mark.parametrize("env, match", [
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "distributed_type: DEEPSPEED"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "fsdp_version"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params"),
])
def test_unsupported_launch_configs_are_refused_by_key(monkeypatch, env, match):
    from cahl.train import sharding
    from cahl.types import CahlInputError

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(CahlInputError, match=match):
        sharding.requested()


def test_plain_and_fsdp2_launches_are_accepted(monkeypatch):
    from cahl.train import sharding

    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "FSDP_VERSION", "FSDP_OFFLOAD_PARAMS"):
        monkeypatch.delenv(key, raising=False)
    assert sharding.requested() is False
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert sharding.requested() is True
