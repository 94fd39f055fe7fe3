"""train.task_pool: GRPO draws from the first N training tasks only; SFT keeps the whole pool."""

from __future__ import annotations

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import build_state, training_tasks


def test_grpo_draws_from_the_first_n_tasks_while_sft_uses_all(tmp_path):
    overrides = [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "train.data=[synth]",
                 "train.n_synth=12", "train.task_pool=3", "train.tasks_per_step=3", "sft.steps=1"]
    cfg = load_config(None, overrides)
    ctx = build_state(cfg)
    every = training_tasks(cfg)
    assert [t.id for t in ctx.tasks] == [t.id for t in every[:3]]
    # the oracle SFT examples come from all 12 tasks, not only the pool
    from cahl.train.sft import sft_data

    def examples(c):
        return sum(len(v) for v in sft_data(c, ctx.chat, ("planner", "executor")).values())

    assert examples(cfg) > examples(load_config(None, overrides + ["train.n_synth=3"]))
