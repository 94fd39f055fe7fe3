"""The oracle planner's thinks: each step in the question's words where the task has them."""

from __future__ import annotations

import re
from dataclasses import replace

from cahl.envs.synth import generate_tasks
from cahl.train.oracle import planner_example


def _thinks(chat, example) -> list[str]:
    ids, mask = example
    trained = chat.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    return re.findall(r"<think>(.*?)</think>", trained)


def test_a_generated_tasks_thinks_are_its_step_texts_then_done(chat):
    for task in generate_tasks(12, seed=2, min_steps=2, max_steps=3):
        texts = task.meta["step_texts"]
        n = len(texts)
        expected = [f"Step {k + 1} of {n}: {t.rstrip('.')}." for k, t in enumerate(texts)] + [f"All {n} steps done."]
        assert _thinks(chat, planner_example(chat, task)) == expected


def test_without_step_texts_or_in_one_calling_turn_the_think_names_the_tools(chat):
    task = generate_tasks(1, seed=2, min_steps=2, max_steps=2)[0]
    names = [c.name for c in task.gold_calls]
    bare = replace(task, meta={k: v for k, v in task.meta.items() if k != "step_texts"})
    assert _thinks(chat, planner_example(chat, bare)) == [f"Step 1 of 2: {names[0]}.", f"Step 2 of 2: {names[1]}.",
                                                          "All 2 steps done."]
    # where the first calling turn ends the episode, one sub-task holds every call
    assert _thinks(chat, planner_example(chat, task, ends_on_call=True)) == [f"Step 1 of 1: {', '.join(dict.fromkeys(names))}."]
