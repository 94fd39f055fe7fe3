"""The evaluation harness batches across benchmarks and categories without changing any verdict."""

from __future__ import annotations

from cahl.agents.build import build_policies
from cahl.agents.rollout import RolloutConfig
from cahl.config import ModelConfig
from cahl.eval.harness import evaluate
from cahl.testing import tiny_model


def test_items_are_the_same_whatever_the_batch(tmp_path):
    policies, chat = build_policies(ModelConfig(name=tiny_model(tmp_path / "tiny"), threads=1))
    cfg = RolloutConfig(agent="hierarchical", temperature=0.0, max_new_tokens=8, max_planner_turns=2, constrain="off")
    spec = "bfcl_v3:simple,synth_unseen:steps-2,api_bank_exec:level-1"
    one = evaluate(policies, chat, cfg, spec, 2, tmp_path / "one", batch_size=1)
    mixed = evaluate(policies, chat, cfg, spec, 2, tmp_path / "mixed", batch_size=5)  # chunks cross categories
    keep = ("bench", "category", "id", "correct", "error_type", "end_reason", "calls", "response", "output")
    assert [{k: i[k] for k in keep} for i in one["items"]] == [{k: i[k] for k in keep} for i in mixed["items"]]
    assert [(i["bench"], i["category"]) for i in one["items"]] == [
        ("bfcl_v3", "simple")] * 2 + [("synth_unseen", "steps-2")] * 2 + [("api_bank_exec", "level-1")] * 2
    assert one["benchmarks"] == mixed["benchmarks"]
