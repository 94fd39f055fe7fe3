"""SIGKILL mid-training, then `--resume`: the final adapters equal an uninterrupted run's."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cahl.testing import adapter_digest, tiny_model, train_args


@pytest.mark.timeout(300)
@pytest.mark.parametrize("extra", [[], ["model.sample_dtype=bfloat16"]], ids=["float32", "bf16_sampling"])
def test_sigkill_then_resume_reaches_the_same_adapters(tmp_path, extra):
    """bf16_sampling: rollouts decode with a bfloat16 base and the update refreshes the old
    log-probs; the resumed run must still reproduce the uninterrupted one (sampler_gap included)."""
    model = tiny_model(tmp_path / "tiny")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(train_args(model, ref) + extra, check=True, timeout=240, capture_output=True)

    proc = subprocess.Popen(train_args(model, cut) + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    while not (cut / "checkpoints" / "step_000001").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "final").exists()
    done = subprocess.run(train_args(model, cut) + extra + ["--resume"], check=True, timeout=240, capture_output=True,
                          text=True)
    assert "resumed from" in done.stdout
    assert adapter_digest(cut / "final") == adapter_digest(ref / "final")
    grpo = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines() if '"grpo"' in l]
    trained = [r["train/planner/trajectories"] + r["train/executor/trajectories"] > 0 for r in grpo]
    # GRPO steps 1-3 after the cached warm start; killed after step 1's checkpoint, the resumed run redoes
    # 2-3: one of them must really update (a step whose groups all have equal rewards trains nothing)
    assert len(grpo) == 3 and any(trained[1:])
    # a step that updated a role sampled in bfloat16 reports how far the sampler was from the update
    assert all(any(k.endswith("/sampler_gap") for k in r) == (bool(extra) and t) for r, t in zip(grpo, trained))
    # the metrics log of the resumed run matches the uninterrupted one step for step
    assert [l.split('"time/')[0] for l in (cut / "metrics.jsonl").read_text().splitlines()] == \
           [l.split('"time/')[0] for l in (ref / "metrics.jsonl").read_text().splitlines()]
