"""ToolRL's training prompts: the 400-item SFT file and the 80-item held-out split (DESIGN §6).

Both render the tools in the system prompt (see toolspec.py) and the dialogue as tagged text:
    **Dialogue Records History**
    <user> ... </user>
    <think> ... </think>            an assistant turn: think, then <tool_call> and/or <response>
    <tool_call>
    {"name": ..., "parameters": {...}}
    </tool_call>
    <obs> [{"name": ..., "results": ...}] </obs>     the tool feedback
The target output has the same shape: <think>, then an optional <tool_call> block (one JSON call
per line) and an optional <response>. Assistant turns of the history keep their tagged text
verbatim (ToolRL's own format, with "parameters"); `Task.gold_calls` holds the parsed calls.

The SFT file's free-text <think> sometimes mentions "<tool_call>" in prose, so the target's blocks
are read only after the first </think>.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

from cahl.data.toolspec import parse_tool_list
from cahl import paths
from cahl.paths import read_json, require_file, require_keys
from cahl.types import CahlInputError, Message, Task, ToolCall

SOURCE = "toolrl"
SFT_FILE = "toolrl/rlla_sft.json"
TEST_FILE = "toolrl/rlla_4k_test.parquet"
_ORIGIN = ("github.com/qiancheng0/ToolRL (dataset/rlla_4k_raw/rlla_sft.json, dataset/rlla_4k/test.parquet); "
           "run `cahl data fetch toolrl`")

_HEADER = re.compile(r"^\s*\*+Dialogue Records History\*+\s*\n")  # API-Bank level 2 writes three stars
_SEGMENT = re.compile(r"<(user|think|tool_call|obs|response)>(.*?)</\1>", re.S)
_BLOCK = re.compile(r"<(tool_call|response)>(.*?)</\1>", re.S)


def load_toolrl_sft(data_dir: str | Path | None = None) -> list[Task]:
    """The 400 SFT items (split "train"). meta: sft_output (the raw target), system (the raw prompt)."""
    path = require_file(paths.data_dir(data_dir) / SFT_FILE, _ORIGIN)
    items = read_json(path)
    if not isinstance(items, list):
        raise CahlInputError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
    tasks = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise CahlInputError(f"{where}: expected an object, got {type(item).__name__}")
        require_keys(item, ["instruction", "input", "output"], where)
        task = _task(f"toolrl_sft_{i}", item["instruction"], item["input"], item["output"], "train", where)
        task.meta["sft_output"] = item["output"]
        tasks.append(task)
    return tasks


def load_toolrl_test(data_dir: str | Path | None = None) -> list[Task]:
    """The 80 held-out items (split "test"); gold from reward_model.ground_truth (raw in meta)."""
    import pyarrow.parquet as pq  # only this loader needs it

    path = require_file(paths.data_dir(data_dir) / TEST_FILE, _ORIGIN)
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CahlInputError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from e
    tasks = []
    for i, row in enumerate(rows):
        where = f"{path}[row {i}]"
        require_keys(row, ["prompt", "reward_model"], where)
        prompt = row["prompt"]
        if not (isinstance(prompt, list) and [m.get("role") for m in prompt] == ["system", "user"]):
            raise CahlInputError(f"{where}: 'prompt' must be [system, user] messages")
        gold = (row["reward_model"] or {}).get("ground_truth")
        if not isinstance(gold, str):
            raise CahlInputError(f"{where}: reward_model.ground_truth must be a string")
        task = _task(f"toolrl_test_{i}", prompt[0]["content"], prompt[1]["content"], gold, "test", where)
        task.meta.update(ground_truth=gold, index=(row.get("extra_info") or {}).get("index"))
        tasks.append(task)
    return tasks


def dedup_against(train: list[Task], test: list[Task]) -> tuple[list[Task], int]:
    """Train items minus those whose user turns and tool names equal a test item's; and how many went.

    Held-out discipline (DESIGN §6): ToolRL's SFT file shares one item with its held-out split.
    """
    held_out = {_identity(t) for t in test}
    kept = [t for t in train if _identity(t) not in held_out]
    return kept, len(train) - len(kept)


def parse_dialogue(text: str, where: str) -> list[Message]:
    """The tagged dialogue history as chat messages (user / assistant / tool)."""
    header = _HEADER.match(text)
    if not header:
        raise CahlInputError(f"{where}: dialogue must start with '**Dialogue Records History**'")
    messages: list[Message] = []
    pos, turn_start = header.end(), None
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        m = _SEGMENT.match(text, pos)
        if not m:
            raise CahlInputError(f"{where}: dialogue offset {pos}: expected <user>, <think>, <tool_call>, "
                                 f"<obs> or <response>, got {text[pos:pos + 60]!r}")
        tag, inner = m.group(1), m.group(2).strip()
        if tag == "user":
            messages.append({"role": "user", "content": inner})
        elif tag == "obs":
            messages.append({"role": "tool", "content": inner})
        elif tag == "think" or not (messages and messages[-1]["role"] == "assistant"):
            turn_start = m.start()  # an assistant turn opens with <think> (API-Bank's may lack it)
            messages.append({"role": "assistant", "content": text[turn_start:m.end()]})
        else:
            messages[-1]["content"] = text[turn_start:m.end()]
        pos = m.end()
    if not any(msg["role"] == "user" for msg in messages):
        raise CahlInputError(f"{where}: dialogue has no <user> turn")
    return messages


def parse_target(text: str, where: str) -> tuple[list[ToolCall], str | None]:
    """Gold calls and response of a target output (<think> then <tool_call> and/or <response>)."""
    if "</think>" not in text:
        raise CahlInputError(f"{where}: target output has no </think>")
    rest = text.split("</think>", 1)[1]
    calls: list[ToolCall] = []
    response = None
    for m in _BLOCK.finditer(rest):
        if m.group(1) == "response":
            response = m.group(2).strip()
            continue
        for line in m.group(2).strip().split("\n"):
            if line.strip():
                calls.append(_call_from_json(line, where))
    if not calls and response is None:
        raise CahlInputError(f"{where}: target output has neither a <tool_call> nor a <response> after </think>")
    return calls, response


def _call_from_json(line: str, where: str) -> ToolCall:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CahlInputError(f"{where}: tool_call line is not JSON ({getattr(e, 'msg', 'nested too deeply')}): "
                             f"{line[:80]!r}") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("name"), str) and isinstance(obj.get("parameters"), dict)):
        raise CahlInputError(f"{where}: tool_call line must be {{'name': str, 'parameters': dict}}: {line[:80]!r}")
    return ToolCall(obj["name"], obj["parameters"])


def _task(task_id: str, system: str, dialogue: str, target: str, split: str, where: str) -> Task:
    calls, response = parse_target(target, where)
    return Task(
        id=task_id,
        source=SOURCE,
        messages=parse_dialogue(dialogue, where),
        tools=parse_tool_list(system, where),
        gold_calls=calls,
        gold_answer=response,
        split=split,
        meta={"system": system},
    )


def _identity(task: Task) -> tuple:
    users = tuple(m["content"] for m in task.messages if m["role"] == "user")
    return users, tuple(sorted(t["name"] for t in task.tools))


# The request in a short dialogue, the shape of API-Bank's ToolRL protocol: the user asks, the
# assistant acknowledges in a <response>, and the user's last turn asks for the call. ToolRL's SFT
# file has 18 dialogues among 400 items, so without these a planner learns to delegate only a
# single-message request and answers a dialogue itself.
_ACKS = ("Sure, I can help with that.", "Alright, let me take care of it.", "Got it.",
         "Of course. I will handle that for you.")
_CLOSINGS_ONE = ("Based on our conversation above, please only make one tool call to solve my need.",
                 "Please go ahead and do it now.", "Yes, please make the call.")
_CLOSINGS_MANY = ("Based on our conversation above, please make the tool calls to solve my need.",
                  "Please go ahead and do it now.")


def dialogue_variant(task: Task) -> Task | None:
    """`task` (one user message, gold calls) as a three-turn dialogue ending on the user's request
    for the call; None for a task of another shape. Deterministic in the task id."""
    if len(task.messages) != 1 or task.messages[0].get("role") != "user" or not task.gold_calls:
        return None
    h = int(hashlib.sha256(task.id.encode()).hexdigest()[:8], 16)
    closings = _CLOSINGS_ONE if len(task.gold_calls) == 1 else _CLOSINGS_MANY
    messages = [dict(task.messages[0]),
                {"role": "assistant", "content": f"<response>{_ACKS[h % len(_ACKS)]}</response>"},
                {"role": "user", "content": closings[(h // len(_ACKS)) % len(closings)]}]
    return replace(task, id=f"{task.id}#dialogue", messages=messages, meta=dict(task.meta))
