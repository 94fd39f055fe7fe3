"""SIGKILL mid-training, then `--resume`: the final adapters equal an uninterrupted run's."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cahl.testing import tiny_model


def _args(model: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "cahl.cli", "train", "--out", str(out), f"model.name={model}", "model.lora_r=4",
            "model.threads=1", "sft.steps=2", "sft.batch_size=2", "train.steps=3", "train.tasks_per_step=2",
            "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false", "rollout.plans_per_task=2",
            "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.max_planner_turns=2",
            "rollout.max_context=1024", "train.lr_planner=0.01", "train.lr_executor=0.01", "sft.lr=0.01",
            "reward.custom=cahl.testing:parity_reward"]  # random samples differ: GRPO groups have signal


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("adapter_model.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.timeout(300)
def test_sigkill_then_resume_reaches_the_same_adapters(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_args(model, ref), check=True, timeout=240, capture_output=True)

    proc = subprocess.Popen(_args(model, cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    while not (cut / "checkpoints" / "step_000004").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "final").exists()
    done = subprocess.run(_args(model, cut) + ["--resume"], check=True, timeout=240, capture_output=True, text=True)
    assert "resumed from" in done.stdout
    assert _digest(cut / "final") == _digest(ref / "final")
    grpo = [l for l in (ref / "metrics.jsonl").read_text().splitlines() if '"grpo"' in l]
    assert grpo and all('"train/planner/trajectories": 0,' not in l for l in grpo)  # GRPO really updated
    # the metrics log of the resumed run matches the uninterrupted one step for step
    assert [l.split('"time/')[0] for l in (cut / "metrics.jsonl").read_text().splitlines()] == \
           [l.split('"time/')[0] for l in (ref / "metrics.jsonl").read_text().splitlines()]
