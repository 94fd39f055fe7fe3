"""The shared vocabulary: tasks, tool calls, parse results, reward results.

Tool schemas are plain dicts in the OpenAI function format, which is what users bring:
    {"name": str, "description": str,
     "parameters": {"type": "object", "properties": {arg: {"type": ..., "description": ...}},
                    "required": [arg, ...]}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ToolSpec = dict[str, Any]
Message = dict[str, str]  # {"role": "system"|"user"|"assistant"|"tool", "content": str}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class Task:
    """One benchmark or training item (DESIGN §6).

    `gold_calls` is set for tasks scored by calls (BFCL, API-Bank, ToolRL, generated tasks),
    `gold_answer` for tasks scored by answer (Bamboogle, generated tasks). `meta` holds what only
    one source's scorer needs (e.g. BFCL's possible answers with alternative allowed values).
    """

    id: str
    source: str
    messages: list[Message]
    tools: list[ToolSpec]
    gold_calls: list[ToolCall] | None = None
    gold_answer: str | None = None
    split: str = "test"
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedOutput:
    """What the parser found in one model turn. Never raised on; `status` says how it went.

    status: "ok" (every tag present was well formed), "no_tags" (no recognised tag at all),
    "invalid_call" (a <tool_call> block held text that is not a call), "truncated" (an opened tag
    was never closed), "repeated_tag" (a tag that may appear once appeared more than once).
    """

    status: str
    think: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    response: str | None = None
    subtask: str | None = None
    result: str | None = None
    errors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # tag names in order of appearance


@dataclass
class RewardResult:
    """One verifiable reward: a scalar, its named components (all logged), and success."""

    score: float
    components: dict[str, float] = field(default_factory=dict)
    success: bool = False


class CahlInputError(ValueError):
    """Bad user input (data file, config, predictions): the message names file/line/key."""


class DataMissingError(FileNotFoundError):
    """A data file is absent: the message names the path and where to get it."""


MAX_OBSERVATION_TEXT = 4096  # characters of name + content: what one tool call may add to the context
MAX_OBSERVATION_NAME = 80  # a tool name is shown at most this long (a model-written one can be 10k characters)
TRUNCATED = "...[truncated]"


@dataclass
class Observation:
    """What the environment returns for one tool call: text for the model, and whether it failed.

    Bounded here, the one place every environment's observations pass through, error branches
    included (an API-Bank error quoting a 10,000-character argument came back whole): name and
    content together hold at most MAX_OBSERVATION_TEXT characters, a cut content ends in TRUNCATED.
    """

    name: str
    content: str
    ok: bool = True

    def __post_init__(self) -> None:
        if len(self.name) > MAX_OBSERVATION_NAME:
            self.name = self.name[:MAX_OBSERVATION_NAME]
        room = MAX_OBSERVATION_TEXT - len(self.name)
        if len(self.content) > room:
            self.content = self.content[:room - len(TRUNCATED)] + TRUNCATED


END_REASONS = ("answered", "max_turns", "context_overflow", "invalid_output_limit", "tool_error_limit")
ROLES = ("planner", "executor", "flat")


@dataclass
class Turn:
    """One sampled turn inside a trajectory: ids[start:end] were sampled by the trajectory's role."""

    start: int
    end: int
    text: str  # decoded sampled text (for parsing, rewards and logs; training uses the ids)
    parsed: ParsedOutput
    finish: str  # "stop" | "length"
    feedback: str = ""  # text appended after this turn (observations, result, correction); not trained


@dataclass
class Trajectory:
    """Everything one role did in one (sub-)episode, as a single token sequence.

    ids = prompt + turn_1 + feedback_1 + turn_2 + ...; loss_mask[i] = 1 exactly where ids[i] was
    sampled by this trajectory's role; logprobs[i] is that sample's log-prob (0.0 elsewhere).
    Tree addresses: a planner plan is node "p{i}"; its k-th sub-task "p{i}.s{k}"; executor attempt
    j at that sub-task "p{i}.s{k}.a{j}" whose parent is "p{i}". Flat episodes are "f{i}".
    GRPO groups: planner plans of a task share (task_id, "planner", "root"); the G_L executor
    attempts at one sub-task share (task_id, "executor", "p{i}.s{k}").
    """

    role: str
    task_id: str
    node: str
    parent: str | None
    group_id: tuple[str, str, str]
    ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    prompt_len: int
    turns: list[Turn] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)  # calls this trajectory's turns made
    observations: list[Observation] = field(default_factory=list)
    end_reason: str = ""
    reward: RewardResult | None = None
    advantage: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    masks: dict[int, Any] = field(default_factory=dict)  # position -> the packed allowed set (numpy int32
    #   [ceil(V / 32)]) the id there was sampled from, for ids sampled under a grammar (rollout.constrain);
    #   the update computes their log-probs over that set

    def append(self, ids: list[int], sampled: bool, logprobs: list[float] | None = None,
               masks: list | None = None) -> None:
        start = len(self.ids)
        self.ids.extend(ids)
        self.loss_mask.extend([1 if sampled else 0] * len(ids))
        self.logprobs.extend(logprobs if sampled and logprobs is not None else [0.0] * len(ids))
        for k, m in enumerate(masks or [] if sampled else []):
            self.masks[start + k] = m


@dataclass
class Episode:
    """One task's rollout under one plan (hierarchical) or one flat sample: what benchmarks score.

    `calls` are the tool calls of the episode in order (for the hierarchy: the calls of the chosen
    executor attempt of each sub-task); `response` is the final answer text, if any.
    """

    task: Task
    node: str
    calls: list[ToolCall]
    response: str | None
    end_reason: str
    trajectories: list[Trajectory]  # the planner/flat trajectory first, then executor attempts
