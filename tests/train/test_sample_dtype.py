"""model.sample_dtype: rollouts decode with the frozen base in a lower precision, the update stays in
model.dtype and takes its old log-probs from its own first forward."""

from __future__ import annotations

import pytest
import torch

from cahl.agents import build
from cahl.agents.build import sample_dtype, train_dtype
from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import build_state, run_grpo_step
from cahl.types import CahlInputError


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "model.threads=1",
                              "train.data=[synth]", "train.n_synth=6", "train.tasks_per_step=2",
                              "rollout.plans_per_task=3", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.constrain=off",
                              "rollout.max_planner_turns=2", "rollout.max_context=1024", "train.lr_planner=0.01",
                              "train.lr_executor=0.01", "train.filter_zero_variance=false",
                              "reward.custom=cahl.testing:parity_reward", *overrides])


@pytest.mark.parametrize("seconds, expected", [({"float32": 1.0, "bfloat16": 0.5}, torch.bfloat16),
                                               ({"float32": 1.0, "bfloat16": 0.9}, torch.float32),
                                               ({"float32": 1.0, "bfloat16": 3.0}, torch.float32)])
def test_sample_dtype_resolves_empty_to_the_model_dtype_and_auto_by_measurement(monkeypatch, seconds, expected):
    cfg = load_config(None, [])
    assert sample_dtype(cfg.model) == torch.float32
    assert sample_dtype(load_config(None, ["model.sample_dtype=bfloat16"]).model) == torch.bfloat16
    monkeypatch.setattr(build, "matmul_seconds", lambda threads=0: seconds)  # as measured on three kinds of CPU
    assert sample_dtype(load_config(None, ["model.sample_dtype=auto"]).model) == expected
    assert train_dtype(load_config(None, ["model.dtype=auto"]).model) == str(expected).split(".")[1]
    assert sample_dtype(load_config(None, ["model.dtype=auto"]).model) == expected  # "" follows dtype
    # on a GPU auto keeps model.dtype (decode there is launch-bound; bf16 sampling measured slower)
    assert sample_dtype(load_config(None, ["model.sample_dtype=auto", "model.device=cuda"]).model) == torch.float32
    with pytest.raises(CahlInputError, match="model.sample_dtype"):
        load_config(None, ["model.sample_dtype=int8"])


def test_sampling_swaps_the_frozen_base_and_restores_the_same_tensors(tmp_path):
    ctx = build_state(_cfg(tmp_path, "model.sample_dtype=bfloat16"))
    policies = ctx.policies
    assert policies.sample_dtype == torch.bfloat16
    model = policies.model
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.data_ptr() for n, p in frozen.items()}
    values = {n: p.detach().clone() for n, p in {**frozen, **trained}.items()}
    with policies.sampling():
        assert all(p.dtype == torch.bfloat16 for p in frozen.values())
        assert all(p.dtype == torch.float32 for p in trained.values())  # adapters stay in the training dtype
        with policies.sampling():  # nested: nothing more happens
            assert all(p.dtype == torch.bfloat16 for p in frozen.values())
        assert all(p.dtype == torch.bfloat16 for p in frozen.values())
    for n, p in frozen.items():
        assert p.dtype == torch.float32 and p.data_ptr() == before[n]  # the very tensors, not a bf16 round trip
    for n, p in {**frozen, **trained}.items():
        assert torch.equal(p, values[n])


def test_without_sample_dtype_sampling_changes_nothing(tmp_path):
    ctx = build_state(_cfg(tmp_path))
    assert ctx.policies.sample_dtype is None
    with ctx.policies.sampling():
        assert all(p.dtype == torch.float32 for p in ctx.policies.model.parameters())


def test_grpo_takes_old_logprobs_from_its_own_forward_and_logs_the_gap(tmp_path):
    """Sampled in bfloat16, trained in float32: the rollout's log-probs differ from the policy's,
    yet the first epoch's ratio is exactly 1 (old = the update's own), and the gap is logged."""
    ctx = build_state(_cfg(tmp_path, "model.sample_dtype=bfloat16", "train.policy_epochs=2"))
    metrics = run_grpo_step(ctx, 0, ("planner", "executor"), "hierarchical")
    trajs = [tr for ep in ctx.last_episodes for tr in ep.trajectories if tr.role == "planner"]
    assert metrics["train/planner/trajectories"] == len(trajs)
    gap = metrics["train/planner/sampler_gap"]
    assert 0.0 < gap < 0.5  # bfloat16 rounding moves log-probs, a little
    assert metrics["train/planner/ratio_max"] > 1.0  # the second epoch is off-policy after one optimizer step


def test_first_epoch_ratio_is_one_with_a_low_precision_sampler(tmp_path):
    ctx = build_state(_cfg(tmp_path, "model.sample_dtype=bfloat16"))
    metrics = run_grpo_step(ctx, 0, ("planner", "executor"), "hierarchical")
    assert metrics["train/planner/ratio_max"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["train/planner/sampler_gap"] > 0.0


def test_sharded_training_refuses_a_sample_dtype(tmp_path):
    from cahl.train import sharding

    ctx = build_state(_cfg(tmp_path, "model.sample_dtype=bfloat16"))
    with pytest.raises(CahlInputError, match="model.sample_dtype"):
        sharding.shard(ctx.policies, 1)


def test_sampling_swaps_every_base_copy_of_separate_models(tmp_path):
    ctx = build_state(_cfg(tmp_path, "model.sample_dtype=bfloat16", "model.policies=separate_models"))
    models = ctx.policies.models()
    assert len(models) == 2
    with ctx.policies.sampling():
        for model in models:
            assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    for model in models:
        assert {p.dtype for p in model.parameters()} == {torch.float32}
