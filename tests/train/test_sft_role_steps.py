"""sft.role_steps: a role's own number of SFT steps; the phase lasts as long as its longest role."""

from __future__ import annotations

import pytest

from cahl.config import load_config
from cahl.testing import tiny_model
from cahl.train.loop import step_plan, train
from cahl.train.metrics import read_metrics
from cahl.types import CahlInputError


def test_step_plan_drops_a_role_after_its_own_count():
    cfg = load_config(None, ["sft.steps=2", "sft.role_steps={planner: 3, executor: 1}", "train.steps=1"])
    assert step_plan(cfg) == [("sft", ("planner", "executor"), ""), ("sft", ("planner",), ""), ("sft", ("planner",), ""),
                              ("grpo", ("planner", "executor"), "hierarchical")]
    # a role left at 0 gets no SFT; the flat schedule ignores the hierarchy's roles
    assert [p[1] for p in step_plan(load_config(None, ["sft.steps=1", "sft.role_steps={executor: 0}", "train.steps=0"]))] \
        == [("planner",)]
    assert len(step_plan(load_config(None, ["sft.steps=1", "sft.role_steps={planner: 5}", "train.schedule=flat",
                                            "train.steps=0"]))) == 1


@pytest.mark.parametrize("override, key", [("sft.role_steps={planer: 3}", "sft.role_steps.planer"),
                                           ("sft.role_steps={executor: -1}", "sft.role_steps.executor"),
                                           ("sft.role_steps={executor: 2.5}", "sft.role_steps.executor")])
def test_bad_role_steps_are_named(override, key):
    with pytest.raises(CahlInputError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_training_logs_sft_only_for_the_roles_still_in_their_phase(tmp_path):
    cfg = load_config(None, [f"model.name={tiny_model(tmp_path / 'tiny')}", "model.lora_r=4", "model.threads=1",
                             "train.data=[synth]", "train.n_synth=6", "sft.steps=1", "sft.batch_size=2",
                             "sft.role_steps={planner: 3}", "train.steps=0", "train.tensorboard=false",
                             f"out={tmp_path / 'run'}"])
    train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["sft"] * 3
    assert ["sft/executor/loss" in r for r in rows] == [True, False, False]
    assert all("sft/planner/loss" in r for r in rows)
