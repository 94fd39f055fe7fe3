"""Two CPU processes (gloo, via accelerate launch) give the same gradients as one process on the
same global batch: the loss is normalised by the global token count and gradients are summed."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cahl.testing import tiny_model

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.timeout(300)
def test_two_process_gradients_equal_one_process(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(WORKER), model, str(one)], check=True, timeout=240)
    with socket.socket() as sock:  # a free port, so parallel runs do not collide on 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--main_process_port", str(port),
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    str(WORKER), model, str(two)], check=True, timeout=240)
    g1, g2 = torch.load(one), torch.load(two)
    assert (tmp_path / "world.txt").read_text() == "2"  # really two processes, not one run twice
    assert len(g1) == len(g2) > 0
    assert any(float(g.abs().sum()) > 0 for g in g1)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
