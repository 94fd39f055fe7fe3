"""Task files (docs/task_files.md): every bad line is an error naming file:line:key, and each
scoring rule gives the verdict a user expects."""

import json

import pytest

from cahl.data.taskfile import load_task_file
from cahl.sources import verdict
from cahl.types import CahlInputError, Episode, ToolCall

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "days": {"type": "number"}}, "required": ["city"]}}}
TIME = {"name": "get_time", "description": "Local time", "parameters": {"type": "object", "properties": {
    "zone": {"type": "string"}, "tags": {"type": "array"}}}}
GOOD = {"id": "w1", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER, TIME],
        "gold_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}


def write(tmp_path, *lines):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def test_a_good_file_loads_with_openai_and_bare_tools(tmp_path):
    answer = {"id": "a1", "messages": [{"role": "user", "content": "Capital of France?"}], "tools": [],
              "gold_answer": "Paris", "category": "qa"}
    (t, a) = load_task_file(write(tmp_path, GOOD, answer))
    assert [tool["name"] for tool in t.tools] == ["get_weather", "get_time"]
    assert t.tools[0]["parameters"]["required"] == ["city"] and "type" not in t.tools[0]
    assert t.gold_calls == [ToolCall("get_weather", {"city": "Paris"})] and t.meta["rule"] == "calls"
    assert (a.gold_answer, a.category, a.meta["rule"], t.category) == ("Paris", "qa", "answer", "all")


@pytest.mark.parametrize("change, message", [
    ({"id": ""}, r"tasks\.jsonl:2: id: expected a non-empty string"),
    ({"messages": []}, r":2: messages: expected a non-empty list"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, r":2: messages\[0\]\.role: expected one of"),
    ({"messages": [{"role": "user", "content": 3}]}, r":2: messages\[0\]\.content: expected a string"),
    ({"tools": {"name": "x"}}, r":2: tools: expected a list"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     r":2: tools\[0\]\.function\.name: expected a non-empty string"),
    ({"tools": [{"name": "f", "parameters": {"type": "array"}}]}, r":2: tools\[0\]\.parameters: expected a JSON schema"),
    ({"gold_calls": [{"name": "get_wether", "arguments": {}}]},
     r":2: gold_calls\[0\]\.name: 'get_wether' is not one of the line's tools"),
    ({"gold_calls": [{"name": "get_weather", "arguments": [1]}]}, r":2: gold_calls\[0\]\.arguments: expected an object"),
    ({"gold_calls": [{"name": "get_weather", "arguments": "{oops"}]},
     r":2: gold_calls\[0\]\.arguments: a string must hold a JSON object"),
    ({"gold_answer": "Paris"}, r":2: gold_calls/gold_answer: expected exactly one of them, got both"),
    ({"rule": "fuzzy"}, r":2: rule: expected one of \['calls', 'graded', 'answer'\]"),
    ({"rule": "answer"}, r":2: rule: 'answer' scores an answer, and the line has gold_calls"),
    ({"gold_call": []}, r":2: gold_call: unknown key"),
    ({"id": "w0"}, r":2: id: 'w0' is already the id of line 1"),
])
def test_a_bad_line_names_file_line_and_key(tmp_path, change, message):
    first = {**GOOD, "id": "w0"}
    with pytest.raises(CahlInputError, match=message):
        load_task_file(write(tmp_path, first, {**GOOD, **change}))


def test_neither_gold_and_broken_json_are_named(tmp_path):
    bare = {k: v for k, v in GOOD.items() if k != "gold_calls"}
    with pytest.raises(CahlInputError, match=r"tasks\.jsonl:1: gold_calls/gold_answer: expected exactly one of them, got neither"):
        load_task_file(write(tmp_path, bare))
    with pytest.raises(CahlInputError, match=r"tasks\.jsonl:2: invalid JSON"):
        load_task_file(write(tmp_path, GOOD, "{not json"))
    with pytest.raises(CahlInputError, match="does not exist"):
        load_task_file(tmp_path / "missing.jsonl")


def episode(task, calls=(), response=None):
    return Episode(task, "f0", list(calls), response, "answered", [])


def one(tmp_path, **line):
    return load_task_file(write(tmp_path, {**GOOD, **line}))[0]


def test_rule_calls_is_bfcls_ast_match_order_free(tmp_path):
    gold = [{"name": "get_weather", "arguments": {"city": "New York", "days": 3}},
            {"name": "get_time", "arguments": {"zone": "EST", "tags": ["a", "b"]}}]
    t = one(tmp_path, gold_calls=gold)
    weather, time = ToolCall("get_weather", {"city": "new york", "days": 3.0}), ToolCall("get_time", {"zone": "EST", "tags": ["A", "b"]})
    assert verdict(t, episode(t, [time, weather])).correct  # any order; case and spaces as BFCL; 3.0 for a number
    missing = verdict(t, episode(t, [weather]))
    assert not missing.correct and missing.error_type == "parallel_function_checker_no_order:wrong_count"
    extra_arg = ToolCall("get_weather", {"city": "New York", "days": 3, "unit": "C"})
    assert not verdict(t, episode(t, [extra_arg, time])).correct
    assert verdict(t, episode(t, [ToolCall("get_weather", {"city": "Boston", "days": 3}), time])).error_type == \
        "parallel_function_checker_no_order:cannot_find_match"
    single = one(tmp_path)
    assert verdict(single, episode(single, [ToolCall("get_weather", {"city": "Paris"})])).correct
    assert verdict(single, episode(single, [ToolCall("get_weather", {"city": 7})])).error_type == "type_error:simple"
    none = one(tmp_path, gold_calls=[])  # a request that needs no call: BFCL's irrelevance rule
    assert verdict(none, episode(none)).correct and not verdict(none, episode(none, [ToolCall("get_time", {})])).correct


def test_rule_graded_is_toolrls_score(tmp_path):
    t = one(tmp_path, gold_calls=[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}], rule="graded")
    right = verdict(t, episode(t, [ToolCall("get_weather", {"city": "Paris", "days": 2})]))
    half = verdict(t, episode(t, [ToolCall("get_weather", {"city": "Paris", "days": 5})]))
    nothing = verdict(t, episode(t))
    assert right.correct and right.scores["graded"] == 1.0
    # names 1 + keys 1 + 1 of 2 values, of max 4: 2 * 3/4 - 1
    assert not half.correct and half.scores["graded"] == pytest.approx(0.5)
    assert nothing.scores["graded"] == -1.0 and nothing.error_type == "no_call"


def test_rule_answer_is_em_with_f1(tmp_path):
    t = load_task_file(write(tmp_path, {"id": "a", "messages": GOOD["messages"], "tools": [],
                                        "gold_answer": "The Eiffel Tower"}))[0]
    assert verdict(t, episode(t, response="eiffel tower")).correct  # articles and case normalised away
    wrong = verdict(t, episode(t, response="the Louvre tower"))
    assert not wrong.correct and wrong.scores["em"] == 0.0 and wrong.scores["f1"] == pytest.approx(0.5)


def test_a_rule_given_for_the_whole_file_overrides_the_lines(tmp_path):
    t = load_task_file(write(tmp_path, GOOD), rule="graded")[0]
    assert "graded" in verdict(t, episode(t, [ToolCall("get_weather", {"city": "Paris"})])).scores
    with pytest.raises(CahlInputError, match="'answer' scores an answer"):
        load_task_file(write(tmp_path, GOOD), rule="answer")
