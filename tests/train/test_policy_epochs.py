"""train.policy_epochs: several optimizer steps per role on one step's rollouts (GRPO's mu)."""

from __future__ import annotations

import pytest

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import build_state, epoch_means, run_grpo_step


def test_epoch_means_average_every_metric_but_take_the_largest_ratio():
    epochs = [{"loss": 1.0, "ratio_max": 1.0, "tokens": 10}, {"loss": 3.0, "ratio_max": 1.5, "tokens": 10}]
    assert epoch_means(epochs) == {"loss": 2.0, "ratio_max": 1.5, "tokens": 10}


def _step(tmp_path, epochs: int) -> tuple[dict, dict]:
    cfg = load_config(None, [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "model.threads=1",
                             "train.data=[synth]", "train.n_synth=6", "train.tasks_per_step=2",
                             "rollout.plans_per_task=3", "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=8", "rollout.constrain=off",
                             "rollout.max_planner_turns=2", "rollout.max_context=1024", "train.lr_planner=0.01",
                             "train.lr_executor=0.01", "train.filter_zero_variance=false",
                             "reward.custom=cahl.testing:parity_reward", f"train.policy_epochs={epochs}"])
    ctx = build_state(cfg)
    metrics = run_grpo_step(ctx, 0, ("planner", "executor"), "hierarchical")
    return metrics, dict(ctx.counters)


@pytest.mark.parametrize("epochs", [1, 3])
def test_each_epoch_is_an_optimizer_step_and_later_epochs_are_off_policy(tmp_path, epochs):
    metrics, counters = _step(tmp_path, epochs)
    trained = [role for role in ("planner", "executor") if metrics[f"train/{role}/trajectories"]]
    assert "planner" in trained  # a random tiny model seldom delegates, so the executor may have no turns
    for role in trained:
        assert counters[f"optimizer_steps/{role}"] == epochs
        # the first epoch trains the policy that sampled (ratio 1 up to rounding); after an optimizer
        # step at lr 0.01 the rollout's tokens are off-policy
        if epochs == 1:
            assert metrics[f"train/{role}/ratio_max"] == pytest.approx(1.0, abs=1e-3)
        else:
            assert metrics[f"train/{role}/ratio_max"] > 1.01


def test_policy_epochs_below_one_is_refused():
    from cahl.types import CahlInputError

    with pytest.raises(CahlInputError, match="train.policy_epochs"):
        load_config(None, ["train.policy_epochs=0"])


def test_epoch_means_average_a_key_over_the_epochs_that_report_it():
    # sampler_gap comes from the first epoch alone (its forward replaces the old log-probs)
    assert epoch_means([{"loss": 1.0, "sampler_gap": 0.2}, {"loss": 3.0}]) == {"loss": 2.0, "sampler_gap": 0.2}
