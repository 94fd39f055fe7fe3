"""System prompts and turn rendering, shared by training and evaluation (one versioned module).

Prompts are short on purpose: prompt tokens are most of what a CPU trainer processes, so every
fixed instruction word costs throughput. Tools are rendered one compact JSON schema per line.
Observations and executor results come back inside a user message, which every chat template
has (not all templates have a `tool` role).
"""

from __future__ import annotations

import json

from cahl.types import Message, Observation, ToolSpec

PROMPT_VERSION = "1"

FLAT = """You solve the user's request with tools.
Tools:
{tools}
Reply with <think>short reasoning</think> then either
<tool_call>
{{"name": "tool_name", "arguments": {{"arg": "value"}}}}
</tool_call>
(one JSON object per line; several calls allowed) or <response>answer to the user</response>.
Tool results come back as <obs>...</obs>."""

PLANNER = """You are the planner. An executor calls the tools below for you; it sees only your sub-task, not this conversation.
Executor tools:
{tools}
Reply with <think>short reasoning</think> then either
<subtask>one step for the executor, with every value it needs</subtask>
or <response>final answer to the user</response>.
The executor's answer comes back as <result>...</result>."""

EXECUTOR = """You are the executor. Do the sub-task with the tools.
Tools:
{tools}
Reply with <think>short reasoning</think> then
<tool_call>
{{"name": "tool_name", "arguments": {{"arg": "value"}}}}
</tool_call>
(one JSON object per line). Results come back as <obs>...</obs>. When done, reply <result>what you did and found</result>."""

ROLE_PROMPTS = {"flat": FLAT, "planner": PLANNER, "executor": EXECUTOR}


def render_tools(tools: list[ToolSpec]) -> str:
    """One line per tool: {"name", "description", "parameters"} as compact JSON."""
    lines = []
    for t in tools:
        entry = {"name": t.get("name"), "description": t.get("description", "")}
        params = t.get("parameters") or {}
        if params.get("properties"):
            entry["parameters"] = params
        lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines)


def system_prompt(role: str, tools: list[ToolSpec]) -> str:
    return ROLE_PROMPTS[role].format(tools=render_tools(tools))


def initial_messages(role: str, tools: list[ToolSpec], dialogue: list[Message]) -> list[Message]:
    """System prompt for `role` followed by the dialogue (a task's messages, or one sub-task)."""
    return [{"role": "system", "content": system_prompt(role, tools)}] + list(dialogue)


def render_observations(observations: list[Observation]) -> str:
    return "\n".join(f"<obs>{json.dumps({'name': o.name, 'ok': o.ok, 'content': o.content}, ensure_ascii=False)}</obs>"
                     for o in observations)


def render_result(text: str) -> str:
    return f"<result>{text}</result>"


def subtask_dialogue(subtask: str) -> list[Message]:
    return [{"role": "user", "content": subtask}]
