"""ApiBankEnv: API-Bank's level-1/2 protocol, where calls are executed against the APIs.

Each episode gets its own view of the init databases (store.EpisodeState), so a call that adds an
agenda item or deletes an account is seen by the episode's later calls and by no other episode.
`env.results` keeps every call of the episode in API-Bank's own record form
(`{"api_name", "input", "output", "exception"}`), which is what the benchmark compares with its
ground truth; `step` returns the same outcome as Observations for the model.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from cahl.data.apibank import PRIOR_CALLS_KEY
from cahl.envs.apibank.apis import ApiError, run_api
from cahl.envs.apibank.specs import API_SCHEMAS, check_arguments, tools_for
from cahl.envs.apibank.store import EpisodeState, check_init_tables
from cahl.envs.base import DEFAULT_TOOL_TIMEOUT_S, call_with_timeout
from cahl.paths import data_dir, iter_jsonl, require_keys
from cahl.types import CahlInputError, Observation, Task, ToolCall, ToolSpec

# PRIOR_CALLS_KEY: calls the dialogue made before the point being evaluated; reset() runs them so
# that the episode starts from the state they left (e.g. ForgotPassword's first step, a deleted account).


def default_root() -> Path:
    return data_dir() / "apibank" / "original"


class ApiBankEnv:
    """The 50 API-Bank APIs over a private, copy-on-write copy of the init databases per episode."""

    ends_on_call = False  # calls run and the episode goes on (Env protocol)

    def __init__(self, data_root: Path | None = None, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> None:
        self.root = Path(data_root) if data_root is not None else default_root()
        self.timeout_s = timeout_s
        self._all_tools = tools_for(list(API_SCHEMAS))  # the env's own copies, offered when a task names none
        self.tools: list[ToolSpec] = self._all_tools
        self.results: list[dict[str, Any]] = []
        check_init_tables(self.root)
        self.state = EpisodeState(self.root)

    def reset(self, task: Task) -> None:
        """Fresh databases (nothing is copied until written), then the task's prior calls, if any."""
        self.state = EpisodeState(self.root)
        self.tools = task.tools or self._all_tools
        self.step(_prior_calls(task))
        self.results = []

    def step(self, calls: list[ToolCall]) -> list[Observation]:
        return [self._execute(call) for call in calls]

    def _execute(self, call: ToolCall) -> Observation:
        record: dict[str, Any] = {"api_name": call.name, "input": call.arguments, "output": None, "exception": None}
        self.results.append(record)
        try:
            arguments = copy.deepcopy(check_arguments(call.name, call.arguments))  # bounded: checked first
        except CahlInputError as e:
            record["exception"] = str(e)
            name = call.name[:80] if isinstance(call.name, str) else "?"  # bounded: the model wrote it
            return Observation(name, f"Error: {e}", ok=False)
        record["input"] = arguments
        run = functools.partial(self._run, record, call.name)
        observation = call_with_timeout(call.name, run, arguments, self.timeout_s)
        if not observation.ok and record["exception"] is None:  # time limit or an unexpected failure
            record["exception"] = observation.content
        return observation

    def _run(self, record: dict[str, Any], api_name: str, **arguments: Any) -> Any:
        try:
            record["output"] = run_api(self.state, api_name, arguments)
        except ApiError as e:
            record["exception"] = str(e)
            raise
        return record["output"]


def _prior_calls(task: Task) -> list[ToolCall]:
    calls = []
    for i, item in enumerate(task.meta.get(PRIOR_CALLS_KEY, [])):
        if isinstance(item, ToolCall):
            calls.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("arguments"), dict):
            calls.append(ToolCall(item["name"], item["arguments"]))
        else:
            raise CahlInputError(f"task {task.id}: meta[{PRIOR_CALLS_KEY!r}][{i}] must be a ToolCall or "
                                 f"{{'name': str, 'arguments': dict}}, got {item!r:.80}")
    return calls


def results_agree(expected: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Same output and same exception: the strictest form of API-Bank's per-API result check."""
    return expected.get("output") == ours["output"] and expected.get("exception") == ours["exception"]


def replay_dialogue(path: Path, data_root: Path | None = None) -> list[tuple[ToolCall, dict, dict]]:
    """Execute every API call recorded in one sample dialogue, in order, in one fresh episode.

    Returns (call, recorded result, our result) per call; compare them with `results_agree`.
    """
    path = Path(path)
    env = ApiBankEnv(data_root)
    env.reset(Task(id=path.stem, source="apibank", messages=[], tools=[]))
    replayed = []
    for lineno, turn in iter_jsonl(path):
        if turn.get("role") != "API":
            continue
        require_keys(turn, ["api_name", "param_dict", "result"], f"{path}:{lineno}")
        call = ToolCall(turn["api_name"], turn["param_dict"])
        env.step([call])
        replayed.append((call, turn["result"], env.results[-1]))
    return replayed
