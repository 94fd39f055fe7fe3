"""The experiment machinery end to end in tiny mode: a tiny random model, one SFT and one GRPO
step per arm, two seeds, a two-benchmark evaluation; then a re-run that must skip finished arms."""

import json

import pytest
import torch
from safetensors.torch import load_file

from cahl.config import load_config
from cahl.experiment import ARMS, SHARES_SFT, arm_config, run_experiment, seed_from_sft
from cahl.testing import tiny_model
from cahl.train.loop import train


@pytest.mark.timeout(240)
def test_tiny_experiment_runs_every_arm_and_resumes(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    cfg = load_config(None, [
        f"model.name={model}", "model.lora_r=4", f"out={tmp_path / 'exp'}", "sft.steps=1", "sft.batch_size=2",
        "train.steps=1", "train.tasks_per_step=2", "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false",
        "rollout.plans_per_task=2", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.constrain=off",
        "rollout.max_planner_turns=2", "rollout.max_context=1024", "eval.max_new_tokens=8", "eval.constrain=off", "eval.batch_size=4",
        "experiment.seeds=[0,1]", "experiment.eval_limit=1", "experiment.bench=bfcl_v3:simple,synth_unseen:steps-2"])
    text = run_experiment(cfg)
    for arm in ARMS:
        assert f"| {arm} |" in text
    assert "### joint − separate" in text and "### joint − flat" in text
    records = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert len(records) == len(ARMS) * 2 - 1  # raw is greedy and untrained: evaluated once
    assert [(r["arm"], r["seed"]) for r in records][:len(ARMS)] == [(a, 0) for a in ARMS]  # seed by seed
    exp = tmp_path / "exp"
    sft_lines = (exp / "sft" / "seed_1" / "metrics.jsonl").read_text().splitlines()
    for arm in SHARES_SFT:  # started from the sft arm's checkpoint: its SFT history, then its own steps
        lines = (exp / arm / "seed_1" / "metrics.jsonl").read_text().splitlines()
        assert lines[:len(sft_lines)] == sft_lines and len(lines) > len(sft_lines)
        assert (exp / arm / "seed_1" / "config.yaml").is_file()
    budget = {r["arm"]: sum(v for k, v in r["budget"].items() if k.startswith("optimizer_steps/"))
              for r in records if r["seed"] == 0}
    # equal budget: every trained arm makes the same number of optimizer steps (those with signal)
    assert budget["raw"] == 0
    assert (tmp_path / "exp" / "training_curves.png").is_file()
    done = tmp_path / "exp" / "joint" / "seed_0" / "done.json"
    stamp = done.stat().st_mtime_ns
    run_experiment(cfg)  # finished arms are not re-run
    assert done.stat().st_mtime_ns == stamp


@pytest.mark.timeout(240)
def test_an_arm_seeded_from_the_sft_arm_ends_where_running_its_own_sft_ends(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    cfg = load_config(None, [
        f"model.name={model}", "model.lora_r=4", "sft.steps=2", "sft.batch_size=2", "train.steps=1",
        "train.tasks_per_step=1", "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false",
        "rollout.plans_per_task=2", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.constrain=off",
        "rollout.max_planner_turns=2", "rollout.max_context=1024",
        "reward.custom=cahl.testing:parity_reward"])  # random samples differ: GRPO groups have signal
    train(arm_config(cfg, "sft", 0, tmp_path / "sft"))
    assert seed_from_sft(cfg, tmp_path / "seeded", tmp_path / "sft")
    assert not seed_from_sft(cfg, tmp_path / "seeded", tmp_path / "sft")  # never over a started arm
    train(arm_config(cfg, "joint", 0, tmp_path / "seeded"), resume=True)
    train(arm_config(cfg, "joint", 0, tmp_path / "own"))
    for role in ("planner", "executor"):
        a = load_file(tmp_path / "seeded" / "final" / role / "adapter_model.safetensors")
        b = load_file(tmp_path / "own" / "final" / role / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sft_final = load_file(tmp_path / "sft" / "final" / "planner" / "adapter_model.safetensors")
    assert any(not torch.equal(sft_final[k], a[k]) for k in a)  # the GRPO step after SFT did update
