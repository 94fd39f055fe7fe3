"""train.task_pool: GRPO draws from the first N training tasks only; SFT keeps the whole pool."""

from __future__ import annotations

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import build_context, training_tasks


def test_grpo_draws_from_the_first_n_tasks_while_sft_uses_all(tmp_path):
    overrides = [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "train.data=[synth]",
                 "train.n_synth=12", "train.task_pool=3", "train.tasks_per_step=3", "sft.steps=1"]
    cfg = load_config(None, overrides)
    ctx = build_context(cfg)
    every = training_tasks(cfg)
    assert [t.id for t in ctx.tasks] == [t.id for t in every[:3]]
    # the oracle SFT examples come from all 12 tasks, not only the pool
    assert sum(len(v) for v in ctx.sft_pool.values()) > sum(len(v) for v in
                                                          build_context(load_config(None, overrides + ["train.n_synth=3"])).sft_pool.values())
