"""sft.recovery: SFT examples that teach the hierarchy to recover from a failed first sub-task."""

from __future__ import annotations

import pytest

from cahl.envs.synth import generate_tasks
from cahl.sources import make_env
from cahl.train.loop import sft_pools
from cahl.train.oracle import error_line, planner_example, recovery_examples, skipped_step
from cahl.types import CahlInputError


def _tasks(n=40, **kw):
    return generate_tasks(n, seed=3, min_steps=2, max_steps=2, n_distractors=2, **kw)


def _env(task):
    env = make_env(task)
    env.reset(task)
    return env


def _trained_text(chat, example) -> str:
    ids, mask = example
    return chat.tokenizer.decode([i for i, m in zip(ids, mask) if m])


def _context_text(chat, example) -> str:
    ids, mask = example
    return chat.tokenizer.decode([i for i, m in zip(ids, mask) if not m])


def test_the_skipped_step_makes_the_second_call_on_the_entity_the_question_names():
    seen = 0
    for task in _tasks():
        first, second = task.gold_calls
        fed = [p for p, k in task.meta["sources"][1].items() if k == 0]
        call = skipped_step(task)
        if len(first.arguments) != 1 or not fed:
            assert call is None, task.id
            continue
        seen += 1
        entity = next(iter(first.arguments.values()))
        assert call.name == second.name
        assert {p: call.arguments[p] for p in fed} == {p: entity for p in fed}
        assert {k: v for k, v in call.arguments.items() if k not in fed} == \
            {k: v for k, v in second.arguments.items() if k not in fed}
        assert list(call.arguments) == list(task.tools[[t["name"] for t in task.tools].index(call.name)]
                                            ["parameters"]["properties"])  # the schema's order
    assert seen >= 20


def test_no_skipped_step_for_a_one_call_task():
    task = generate_tasks(5, seed=1, min_steps=1, max_steps=1)[0]
    assert skipped_step(task) is None


def test_error_line_keeps_the_first_clause_only():
    msg = "Error: ValueError: unknown country 'Mumbai'; known: Australia, Brazil, Canada"
    assert error_line(msg) == "Error: ValueError: unknown country 'Mumbai'"
    assert error_line("Error: x" + "y" * 500) == ("Error: x" + "y" * 500)[:160]
    assert error_line("Error: bad arguments for f: a: expected number; b: missing") == \
        "Error: bad arguments for f: a: expected number"


def test_the_planner_is_trained_on_the_recovery_not_on_the_mistake(chat):
    made = 0
    for task in _tasks():
        pair = recovery_examples(chat, task, _env(task))
        if pair is None:
            continue
        made += 1
        planner, _ = pair
        call = skipped_step(task)
        error = error_line(_env(task).step([call])[0].content)
        # the trained tokens are exactly the plain oracle example's: the same steps and answer
        assert _trained_text(chat, planner) == _trained_text(chat, planner_example(chat, task))
        context = _context_text(chat, planner)
        assert f"with {next(iter(k for k in call.arguments))}=" in context
        assert f"<result>{error}</result>" in context
        assert error.startswith("Error:") and "known:" not in error
        # the mistake comes before the first trained step
        ids, mask = planner
        first_trained = mask.index(1)
        assert f"<result>{error}</result>" in chat.tokenizer.decode(ids[:first_trained])
    assert made >= 10


def test_the_executor_does_the_mistaken_step_faithfully_and_reports_the_error_in_one_line(chat):
    for task in _tasks():
        pair = recovery_examples(chat, task, _env(task))
        if pair is None:
            continue
        _, executor = pair
        call = skipped_step(task)
        obs = _env(task).step([call])[0]
        trained = _trained_text(chat, executor)
        assert f'"name": "{call.name}"' in trained
        for value in call.arguments.values():
            assert str(value) in trained
        assert f"<result>{error_line(obs.content)}</result>" in trained
        assert "known:" not in trained  # the observation's list of known values is context, never copied
        assert obs.content in _context_text(chat, executor)


def test_no_recovery_example_where_the_mistaken_call_works(chat):
    checked = 0
    for task in _tasks(80):
        call = skipped_step(task)
        if call is None or not _env(task).step([call])[0].ok:
            continue
        checked += 1  # e.g. upper-casing the department's name instead of its manager's
        assert recovery_examples(chat, task, _env(task)) is None
    assert checked >= 1


def test_renamed_tools_recover_under_their_shown_names(chat):
    tasks = _tasks(rename=1.0)
    pairs = [(t, recovery_examples(chat, t, _env(t))) for t in tasks]
    pairs = [(t, p) for t, p in pairs if p is not None]
    assert pairs
    for task, (_, executor) in pairs:
        shown = {t["name"] for t in task.tools}
        assert skipped_step(task).name in shown


def test_sft_pools_add_one_pair_per_chosen_generated_task(chat):
    tasks = _tasks()
    roles = ("planner", "executor")
    plain = sft_pools(chat, tasks, roles, 4096)
    assert sft_pools(chat, tasks, roles, 4096, recovery=0.0) == plain
    full = sft_pools(chat, tasks, roles, 4096, recovery=1.0)
    eligible = sum(recovery_examples(chat, t, _env(t)) is not None for t in tasks)
    assert eligible >= 10
    for role in roles:
        assert len(full[role]) == len(plain[role]) + eligible
        assert all(example in full[role] for example in plain[role])
    half = sft_pools(chat, tasks, roles, 4096, recovery=0.5)
    assert len(plain["planner"]) < len(half["planner"]) < len(full["planner"])
    assert sft_pools(chat, tasks, roles, 4096, recovery=0.5) == half  # chosen by task id, not by chance


def test_recovery_is_for_generated_tasks_only(chat):
    from dataclasses import replace

    tasks = [replace(t, source="toolrl") for t in _tasks(8)]
    roles = ("planner", "executor")
    assert sft_pools(chat, tasks, roles, 4096, recovery=1.0) == sft_pools(chat, tasks, roles, 4096)


def test_the_config_checks_its_range():
    from cahl.config import SFTConfig

    assert SFTConfig(recovery=0.5).recovery == 0.5
    with pytest.raises(CahlInputError, match="sft.recovery"):
        SFTConfig(recovery=1.5)
