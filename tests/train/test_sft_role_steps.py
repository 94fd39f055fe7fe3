"""sft.role_steps: a role's own number of SFT steps; the phase lasts as long as its longest role."""

from __future__ import annotations

import pytest

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import step_plan, train
from cahl.types import CahlInputError


def test_step_plan_holds_the_grpo_steps_of_the_schedule():
    cfg = load_config(None, ["sft.steps=2", "sft.role_steps={planner: 3, executor: 1}", "train.steps=2"])
    assert step_plan(cfg) == [("grpo", ("planner", "executor"), "hierarchical")] * 2
    assert step_plan(load_config(None, ["train.schedule=separate", "train.steps=3"])) == [
        ("grpo", ("executor",), "executor"), ("grpo", ("planner",), "hierarchical"), ("grpo", ("planner",), "hierarchical")]
    # a role left at 0 gets no SFT; the flat schedule ignores the hierarchy's roles
    from cahl.train.sft import sft_roles

    assert sft_roles(load_config(None, ["sft.steps=1", "sft.role_steps={executor: 0}"])) == ("planner",)
    assert sft_roles(load_config(None, ["sft.steps=1", "sft.role_steps={planner: 5}", "train.schedule=flat"])) == ("flat",)


@pytest.mark.parametrize("override, key", [("sft.role_steps={planer: 3}", "sft.role_steps.planer"),
                                           ("sft.role_steps={executor: -1}", "sft.role_steps.executor"),
                                           ("sft.role_steps={executor: 2.5}", "sft.role_steps.executor")])
def test_bad_role_steps_are_named(override, key):
    with pytest.raises(CahlInputError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_the_warm_start_logs_sft_only_for_the_roles_still_in_their_phase(tmp_path):
    cfg = load_config(None, [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "model.threads=1",
                             "train.data=[synth]", "train.n_synth=6", "sft.steps=1", "sft.batch_size=2",
                             "sft.role_steps={planner: 3}", "train.steps=0", "train.tensorboard=false",
                             f"sft.cache_dir={tmp_path / 'cache'}", "sft.check_items=2", f"out={tmp_path / 'run'}"])
    train(cfg)
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "sft_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    record = json.loads((tmp_path / "run" / "sft.json").read_text())
    assert record["steps"] == 3 and set(record["parse_check"]) <= {"planner", "executor"}
    assert ["sft/executor/loss" in r for r in rows] == [True, False, False]
    assert all("sft/planner/loss" in r for r in rows)
    # a role that sat the last steps out still reports its last loss
    assert record["final_loss"]["executor"] == rows[0]["sft/executor/loss"]
    assert record["final_loss"]["planner"] == rows[-1]["sft/planner/loss"]
