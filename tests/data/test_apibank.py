"""API-Bank loaders: ToolRL's 597-item protocol and the original level-1/2 protocol."""

import json

import pytest

from cahl.data.apibank import load_apibank_original, load_apibank_toolrl, parse_api_request
from cahl.paths import data_dir, iter_jsonl
from cahl.types import CahlInputError, ToolCall

# Level-2 items whose gold tool is described nowhere in the item (the dialogue mentions a
# ToolSearcher call inside an AI line, without its result). Upstream data, reported not hidden.
TOOLRL_L2_UNKNOWN = {6: "DeleteReminder", 13: "GetUserToken", 14: "AddMeeting", 19: "AddMeeting",
                     25: "QueryMeeting", 54: "DeleteMeeting"}
ORIGINAL_L2_UNKNOWN = {3: "GetUserToken", 23: "GetUserToken", 24: "QueryReminder", 25: "QueryReminder",
                       30: "DeleteReminder", 70: "AddMeeting", 83: "GetUserToken", 84: "QueryBalance",
                       87: "QueryMeeting", 110: "GetUserToken", 111: "AddMeeting", 123: "DeleteMeeting",
                       130: "GetUserToken", 131: "QueryBalance"}
# ToolRL's level-1 gold differs from the original test data for 5 BookHotel items: ToolRL's copy
# holds garbled values (e.g. adult_count="2', child_count=") that no prediction can match.
TOOLRL_L1_GARBLED = [258, 285, 323, 341, 393]


@pytest.fixture(scope="module")
def toolrl():
    return {level: load_apibank_toolrl(level) for level in (1, 2, 3)}


@pytest.fixture(scope="module")
def original():
    return {level: load_apibank_original(level) for level in (1, 2)}


def _unknown_tool_items(tasks):
    found = {}
    for i, task in enumerate(tasks):
        names = {tool["name"] for tool in task.tools}
        for call in task.gold_calls:
            if call.name not in names:
                found[i] = call.name
    return found


def test_counts_match_the_files(toolrl, original):
    assert {level: len(tasks) for level, tasks in toolrl.items()} == {1: 399, 2: 67, 3: 131}
    assert {level: len(tasks) for level, tasks in original.items()} == {1: 399, 2: 135}
    for level, tasks in [*toolrl.items(), *original.items()]:
        assert {t.category for t in tasks} == {f"level-{level}"}
        assert all(len(t.gold_calls) == 1 and t.split == "test" for t in tasks)


def test_gold_tools_are_listed_except_known_level2_gaps(toolrl, original):
    assert _unknown_tool_items(toolrl[1]) == _unknown_tool_items(toolrl[3]) == {}
    assert _unknown_tool_items(toolrl[2]) == TOOLRL_L2_UNKNOWN
    assert _unknown_tool_items(original[1]) == {}
    assert _unknown_tool_items(original[2]) == ORIGINAL_L2_UNKNOWN


def test_original_gold_equals_the_dialogue_call_it_points_at(original):
    # Checks both the parsed gold (including the re-quoted list values) and meta["api_turn"].
    for tasks in original.values():
        for task in tasks:
            turns = [obj for _, obj in iter_jsonl(data_dir() / task.meta["dialogue"])]
            turn = turns[task.meta["api_turn"]]
            assert task.gold_calls == [ToolCall(turn["api_name"], turn["param_dict"])], task.id


def test_toolrl_level1_gold_matches_the_original_except_its_garbled_items(toolrl, original):
    differ = [i for i, (a, b) in enumerate(zip(toolrl[1], original[1])) if a.gold_calls != b.gold_calls]
    assert differ == TOOLRL_L1_GARBLED
    assert toolrl[1][258].gold_calls[0].arguments["adult_count"] == "2', child_count="


def test_toolrl_dialogue_and_meta(toolrl):
    task = toolrl[1][0]
    assert [m["role"] for m in task.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert task.messages[-1]["content"] == "Based on our conversation above, please only make one tool call to solve my need."
    assert task.meta["other"] == {"file": "ModifyRegistration-QueryHealthData-CancelRegistration-level-2-2.jsonl", "id": 0}
    # Level 2 writes the header with three stars and stores the answer as one dict.
    assert toolrl[2][0].gold_calls == [ToolCall("SymptomSearch", {"symptom": "rash"})]


def test_original_level2_learns_tools_from_toolsearcher_results(original):
    task = original[2][2]
    assert [t["name"] for t in task.tools] == ["ToolSearcher", "QueryHistoryToday"]
    assert task.gold_calls == [ToolCall("QueryHistoryToday", {"date": "10-06"})]
    assert [m["role"] for m in task.messages] == ["user", "assistant", "assistant", "tool"]
    call = task.messages[2]["content"]
    assert call.startswith("<tool_call>\n") and json.loads(call.split("\n")[1]) == {
        "name": "ToolSearcher", "arguments": {"keywords": "history October 6th"}}


def test_original_meta_lets_an_environment_replay_the_dialogue(original):
    task = original[1][1]
    assert task.meta["file"] == "ModifyRegistration-QueryHealthData-CancelRegistration-level-2-2.jsonl"
    assert task.meta["sample_id"] == 2 and task.meta["api_turn"] == 10
    assert task.meta["dialogue"].startswith("apibank/original/lv1-lv2-samples/level-1-given-desc/")


def test_list_values_written_without_escaping_are_read_as_the_dialogue_strings():
    calls = parse_api_request("API-Request: [AddMeeting(token='t', attendees='['John', 'Jane']', location='room')]", "x")
    assert calls == [ToolCall("AddMeeting", {"token": "t", "attendees": "['John', 'Jane']", "location": "room"})]


def test_api_request_is_parsed_never_evaluated():
    with pytest.raises(CahlInputError, match=r"item 5: argument 'x' is not a literal"):
        parse_api_request("API-Request: [Foo(x=__import__('os').getcwd())]", "item 5")
    with pytest.raises(CahlInputError, match="item 6: cannot read API request"):
        parse_api_request("API-Request: [Foo(x='1'", "item 6")


def test_unknown_level_is_rejected():
    with pytest.raises(CahlInputError, match="levels"):
        load_apibank_toolrl(4)
    with pytest.raises(CahlInputError, match="levels"):
        load_apibank_original(3)


def test_malformed_toolrl_record_names_file_and_index(tmp_path, toolrl):
    folder = tmp_path / "apibank" / "toolrl"
    folder.mkdir(parents=True)
    good = {"system": toolrl[1][0].meta["system"], "user": "**Dialogue Records History**\n<user> hi </user>",
            "answer": [{"name": "QueryHealthData", "parameters": {}}]}
    (folder / "level-1-api_processed.json").write_text(json.dumps([good, {**good, "answer": [{"name": "X"}]}]))
    with pytest.raises(CahlInputError, match=r"level-1-api_processed.json\[1\]: answer must be"):
        load_apibank_toolrl(1, tmp_path)


def test_malformed_original_record_names_file_and_index(tmp_path):
    real = json.loads((data_dir() / "apibank/original/test-data/level-1-api.json").read_text())[:2]
    real[1]["expected_output"] = "API-Request: ModifyRegistration"
    folder = tmp_path / "apibank" / "original"
    (folder / "test-data").mkdir(parents=True)
    (folder / "test-data" / "level-1-api.json").write_text(json.dumps(real))
    (folder / "lv1-lv2-samples").symlink_to(data_dir().resolve() / "apibank/original/lv1-lv2-samples")
    with pytest.raises(CahlInputError, match=r"level-1-api.json\[1\]: .*must be a list"):
        load_apibank_original(1, tmp_path)
