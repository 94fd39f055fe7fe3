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


@dataclass
class Observation:
    """What the environment returns for one tool call: text for the model, and whether it failed."""

    name: str
    content: str
    ok: bool = True
