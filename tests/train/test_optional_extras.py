"""sft.optional_extras: generated tasks' SFT examples show optional parameters the calls leave out."""

from __future__ import annotations

import pytest

from cahl.envs.synth import generate_tasks
from cahl.train.loop import sft_pools
from cahl.train.oracle import OPTIONAL_EXTRAS, planner_example, with_optional_extras
from cahl.types import CahlInputError

EXTRA_NAMES = {k for k, _ in OPTIONAL_EXTRAS}


def _tasks(n=30, **kw):
    return generate_tasks(n, seed=5, min_steps=2, max_steps=2, n_distractors=2, **kw)


def test_extras_are_optional_new_and_only_added():
    added = 0
    for task in _tasks():
        shown = with_optional_extras(task, 0.5)
        assert shown.gold_calls == task.gold_calls and shown.messages == task.messages
        assert [t["name"] for t in shown.tools] == [t["name"] for t in task.tools]
        for before, after in zip(task.tools, shown.tools):
            b, a = before["parameters"], after["parameters"]
            assert a["required"] == b["required"]
            assert dict(list(a["properties"].items())[: len(b["properties"])]) == b["properties"]
            new = set(a["properties"]) - set(b["properties"])
            assert len(new) <= 1 and new <= EXTRA_NAMES
            added += len(new)
            for key in new:
                assert key not in a["required"] and "Default is" in a["properties"][key]["description"]
                assert key not in task.messages[-1]["content"]
    assert 0.3 * 4 * 30 < added < 0.7 * 4 * 30


def test_share_zero_changes_nothing_and_one_extends_every_tool():
    task = _tasks(1)[0]
    assert with_optional_extras(task, 0.0) is task
    full = with_optional_extras(task, 1.0)
    assert all(len(a["parameters"]["properties"]) == len(b["parameters"]["properties"]) + 1
               for a, b in zip(full.tools, task.tools))
    assert with_optional_extras(task, 1.0) == full  # seeded by task and tool


def test_the_examples_show_the_extra_and_the_calls_leave_it_out(chat):
    for task in _tasks(10):
        shown = with_optional_extras(task, 1.0)
        ids, mask = planner_example(chat, shown)
        prompt = chat.tokenizer.decode([i for i, m in zip(ids, mask) if not m])
        trained = chat.tokenizer.decode([i for i, m in zip(ids, mask) if m])
        extras = [set(a["parameters"]["properties"]) - set(b["parameters"]["properties"])
                  for a, b in zip(shown.tools, task.tools)]
        for (key,) in extras:
            assert f"{key}?:" in prompt  # rendered as an optional parameter
            assert f"{key}=" not in trained
        assert trained == chat.tokenizer.decode([i for i, m in zip(*planner_example(chat, task)) if m])


def test_sft_pools_extend_generated_tasks_only(chat):
    from dataclasses import replace

    roles = ("planner", "executor")
    tasks = _tasks(6)
    assert sft_pools(chat, tasks, roles, 4096, optional_extras=0.0) == sft_pools(chat, tasks, roles, 4096)
    extended = sft_pools(chat, tasks, roles, 4096, optional_extras=1.0)
    assert all(len(a[0]) > len(b[0]) for a, b in zip(extended["planner"], sft_pools(chat, tasks, roles, 4096)["planner"]))
    others = [replace(t, source="toolrl") for t in tasks]
    assert sft_pools(chat, others, roles, 4096, optional_extras=1.0) == sft_pools(chat, others, roles, 4096)


def test_recovery_examples_run_the_original_task(chat):
    """The env checks calls against the tools it knows; an extended task's examples still get the
    real error of the mistaken call (which leaves the extra out)."""
    tasks = _tasks(20)
    both = sft_pools(chat, tasks, ("planner",), 4096, recovery=1.0, optional_extras=1.0)
    plain = sft_pools(chat, tasks, ("planner",), 4096, recovery=1.0)
    assert len(both["planner"]) == len(plain["planner"]) > len(tasks)
    texts = [chat.tokenizer.decode(ids) for ids, _ in both["planner"]]
    assert sum("<result>Error: ValueError" in t or "<result>Error: bad arguments" in t for t in texts) == \
        len(plain["planner"]) - len(tasks)
    assert not any("unknown argument" in t for t in texts)


def test_the_config_checks_its_range():
    from cahl.config import SFTConfig

    with pytest.raises(CahlInputError, match="sft.optional_extras"):
        SFTConfig(optional_extras=-0.1)
