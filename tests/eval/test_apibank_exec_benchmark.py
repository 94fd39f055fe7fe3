"""`api_bank_exec`: API-Bank's level-1/2 items scored by executing the call (the original protocol)."""

from __future__ import annotations

import dataclasses

import pytest

from cahl.data.apibank import PRIOR_CALLS_KEY
from cahl.eval.benchmarks import BENCHMARKS, parse_bench_spec
from cahl.types import CahlInputError, Episode, ToolCall


@pytest.fixture(scope="module")
def bench():
    return BENCHMARKS["api_bank_exec"]()


def episode(task, calls):
    return Episode(task, "0", calls, None, "answered", [])


def test_every_gold_call_scores_correct_on_both_levels(bench):
    counts = {}
    for cat in bench.categories:
        tasks = bench.load(cat, None)
        counts[cat] = (len(tasks), sum(bench.score(t, episode(t, list(t.gold_calls))).correct for t in tasks))
    assert counts == {"level-1": (399, 399), "level-2": (135, 135)}


def test_wrong_api_wrong_arguments_and_no_call_fail_with_their_error_type(bench):
    task = next(t for t in bench.load("level-1", None) if t.gold_calls[0].name == "ModifyRegistration")
    gold = task.gold_calls[0]
    assert bench.score(task, episode(task, [])).error_type == "no_call"
    assert bench.score(task, episode(task, [ToolCall("CancelRegistration", gold.arguments)])).error_type == "wrong_api"
    wrong = ToolCall(gold.name, {**gold.arguments, "appointment_id": "00000000"})
    assert bench.score(task, episode(task, [wrong])).error_type == "wrong_result"
    # only the first request counts, as in API-Bank: a right call after a wrong one does not rescue it
    assert not bench.score(task, episode(task, [wrong, gold])).correct


def test_prior_calls_of_the_dialogue_are_replayed_into_the_episode(bench):
    tasks = bench.load("level-1", None) + bench.load("level-2", None)
    with_prior = [t for t in tasks if t.meta[PRIOR_CALLS_KEY]]
    assert len(with_prior) == 273  # counted from the dialogues: 190 + 64 + 15 + 4 items after 1..4 calls
    env = bench.make_env(with_prior[0])
    env.reset(with_prior[0])
    assert env.results == []  # the replay is state, not part of the episode's record


def test_spec_and_missing_gold_are_named(bench):
    assert [c for _, c in parse_bench_spec("api_bank_exec")] == ["level-1", "level-2"]
    task = dataclasses.replace(bench.load("level-2", None)[0], gold_calls=[])
    with pytest.raises(CahlInputError, match="needs one gold call"):
        bench.score(task, episode(task, [ToolCall("X", {})]))
