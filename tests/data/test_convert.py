"""`cahl data convert`: small samples in each public format (written here, as the datasets ship
them) become task files that load, with the calls and dialogue the sample holds."""

import json

import pytest

from cahl.data.convert import convert
from cahl.data.taskfile import load_task_file
from cahl.types import CahlInputError, ToolCall

XLAM = [{"id": 7, "query": "Where can I find live giveaways for beta access?",
         "tools": json.dumps([{"name": "live_giveaways_by_type", "description": "Giveaways by type.",
                               "parameters": {"type": {"description": "game, loot or beta", "type": "str", "default": "game"},
                                              "limit": {"description": "how many", "type": "int"}}}]),
         "answers": json.dumps([{"name": "live_giveaways_by_type", "arguments": {"type": "beta", "limit": 5}}])},
        {"id": 8, "query": "broken", "tools": "[{\"name\": \"f\"", "answers": "[]"}]

TOOLACE = [{"system": "You are an expert in composing functions. Here is a list of functions in JSON format that you "
                      "can invoke:\n" + json.dumps([{"name": "newAddress", "description": "New wallet address",
                      "parameters": {"type": "dict", "properties": {"chain": {"type": "string"},
                                                                    "count": {"type": "integer"}},
                                     "required": ["chain"]}}]) + ". Should you decide to return the function call(s)...",
            "conversations": [
                {"from": "user", "value": "Two ethereum addresses please."},
                {"from": "assistant", "value": "[newAddress(chain=\"ethereum\", count=2)]"},
                {"from": "tool", "value": "[{\"name\": \"newAddress\", \"results\": {\"address\": \"0xabc\"}}]"},
                {"from": "assistant", "value": "Here they are: 0xabc."},
                {"from": "user", "value": "And one on bitcoin."},
                {"from": "assistant", "value": "[newAddress(chain='bitcoin')]"}]}]

HERMES_SYSTEM = ("You are a function calling AI model. You are provided with function signatures within <tools> "
                 "</tools> XML tags.<tools>\n[{'type': 'function', 'function': {'name': 'get_stock_price', "
                 "'description': 'Current price', 'parameters': {'type': 'object', 'properties': {'symbol': "
                 "{'type': 'string'}}, 'required': ['symbol']}}}]\n</tools> For each function call return a json object")
HERMES = [{"id": "h1", "category": "Finance", "conversations": [
    {"from": "system", "value": HERMES_SYSTEM},
    {"from": "human", "value": "Prices of AAPL and TSLA?"},
    {"from": "gpt", "value": "<tool_call>\n{'arguments': {'symbol': 'AAPL'}, 'name': 'get_stock_price'}\n</tool_call>\n"
                             "<tool_call>\n{\"name\": \"get_stock_price\", \"arguments\": {\"symbol\": \"TSLA\"}}\n</tool_call>"},
    {"from": "tool", "value": "<tool_response>{'price': 1}</tool_response>"},
    {"from": "gpt", "value": "AAPL is at 1."}]}]


def run(tmp_path, fmt, records, jsonl=False):
    src, dst = tmp_path / f"{fmt}.json", tmp_path / f"{fmt}.tasks.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) if jsonl else json.dumps(records))
    written, skipped = convert(fmt, src, dst)
    return load_task_file(dst), written, skipped


def test_xlam_query_tools_and_answers(tmp_path):
    (task,), written, skipped = run(tmp_path, "xlam", XLAM)
    assert written == 1 and len(skipped) == 1 and "record 1: tools: a string that is not JSON" in skipped[0]
    assert task.id == "xlam-7" and task.messages == [{"role": "user", "content": XLAM[0]["query"]}]
    assert task.gold_calls == [ToolCall("live_giveaways_by_type", {"type": "beta", "limit": 5})]
    params = task.tools[0]["parameters"]
    assert params["properties"]["limit"]["type"] == "integer" and params["required"] == ["limit"]  # "type" has a default


def test_toolace_one_task_per_calling_turn(tmp_path):
    (first, second), _, skipped = run(tmp_path, "toolace", TOOLACE, jsonl=True)
    assert not skipped
    assert first.gold_calls == [ToolCall("newAddress", {"chain": "ethereum", "count": 2})]
    assert first.messages == [{"role": "user", "content": "Two ethereum addresses please."}]
    assert second.gold_calls == [ToolCall("newAddress", {"chain": "bitcoin"})]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert '"chain": "ethereum"' in second.messages[1]["content"]  # the earlier call, as a <tool_call> turn
    assert first.tools[0]["parameters"]["type"] == "object"  # BFCL-style "dict" became JSON schema


def test_hermes_tool_calls_in_gpt_turns(tmp_path):
    (task,), written, _ = run(tmp_path, "hermes", HERMES)
    assert task.id == "hermes-h1-t1" and task.tools[0]["name"] == "get_stock_price"
    assert task.gold_calls == [ToolCall("get_stock_price", {"symbol": "AAPL"}), ToolCall("get_stock_price", {"symbol": "TSLA"})]


def test_a_call_to_an_unlisted_tool_is_skipped_not_written(tmp_path):
    bad = json.loads(json.dumps(HERMES))
    bad[0]["conversations"][2]["value"] = "<tool_call>{'name': 'os.system', 'arguments': {'cmd': 'ls'}}</tool_call>"
    src, dst = tmp_path / "h.json", tmp_path / "h.jsonl"
    src.write_text(json.dumps(bad))
    assert convert("hermes", src, dst)[0] == 0 and dst.read_text() == ""
    with pytest.raises(CahlInputError, match="--from 'sharegpt'"):
        convert("sharegpt", src, dst)
