"""The environment protocol and safe tool execution.

An environment holds the tools of one episode. `reset(task)` starts an episode (fresh state, e.g.
a private copy of a database); `step(calls)` executes calls in order and returns one Observation
per call. Environments never raise on bad calls: a wrong name, missing or mistyped arguments, a
tool that fails or runs past its time limit all become an Observation with ok=False.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any, Callable, Protocol

from cahl.types import Observation, Task, ToolCall, ToolSpec

DEFAULT_TOOL_TIMEOUT_S = 2.0
MAX_OBSERVATION_CHARS = 2000

MAX_NAME_CHARS = 80  # a model-written tool name is echoed back at most this long


class Env(Protocol):
    tools: list[ToolSpec]
    ends_on_call: bool  # the benchmark scores the first turn that calls: the whole episode ends there

    def reset(self, task: Task) -> None: ...

    def step(self, calls: list[ToolCall]) -> list[Observation]: ...


def render_result(value: Any) -> str:
    """Tool results as compact JSON text, capped so one call cannot flood the context."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + "...[truncated]"
    return text


def call_with_timeout(name: str, fn: Callable[..., Any], arguments: dict[str, Any],
                      timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> Observation:
    """Run one tool implementation with keyword arguments under a time limit; never raises.

    Each call gets its own daemon thread: a tool that overruns is abandoned (it finishes in the
    background) and cannot starve later calls, as a fixed-size pool would after a few hangs.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def target() -> None:
        try:
            future.set_result(fn(**arguments))
        except BaseException as e:  # noqa: BLE001 - handed to the caller below, never lost
            future.set_exception(e)

    threading.Thread(target=target, name=f"cahl-tool-{name[:20]}", daemon=True).start()
    try:
        value = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return Observation(name, f"Error: {name} took longer than {timeout_s:g}s", ok=False)
    except TypeError as e:  # wrong / missing keyword arguments
        return Observation(name, f"Error: bad arguments for {name}: {e}", ok=False)
    except Exception as e:  # noqa: BLE001 - a tool's failure is data for the model, not a crash
        return Observation(name, f"Error: {type(e).__name__}: {e}", ok=False)
    return Observation(name, render_result(value), ok=True)


def fork_env(env: Env) -> Env:
    """An independent copy of an episode's environment state (for parallel executor attempts).

    Environments with large shared read-only parts (a search index) define `fork()` themselves.
    """
    import copy

    fork = getattr(env, "fork", None)
    return fork() if callable(fork) else copy.deepcopy(env)


class FunctionCallEnv:
    """BFCL / ToolRL-style tasks: calls are recorded, a neutral observation is returned.

    `ends_on_call`: these benchmarks score one model turn, so the episode ends at the first turn
    that makes calls.
    """

    ends_on_call = True

    def __init__(self, tools: list[ToolSpec] | None = None):
        self.tools = tools or []

    def reset(self, task: Task) -> None:
        self.tools = task.tools

    def step(self, calls: list[ToolCall]) -> list[Observation]:
        known = {t.get("name") for t in self.tools}
        out = []
        for c in calls:
            name = c.name if c.name in known else c.name[:MAX_NAME_CHARS]
            out.append(Observation(name, "ok: call recorded" if c.name in known else f"Error: unknown tool {name!r}",
                                   ok=c.name in known))
        return out

    def fork(self) -> "FunctionCallEnv":
        return FunctionCallEnv(self.tools)
