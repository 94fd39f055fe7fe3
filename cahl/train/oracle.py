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


def _describe(task: Task, call: ToolCall) -> str:
    spec = next((t for t in task.tools if t.get("name") == call.name), {})
    desc = (spec.get("description") or "").strip().split(". ")[0].rstrip(".")
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.arguments.items())
    return f"{desc}: call {call.name} with {args}." if desc else f"Call {call.name} with {args}."


def oracle_subtasks(task: Task) -> list[str]:
    return [_describe(task, c) for c in task.gold_calls or []]


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


def _think(text: str, words: int = 25) -> str:
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


def planner_example(chat: ChatFormat, task: Task):
    subtasks, results = oracle_subtasks(task), _results(task)
    turns = []
    for k, (sub, res) in enumerate(zip(subtasks, results)):
        turns.append((f"<think>Step {k + 1} of {len(subtasks)}.</think>\n<subtask>{sub}</subtask>", render_result(res)))
    turns.append(("<think>All steps are done.</think>\n<response>" + _final_answer(task) + "</response>", None))
    return build_example(chat, "planner", task.tools, task.messages, turns)


def executor_examples(chat: ChatFormat, task: Task, ends_on_call: bool):
    out = []
    for sub, call, res in zip(oracle_subtasks(task), task.gold_calls or [], _results(task)):
        call_turn = f"<think>Use {call.name}.</think>\n<tool_call>\n{format_calls([call])}\n</tool_call>"
        if ends_on_call:
            turns = [(call_turn, None)]
        else:
            obs = render_observations([Observation(call.name, res)])
            turns = [(call_turn, obs), (f"<result>{call.name} returned {res}</result>", None)]
        out.append(build_example(chat, "executor", task.tools, subtask_dialogue(sub), turns))
    return out


def flat_example(chat: ChatFormat, task: Task, ends_on_call: bool):
    """ToolRL-style: the original (shortened) thought when there is one, all calls, then the answer."""
    original = task.meta.get("sft_output", "")
    if "<think>" in original and "</think>" in original:
        original = original.split("<think>", 1)[1].split("</think>", 1)[0]
    else:
        original = ""
    think = _think(original) or "I will use the tools."
    calls = task.gold_calls or []
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
