"""The experiment machinery end to end in tiny mode: a tiny random model, one SFT and one GRPO
step per arm, two seeds, a two-benchmark evaluation; then a re-run that must skip finished arms."""

import json

import pytest
import torch
from safetensors.torch import load_file

from cahl.config import load_config
from cahl.experiment import ARMS, arm_config, run_experiment
from cahl.testing import tiny_model
from cahl.train.loop import train


@pytest.mark.timeout(240)
def test_tiny_experiment_runs_every_arm_and_resumes(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    cfg = load_config(None, [
        f"model.name={model}", "model.lora_r=4", f"out={tmp_path / 'exp'}", "sft.steps=1", "sft.batch_size=2",
        f"sft.cache_dir={tmp_path / 'sft'}", "sft.check_items=0",
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
    # one warm start per policy kind, trained once and shared by every arm and seed
    assert len(list((tmp_path / "sft").iterdir())) == 2  # hierarchical and flat
    hierarchical = {_key(exp / arm / f"seed_{s}") for arm in ("sft", "separate", "joint", "joint_no_align") for s in (0, 1)}
    assert len(hierarchical) == 1 and _key(exp / "flat" / "seed_1") not in hierarchical
    budget = {r["arm"]: sum(v for k, v in r["budget"].items() if k.startswith("optimizer_steps/"))
              for r in records if r["seed"] == 0}
    # equal budget: every trained arm makes the same number of optimizer steps (those with signal)
    assert budget["raw"] == 0
    assert (tmp_path / "exp" / "training_curves.png").is_file()
    done = tmp_path / "exp" / "joint" / "seed_0" / "done.json"
    stamp = done.stat().st_mtime_ns
    run_experiment(cfg)  # finished arms are not re-run
    assert done.stat().st_mtime_ns == stamp


def _key(run_dir):
    """The warm start a run started from (the cache folder its sft.json came from)."""
    return json.loads((run_dir / "sft.json").read_text())["key"]


@pytest.mark.timeout(240)
def test_every_arm_and_seed_starts_from_the_one_cached_warm_start(tmp_path):
    """The sft arm's adapters are the warm start itself; a joint run of another seed starts from the
    same adapters (SFT did not run again) and its GRPO step moves them."""
    model = tiny_model(tmp_path / "tiny")
    cfg = load_config(None, [
        f"model.name={model}", "model.lora_r=4", "sft.steps=2", "sft.batch_size=2", "train.steps=1",
        f"sft.cache_dir={tmp_path / 'cache'}", "sft.check_items=0",
        "train.tasks_per_step=1", "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false",
        "rollout.plans_per_task=2", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.constrain=off",
        "rollout.max_planner_turns=2", "rollout.max_context=1024",
        "reward.custom=cahl.testing:parity_reward"])  # random samples differ: GRPO groups have signal
    train(arm_config(cfg, "sft", 0, tmp_path / "sft"))
    (cached,) = list((tmp_path / "cache").iterdir())
    stamp = (cached / "sft.json").stat().st_mtime_ns
    train(arm_config(cfg, "joint", 1, tmp_path / "joint"))
    assert (cached / "sft.json").stat().st_mtime_ns == stamp and len(list((tmp_path / "cache").iterdir())) == 1
    assert _key(tmp_path / "joint") == _key(tmp_path / "sft") == cached.name
    moved = []
    for role in ("planner", "executor"):
        warm = load_file(cached / role / "adapter_model.safetensors")
        sft = load_file(tmp_path / "sft" / "final" / role / "adapter_model.safetensors")
        joint = load_file(tmp_path / "joint" / "final" / role / "adapter_model.safetensors")
        assert warm.keys() == sft.keys() and all(torch.equal(warm[k], sft[k]) for k in warm)
        moved.append(any(not torch.equal(warm[k], joint[k]) for k in warm))
    assert any(moved)  # the GRPO step after SFT did update
