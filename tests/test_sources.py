"""One entry per task source: what every loader produces has an environment and a verdict, and the
reward's outcome is that same verdict (training and evaluation cannot drift apart)."""

import pytest

from cahl import sources
from cahl.eval.benchmarks import BENCHMARKS
from cahl.envs.synth import generate_tasks
from cahl.rewards.hierarchy import outcome
from cahl.types import CahlInputError, Episode, Task, ToolCall


def test_every_benchmarks_tasks_have_a_source_entry():
    for name in ("bfcl_v3", "bfcl_v4", "synth_unseen"):  # the ones whose data ship in wheels or are generated
        bench = BENCHMARKS[name]()
        task = bench.load(bench.default[0], None)[0]
        assert task.source in sources.SOURCES, name
        assert sources.make_env(task) is not None


def test_the_outcome_is_the_sources_verdict():
    task = generate_tasks(1, seed=3, min_steps=2, max_steps=2, split="test")[0]
    right = Episode(task, "f0", list(task.gold_calls), task.gold_answer, "answered", [])
    wrong = Episode(task, "f0", [], "no idea", "answered", [])
    assert sources.verdict(task, right).correct and outcome(task, right) == 1.0
    assert not sources.verdict(task, wrong).correct and outcome(task, wrong) == 0.0


def test_a_source_without_an_entry_has_no_environment():
    task = Task("t", "mine", [{"role": "user", "content": "q"}], [], gold_calls=[ToolCall("f", {})])
    with pytest.raises(CahlInputError, match="no environment for source 'mine'"):
        sources.make_env(task)
    assert sources.verdict(task, Episode(task, "f0", [ToolCall("f", {})], None, "answered", [])).correct
