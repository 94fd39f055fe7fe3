"""ToolRL loaders and the rendered-tool-list parser they share with API-Bank."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cahl.data.toolrl import dedup_against, load_toolrl_sft, load_toolrl_test, parse_dialogue, parse_target
from cahl.data.toolspec import json_type, parse_tool_list
from cahl.types import CahlInputError, ToolCall

# Gold calls that name no tool of their item: corrupted upstream (a JSON argument split into
# fake calls in SFT item 130; a tool name cut at its "(" in test item 9).
UNKNOWN_TOOL_CALLS = {
    "toolrl_sft_130": ["LastName varchar", 'HireDate date")'],
    "toolrl_test_9": ["DAX Point Changes for Each Month "],
}


@pytest.fixture(scope="module")
def sft():
    return load_toolrl_sft()


@pytest.fixture(scope="module")
def test_split():
    return load_toolrl_test()


def test_counts_and_splits(sft, test_split):
    assert len(sft) == 400 and {t.split for t in sft} == {"train"}
    assert len(test_split) == 80 and {t.split for t in test_split} == {"test"}
    assert all(t.tools and t.messages[0]["role"] == "user" for t in sft + test_split)


def test_every_item_has_a_gold_call_or_answer(sft, test_split):
    for task in sft + test_split:
        assert task.gold_calls or task.gold_answer, task.id


def test_gold_calls_name_listed_tools_except_known_upstream_defects(sft, test_split):
    unknown = {}
    for task in sft + test_split:
        names = {tool["name"] for tool in task.tools}
        bad = [call.name for call in task.gold_calls if call.name not in names]
        if bad:
            unknown[task.id] = bad
    assert unknown == UNKNOWN_TOOL_CALLS


def test_the_one_sft_item_that_is_also_held_out_is_removed(sft, test_split):
    kept, removed = dedup_against(sft, test_split)
    assert removed == 1 and len(kept) == 399
    gone = next(t for t in sft if t not in kept)
    assert gone.id == "toolrl_sft_393"
    assert gone.messages == test_split[42].messages
    assert gone.gold_calls == test_split[42].gold_calls == [ToolCall("QR Code Generator", {"url": "www.example.com"})]


def test_multi_turn_dialogue_becomes_user_assistant_tool_messages(sft):
    messages = sft[16].messages
    assert [m["role"] for m in messages[:5]] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[0]["content"] == "Can you tell me the list of currently trending TV shows?"
    assert messages[1]["content"].startswith("<think>") and '"name": "Get Trending TV Shows"' in messages[1]["content"]
    assert json.loads(messages[2]["content"])[0]["name"] == "Get Trending TV Shows"
    assert "<response>" in messages[3]["content"]


def test_target_blocks_are_read_after_think_even_when_think_mentions_them(sft):
    # Item 10's <think> talks about "<tool_call>" in prose; the four real calls follow </think>.
    assert "<tool_call>" in sft[10].meta["sft_output"].split("</think>")[0]
    assert [c.arguments for c in sft[10].gold_calls] == [{"page": "1"}, {"page": "2"}, {"page": "1.0"}, {"page": "2.0"}]


def test_response_only_target_sets_gold_answer_and_no_calls(sft):
    task = sft[2]
    assert task.gold_calls == [] and task.gold_answer.startswith("1. **Function: Get European Fuel Prices")


def test_test_split_gold_and_meta(test_split):
    task = test_split[0]
    assert task.gold_calls == [ToolCall("GetNews", {"page": "1"})]
    assert task.meta["ground_truth"].startswith("<think>") and task.meta["index"] == 0
    assert "**Available Tools**" in task.meta["system"]


def test_tool_schema_from_rendered_json(sft):
    tennis = next(t for t in sft[0].tools if t["name"] == "Tennis Schedules Odds API")
    assert tennis["parameters"]["properties"]["year"]["type"] == "number"
    assert tennis["parameters"]["required"] == ["year", "day", "month"]
    event = next(t for t in sft[0].tools if t["name"] == "Event Result")
    assert event["parameters"]["properties"]["lang"]["default"] == "en"
    assert event["parameters"]["required"] == ["evt"]  # "lang" has a default


@pytest.mark.parametrize("text, schema, optional", [
    ("str", {"type": "string"}, False),
    ("int, optional", {"type": "integer"}, True),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("list(str)", {"type": "array", "items": {"type": "string"}}, False),
    ("List[Union[int, float]]", {"type": "array", "items": {"type": "number"}}, False),
    ("Tuple[float, float]", {"type": "array", "items": {"type": "number"}}, False),
    ("List[List[int]]", {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}, False),
    ("['string', 'null']", {"type": ["string", "null"]}, False),
    ("Dict", {"type": "object"}, False),
    ("Callable[[float], float]", {"type": "string"}, False),
])
def test_type_names_map_to_json_schema(text, schema, optional):
    assert json_type(text, "here") == (schema, optional)


def test_unknown_type_names_the_place():
    with pytest.raises(CahlInputError, match=r"item 7: tool 'T': parameter 'x': unknown type 'Frobnicator'"):
        parse_tool_list('1. Name: T\nDescription: d\nParameters: {"x": {"type": "Frobnicator", "description": ""}}',
                        "item 7")


def test_python_literal_parameters_and_inline_name_format():
    tools = parse_tool_list("1. QueryMeeting: Get meetings.\nParameters: {'user_name': {'type': 'str', "
                            "'description': 'Name.'}}", "here")
    assert tools == [{"name": "QueryMeeting", "description": "Get meetings.", "parameters": {
        "type": "object", "properties": {"user_name": {"type": "string", "description": "Name."}},
        "required": ["user_name"]}}]


def test_unreadable_parameters_name_the_place():
    with pytest.raises(CahlInputError, match=r"f.json\[3\]: tool 'T'.*neither JSON nor a Python literal"):
        parse_tool_list("1. Name: T\nDescription: d\nParameters: {oops", "f.json[3]")


def test_dialogue_with_stray_text_is_rejected():
    with pytest.raises(CahlInputError, match=r"item 1: dialogue offset \d+: expected <user>"):
        parse_dialogue("**Dialogue Records History**\n<user> hi </user>\nstray text", "item 1")


def test_target_with_a_non_json_call_line_is_rejected():
    with pytest.raises(CahlInputError, match="item 2: tool_call line is not JSON"):
        parse_target("<think> x </think>\n<tool_call>\nnot json\n</tool_call>", "item 2")


def _write_sft(tmp_path, items):
    (tmp_path / "toolrl").mkdir()
    (tmp_path / "toolrl" / "rlla_sft.json").write_text(json.dumps(items))


def test_malformed_sft_record_names_file_and_index(tmp_path, sft):
    good = {"instruction": sft[0].meta["system"], "input": "**Dialogue Records History**\n<user> hi </user>",
            "output": sft[0].meta["sft_output"]}
    _write_sft(tmp_path, [good, {"instruction": "x", "input": "y"}])
    with pytest.raises(CahlInputError, match=r"rlla_sft.json\[1\]: missing key\(s\) \['output'\]"):
        load_toolrl_sft(tmp_path)


def test_malformed_test_row_names_file_and_row(tmp_path):
    (tmp_path / "toolrl").mkdir()
    table = pa.Table.from_pylist([{"prompt": [{"role": "user", "content": "hi"}],
                                   "reward_model": {"ground_truth": "<think> x </think>", "style": "rule"}}])
    pq.write_table(table, tmp_path / "toolrl" / "rlla_4k_test.parquet")
    with pytest.raises(CahlInputError, match=r"rlla_4k_test.parquet\[row 0\]: 'prompt' must be \[system, user\]"):
        load_toolrl_test(tmp_path)


def test_dialogue_variant_wraps_a_single_request_and_ends_on_the_users_ask():
    from cahl.data.toolrl import dialogue_variant
    from cahl.types import Task, ToolCall

    task = Task("t1", "toolrl", [{"role": "user", "content": "Weather in Oslo?"}], [{"name": "weather"}],
                gold_calls=[ToolCall("weather", {"city": "Oslo"})])
    v = dialogue_variant(task)
    assert v.id == "t1#dialogue" and v.gold_calls == task.gold_calls and v.tools == task.tools
    assert [m["role"] for m in v.messages] == ["user", "assistant", "user"]
    assert v.messages[0] == task.messages[0]
    assert v.messages[1]["content"].startswith("<response>") and v.messages[1]["content"].endswith("</response>")
    assert v.messages[2]["content"]
    assert dialogue_variant(task) == v  # deterministic in the id
    assert task.messages == [{"role": "user", "content": "Weather in Oslo?"}]  # the original is left as it was
    # other shapes are left alone: no calls, or a dialogue already
    assert dialogue_variant(Task("t2", "toolrl", task.messages, task.tools, gold_answer="x")) is None
    assert dialogue_variant(Task("t3", "toolrl", v.messages, task.tools, gold_calls=task.gold_calls)) is None
