"""Synthetic tool tasks: gold chains re-run in the env, determinism, splits, aliases, hostile calls."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from cahl.envs.base import render_result
from cahl.envs.synth import TOOLS, SynthEnv, check_answer, check_arguments, generate_tasks
from cahl.envs.synth.generate import MAX_STEPS, chain_key, split_of
from cahl.envs.synth.tools import TOOL_LIST, add_days, convert_length, convert_temperature, divide, multiply
from cahl.types import CahlInputError, Task, ToolCall

TEMPLATES = {"lookup", "lookup+compute", "combine", "combine+compute"}


def _replay(task: Task) -> list:
    env = SynthEnv()
    env.reset(task)
    return env.step(task.gold_calls)


def _canonical(task: Task) -> list[ToolCall]:
    """Gold calls under canonical names, whatever names the task offers."""
    calls = []
    shown = task.meta.get("shown") or {}
    for call in task.gold_calls:
        if call.name in shown:
            canonical, params = shown[call.name]
            calls.append(ToolCall(canonical, {params[k]: v for k, v in call.arguments.items()}))
            continue
        tool = TOOLS[call.name] if call.name in TOOLS else next(t for t in TOOL_LIST if t.alias == call.name)
        unseen = call.name != tool.name
        calls.append(ToolCall(tool.name, {tool.shown_params(unseen)[k]: v for k, v in call.arguments.items()}))
    return calls


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return (generate_tasks(300, 0, min_steps=1, max_steps=MAX_STEPS)
            + generate_tasks(100, 3, min_steps=1, max_steps=MAX_STEPS, split="test")
            + generate_tasks(100, 4, min_steps=3, max_steps=5, unseen_names=True, n_distractors=5))


def test_every_template_and_step_count_is_generated(tasks):
    assert {t.meta["template"] for t in tasks} == TEMPLATES
    assert {t.meta["steps"] for t in tasks} == set(range(1, MAX_STEPS + 1))
    for t in tasks:
        assert t.category == f"steps-{t.meta['steps']}" == f"steps-{len(t.gold_calls)}"
        assert t.source == "synth" and t.messages[0]["role"] == "user"


def test_step_texts_say_each_call_in_the_questions_words_with_earlier_results_filled_in(tasks):
    for task in tasks:
        texts, question = task.meta["step_texts"], task.messages[0]["content"]
        assert len(texts) == len(task.gold_calls), task.id
        assert texts[0] in question, (task.id, texts[0])  # the first call reads only the question's values
        for text, source in zip(texts, task.meta["sources"]):
            assert text and "{" not in text, (task.id, text)
            if not source:
                assert text in question, (task.id, text)  # a call on the question's own values
        for i, source in enumerate(task.meta["sources"]):
            if texts[i].endswith("."):  # a tail instruction, as the question says it ("it": the value so far)
                assert texts[i].lower() in question.lower(), (task.id, texts[i])
                continue
            for param, j in source.items():  # a core call on earlier results: their values, in words
                assert render_result(task.meta["chain"][j]) in texts[i], (task.id, texts[i])


def test_gold_chain_rerun_in_env_reproduces_every_value_and_the_answer(tasks):
    for task in tasks:
        observations = _replay(task)
        assert all(o.ok for o in observations), (task.id, [o.content for o in observations])
        assert [o.content for o in observations] == [render_result(v) for v in task.meta["chain"]]
        assert observations[-1].content == task.gold_answer
        assert check_answer(task, task.gold_answer)


def test_every_call_but_the_last_feeds_a_later_call(tasks):
    """Decomposition matters: no gold call is wasted, each result is an argument further on."""
    for task in tasks:
        sources = task.meta["sources"]
        assert len(sources) == len(task.gold_calls)
        used = set()
        for i, (call, source) in enumerate(zip(task.gold_calls, sources)):
            for param, j in source.items():
                assert j < i and call.arguments[param] == task.meta["chain"][j]
                used.add(j)
        assert used == set(range(len(sources) - 1)), task.id


def test_no_step_is_a_no_op(tasks):
    """No call hands back a value it was given (USD to USD) or gets two equal inputs from earlier
    calls (a city's distance to itself): such steps teach nothing and are resampled."""
    for task in tasks:
        chain = task.meta["chain"]
        for i, source in enumerate(task.meta["sources"]):
            inputs = [chain[j] for j in source.values()]
            assert chain[i] not in inputs, (task.id, i)
            assert len({json.dumps(v) for v in inputs}) == len(inputs), (task.id, i)


def test_same_seed_same_tasks_and_longer_runs_extend_shorter_ones():
    a = generate_tasks(60, 7, max_steps=5, n_distractors=3)
    b = generate_tasks(60, 7, max_steps=5, n_distractors=3)
    assert [dataclasses.asdict(t) for t in a] == [dataclasses.asdict(t) for t in b]
    assert [t.id for t in generate_tasks(80, 7, max_steps=5, n_distractors=3)[:60]] == [t.id for t in a]
    other = generate_tasks(60, 8, max_steps=5, n_distractors=3)
    assert len({t.id for t in a} & {t.id for t in other}) < 5


def test_tasks_within_a_run_are_distinct_problems():
    tasks = generate_tasks(500, 0, min_steps=1, max_steps=3)
    assert len({chain_key(t.gold_calls) for t in tasks}) == 500


def test_train_and_test_never_share_a_problem():
    train = generate_tasks(500, 0, split="train")
    test = generate_tasks(500, 1, split="test")
    assert not {t.id for t in train} & {t.id for t in test}
    assert not {chain_key(t.gold_calls) for t in train} & {chain_key(t.gold_calls) for t in test}
    assert not {t.messages[0]["content"] + t.gold_answer for t in train} & {
        t.messages[0]["content"] + t.gold_answer for t in test}
    assert all(split_of(chain_key(t.gold_calls)) == t.split for t in train + test)
    unseen_test = generate_tasks(200, 2, split="test", unseen_names=True)
    assert not {chain_key(_canonical(t)) for t in unseen_test} & {chain_key(t.gold_calls) for t in train}


def test_distractors_are_offered_and_unneeded():
    for task in generate_tasks(50, 5, min_steps=2, max_steps=6, n_distractors=4):
        needed = {c.name for c in task.gold_calls}
        offered = [s["name"] for s in task.tools]
        assert len(offered) == len(set(offered)) == len(needed) + 4
        assert needed <= set(offered)


def test_unseen_names_rename_tools_and_parameters_consistently():
    canonical = {t.name for t in TOOL_LIST}
    aliases = {t.alias for t in TOOL_LIST}
    assert len(aliases) == len(TOOL_LIST) and not aliases & canonical
    for task in generate_tasks(100, 9, min_steps=2, max_steps=5, unseen_names=True):
        specs = {s["name"]: s for s in task.tools}
        assert set(specs) <= aliases and task.meta["names"] == "alias"
        for call in task.gold_calls:
            assert set(call.arguments) == set(specs[call.name]["parameters"]["properties"])
        for name, spec in specs.items():
            tool = next(t for t in TOOL_LIST if t.alias == name)
            assert spec["description"] != tool.description
            assert not set(spec["parameters"]["properties"]) & set(tool.params)
        # the canonical name is not what this task offers, so the env refuses it
        call = _canonical(task)[0]
        env = SynthEnv()
        env.reset(task)
        assert not env.step([call])[0].ok


def test_renamed_training_tasks_keep_their_problems_and_run_under_the_shown_names():
    """generate_tasks(rename=0.5): the same problems as without (same questions, same chains), about
    half shown under names made from the descriptions, never a canonical name or an alias (the
    unseen evaluation's names stay unseen); the env runs the gold calls under the shown names and
    reproduces every value of the chain."""
    taken = {t.name for t in TOOL_LIST} | {t.alias for t in TOOL_LIST}
    plain = generate_tasks(200, 4, min_steps=2, max_steps=3)
    mixed = generate_tasks(200, 4, min_steps=2, max_steps=3, rename=0.5)
    assert generate_tasks(200, 4, min_steps=2, max_steps=3, rename=0.0) == plain
    assert [t.messages for t in mixed] == [t.messages for t in plain]
    assert [t.meta["chain"] for t in mixed] == [t.meta["chain"] for t in plain]
    renamed = [t for t in mixed if t.meta["names"] == "renamed"]
    assert 70 <= len(renamed) <= 130
    changed_params = 0
    for task in renamed:
        specs = {s["name"]: s for s in task.tools}
        assert not set(specs) & taken and len(specs) == len(task.tools)
        assert set(task.meta["shown"]) == set(specs)
        for name, (canonical, params) in task.meta["shown"].items():
            assert specs[name]["description"] == TOOLS[canonical].description
            assert sorted(params.values()) == sorted(TOOLS[canonical].params)
            assert set(specs[name]["parameters"]["properties"]) == set(params)
            changed_params += sum(s != c for s, c in params.items())
        env = SynthEnv()
        env.reset(task)
        values = []
        for call in task.gold_calls:
            (obs,) = env.step([call])
            assert obs.ok, obs.content
            values.append(obs.content)
        assert values == [render_result(v) for v in task.meta["chain"]]
        assert not env.step([_canonical(task)[0]])[0].ok  # the canonical name is not offered here
    assert changed_params > 0
    bad = dataclasses.replace(renamed[0], meta={**renamed[0].meta, "shown": {
        n: [c, {**p, "extra": "x"}] for n, (c, p) in renamed[0].meta["shown"].items()}})
    with pytest.raises(CahlInputError, match="meta.shown"):
        SynthEnv().reset(bad)
    with pytest.raises(CahlInputError, match="rename"):
        generate_tasks(3, 0, rename=1.5)


def test_bad_knobs_are_refused_with_the_knob_named():
    for kwargs, word in [({"min_steps": 0}, "min_steps"), ({"min_steps": 4, "max_steps": 3}, "max_steps"),
                         ({"max_steps": MAX_STEPS + 1}, "max_steps"), ({"n_distractors": 99}, "n_distractors"),
                         ({"split": "dev"}, "split")]:
        with pytest.raises(CahlInputError, match=word):
            generate_tasks(3, 0, **kwargs)
    with pytest.raises(CahlInputError, match="distinct"):
        generate_tasks(400, 0, min_steps=1, max_steps=1, split="test")


# ---------------------------------------------------------------------------- tools

def test_numeric_tools_round_to_cents_half_away_from_zero():
    assert divide(10, 3) == 3.33 and divide(2, 3) == 0.67
    assert divide(1, 8) == 0.13 and divide(-1, 8) == -0.13  # 0.125: half away from zero
    assert multiply(0.1, 3) == 0.3  # exact decimal, not 0.30000000000000004
    assert multiply(2.5, 2) == 5 and isinstance(multiply(2.5, 2), int)
    assert convert_temperature(100, "C", "F") == 212 and convert_temperature(0, "C", "K") == 273.15
    assert convert_length(1, "mi", "km") == 1.61
    assert add_days("2024-02-28", 1) == "2024-02-29"


def test_specs_are_openai_style_and_render_deterministically():
    for tool in TOOL_LIST:
        for unseen in (False, True):
            spec = tool.spec(unseen)
            assert set(spec) == {"name", "description", "parameters"}
            params = spec["parameters"]
            assert params["type"] == "object" and params["required"] == list(params["properties"])
            assert json.dumps(spec) == json.dumps(tool.spec(unseen))


# ---------------------------------------------------------------------------- env errors

@pytest.fixture()
def env() -> SynthEnv:
    task = generate_tasks(1, 0)[0]
    task.tools = [TOOLS[n].spec() for n in ("add", "add_days", "convert_length", "divide", "capital_of")]
    e = SynthEnv()
    e.reset(task)
    return e


@pytest.mark.parametrize("arguments, words", [
    ({"a": 1}, ["missing", "b"]),
    ({"a": 1, "b": 2, "c": 3}, ["unknown", "'c'"]),
    ({"a": "3", "b": 2}, ["'a'", "must be a number", "string '3'"]),
    ({"a": True, "b": 2}, ["'a'", "boolean"]),
    ({"a": None, "b": 2}, ["'a'", "null"]),
    ([1, 2], ["JSON object", "array"]),
])
def test_bad_arguments_give_an_error_observation_naming_the_problem(env, arguments, words):
    [obs] = env.step([ToolCall("add", arguments)])
    assert not obs.ok and obs.name == "add"
    for word in words:
        assert word in obs.content


def test_env_schema_rules_and_tool_failures(env):
    shift, bad_unit, bad_days, zero, unknown_city, unknown_tool, not_offered = env.step([
        ToolCall("add_days", {"date": "2024-01-01", "days": 3.0}),  # integral float is an integer
        ToolCall("convert_length", {"value": 1, "from_unit": "parsec", "to_unit": "m"}),
        ToolCall("add_days", {"date": "2024-01-01", "days": 1.5}),
        ToolCall("divide", {"a": 1, "b": 0}),
        ToolCall("capital_of", {"country": "Atlantis"}),
        ToolCall("teleport", {}),
        ToolCall("multiply", {"a": 2, "b": 3}),  # a registry tool, but not offered by this task
    ])
    assert shift.ok and shift.content == "2024-01-04"
    assert not bad_unit.ok and "must be one of" in bad_unit.content
    assert not bad_days.ok and "integer" in bad_days.content
    assert not zero.ok and "zero" in zero.content
    assert not unknown_city.ok and "unknown country 'Atlantis'" in unknown_city.content
    assert not unknown_tool.ok and "unknown tool" in unknown_tool.content
    assert not not_offered.ok and "unknown tool" in not_offered.content
    assert env.step([ToolCall("capital_of", {"country": "  united   KINGDOM "})])[0].content == "London"


def test_reset_refuses_a_task_with_foreign_tools():
    task = generate_tasks(1, 0)[0]
    task.tools = task.tools + [{"name": "web_search", "description": "", "parameters": {}}]
    with pytest.raises(CahlInputError, match="web_search"):
        SynthEnv().reset(task)


def test_hostile_calls_are_never_executed_and_stay_fast(env, tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    calls = [
        ToolCall(payload, {}),
        ToolCall("add", {"a": payload, "b": 1}),
        ToolCall("capital_of", {"country": payload}),
        ToolCall("add", {"a": 10**100000, "b": 1}),
        ToolCall("add", {"a": "1" + "0" * 100000, "b": 1}),
        ToolCall("add", {"a": nested, "b": 1}),
        ToolCall("add", {"a": float("inf"), "b": float("nan")}),
        ToolCall("add", {10**100000: 1, "a": 1, "b": 2}),
        ToolCall("capital_of", {"country": "x" * 1_000_000}),
        ToolCall("add_days", {"date": "9999-12-31", "days": 100000}),
        ToolCall("add_days", {"date": "2024-01-01", "days": 10**15}),
    ]
    start = time.perf_counter()
    observations = env.step(calls)
    assert time.perf_counter() - start < 2.0
    assert not any(o.ok for o in observations)
    assert all(len(o.content) < 600 for o in observations)
    assert not marker.exists()


# ---------------------------------------------------------------------------- answers

def _task(gold: str) -> Task:
    return Task(id="t", source="synth", messages=[], tools=[], gold_answer=gold)


@pytest.mark.parametrize("gold, answer, verdict", [
    ("42", "42.0", True), ("42", "42", True), ("1234.5", "1,234.50", True),
    ("87620.5", "The total is $87,620.5.", True), ("-65.3", "\u221265.3", True),
    ("42", "41.99", False), ("42", "42 or 43", False), ("42", "no idea", False),
    ("Mexico City", " mexico  city. ", True), ("Mexico City", "Mexico", False),
    ("MONDAY", "MONDAY", True), ("MONDAY", "Monday", False), ("2024-02-29", "2024-02-29", True),
])
def test_check_answer_normalises_numbers_and_text(gold, answer, verdict):
    assert check_answer(_task(gold), answer) is verdict


def test_check_arguments_is_usable_on_its_own():
    clean, problems = check_arguments(TOOLS["add_days"].spec(), {"date": "2024-01-01", "days": 2.0})
    assert problems == [] and clean == {"date": "2024-01-01", "days": 2} and isinstance(clean["days"], int)
