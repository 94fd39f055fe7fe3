"""API-Bank under two protocols (DESIGN §6).

ToolRL's protocol (`load_apibank_toolrl`): 597 items (levels 1/2/3: 399/67/131), each a
ToolRL-style system prompt with the tools, a tagged dialogue, and one gold call scored by exact
name + parameters (cahl/eval/scoring.py: apibank_match).

The original protocol (`load_apibank_original`): levels 1 (399) and 2 (135) of
DAMO-ConvAI/api-bank test-data. Each item's instruction ends with "API descriptions:" and one JSON
description per line ({"name", "description", "input_parameters", "output_parameters"}); the input
is the dialogue as lines "User: ...", "AI: ...", "API-Request: [Name(k='v')]->result", ending with
"Generate API Request:". In level 2 the tools other than ToolSearcher are described only by
ToolSearcher's results inside the dialogue, so their schemas are read from there.

The gold is `API-Request: [Name(k='v', ...)]`, read with ast.parse. API-Bank wrote list-valued
arguments as `k='[{'a': 'b'}]'` (quotes not escaped), which is not Python; those values are
re-quoted first, giving the same string the dialogue file records in its param_dict.

Each original item comes from one dialogue file (meta["dialogue"], relative to the data dir) and
is the API call at line meta["api_turn"] of it (0-based): API-Bank made two samples per API call
(sample 2k targets the k-th API line, sample 2k+1 the line after it), so an executable environment
can replay the dialogue's earlier API calls to rebuild the database state.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from cahl import paths
from cahl.data.toolrl import parse_dialogue
from cahl.data.toolspec import parse_tool_list, tool_spec
from cahl.paths import read_json, require_file, require_keys
from cahl.types import CahlInputError, Message, Task, ToolCall, ToolSpec

TOOLRL_SOURCE = "apibank_toolrl"
ORIGINAL_SOURCE = "apibank_original"
# Task.meta key of the calls a dialogue made before the evaluated one (ApiBankEnv.reset replays them)
PRIOR_CALLS_KEY = "apibank_prior_calls"
TOOLRL_COUNTS = {1: 399, 2: 67, 3: 131}
ORIGINAL_FOLDERS = {1: "level-1-given-desc", 2: "level-2-toolsearcher"}
_TOOLRL_ORIGIN = ("github.com/qiancheng0/ToolRL (benchmarks/API-Bank/level-{1,2,3}-api_processed.json); "
                  "run `cahl data fetch apibank`")
_ORIGINAL_ORIGIN = ("github.com/AlibabaResearch/DAMO-ConvAI (api-bank/test-data, api-bank/lv1-lv2-samples); "
                    "run `cahl data fetch apibank`")

_REQUEST_LINE = re.compile(r"^API-Request:\s*(\[.*?\)\s*\])(?:->(.*))?$", re.S)
# A quoted value that opens a list/dict literal: the value API-Bank forgot to escape.
_BRACKET_VALUE = re.compile(r"=\s*'(?=[\[{])")
_BRACKET_VALUE_END = re.compile(r"[\]}]'(?=\s*(?:,\s*\w+\s*=|\)))")


def load_apibank_toolrl(level: int, data_dir: str | Path | None = None) -> list[Task]:
    """ToolRL's API-Bank split of one level (1, 2 or 3); category f"level-{level}"."""
    if level not in TOOLRL_COUNTS:
        raise CahlInputError(f"API-Bank (ToolRL protocol) has levels {sorted(TOOLRL_COUNTS)}, not {level!r}")
    path = require_file(paths.data_dir(data_dir) / f"apibank/toolrl/level-{level}-api_processed.json", _TOOLRL_ORIGIN)
    tasks = []
    for i, item in enumerate(_json_list(path)):
        where = f"{path}[{i}]"
        require_keys(item, ["system", "user", "answer"], where)
        answer = item["answer"] if isinstance(item["answer"], list) else [item["answer"]]  # level 2 stores one dict
        tasks.append(Task(
            id=f"apibank_toolrl_l{level}_{i}",
            source=TOOLRL_SOURCE,
            messages=parse_dialogue(item["user"], where),
            tools=parse_tool_list(item["system"], where),
            gold_calls=[_toolrl_call(a, where) for a in answer],
            split="test",
            category=f"level-{level}",
            meta={"system": item["system"], "other": item.get("other", {})},
        ))
    return tasks


def load_apibank_original(level: int, data_dir: str | Path | None = None) -> list[Task]:
    """The original protocol's API-call items of level 1 (399) or 2 (135); category f"level-{level}"."""
    if level not in ORIGINAL_FOLDERS:
        raise CahlInputError(f"API-Bank (original protocol) has levels {sorted(ORIGINAL_FOLDERS)}, not {level!r}")
    root = paths.data_dir(data_dir)
    path = require_file(root / f"apibank/original/test-data/level-{level}-api.json", _ORIGINAL_ORIGIN)
    dialogues: dict[str, list[dict]] = {}
    tasks = []
    for i, item in enumerate(_json_list(path)):
        where = f"{path}[{i}]"
        require_keys(item, ["file", "id", "instruction", "input", "expected_output"], where)
        dialogue = f"apibank/original/lv1-lv2-samples/{ORIGINAL_FOLDERS[level]}/{item['file']}"
        if dialogue not in dialogues:
            dialogues[dialogue] = _read_dialogue(require_file(root / dialogue, _ORIGINAL_ORIGIN))
        messages, found_tools = _original_dialogue(item["input"], where)
        turn = _api_turn(dialogues[dialogue], item["id"], f"{where} ({dialogue})")
        tasks.append(Task(
            id=f"apibank_original_l{level}_{i}",
            source=ORIGINAL_SOURCE,
            messages=messages,
            tools=_merge_tools(_described_tools(item["instruction"], where), found_tools),
            gold_calls=parse_api_request(item["expected_output"], where),
            split="test",
            category=f"level-{level}",
            meta={"file": item["file"], "sample_id": item["id"], "dialogue": dialogue,
                  "api_turn": turn, "instruction": item["instruction"],
                  "apibank_root": str(root / "apibank/original"),  # ApiBankEnv reads this data folder
                  # the dialogue's earlier calls: the executable env replays them so state matches
                  PRIOR_CALLS_KEY: _prior_api_calls(dialogues[dialogue][:turn], f"{root / dialogue}")},
        ))
    return tasks


def parse_api_request(text: str, where: str) -> list[ToolCall]:
    """Calls in `API-Request: [Name(k='v', ...), ...]` (the prefix is optional). Never evaluated."""
    body = text.strip()
    if body.startswith("API-Request:"):
        body = body[len("API-Request:"):].strip()
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError:
        try:
            tree = ast.parse(_requote_bracket_values(body), mode="eval").body
        except SyntaxError as e:
            raise CahlInputError(f"{where}: cannot read API request {text[:100]!r} ({e.msg})") from None
    if not isinstance(tree, ast.List):
        raise CahlInputError(f"{where}: API request must be a list [Name(...)], got {text[:100]!r}")
    return [_call_from_ast(node, text, where) for node in tree.elts]


def _call_from_ast(node: ast.AST, text: str, where: str) -> ToolCall:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
        raise CahlInputError(f"{where}: expected Name(key=value, ...) in {text[:100]!r}")
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise CahlInputError(f"{where}: '**' arguments are not allowed in {text[:100]!r}")
        try:
            arguments[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise CahlInputError(f"{where}: argument {kw.arg!r} is not a literal in {text[:100]!r}") from None
    return ToolCall(node.func.id, arguments)


def _requote_bracket_values(body: str) -> str:
    """k='[{'a': 'b'}]' -> k="[{'a': 'b'}]": quote list/dict-looking values properly."""
    out, pos = [], 0
    while m := _BRACKET_VALUE.search(body, pos):
        end = _BRACKET_VALUE_END.search(body, m.end())
        if end is None:
            break
        out += [body[pos:m.start()], "=", repr(body[m.end():end.start() + 1])]
        pos = end.end()
    return "".join(out) + body[pos:]


def _original_dialogue(text: str, where: str) -> tuple[list[Message], list[ToolSpec]]:
    """Messages of an original-protocol input, and the tools ToolSearcher described in it.

    An earlier API call becomes an assistant <tool_call> turn plus a tool message with its result.
    """
    messages: list[Message] = []
    tools: list[ToolSpec] = []
    for lineno, line in enumerate(text.rstrip("\n").split("\n"), 1):
        line_where = f"{where}: input line {lineno}"
        if line.startswith("User:"):
            messages.append({"role": "user", "content": line[len("User:"):].strip()})
        elif line.startswith("AI:"):
            messages.append({"role": "assistant", "content": line[len("AI:"):].strip()})
        elif m := _REQUEST_LINE.match(line):
            calls = parse_api_request(m.group(1), line_where)
            rendered = "\n".join(json.dumps(c.to_json(), ensure_ascii=False) for c in calls)
            messages.append({"role": "assistant", "content": f"<tool_call>\n{rendered}\n</tool_call>"})
            result = (m.group(2) or "").strip()
            messages.append({"role": "tool", "content": result})
            if calls[0].name == "ToolSearcher":
                tools += _searcher_tools(result, line_where)
        elif line.strip() == "Generate API Request:":
            continue  # the protocol's cue to answer; our agent is cued by its own prompt
        elif line.strip():
            raise CahlInputError(f"{line_where}: expected 'User:', 'AI:' or 'API-Request:', got {line[:80]!r}")
    return messages, tools


def _described_tools(instruction: str, where: str) -> list[ToolSpec]:
    if "API descriptions:" not in instruction:
        raise CahlInputError(f"{where}: instruction has no 'API descriptions:' section")
    tools = []
    for line in instruction.split("API descriptions:", 1)[1].strip().split("\n"):
        try:
            desc = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            raise CahlInputError(f"{where}: API description is not JSON ({getattr(e, 'msg', 'nested too deeply')}): "
                                 f"{line[:80]!r}") from None
        tools.append(_api_description_tool(desc, where))
    return tools


def _searcher_tools(result: str, where: str) -> list[ToolSpec]:
    """ToolSearcher's result: one API description dict or a list of them, as a Python literal."""
    try:
        found = ast.literal_eval(result)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        raise CahlInputError(f"{where}: ToolSearcher result is not a literal: {result[:80]!r}") from None
    found = found if isinstance(found, list) else [found]
    return [_api_description_tool(desc, where) for desc in found]


def _api_description_tool(desc: Any, where: str) -> ToolSpec:
    if not isinstance(desc, dict):
        raise CahlInputError(f"{where}: API description must be a dict, got {type(desc).__name__}")
    require_keys(desc, ["name", "description", "input_parameters"], where)
    return tool_spec(desc["name"], desc["description"], desc["input_parameters"], f"{where}: API {desc['name']!r}")


def _merge_tools(first: list[ToolSpec], more: list[ToolSpec]) -> list[ToolSpec]:
    seen = {t["name"] for t in first}
    merged = list(first)
    for tool in more:
        if tool["name"] not in seen:
            seen.add(tool["name"])
            merged.append(tool)
    return merged


def _read_dialogue(path: Path) -> list[dict]:
    return [obj for _, obj in paths.iter_jsonl(path)]


def _prior_api_calls(turns: list[dict], where: str) -> list[dict]:
    calls = []
    for n, turn in enumerate(turns):
        if turn.get("role") == "API":
            require_keys(turn, ["api_name", "param_dict"], f"{where}:{n + 1}")
            calls.append({"name": turn["api_name"], "arguments": turn["param_dict"]})
    return calls


def _api_turn(dialogue: list[dict], sample_id: Any, where: str) -> int:
    """Line of the dialogue that sample `sample_id` asks for (see the module docstring)."""
    api_lines = [n for n, turn in enumerate(dialogue) if turn.get("role") == "API"]
    if not isinstance(sample_id, int) or not 0 <= sample_id // 2 < len(api_lines):
        raise CahlInputError(f"{where}: sample id {sample_id!r} does not match the dialogue's {len(api_lines)} API calls")
    turn = api_lines[sample_id // 2] + sample_id % 2
    if turn >= len(dialogue) or dialogue[turn].get("role") != "API":
        raise CahlInputError(f"{where}: sample id {sample_id} points at line {turn}, which is not an API call")
    return turn


def _toolrl_call(answer: Any, where: str) -> ToolCall:
    if not (isinstance(answer, dict) and isinstance(answer.get("name"), str) and isinstance(answer.get("parameters"), dict)):
        raise CahlInputError(f"{where}: answer must be {{'name': str, 'parameters': dict}}, got {answer!r:.100}")
    return ToolCall(answer["name"], answer["parameters"])


def _json_list(path: Path) -> list[dict]:
    items = read_json(path)
    if not isinstance(items, list):
        raise CahlInputError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CahlInputError(f"{path}[{i}]: expected an object, got {type(item).__name__}")
    return items
