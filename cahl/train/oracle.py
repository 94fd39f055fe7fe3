"""Oracle decompositions (DESIGN §5) and the SFT examples built from them.

One sub-task per ground-truth call, rendered from the call and the tool's description with every
value included. For generated tasks the results of earlier calls are known (meta["chain"]), so
later sub-tasks carry them, exactly what a planner that read the executor's <result> would write.
Examples are laid out token by token the way the rollout lays out a trajectory (same prompts,
same turn glue), so SFT trains the exact format GRPO will sample.
"""

from __future__ import annotations

import json

from cahl.agents.chat import ChatFormat
from cahl.agents.parser import format_calls
from cahl.agents.prompts import initial_messages, render_observations, render_result, subtask_dialogue
from cahl.types import Observation, Task, ToolCall


def canonical_call(task: Task, call: ToolCall) -> ToolCall:
    """`call` with its arguments in the order of the tool's schema properties (then any others), the
    order the constrained grammar writes them in (agents/grammar.py)."""
    spec = next((t for t in task.tools if t.get("name") == call.name), {})
    order = list(((spec.get("parameters") or {}).get("properties") or {}))
    rank = {k: i for i, k in enumerate(order)}
    args = dict(sorted(call.arguments.items(), key=lambda kv: rank.get(kv[0], len(order))))
    return ToolCall(call.name, args)


def _describe(call: ToolCall) -> str:
    """One step for the executor: the tool and every value, each written as JSON (so its type shows).
    No closing period: after a number it would read as a decimal point (`size=3.`), which a
    constrained lexer cannot take back (agents/grammar.py writes this form too)."""
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.arguments.items())
    return f"Call {call.name} with {args}" if args else f"Call {call.name}"


def oracle_steps(task: Task, ends_on_call: bool) -> list[list[ToolCall]]:
    """The gold calls grouped into sub-tasks: one per call, or all in one where the benchmark scores
    the first turn that calls (ends_on_call: BFCL, API-Bank's ToolRL protocol): the executor must
    then make every call of the task in that one turn."""
    calls = [canonical_call(task, c) for c in task.gold_calls or []]
    if ends_on_call and calls:
        return [calls]
    return [[c] for c in calls]


def oracle_subtasks(task: Task, ends_on_call: bool = False) -> list[str]:
    return [_step_text(step) for step in oracle_steps(task, ends_on_call)]


def _step_text(step: list[ToolCall]) -> str:
    return "; ".join(_describe(c) for c in step)


def _results(task: Task) -> list[str]:
    chain = task.meta.get("chain")
    calls = task.gold_calls or []
    if chain and len(chain) == len(calls):
        return [json.dumps(v, ensure_ascii=False) for v in chain]
    return ["ok: call recorded"] * len(calls)


def _final_answer(task: Task) -> str:
    if task.gold_answer:
        return str(task.gold_answer)
    return "Done." if task.gold_calls else "None of the tools can do this."


def _think(text: str, words: int = 12) -> str:
    return " ".join(text.split()[:words])


def _turn_ids(chat: ChatFormat, text: str) -> list[int]:
    return chat.encode(text)


def build_example(chat: ChatFormat, role: str, task_tools, dialogue, turns: list[tuple[str, str | None]]):
    """ids and loss mask for a scripted conversation: turns = [(assistant_text, feedback_or_None)]."""
    ids = list(chat.prompt_ids(initial_messages(role, task_tools, dialogue)))
    mask = [0] * len(ids)
    for text, feedback in turns:
        sampled = _turn_ids(chat, text)
        ids += sampled
        mask += [1] * len(sampled)
        if feedback is not None:
            glue = chat.continuation_ids(sampled, feedback)
            ids += glue
            mask += [0] * len(glue)
    return ids, mask


def planner_example(chat: ChatFormat, task: Task, ends_on_call: bool = False):
    """Delegate every step (its values in the sub-task), read each <result>, then answer. Where the
    first calling turn ends the episode (ends_on_call) the one sub-task is the whole example."""
    steps, results = oracle_steps(task, ends_on_call), _results(task)
    turns = []
    for k, (step, res) in enumerate(zip(steps, results if not ends_on_call else ["ok"])):
        feedback = None if ends_on_call else render_result(res)
        names = ", ".join(dict.fromkeys(c.name for c in step))
        turns.append((f"<think>Step {k + 1} of {len(steps)}: {names}.</think>\n<subtask>{_step_text(step)}</subtask>",
                      feedback))
    if not ends_on_call or not steps:
        done = f"All {len(steps)} steps done." if steps else "No tool fits."
        turns.append((f"<think>{done}</think>\n<response>" + _final_answer(task) + "</response>", None))
    return build_example(chat, "planner", task.tools, task.messages, turns)


def executor_examples(chat: ChatFormat, task: Task, ends_on_call: bool):
    """Each sub-task's calls copied with their values and types; with tools that run, the result
    after the observation."""
    out = []
    steps = oracle_steps(task, ends_on_call)
    results = _results(task)
    for k, calls in enumerate(steps):
        sub = _step_text(calls)
        names = ", ".join(dict.fromkeys(c.name for c in calls))
        call_turn = f"<think>Use {names}.</think>\n<tool_call>\n{format_calls(calls)}\n</tool_call>"
        if ends_on_call:
            turns = [(call_turn, None)]
        else:
            res = results[k]
            obs = render_observations([Observation(calls[0].name, res)])
            turns = [(call_turn, obs), (f"<think>Done.</think>\n<result>{res}</result>", None)]
        out.append(build_example(chat, "executor", task.tools, subtask_dialogue(sub), turns))
    return out


def flat_example(chat: ChatFormat, task: Task, ends_on_call: bool):
    """ToolRL-style: the original (shortened) thought when there is one, all calls, then the answer."""
    original = task.meta.get("sft_output", "")
    if "<think>" in original and "</think>" in original:
        original = original.split("<think>", 1)[1].split("</think>", 1)[0]
    else:
        original = ""
    think = _think(original, 12) or "I will use the tools."
    calls = [canonical_call(task, c) for c in task.gold_calls or []]
    if not calls:
        turns = [(f"<think>{think}</think>\n<response>{_final_answer(task)}</response>", None)]
    elif ends_on_call:
        turns = [(f"<think>{think}</think>\n<tool_call>\n{format_calls(calls)}\n</tool_call>", None)]
    else:  # multi-step: one call per turn, results fed back, then the answer
        turns = []
        for k, (call, res) in enumerate(zip(calls, _results(task))):
            t = think if k == 0 else f"Next, {call.name}."
            turns.append((f"<think>{t}</think>\n<tool_call>\n{format_calls([call])}\n</tool_call>",
                          render_observations([Observation(call.name, res)])))
        turns.append(("<think>Done.</think>\n<response>" + _final_answer(task) + "</response>", None))
    return build_example(chat, "flat", task.tools, task.messages, turns)
