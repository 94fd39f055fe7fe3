"""Format reward: does a sampled turn follow its role's grammar exactly? (DESIGN §3)

Grammar per role (tags in this order, each exactly once, each non-empty):
    flat:     think, then tool_call | response | tool_call + response
    executor: think, then tool_call | result
    planner:  think, then subtask | response
A turn scores 1 if it matches, else 0 — no partial credit. Binary is what ToolRL and Tool-N1 use,
and it is the simplest rule under which repetition cannot pay: a repeated tag, an empty tag, a
truncated turn, an unparseable call, a tag of another role, or text outside the tags (anything
but whitespace) all make the turn 0. A trajectory's format is the mean over its turns, so many
valid turns score exactly what one valid turn scores, and one bad turn among them costs its share.
"""

from __future__ import annotations

import re

from cahl.agents.parser import TAGS
from cahl.types import CahlInputError, ParsedOutput, Trajectory

GRAMMAR: dict[str, tuple[tuple[str, ...], ...]] = {
    "flat": (("think", "tool_call"), ("think", "response"), ("think", "tool_call", "response")),
    "executor": (("think", "tool_call"), ("think", "result")),
    "planner": (("think", "subtask"), ("think", "response")),
}

_BLOCK = re.compile(r"<(" + "|".join(TAGS) + r")>.*?</\1>", re.S)


def format_score(parsed: ParsedOutput, role: str, text: str | None = None) -> float:
    """1.0 if the turn follows `role`'s grammar (module docstring), else 0.0.

    `text` is the raw turn; when given, anything outside the tag blocks other than whitespace
    fails the turn (the parser keeps only the blocks, so it cannot see such text).
    """
    if role not in GRAMMAR:
        raise CahlInputError(f"format_score: role must be one of {sorted(GRAMMAR)}, got {role!r}")
    if parsed.status != "ok" or tuple(parsed.tags) not in GRAMMAR[role]:
        return 0.0
    if not all(_filled(parsed, tag) for tag in parsed.tags):
        return 0.0
    if text is not None and _BLOCK.sub("", text).strip():
        return 0.0
    return 1.0


def _filled(parsed: ParsedOutput, tag: str) -> bool:
    if tag == "tool_call":
        return bool(parsed.calls)  # status "ok" already guarantees every fragment parsed as a call
    value = getattr(parsed, tag)
    return bool(value and value.strip())


def trajectory_format(traj: Trajectory) -> float:
    """Mean turn format over the trajectory's sampled turns; 0.0 when it has none."""
    if not traj.turns:
        return 0.0
    return sum(format_score(t.parsed, traj.role, t.text) for t in traj.turns) / len(traj.turns)
