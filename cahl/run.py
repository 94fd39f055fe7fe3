"""`cahl run`: the trained agent on a user's own request and tool list (DESIGN §8).

The request becomes a one-message Task whose tools are the user's, rolled out by the same engine
and constrained decoding as `cahl eval` (agents/rollout.py), one plan and one executor attempt per
sub-task. With an implementation module (`--impl`) every call runs through `call_with_timeout`, as
the synthetic and API-Bank environments run theirs, and the result goes back to the agent; without
one the calls are only recorded and the episode ends on its first calling turn (`ends_on_call`), so
the user sees what the agent would call.

Everything the user brings is checked before any model loads: the tool list (OpenAI's
`[{"type": "function", "function": {...}}]` or bare `{name, description, parameters}` objects), the
module and one function per tool. Model output and tool output are data: printed, never evaluated.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from cahl.envs.base import DEFAULT_TOOL_TIMEOUT_S, FunctionCallEnv, MAX_NAME_CHARS, call_with_timeout
from cahl.data.taskfile import normalize_tool
from cahl.paths import read_json
from cahl.types import CahlInputError, Episode, Observation, Task, ToolCall, ToolSpec

SOURCE = "run"  # Task.source of a request: no benchmark scores it
ROLES = {"hierarchical": ("planner", "executor"), "flat": ("flat",)}
_OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=")  # key.sub=value (a request rarely starts like that)


# -- what the user brings ------------------------------------------------------------------------

def split_words(words: list[str]) -> tuple[str | None, list[str]]:
    """(request, config overrides) from the command's positional words: `key.sub=value` words are
    overrides, the one other word is the request (None: read requests from stdin)."""
    overrides = [w for w in words if _OVERRIDE.match(w)]
    rest = [w for w in words if not _OVERRIDE.match(w)]
    if len(rest) > 1:
        raise CahlInputError(f"expected one request (quote it: cahl run ... \"what to do\"), got {len(rest)} words: "
                             f"{' '.join(rest)[:80]!r}")
    return (rest[0] if rest else None), overrides


def load_tools(path: str | Path) -> list[ToolSpec]:
    """The tool list of a JSON file as bare `{name, description, parameters}` dicts (types.py)."""
    path = Path(path)
    if not path.is_file():
        raise CahlInputError(f"--tools {path}: no such file; expected a JSON list of tools "
                             '([{"type": "function", "function": {"name", "description", "parameters"}}])')
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise CahlInputError(f"{path}: expected a non-empty JSON list of tools, got {_kind(data)}")
    tools = [normalize_tool(item, f"{path}: [{i}]") for i, item in enumerate(data)]
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        if tool["name"] in seen:
            raise CahlInputError(f"{path}: [{i}]: tool name {tool['name']!r} is also the name of [{seen[tool['name']]}]; "
                                 "expected distinct names")
        seen[tool["name"]] = i
    return tools


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__)


def load_module(spec: str):
    """A Python module by importable name (from the working directory too, as `python -m` finds
    it) or by .py path. Its top level runs: it is the user's own code, as with any import."""
    as_path = spec.endswith(".py") or os.sep in spec
    if as_path:
        path = Path(spec)
        if not path.is_file():
            raise CahlInputError(f"--impl {spec}: no such file; expected a Python module (an importable name or a "
                                 ".py path) with one function per tool")
        name = f"cahl_run_impl_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        if as_path:
            module_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:  # the `cahl` script, unlike `python -m`, does not search it
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if not as_path and (e.name == spec or spec.startswith(f"{e.name}.")):
            raise CahlInputError(f"--impl {spec}: no module of that name (from {os.getcwd()} or the Python path); "
                                 "expected an importable module name or a .py path") from None
        raise CahlInputError(f"--impl {spec}: importing it failed: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module failed at import: say which and why
        raise CahlInputError(f"--impl {spec}: importing it failed: {type(e).__name__}: {e}") from e


def function_name(tool_name: str) -> str:
    """The Python name a tool's function may have where the tool's name is not an identifier
    (BFCL-style 'math.factorial' -> 'math_factorial')."""
    return re.sub(r"\W", "_", tool_name)


def tool_functions(module, tools: list[ToolSpec], where: str) -> dict[str, Callable[..., Any]]:
    """tool name -> the module's function of that name (or of `function_name(name)`); every tool
    needs one, or a CahlInputError lists those that have none."""
    functions, missing = {}, []
    for tool in tools:
        for candidate in dict.fromkeys([tool["name"], function_name(tool["name"])]):
            fn = getattr(module, candidate, None)
            if callable(fn):
                functions[tool["name"]] = fn
                break
        else:
            missing.append(tool["name"])
    if missing:
        names = ", ".join(f"{n!r}" + (f" (or {function_name(n)!r})" if function_name(n) != n else "") for n in missing)
        raise CahlInputError(f"--impl {where}: no function for tool(s) {names}; expected one function per tool, "
                             f"named like the tool")
    return functions


def check_adapter_roles(meta: dict, folder: str, agent: str) -> None:
    """The checkpoint's policies serve `agent` (a hierarchy's adapters have no flat role)."""
    missing = [r for r in ROLES[agent] if r not in meta["roles"]]
    if missing:
        other = [a for a, roles in ROLES.items() if all(r in meta["roles"] for r in roles)]
        hint = f"; use --agent {other[0]}" if other else ""
        raise CahlInputError(f"{Path(folder) / 'policy.json'}: these adapters have roles {meta['roles']}, "
                             f"--agent {agent} needs {missing}{hint}")


# -- the environment -----------------------------------------------------------------------------

class ModuleEnv:
    """The Env (envs/base.py) over a user's tool functions: each call runs under
    `call_with_timeout`, so a failing, hanging or wrongly called tool becomes an error observation
    for the agent, never a crash. Only offered tools run (another function of the module is an
    unknown tool to the agent). The functions' own state, if any, is the user's: attempts share it."""

    ends_on_call = False  # results go back to the agent, which goes on (Env protocol)

    def __init__(self, functions: dict[str, Callable[..., Any]], timeout_s: float = DEFAULT_TOOL_TIMEOUT_S):
        self.functions, self.timeout_s = functions, timeout_s
        self.tools: list[ToolSpec] = []

    def reset(self, task: Task) -> None:
        self.tools = task.tools

    def step(self, calls: list[ToolCall]) -> list[Observation]:
        return [self._run(call) for call in calls]

    def _run(self, call: ToolCall) -> Observation:
        fn = self.functions.get(call.name)
        if fn is None:
            shown = call.name[:MAX_NAME_CHARS]
            return Observation(shown, f"Error: unknown tool {shown!r}; available: {', '.join(self.functions)}", ok=False)
        if not isinstance(call.arguments, dict):
            return Observation(call.name, f"Error: arguments of {call.name} must be a JSON object", ok=False)
        return call_with_timeout(call.name, fn, dict(call.arguments), self.timeout_s)

    def fork(self) -> "ModuleEnv":
        env = ModuleEnv(self.functions, self.timeout_s)
        env.tools = self.tools
        return env


def request_task(request: str, tools: list[ToolSpec], n: int = 0) -> Task:
    return Task(f"request-{n}", SOURCE, [{"role": "user", "content": request}], tools)


# -- one request ---------------------------------------------------------------------------------

def run_request(policies, chat, rollout_cfg, request: str, tools: list[ToolSpec],
                functions: dict[str, Callable[..., Any]] | None, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
                n: int = 0) -> dict:
    """Roll the agent out on one request (one plan, one attempt per sub-task); its record."""
    from cahl.agents.rollout import Rollout

    cfg = replace(rollout_cfg, plans_per_task=1, attempts_per_subtask=1)
    task = request_task(request, tools, n)
    make_env = (lambda t: ModuleEnv(functions, timeout_s)) if functions is not None else (lambda t: FunctionCallEnv())
    rollout = Rollout(policies, chat, cfg)
    [episode] = rollout.run([task], make_env)
    record = episode_record(episode, cfg.agent, executed=functions is not None)
    if rollout.dropped_tools:  # the grammar offers no call of a tool whose shortest call passes the turn's budget
        record["warnings"].append(f"some tools were left out of constrained decoding: even their shortest call "
                                  f"does not fit a turn of {cfg.max_new_tokens} tokens (raise eval.max_new_tokens)")
    return record


def _calls(calls: list[ToolCall], observations: list[Observation], executed: bool) -> list[dict]:
    if not executed:
        return [c.to_json() for c in calls]
    return [{**c.to_json(), "result": o.content, "ok": o.ok} for c, o in zip(calls, observations, strict=True)]


def episode_record(episode: Episode, agent: str, executed: bool) -> dict:
    """What the agent did, as one JSON-ready record: the plan (the hierarchy's sub-tasks, each with
    its calls, their results when executed, and the executor's result), every call in order, the
    answer, and why the episode ended."""
    root = episode.trajectories[0]
    plan = []
    if agent == "hierarchical":
        attempts = {t.node: t for t in episode.trajectories[1:]}
        for sub in root.meta.get("subtasks", []):
            ex = attempts[sub["chosen"]]
            plan.append({"subtask": sub["text"], "calls": _calls(ex.calls, ex.observations, executed),
                         "result": ex.meta.get("result") if executed else None})
        calls = [c for step in plan for c in step["calls"]]
    else:
        calls = _calls(root.calls, root.observations, executed)
    return {"request": episode.task.messages[-1]["content"], "agent": agent, "executed": executed, "plan": plan,
            "calls": calls, "answer": episode.response, "end_reason": episode.end_reason, "warnings": []}


def _call_line(call: dict) -> str:
    return json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False)


def format_record(record: dict) -> str:
    """The record as text for a person: plan, calls and results, answer."""
    lines = [f"request: {record['request']}"]
    if record["agent"] == "hierarchical":
        lines.append("plan:" if record["plan"] else "plan: (no sub-tasks: the planner answered itself)")
        for k, step in enumerate(record["plan"], 1):
            lines.append(f"  {k}. {step['subtask']}")
            for call in step["calls"]:
                lines.append(f"     call:   {_call_line(call)}")
                if record["executed"]:
                    lines.append(f"     {'result:' if call['ok'] else 'error: '} {call['result']}")
            if step["result"] is not None:
                lines.append(f"     => {step['result']}")
    else:
        for call in record["calls"]:
            lines.append(f"call:   {_call_line(call)}")
            if record["executed"]:
                lines.append(f"{'result:' if call['ok'] else 'error: '} {call['result']}")
    if not record["executed"] and record["calls"]:
        lines.append("(calls not executed: the run stops at the first; --impl MODULE runs them and the agent goes on)")
    lines.append(f"answer: {record['answer']}" if record["answer"] is not None else "answer: (none)")
    lines.append(f"ended: {record['end_reason']}")
    lines += [f"warning: {w}" for w in record["warnings"]]
    return "\n".join(lines)


def serve(policies, chat, rollout_cfg, tools: list[ToolSpec], functions: dict[str, Callable[..., Any]] | None,
          requests: Iterable[str], as_json: bool, out: TextIO, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> int:
    """Run each request in turn and print its record (--json: one JSON line each); blank lines are
    skipped. Returns the number of requests run."""
    n = 0
    for request in requests:
        request = request.strip()
        if not request:
            continue
        record = run_request(policies, chat, rollout_cfg, request, tools, functions, timeout_s, n)
        out.write((json.dumps(record, ensure_ascii=False) if as_json else format_record(record) + "\n") + "\n")
        out.flush()
        n += 1
    return n


def stdin_requests(stdin: TextIO | None = None, prompt: TextIO | None = None) -> Iterable[str]:
    """Requests from stdin, one a line, until end of input; a prompt on stderr when it is a terminal."""
    stdin, prompt = stdin or sys.stdin, prompt or sys.stderr
    while True:
        if stdin.isatty():
            prompt.write("request> ")
            prompt.flush()
        line = stdin.readline()
        if not line:
            return
        yield line
