"""One AdamW per adapter: shared mode's two roles share one set of moments, each stepping at its own LR."""

from __future__ import annotations

import pytest

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import build_state, with_lr


@pytest.mark.parametrize("mode", ["adapters", "shared"])
def test_one_optimizer_per_adapter(tmp_path, mode):
    cfg = load_config(None, [f"model.name={tiny_model(tmp_path / 'tiny')}", f"model.policies={mode}", "model.lora_r=4",
                             "train.data=[synth]", "train.n_synth=8", "train.lr_planner=0.001",
                             "train.lr_executor=0.002", "sft.steps=0"])
    ctx = build_state(cfg)
    planner, executor = ctx.optimizers["planner"], ctx.optimizers["executor"]
    assert (planner is executor) == (mode == "shared")
    params = {id(p) for g in planner.param_groups for p in g["params"]}
    assert params == {id(p) for p in ctx.policies.parameters("planner")}
    assert with_lr(executor, ctx.lr["executor"]).param_groups[0]["lr"] == 0.002
    assert with_lr(planner, ctx.lr["planner"]).param_groups[0]["lr"] == 0.001
