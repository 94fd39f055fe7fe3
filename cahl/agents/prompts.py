"""System prompts and turn rendering, shared by training and evaluation (one versioned module).

Prompts are short on purpose: prompt tokens are most of what a CPU trainer processes, so every
fixed instruction word costs throughput. Tools are rendered one compact JSON schema per line.
Observations and executor results come back inside a user message, which every chat template
has (not all templates have a `tool` role).
"""

from __future__ import annotations

import json

from cahl.types import Message, Observation, ToolSpec

PROMPT_VERSION = "6"  # 2: compact one-line tool rendering; 3: "..." placeholders (small models copied the descriptive
#   ones); 4: oracle sub-tasks "Call NAME with k=v." (one per step, all calls in one where the first call ends the
#   episode), canonical argument order, short thinks; 5: fixed instructions before the tools (a shared, cached prefix);
#   6: sub-tasks "Call NAME with k=v; Call ..." with no closing period (rollout.subtask=calls writes this form)

# The fixed instructions come first and the tools last: every prompt of a role then starts with the
# same tokens, whose KV the prefix cache computes once per run (the tools and dialogue differ).
FLAT = """You solve the user's request with tools. Reply with <think>...</think> then either
<tool_call>
{{"name": ..., "arguments": {{...}}}}
</tool_call>
(one JSON object per line; several calls allowed) or <response>...</response> to answer the user.
Tool results come back as <obs>...</obs>.
Tools:
{tools}"""

PLANNER = """You are the planner. An executor calls the tools for you; it sees only your sub-task, not this conversation.
Reply with <think>...</think> then either <subtask>...</subtask> (one step for the executor, with every value it needs)
or <response>...</response> (the final answer to the user). The executor's answer comes back as <result>...</result>.
Executor tools:
{tools}"""

EXECUTOR = """You are the executor. Do the sub-task with the tools. Reply with <think>...</think> then
<tool_call>
{{"name": ..., "arguments": {{...}}}}
</tool_call>
(one JSON object per line). Results come back as <obs>...</obs>. When done, reply <result>...</result> (what you did and found).
Tools:
{tools}"""

ROLE_PROMPTS = {"flat": FLAT, "planner": PLANNER, "executor": EXECUTOR}


def _type(schema: dict) -> str:
    """A parameter's type in a compact, readable form: string, integer, "a"|"b", array[number], {...}."""
    if not isinstance(schema, dict):
        return "any"
    if schema.get("enum"):
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"][:12])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = "|".join(str(k) for k in kind)
    if kind == "array":
        return f"array[{_type(schema.get('items', {}))}]"
    if kind == "object" and schema.get("properties"):
        inner = ", ".join(f"{k}: {_type(v)}" for k, v in schema["properties"].items())
        return "{" + inner + "}"
    return str(kind)


def render_tool(tool: ToolSpec) -> str:
    """`- name(arg: type, opt?: type): description | arg: its description; ...` on one line.

    Why not the JSON schema: on a small CPU model prompt tokens are most of the cost, and JSON's
    quotes and braces take about twice the tokens for the same information.
    """
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or [])
    args = ", ".join(f"{k}{'' if k in required else '?'}: {_type(v)}" for k, v in props.items())
    line = f"- {tool.get('name')}({args}): {(tool.get('description') or '').strip()}"
    details = []
    for k, v in props.items():
        if isinstance(v, dict) and (v.get("description") or "default" in v):
            text = (v.get("description") or "").strip()
            if "default" in v and v["default"] not in ("", None):
                text += f" (default {json.dumps(v['default'], ensure_ascii=False)})"
            details.append(f"{k}: {text.strip()}")
    return line + (" | " + "; ".join(details) if details else "")


def render_tools(tools: list[ToolSpec]) -> str:
    """One line per tool (optional parameters marked `?`)."""
    return "\n".join(render_tool(t) for t in tools)


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
