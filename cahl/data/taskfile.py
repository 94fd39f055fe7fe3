"""Task files: a user's own tasks as JSONL, for training (`train.data: [file:PATH]`) and evaluation
(`--bench file:PATH`). The schema is documented in docs/task_files.md; one object per line:

    {"id": "weather-1",
     "messages": [{"role": "user", "content": "Weather in Paris?"}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "...",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
     "gold_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],   # or "gold_answer": "..."
     "category": "weather",     # optional: evaluation reports one row per category
     "rule": "calls"}           # optional: calls | graded | answer

Tools may also be bare `{"name", "description", "parameters"}`. Rules (cahl/sources.py scores them):
`calls` (default with gold_calls) BFCL's AST checker, order-free; `graded` ToolRL's score in [-1, 1]
(correct only at 1); `answer` (default with gold_answer) normalised EM, F1 reported.
Every line is checked when the file is read, before any model loads: a bad line is a
CahlInputError naming file:line:key and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cahl.envs.base import MAX_NAME_CHARS
from cahl.paths import iter_jsonl
from cahl.types import CahlInputError, Task, ToolCall, ToolSpec

SOURCE = "file"
PREFIX = "file:"
RULES = ("calls", "graded", "answer")
CALL_RULES = ("calls", "graded")
ROLES = ("system", "user", "assistant", "tool")
KEYS = ("id", "messages", "tools", "gold_calls", "gold_answer", "category", "rule")
NO_CATEGORY = "all"


def file_path(spec: str) -> str | None:
    """'file:PATH' -> PATH; anything else -> None."""
    return spec[len(PREFIX):] if spec.startswith(PREFIX) else None


def load_task_file(path: str | Path, split: str = "test", rule: str = "") -> list[Task]:
    """The tasks of a task file, in file order. `rule` (one of RULES) overrides every line's rule."""
    path = Path(path).expanduser()
    if rule and rule not in RULES:
        raise CahlInputError(f"scoring rule {rule!r}: expected one of {list(RULES)}")
    if not path.is_file():
        raise CahlInputError(f"task file {path} does not exist (expected a JSONL file, docs/task_files.md)")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        task = parse_task(obj, f"{path}:{lineno}", split, rule)
        if task.id in seen:
            raise CahlInputError(f"{path}:{lineno}: id: {task.id!r} is already the id of line {seen[task.id]}; "
                                 "expected ids unique in the file")
        seen[task.id] = lineno
        tasks.append(task)
    if not tasks:
        raise CahlInputError(f"task file {path} holds no task (expected one JSON object per line)")
    return tasks


def parse_task(obj: dict, where: str, split: str = "test", rule: str = "") -> Task:
    """One line's object -> a Task; `where` is 'file:line'."""
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise CahlInputError(f"{where}: {unknown[0]}: unknown key; expected keys {list(KEYS)}")
    task_id = obj.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise CahlInputError(f"{where}: id: expected a non-empty string, got {_show(task_id)}")
    messages = _messages(obj.get("messages"), where)
    tools = [normalize_tool(t, f"{where}: tools[{i}]") for i, t in enumerate(_list(obj, "tools", where))]
    has_calls, has_answer = "gold_calls" in obj, "gold_answer" in obj
    if has_calls == has_answer:
        raise CahlInputError(f"{where}: gold_calls/gold_answer: expected exactly one of them, got "
                             f"{'both' if has_calls else 'neither'}")
    gold_calls = gold_answer = None
    if has_calls:
        gold_calls = [_gold_call(c, f"{where}: gold_calls[{i}]", tools)
                      for i, c in enumerate(_list(obj, "gold_calls", where))]
    else:
        gold_answer = obj["gold_answer"]
        if not isinstance(gold_answer, str) or not gold_answer.strip():
            raise CahlInputError(f"{where}: gold_answer: expected a non-empty string, got {_show(gold_answer)}")
    category = obj.get("category", NO_CATEGORY)
    if not isinstance(category, str) or not category:
        raise CahlInputError(f"{where}: category: expected a non-empty string, got {_show(category)}")
    line_rule = obj.get("rule", "calls" if has_calls else "answer")
    if line_rule not in RULES:
        raise CahlInputError(f"{where}: rule: expected one of {list(RULES)}, got {_show(line_rule)}")
    chosen = rule or line_rule
    if (chosen in CALL_RULES) != has_calls:
        raise CahlInputError(f"{where}: rule: {chosen!r} scores " + ("calls, and the line has gold_answer, not gold_calls"
                             if chosen in CALL_RULES else "an answer, and the line has gold_calls, not gold_answer"))
    return Task(task_id, SOURCE, messages, tools, gold_calls=gold_calls, gold_answer=gold_answer, split=split,
                category=category, meta={"rule": chosen, "where": where})


def normalize_tool(tool: Any, where: str) -> ToolSpec:
    """OpenAI-style `{"type": "function", "function": {...}}` or bare `{name, description, parameters}`
    -> the bare form cahl uses (cahl/types.py), parameters defaulting to an empty object schema;
    checked key by key (task files, `cahl data convert` and `cahl run --tools` all read tools here)."""
    if isinstance(tool, dict) and ("function" in tool or tool.get("type") == "function"):
        if tool.get("type", "function") != "function":
            raise CahlInputError(f"{where}.type: expected 'function', got {_show(tool.get('type'))}")
        tool, where = tool.get("function"), f"{where}.function"
    if not isinstance(tool, dict):
        raise CahlInputError(f"{where}: expected a tool object {{name, description, parameters}}, got {_show(tool)}")
    name = tool.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise CahlInputError(f"{where}.name: expected a non-empty string of at most {MAX_NAME_CHARS} characters, "
                             f"got {_show(name)}")
    description = tool.get("description", "")
    if not isinstance(description, str):
        raise CahlInputError(f"{where}.description: expected a string, got {_show(description)}")
    params = tool.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise CahlInputError(f"{where}.parameters: expected a JSON schema {{\"type\": \"object\", \"properties\": "
                             f"{{...}}}} (a call's arguments are an object), got {_show(params)}")
    properties = params.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(v, dict) for v in properties.values()):
        raise CahlInputError(f"{where}.parameters.properties: expected an object of argument name -> JSON schema, "
                             f"got {_show(properties)}")
    required = params.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) and r in properties for r in required):
        raise CahlInputError(f"{where}.parameters.required: expected a list of names in parameters.properties "
                             f"({', '.join(properties) or 'none'}), got {_show(required)}")
    return {"name": name, "description": description,
            "parameters": {**params, "type": "object", "properties": properties, "required": required}}


def task_to_json(task: Task) -> dict:
    """A Task as one task-file line (what `cahl data convert` writes)."""
    obj: dict[str, Any] = {"id": task.id, "messages": task.messages, "tools": task.tools}
    if task.gold_calls is not None:
        obj["gold_calls"] = [c.to_json() for c in task.gold_calls]
    else:
        obj["gold_answer"] = task.gold_answer
    if task.category and task.category != NO_CATEGORY:
        obj["category"] = task.category
    return obj


# -- helpers ------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if value is not None else "nothing"
    return text if len(text) <= 80 else text[:77] + "..."


def _list(obj: dict, key: str, where: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list):
        raise CahlInputError(f"{where}: {key}: expected a list, got {_show(value)}")
    return value


def _messages(value: Any, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise CahlInputError(f"{where}: messages: expected a non-empty list of {{\"role\", \"content\"}}, got {_show(value)}")
    out = []
    for i, m in enumerate(value):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise CahlInputError(f"{at}: expected {{\"role\", \"content\"}}, got {_show(m)}")
        if m.get("role") not in ROLES:
            raise CahlInputError(f"{at}.role: expected one of {list(ROLES)}, got {_show(m.get('role'))}")
        if not isinstance(m.get("content"), str):
            raise CahlInputError(f"{at}.content: expected a string, got {_show(m.get('content'))}")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "user" for m in out):
        raise CahlInputError(f"{where}: messages: expected at least one user message")
    return out


def _gold_call(value: Any, where: str, tools: list[ToolSpec]) -> ToolCall:
    if not isinstance(value, dict) or set(value) - {"name", "arguments"}:
        raise CahlInputError(f"{where}: expected {{\"name\", \"arguments\"}}, got {_show(value)}")
    name, arguments = value.get("name"), value.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise CahlInputError(f"{where}.name: expected a non-empty string, got {_show(name)}")
    if name not in {t["name"] for t in tools}:
        raise CahlInputError(f"{where}.name: {name!r} is not one of the line's tools {[t['name'] for t in tools]}")
    if isinstance(arguments, str):  # OpenAI's tool_calls carry arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            raise CahlInputError(f"{where}.arguments: a string must hold a JSON object ({e.msg})") from None
    if not isinstance(arguments, dict):
        raise CahlInputError(f"{where}.arguments: expected an object of argument values, got {_show(arguments)}")
    return ToolCall(name, arguments)
