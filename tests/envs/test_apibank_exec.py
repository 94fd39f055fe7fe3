"""API-Bank executable environment: replay of the recorded dialogues, auth, isolation, hostile input.

Run as a script for the figures in the report (agreement per API, latencies):
    python3 tests/envs/test_apibank_exec.py
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import pytest

from cahl.envs.apibank import (API_SCHEMAS, API_SPECS, PRIOR_CALLS_KEY, ApiBankEnv, check_arguments,
                               replay_dialogue, results_agree, tools_for)
from cahl.envs.apibank.env import default_root
from cahl.envs.apibank.store import init_table, sample_files
from cahl.types import CahlInputError, Task, ToolCall

ROOT = default_root()
TASK = Task(id="t", source="apibank", messages=[], tools=[])

# Replaying all 508 recorded calls (389 level-1 + 119 level-2) gives 458 identical results. Every
# API of ours is deterministic, so there is no margin: the figure and the kinds below are exact.
REPLAY_TOTAL, REPLAY_AGREE = 508, 458
EXPECTED_MISMATCHES = {
    "AppointmentRegistration": 12,  # original draws a random 8-digit id; ours hashes the inputs
    "QueryRegistration": 1,  # ... and so the query that lists that appointment shows our id
    "RegisterUser": 7,  # original draws a random token
    "ToolSearcher": 13,  # original ranks with a sentence-transformer, ours with BM25 ('rash' -> SymptomSearch)
    "DocumentQA": 7,  # original never finds the question (list-vs-dict bug); ours answers from the table
    "QueryScene": 5,  # dialogues were recorded against a Scenes.json with capitalised device names
    "CancelTimedSwitch": 5,  # dialogues address device '10000025'; TimeSwitch.json is keyed by device name
}


def fresh_env() -> ApiBankEnv:
    env = ApiBankEnv()
    env.reset(TASK)
    return env


def call(env: ApiBankEnv, api: str, /, **arguments):
    return env.step([ToolCall(api, arguments)])[0]


def replay_all() -> tuple[int, int, collections.Counter]:
    total, agree, mismatches = 0, 0, collections.Counter()
    for path in sample_files(ROOT):
        for tool_call, expected, ours in replay_dialogue(path):
            total += 1
            if results_agree(expected, ours):
                agree += 1
            else:
                mismatches[tool_call.name] += 1
    return total, agree, mismatches


def init_hashes() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ROOT / "init_database").glob("*.json"))}


# ----------------------------------------------------------------------------- replay and specs

def test_replay_of_recorded_dialogues_agrees_except_documented_kinds():
    total, agree, mismatches = replay_all()
    assert total == REPLAY_TOTAL
    assert agree >= REPLAY_AGREE
    assert dict(mismatches) == EXPECTED_MISMATCHES


def test_every_api_of_the_dialogues_is_implemented_with_the_described_parameters():
    used = {turn["api_name"] for path in sample_files(ROOT) for turn in map(json.loads, path.read_text().splitlines())
            if turn.get("role") == "API"}
    assert used == set(API_SPECS) and len(used) == 50
    described = {}
    for name in ("level-1-api.json", "level-2-api.json"):
        for item in json.loads((ROOT / "test-data" / name).read_text()):
            for line in re.findall(r'^\{"name".*\}$', item["instruction"], re.M):
                spec = json.loads(line)
                described[spec["name"]] = spec["input_parameters"]
    for api, params in described.items():
        assert API_SPECS[api]["input_parameters"] == params, api


def test_schemas_are_openai_functions_and_tools_for_keeps_order():
    schema = API_SCHEMAS["BookHotel"]
    assert schema["parameters"]["properties"]["room_count"]["type"] == "integer"
    assert schema["parameters"]["required"] == list(API_SPECS["BookHotel"]["input_parameters"])
    assert API_SCHEMAS["AddMeeting"]["parameters"]["properties"]["attendees"]["items"] == {"type": "string"}
    assert API_SCHEMAS["Translate"]["parameters"]["required"] == ["src"]
    assert [t["name"] for t in tools_for(["Wiki", "Calculator"])] == ["Wiki", "Calculator"]
    with pytest.raises(CahlInputError, match="NoSuchApi"):
        tools_for(["NoSuchApi"])


# ----------------------------------------------------------------------------- behaviour

def test_token_auth_follows_password_changes_and_account_deletion():
    env = fresh_env()
    token = json.loads(call(env, "GetUserToken", username="foo", password="bar").content)["token"]
    assert call(env, "AddAlarm", token=token, time="2023-05-01 07:00:00").content == "success"
    assert call(env, "QueryAlarm", token=token, time="2023-05-01 07:00:00").ok
    assert "token is invalid" in call(env, "AddAlarm", token="forged", time="2023-05-01 07:00:00").content
    assert call(env, "ModifyPassword", token=token, old_password="bar", new_password="baz").ok
    assert "password is incorrect" in call(env, "GetUserToken", username="foo", password="bar").content
    assert call(env, "GetUserToken", username="foo", password="baz").ok
    assert call(env, "DeleteAccount", token=token).ok
    assert "token is invalid" in call(env, "QueryBalance", token=token).content
    assert env.results[-1]["exception"] == "The token is invalid."


def test_forgot_password_needs_its_first_step_which_reset_can_replay():
    env = fresh_env()
    second = {"status": "Verification Code", "verification_code": "970420", "new_password": "n3w"}
    assert not call(env, "ForgotPassword", **second).ok
    first = {"name": "ForgotPassword", "arguments": {"status": "Forgot Password", "username": "admin",
                                                     "email": "admin@example.com"}}
    env.reset(Task(id="t", source="apibank", messages=[], tools=[], meta={PRIOR_CALLS_KEY: [first]}))
    assert env.results == []
    assert call(env, "ForgotPassword", **second).content == "success"
    assert call(env, "GetUserToken", username="admin", password="n3w").ok


def test_episodes_never_share_state_and_reset_copies_nothing():
    env = fresh_env()
    assert env.state.copied_tables == []
    call(env, "ImageCaption", url="http://example.com/x.jpg")
    call(env, "DeleteScene", name="Bedtime")
    assert env.state.copied_tables == ["Scenes"]  # reads never copy; the first write copies one table
    other = fresh_env()
    assert call(other, "QueryScene", name="bedtime").ok
    env.reset(TASK)
    assert env.state.copied_tables == [] and call(env, "QueryScene", name="bedtime").ok
    assert init_table(ROOT, "Scenes") == json.loads((ROOT / "init_database" / "Scenes.json").read_text())


def test_arguments_are_checked_and_converted_like_api_bank_text_calls():
    assert check_arguments("TimedSwitch", {"device_id": "12", "time": "2023-01-01 10:00:00", "on": "False"}) == \
        {"name": "12", "time": "2023-01-01 10:00:00", "on": False}
    assert check_arguments("AddMeeting", {"token": "t", "meeting_topic": "m", "start_time": "s", "end_time": "e",
                                          "location": "l", "attendees": "['Ann', 'Bo']"})["attendees"] == ["Ann", "Bo"]
    env = fresh_env()
    cases = {
        ("Calculator", ()): "missing required parameter(s) ['formula']",
        ("Calculator", (("formula", "1"), ("x", 1))): "unknown parameter 'x'",
        ("Calculator", (("formula", 12),)): "'formula' must be of type str",
        ("BookHotel", (("room_count", "two"),)): "'room_count' must be of type int",
        ("NoSuchApi", ()): "unknown API 'NoSuchApi'",
    }
    hotel = {"hotel_name": "H", "check_in_time": "2023-01-01", "check_out_time": "2023-01-02", "room_count": 1,
             "adult_count": 1, "child_count": 0}
    for (name, overrides), message in cases.items():
        arguments = {**hotel, **dict(overrides)} if name == "BookHotel" else dict(overrides)
        observation = call(env, name, **arguments)
        assert not observation.ok and message in observation.content, observation.content
    assert call(env, "BookHotel", **{**hotel, "room_count": "2"}).content == "11"


def test_calculator_does_arithmetic_and_nothing_else():
    env = fresh_env()
    assert call(env, "Calculator", formula="(23+7)*3-42/6").content == "83.0"
    assert call(env, "Calculator", formula="-2 * (3 + .5)").content == "-7.0"
    for bad in ["1/0", "2**10", "abs(-1)", "(1", "", "1e5"]:
        assert not call(env, "Calculator", formula=bad).ok, bad


def test_tool_searcher_returns_the_described_api_and_the_token_api_when_needed():
    env = fresh_env()
    found = json.loads(call(env, "ToolSearcher", keywords="QueryHealthData").content)
    assert found["name"] == "QueryHealthData" and "input_parameters" in found
    pair = json.loads(call(env, "ToolSearcher", keywords="delete account").content)
    assert [p["name"] for p in pair] == ["GetUserToken", "DeleteAccount"]
    assert "No tool matches" in call(env, "ToolSearcher", keywords="rash").content


# ----------------------------------------------------------------------------- hostile input

def _deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def hostile_calls(marker: Path) -> list[ToolCall]:
    shell = f"__import__('os').system('touch {marker}')"
    meeting = {"token": "a9s8d7f6g5h4j3k2l1", "meeting_topic": "m", "start_time": "2023-01-01 10:00:00",
               "end_time": "2023-01-01 11:00:00", "location": "l"}
    hotel = {"hotel_name": "H", "check_in_time": "2023-01-01", "check_out_time": "2023-01-02", "adult_count": 1,
             "child_count": 0}
    return [
        ToolCall("Calculator", {"formula": shell}),
        ToolCall("Calculator", {"formula": "9" * 999}),
        ToolCall("Calculator", {"formula": "9" + "*9" * 450}),
        ToolCall("Calculator", {"formula": "(" * 400 + "1" + ")" * 400}),
        ToolCall("Calculator", {"formula": "1+" * 500_000 + "1"}),
        ToolCall("Wiki", {"keyword": shell}),
        ToolCall("ImageCaption", {"url": "../../../../etc/passwd"}),
        ToolCall("SpeechRecognition", {"url": "/etc/passwd"}),
        ToolCall("DocumentQA", {"url": "file:///etc/passwd", "question": "root?"}),
        ToolCall("QueryScene", {"name": "../init_database/Account"}),
        ToolCall("DeleteScene", {"name": "../../init_database/Scenes.json"}),
        ToolCall("BookHotel", {**hotel, "room_count": 10**100}),
        ToolCall("BookHotel", {**hotel, "room_count": 10**5000}),
        ToolCall("BookHotel", {**hotel, "room_count": "9" * 5000}),
        ToolCall("QueryStock", {"stock_code": "AAPL", "date": float("nan")}),
        ToolCall("AddMeeting", {**meeting, "attendees": _deep_list(100_000)}),
        ToolCall("AddMeeting", {**meeting, "attendees": "[" * 5000 + "]" * 5000}),
        ToolCall("RecordHealthData", {"user_id": "A1", "time": "2023-01-01 10:00:00", "health_data": "[" * 100_000}),
        ToolCall("AddAgenda", {"token": "z9x8c7v6b5n4m3q2w1", "content": "x" * 1_000_000,
                               "time": "2023-01-01 10:00:00", "location": "l"}),
        ToolCall("Calculator", ["1+1"]),  # arguments that are not an object
        ToolCall("os.system", {"command": "id"}),
    ]


def test_hostile_calls_fail_cleanly_fast_and_touch_nothing(tmp_path):
    before = init_hashes()
    marker = tmp_path / "executed"
    env = fresh_env()
    for hostile in hostile_calls(marker):
        start = time.perf_counter()
        observation = env.step([hostile])[0]
        assert time.perf_counter() - start < 1.0, hostile.name
        assert not observation.ok, (hostile.name, observation.content[:200])
        assert len(observation.content) <= 2100 and "root:" not in observation.content
    # Text that looks like code is only data where a string is expected: stored, never run.
    stored = call(env, "AddAgenda", token="z9x8c7v6b5n4m3q2w1", content=f"__import__('os').system('touch {marker}')",
                  time="2023-01-01 10:00:00", location="../../etc")
    assert stored.ok and not marker.exists()
    assert call(env, "Calculator", formula="1+1").content == "2.0"  # the episode still works
    replay_all()  # every recorded write, in its own episodes
    assert init_hashes() == before
    for path in (ROOT / "init_database").glob("*.json"):  # the in-process shared tables are untouched too
        assert init_table(ROOT, path.stem) == json.loads(path.read_text()), path.name


# ----------------------------------------------------------------------------- figures for the report

def main() -> None:
    total, agree, mismatches = replay_all()
    print(f"replay agreement: {agree}/{total}")
    for name, count in sorted(mismatches.items()):
        print(f"  mismatches {name}: {count}")
    env = ApiBankEnv()
    start = time.perf_counter()
    for _ in range(10_000):
        env.reset(TASK)
    print(f"reset: {(time.perf_counter() - start) / 10_000 * 1e6:.1f} us")
    calls = [tool_call for path in sample_files(ROOT) for tool_call, _, _ in replay_dialogue(path)]
    env.reset(TASK)
    start = time.perf_counter()
    env.step(calls)
    print(f"step: {(time.perf_counter() - start) / len(calls) * 1e3:.2f} ms per call over {len(calls)} recorded calls")


if __name__ == "__main__":
    sys.exit(main())


TOKEN = "a9s8d7f6g5h4j3k2l1"  # JohnDoe's, in Account.json


@pytest.mark.parametrize("length", [4100, 10_000])
@pytest.mark.parametrize("call", [
    lambda s: ToolCall("AddAgenda", {"token": TOKEN, "content": "x", "time": s, "location": "y"}),
    lambda s: ToolCall("QueryAgenda", {"token": TOKEN, "content": s, "time": "2023-03-18 10:00:00", "location": "y"}),
    lambda s: ToolCall("SendEmail", {"receiver": s, "subject": "s", "content": "c"}),
], ids=["AddAgenda-time", "QueryAgenda-content", "SendEmail-receiver"])
def test_an_error_that_quotes_a_long_argument_stays_within_the_observation_bound(call, length):
    """Before: these error paths returned the whole argument, 4k-10k characters per call."""
    from cahl.types import MAX_OBSERVATION_TEXT, TRUNCATED

    env = ApiBankEnv()
    env.reset(TASK)
    [obs] = env.step([call("9" * length)])
    assert not obs.ok and obs.content.startswith("Error: ApiError:")
    assert len(obs.name) + len(obs.content) <= MAX_OBSERVATION_TEXT and obs.content.endswith(TRUNCATED)
    assert len(env.results[-1]["exception"]) > length  # the benchmark's record keeps the whole error
