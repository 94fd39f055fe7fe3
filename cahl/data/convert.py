"""`cahl data convert --from xlam|toolace|hermes IN OUT`: public function-calling sets -> a task file.

Each input is a JSON array of records or JSONL. What is read (nothing is evaluated; calls are parsed):
- xlam (Salesforce/xlam-function-calling-60k): `query`, `tools` and `answers`, the last two JSON
  strings; tools have flat `{arg: {"type": "str", "description", "default"}}` parameters. One task
  per record: the query, gold calls = the answers.
- toolace (Team-ACE/ToolACE): `system` (holding the tool list as a JSON array) and `conversations`
  `[{"from": "user"|"assistant"|"tool", "value"}]`, calls written `[func(k=v), ...]`. One task per
  assistant turn that calls: the dialogue before it (earlier calls as <tool_call> turns, their results as
  tool messages), gold calls = that turn's calls.
- hermes (NousResearch/hermes-function-calling-v1): `conversations` `[{"from": "system"|"human"|"gpt"|
  "tool", "value"}]`, tools inside `<tools>...</tools>` of the system turn, calls as `<tool_call>{...}
  </tool_call>` objects (JSON or Python-literal) in gpt turns. One task per gpt turn that calls, as for toolace.
A record that cannot become a valid task (no tools, a call to a tool it does not list, unreadable
text) is skipped and counted; `convert` returns the count and the first reasons.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from cahl.agents.parser import format_calls
from cahl.data.apibank import parse_api_request
from cahl.data.taskfile import normalize_tool, parse_task, task_to_json
from cahl.data.toolspec import tool_spec
from cahl.paths import parse_jsonl
from cahl.types import CahlInputError, ToolCall

FORMATS = ("xlam", "toolace", "hermes")

# Type names of BFCL-style schemas (ToolACE writes "dict", "float", ...) -> JSON-schema types.
_SCHEMA_TYPES = {"dict": "object", "float": "number", "double": "number", "int": "integer", "str": "string",
                 "bool": "boolean", "list": "array", "tuple": "array", "any": "string"}


def convert(fmt: str, src: str | Path, dst: str | Path) -> tuple[int, list[str]]:
    """Write the task file `dst` from `src` in format `fmt`; return (tasks written, skip reasons)."""
    if fmt not in FORMATS:
        raise CahlInputError(f"--from {fmt!r}: expected one of {list(FORMATS)}")
    src = Path(src)
    if not src.is_file():
        raise CahlInputError(f"input file {src} does not exist")
    reader: Callable[[dict, str], list[dict]] = {"xlam": _xlam, "toolace": _toolace, "hermes": _hermes}[fmt]
    written, skipped = 0, []
    with open(dst, "w", encoding="utf-8") as out:
        for where, record in _records(src):
            try:
                lines = reader(record, where)
                tasks = [parse_task(line, f"{where} (converted)") for line in lines]  # only valid lines are written
            except CahlInputError as e:
                skipped.append(str(e))
                continue
            for task in tasks:
                out.write(json.dumps(task_to_json(task), ensure_ascii=False) + "\n")
                written += 1
    return written, skipped


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CahlInputError(f"{path}: a JSON array that does not parse ({e.msg}, line {e.lineno})") from None
        for i, record in enumerate(data):
            if not isinstance(record, dict):
                raise CahlInputError(f"{path}: record {i}: expected a JSON object, got {type(record).__name__}")
            yield f"{path}: record {i}", record
    else:
        for lineno, record in parse_jsonl(text.splitlines(), str(path)):
            yield f"{path}:{lineno}", record


def _record_id(record: dict, where: str) -> str:
    value = record.get("id")
    return str(value) if value not in (None, "") else where.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]


# -- xLAM ---------------------------------------------------------------------------------------
def _xlam(record: dict, where: str) -> list[dict]:
    for key in ("query", "tools", "answers"):
        if key not in record:
            raise CahlInputError(f"{where}: {key}: missing (xLAM records have query, tools, answers)")
    tools = [tool_spec(t.get("name", ""), t.get("description", ""), t.get("parameters") or {}, f"{where}: tools[{i}]")
             if isinstance(t, dict) else t for i, t in enumerate(_json_field(record, "tools", where))]
    answers = _json_field(record, "answers", where)
    return [{"id": f"xlam-{_record_id(record, where)}", "messages": [{"role": "user", "content": record["query"]}],
             "tools": tools, "gold_calls": answers}]


def _json_field(record: dict, key: str, where: str) -> Any:
    value = record[key]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise CahlInputError(f"{where}: {key}: a string that is not JSON ({e.msg})") from None
    return value


# -- dialogues (ToolACE, Hermes) ----------------------------------------------------------------
def _dialogue_tasks(prefix: str, tools: list[dict], turns: list[tuple[str, Any]]) -> list[dict]:
    """turns: ("user", text) | ("assistant", text) | ("calls", [ToolCall]) | ("tool", text), in order.
    One task per calls turn, over the dialogue before it."""
    tasks, messages = [], []
    for kind, value in turns:
        if kind == "calls":
            tasks.append({"id": f"{prefix}-t{len(messages)}", "messages": list(messages), "tools": tools,
                          "gold_calls": [c.to_json() for c in value]})
            messages.append({"role": "assistant", "content": f"<tool_call>\n{format_calls(value)}\n</tool_call>"})
        else:
            messages.append({"role": kind, "content": value})
    return tasks


def _schema(node: Any) -> Any:
    """BFCL-style type names in a parameter schema -> JSON-schema ones, recursively."""
    if isinstance(node, dict):
        out = {k: _schema(v) for k, v in node.items()}
        if isinstance(out.get("type"), str):
            out["type"] = _SCHEMA_TYPES.get(out["type"], out["type"])
        return out
    if isinstance(node, list):
        return [_schema(v) for v in node]
    return node


def _tools(raw: Any, where: str) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise CahlInputError(f"{where}: tools: expected a non-empty list of tools, got {str(raw)[:80]!r}")
    tools = []
    for i, tool in enumerate(raw):
        if isinstance(tool, dict) and "function" in tool:
            tool = tool["function"]
        if isinstance(tool, dict) and isinstance(tool.get("parameters"), dict):
            tool = {**tool, "parameters": _schema(tool["parameters"])}
        tools.append(normalize_tool(tool, f"{where}: tools[{i}]"))
    return tools


def _json_array_in(text: str, where: str) -> list:
    """The first JSON array of objects with a "name" in `text` (ToolACE's tool list in its system prompt)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            return value
    raise CahlInputError(f"{where}: system: no JSON list of tools found")


def _toolace(record: dict, where: str) -> list[dict]:
    if not isinstance(record.get("system"), str) or not isinstance(record.get("conversations"), list):
        raise CahlInputError(f"{where}: expected 'system' (text) and 'conversations' (a list), as ToolACE's records")
    tools = _tools(_json_array_in(record["system"], where), where)
    turns: list[tuple[str, Any]] = []
    for i, turn in enumerate(record["conversations"]):
        at = f"{where}: conversations[{i}]"
        who, text = _turn(turn, at)
        if who == "assistant" and re.fullmatch(r"\s*\[\s*[A-Za-z_][\w.]*\(.*\)\s*\]\s*", text, re.S):
            turns.append(("calls", parse_api_request(text, at)))
        elif who in ("user", "assistant", "tool"):
            turns.append((who, text))
        else:
            raise CahlInputError(f"{at}.from: expected user, assistant or tool, got {who!r}")
    return _dialogue_tasks(f"toolace-{_record_id(record, where)}", tools, turns)


_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.S)
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_HERMES_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "tool": "tool"}


def _hermes(record: dict, where: str) -> list[dict]:
    conversations = record.get("conversations")
    if not isinstance(conversations, list):
        raise CahlInputError(f"{where}: conversations: expected a list, as Hermes function-calling records")
    tools: list[dict] | None = None
    turns: list[tuple[str, Any]] = []
    for i, turn in enumerate(conversations):
        at = f"{where}: conversations[{i}]"
        who, text = _turn(turn, at)
        if who == "system":
            # the prose names the tags too ("within <tools> </tools> XML tags"): the list is the block with text
            blocks = [b.strip() for b in _TOOLS_BLOCK.findall(text) if b.strip()]
            if blocks:
                tools = _tools(_data_literal(blocks[-1], f"{at} <tools>"), at)
            continue
        role = _HERMES_ROLES.get(who)
        if role is None:
            raise CahlInputError(f"{at}.from: expected system, human, gpt or tool, got {who!r}")
        blocks = _CALL_BLOCK.findall(text) if role == "assistant" else []
        if blocks:
            turns.append(("calls", [_hermes_call(b, f"{at} <tool_call>") for b in blocks]))
        else:
            turns.append((role, text))
    if tools is None:
        raise CahlInputError(f"{where}: no <tools> in a system turn")
    return _dialogue_tasks(f"hermes-{_record_id(record, where)}", tools, turns)


def _hermes_call(text: str, where: str) -> ToolCall:
    obj = _data_literal(text.strip(), where)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise CahlInputError(f"{where}: expected {{\"name\", \"arguments\"}}, got {text[:80]!r}")
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):
        arguments = _data_literal(arguments, f"{where}.arguments")
    if not isinstance(arguments, dict):
        raise CahlInputError(f"{where}.arguments: expected an object, got {str(arguments)[:80]!r}")
    return ToolCall(obj["name"], arguments)


def _data_literal(text: str, where: str) -> Any:
    """JSON, or the Python-literal dicts and lists many Hermes rows hold (`{'name': 'f'}`): parsed by
    the ast module and read with literal_eval, which builds constants only and runs no code."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError) as e:
        raise CahlInputError(f"{where}: neither JSON nor a Python literal ({type(e).__name__}): {text[:80]!r}") from None


def _turn(turn: Any, where: str) -> tuple[str, str]:
    if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or not isinstance(turn.get("value"), str):
        raise CahlInputError(f"{where}: expected {{\"from\", \"value\"}} with text values, got {str(turn)[:80]!r}")
    return turn["from"], turn["value"]

