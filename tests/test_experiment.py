"""The experiment machinery end to end in tiny mode: a tiny random model, one SFT and one GRPO
step per arm, two seeds, a two-benchmark evaluation; then a re-run that must skip finished arms."""

import json

import pytest

from cahl.config import load_config
from cahl.experiment import ARMS, run_experiment
from cahl.testing import tiny_model


@pytest.mark.timeout(240)
def test_tiny_experiment_runs_every_arm_and_resumes(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    cfg = load_config(None, [
        f"model.name={model}", "model.lora_r=4", f"out={tmp_path / 'exp'}", "sft.steps=1", "sft.batch_size=2",
        "train.steps=1", "train.tasks_per_step=2", "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false",
        "rollout.plans_per_task=2", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8",
        "rollout.max_planner_turns=2", "rollout.max_context=1024", "eval.max_new_tokens=8", "eval.batch_size=4",
        "experiment.seeds=[0,1]", "experiment.eval_limit=1", "experiment.bench=bfcl_v3:simple,synth_unseen:steps-2"])
    text = run_experiment(cfg)
    for arm in ARMS:
        assert f"| {arm} |" in text
    assert "### joint − separate" in text and "### joint − flat" in text
    records = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert len(records) == len(ARMS) * 2
    budget = {r["arm"]: sum(v for k, v in r["budget"].items() if k.startswith("optimizer_steps/"))
              for r in records if r["seed"] == 0}
    # equal budget: every trained arm makes the same number of optimizer steps (those with signal)
    assert budget["raw"] == 0
    assert (tmp_path / "exp" / "training_curves.png").is_file()
    done = tmp_path / "exp" / "joint" / "seed_0" / "done.json"
    stamp = done.stat().st_mtime_ns
    run_experiment(cfg)  # finished arms are not re-run
    assert done.stat().st_mtime_ns == stamp
