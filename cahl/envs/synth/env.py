"""SynthEnv: runs calls to the synthetic tools offered by one task, checking arguments first.

Arguments are checked against the tool's schema before anything runs, and the schema is a
contract, as in BFCL's checker:
- unknown or missing arguments are errors, and so is a value of the wrong JSON type. There is no
  coercion: "3" where the schema says number is an error, because call-level rewards compare
  values exactly and an environment that quietly accepted "3" would tell the policy a call
  worked that the reward counts as wrong. The one leniency is JSON's own: an integral float
  (3.0) is accepted where the schema says integer.
- booleans are not numbers; numbers must be finite with magnitude at most 1e15 (so no
  10**100000 ever reaches arithmetic); strings are at most 1000 characters; enums are enforced.
Error messages show at most 40 characters of an offending string and only the type of anything
else (Python cannot even print a 100,000-digit int). Every tool runs under `call_with_timeout`;
no argument is ever evaluated as code. `step` never raises.
"""

from __future__ import annotations

import math
from typing import Any

from cahl.envs.base import DEFAULT_TOOL_TIMEOUT_S, call_with_timeout
from cahl.envs.synth.tools import BY_SHOWN_NAME, TOOLS, Tool
from cahl.types import CahlInputError, Observation, Task, ToolCall, ToolSpec

MAX_ABS_NUMBER = 10**15
MAX_STRING_CHARS = 1000
_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
              dict: "object", type(None): "null"}


def _describe(value: Any) -> str:
    """A bounded description of a value for an error message; never renders non-strings."""
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _arg_name(key: Any) -> str:
    return repr(key[:40]) if isinstance(key, str) else f"<{_describe(key)} key>"


def _check_value(name: str, schema: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """The value to pass on (integral floats become ints for integer parameters), or a problem."""
    kind = schema["type"]
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wanted = "an integer" if kind == "integer" else "a number"
            return None, f"argument '{name}' must be {wanted}, got {_describe(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"argument '{name}' must be finite"
        if abs(value) > MAX_ABS_NUMBER:
            return None, f"argument '{name}' is out of range (magnitude must be at most 1e15)"
        if kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                return None, f"argument '{name}' must be an integer, got a fraction"
            return int(value), None
        return value, None
    if not isinstance(value, str):
        return None, f"argument '{name}' must be a string, got {_describe(value)}"
    if len(value) > MAX_STRING_CHARS:
        return None, f"argument '{name}' is longer than {MAX_STRING_CHARS} characters"
    if "enum" in schema and value not in schema["enum"]:
        return None, f"argument '{name}' must be one of {', '.join(schema['enum'])}, got {_describe(value)}"
    return value, None


def check_arguments(spec: ToolSpec, arguments: Any) -> tuple[dict[str, Any], list[str]]:
    """Check call arguments against an OpenAI-style schema; returns (clean arguments, problems)."""
    if not isinstance(arguments, dict):
        return {}, [f"arguments must be a JSON object, got {_describe(arguments)}"]
    properties = spec["parameters"]["properties"]
    problems = []
    unknown = [k for k in arguments if k not in properties]
    if unknown:
        shown = ", ".join(_arg_name(k) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        problems.append(f"unknown argument(s) {shown}; expected {', '.join(properties)}")
    missing = [k for k in spec["parameters"]["required"] if k not in arguments]
    if missing:
        problems.append(f"missing required argument(s) {', '.join(missing)}")
    clean = {}
    for name, schema in properties.items():
        if name in arguments:
            clean[name], problem = _check_value(name, schema, arguments[name])
            if problem:
                problems.append(problem)
    return clean, problems


class SynthEnv:
    """The Env for generated tasks: the tools are the task's, under its canonical or alias names.

    Stateless tools, so `reset` only records which names the task offers; a call to a registry
    tool the task did not offer is an unknown tool, as it would be to the model.
    """

    ends_on_call = False  # calls run and the episode goes on (Env protocol)

    def __init__(self, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.tools: list[ToolSpec] = []
        self._offered: dict[str, tuple[Tool, dict[str, str], ToolSpec]] = {}

    def reset(self, task: Task) -> None:
        offered = {}
        renames = (task.meta or {}).get("shown") or {}  # generate_tasks(rename=...): shown -> [canonical, params]
        for spec in task.tools:
            name = spec.get("name")
            if name in renames:
                canonical, params = renames[name]
                if canonical not in TOOLS or sorted(params.values()) != sorted(TOOLS[canonical].params):
                    raise CahlInputError(f"task {task.id}: meta.shown[{name!r}] = {renames[name]!r} does not name a "
                                         "synth tool and all of its parameters")
                tool = TOOLS[canonical]
                offered[name] = (tool, dict(params), tool.spec(shown=(name, dict(params))))
                continue
            if name not in BY_SHOWN_NAME:
                raise CahlInputError(f"task {task.id}: tool {name!r} is not a synth tool "
                                     "(SynthEnv runs only tasks from cahl.envs.synth.generate_tasks)")
            tool, unseen = BY_SHOWN_NAME[name]
            offered[name] = (tool, tool.shown_params(unseen), tool.spec(unseen))
        self.tools = list(task.tools)
        self._offered = offered

    def step(self, calls: list[ToolCall]) -> list[Observation]:
        return [self._run(call) for call in calls]

    def _run(self, call: ToolCall) -> Observation:
        name = call.name if isinstance(call.name, str) else ""
        if name not in self._offered:
            shown = name[:80]
            return Observation(shown, f"Error: unknown tool {shown!r}; available: "
                                      f"{', '.join(self._offered) or 'none (reset the env with a task)'}",
                               ok=False)
        tool, params, spec = self._offered[name]  # params: shown parameter name -> the function's
        arguments, problems = check_arguments(spec, call.arguments)
        if problems:
            return Observation(name, f"Error: bad arguments for {name}: {'; '.join(problems)}", ok=False)
        renamed = {params[k]: v for k, v in arguments.items()}
        return call_with_timeout(name, tool.fn, renamed, self.timeout_s)
