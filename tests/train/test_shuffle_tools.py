"""train.shuffle_tools: ToolRL and task-file training items offer their tools in a seeded order of
their own, so where a tool is listed says nothing about which one is called."""

from __future__ import annotations

import json
from collections import Counter

from cahl.config import load_config
from cahl.train.loop import training_tasks


def _task_file(path, n=40):
    """n items offering four tools, the called one always listed first (as ToolRL's SFT set mostly does)."""
    rows = []
    for i in range(n):
        tools = [{"name": f"tool_{k}", "description": f"tool number {k}",
                  "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}
                 for k in range(4)]
        rows.append({"id": f"item-{i}", "messages": [{"role": "user", "content": f"Use tool_0 on {i}"}],
                     "tools": tools, "gold_calls": [{"name": "tool_0", "arguments": {"x": i}}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _names(task):
    return [t["name"] for t in task.tools]


def test_tools_are_shuffled_per_item_seeded_and_nothing_is_lost(tmp_path):
    f = _task_file(tmp_path / "tasks.jsonl")
    base = [f"train.data=[file:{f}]"]
    plain = training_tasks(load_config(None, base + ["train.shuffle_tools=false"]))
    assert all(_names(t) == ["tool_0", "tool_1", "tool_2", "tool_3"] for t in plain)

    shuffled = training_tasks(load_config(None, base))
    assert [t.id for t in shuffled] == [t.id for t in plain]
    assert all(sorted(_names(t)) == _names(p) for t, p in zip(shuffled, plain))
    first = Counter(_names(t).index("tool_0") for t in shuffled)
    assert set(first) == {0, 1, 2, 3} and first[0] < 20  # 40 items: position 0 for all of them before
    for t, p in zip(shuffled, plain):  # only the order changed
        assert t.messages == p.messages and t.gold_calls == p.gold_calls and t.meta == p.meta

    again = training_tasks(load_config(None, base))
    assert [_names(t) for t in again] == [_names(t) for t in shuffled]  # same seed, same orders
    other = training_tasks(load_config(None, base + ["seed=1"]))
    assert [_names(t) for t in other] != [_names(t) for t in shuffled]
