"""Oracle decompositions (DESIGN §5) and the SFT examples built from them.

One sub-task per ground-truth call, rendered from the call and the tool's description with every
value included; the planner's think before it says the step in the question's words where the task
has them (a generated task's meta["step_texts"]), else the tools it calls. For generated tasks the results of earlier calls are known (meta["chain"]), so
later sub-tasks carry them, exactly what a planner that read the executor's <result> would write.
Examples are laid out token by token the way the rollout lays out a trajectory (same prompts,
same turn glue), so SFT trains the exact format GRPO will sample.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

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


def build_example(chat: ChatFormat, role: str, task_tools, dialogue, turns: list[tuple]):
    """ids and loss mask for a scripted conversation: turns = [(assistant_text, feedback_or_None)], or
    (assistant_text, feedback, False) for a turn that is context only (not trained on)."""
    ids = list(chat.prompt_ids(initial_messages(role, task_tools, dialogue)))
    mask = [0] * len(ids)
    for text, feedback, *trained in turns:
        sampled = _turn_ids(chat, text)
        ids += sampled
        mask += [int(trained[0]) if trained else 1] * len(sampled)
        if feedback is not None:
            glue = chat.continuation_ids(sampled, feedback)
            ids += glue
            mask += [0] * len(glue)
    return ids, mask


def planner_example(chat: ChatFormat, task: Task, ends_on_call: bool = False, mistake: tuple[ToolCall, str] | None = None):
    """Delegate every step (its values in the sub-task), read each <result>, then answer. Where the
    first calling turn ends the episode (ends_on_call) the one sub-task is the whole example.
    `mistake` = (a wrong first sub-task's call, the error it returned): that turn and its result come
    first, as context only, and the steps that follow are the recovery (recovery_examples)."""
    steps, results = oracle_steps(task, ends_on_call), _results(task)
    texts = task.meta.get("step_texts") or []
    texts = texts if not ends_on_call and len(texts) == len(steps) else [None] * len(steps)
    turns: list[tuple] = []
    if mistake is not None:
        call, error = mistake
        turns.append((_planner_turn(1, len(steps), [call]), render_result(error), False))
    for k, (step, res) in enumerate(zip(steps, results if not ends_on_call else ["ok"])):
        feedback = None if ends_on_call else render_result(res)
        turns.append((_planner_turn(k + 1, len(steps), step, texts[k]), feedback))
    if not ends_on_call or not steps:
        done = f"All {len(steps)} steps done." if steps else "No tool fits."
        turns.append((f"<think>{done}</think>\n<response>" + _final_answer(task) + "</response>", None))
    return build_example(chat, "planner", task.tools, task.messages, turns)


def _planner_turn(k: int, n: int, step: list[ToolCall], text: str | None = None) -> str:
    """One delegating turn. Its think says what the step finds, in the question's words where the
    task has them (a generated task's meta["step_texts"]: "the city where Hugo Martin has an office",
    then "the mean annual temperature (°C) of Paris"), else which tools it calls. Said first, the
    innermost part of the question then picks the tool: a planner whose think named a tool went for
    the one matching the whole question (the temperature of "Hugo Martin") on half of synth_unseen."""
    about = text.rstrip(".") if text else ", ".join(dict.fromkeys(c.name for c in step))
    return f"<think>Step {k} of {n}: {about}.</think>\n<subtask>{_step_text(step)}</subtask>"


def _executor_call_turn(calls: list[ToolCall]) -> str:
    names = ", ".join(dict.fromkeys(c.name for c in calls))
    return f"<think>Use {names}.</think>\n<tool_call>\n{format_calls(calls)}\n</tool_call>"


def executor_examples(chat: ChatFormat, task: Task, ends_on_call: bool):
    """Each sub-task's calls copied with their values and types; with tools that run, the result
    after the observation."""
    out = []
    steps = oracle_steps(task, ends_on_call)
    results = _results(task)
    for k, calls in enumerate(steps):
        sub = _step_text(calls)
        call_turn = _executor_call_turn(calls)
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


# -- recovering from an error ---------------------------------------------------------------------
def skipped_step(task: Task) -> ToolCall | None:
    """The typical planner mistake on a generated chain, as a first sub-task: the second call made
    straight away, its inputs that should come from the first call's result given the first call's
    own (single) input instead, e.g. the temperature of "Hugo Martin" where the chain asks for the
    temperature of the city where Hugo Martin works. None where the chain has no such step."""
    calls, sources = task.gold_calls or [], task.meta.get("sources") or []
    if len(calls) < 2 or len(sources) < 2 or len(calls[0].arguments) != 1:
        return None
    fed = [p for p, k in sources[1].items() if k == 0]
    if not fed:
        return None
    entity = next(iter(calls[0].arguments.values()))
    return canonical_call(task, ToolCall(calls[1].name, {**calls[1].arguments, **{p: entity for p in fed}}))


def error_line(content: str, limit: int = 160) -> str:
    """An error observation in one short line: its first clause (a message's "; known: ..." list or
    further problems left out), at most `limit` characters."""
    return content.split("; ", 1)[0][:limit]


def recovery_examples(chat: ChatFormat, task: Task, env) -> tuple[tuple, tuple] | None:
    """(planner example, executor example) that teach recovery from `skipped_step`'s mistake, its
    observation computed by running it in `env` (the task's environment, reset to it): the planner
    sees the mistaken sub-task and its error as context, then delegates the right steps and answers;
    the executor does the mistaken sub-task faithfully and reports the error in one line. None where
    the task has no such step or the mistaken call does not fail (a wrong value that happens to work
    teaches nothing about errors)."""
    call = skipped_step(task)
    if call is None:
        return None
    obs = env.step([call])[0]
    if obs.ok:
        return None
    error = error_line(obs.content)
    planner = planner_example(chat, task, mistake=(call, error))
    turns = [(_executor_call_turn([call]), render_observations([obs])),
             (f"<think>It failed.</think>\n<result>{error}</result>", None)]
    executor = build_example(chat, "executor", task.tools, subtask_dialogue(_step_text([call])), turns)
    return planner, executor


# -- optional parameters nobody asked for -----------------------------------------------------------
# Generic optional parameters, each with a default in its description, the way real schemas list
# them (BFCL: "unit: ... Default is 'cm'", "z: Optional ... Default is 0"). A generated tool has only
# required parameters, so a warm start on generated tasks alone learns to give every listed
# parameter a value, and did: it filled BFCL's optional z, unit and gravity with invented values.
OPTIONAL_EXTRAS: tuple[tuple[str, dict], ...] = (
    ("decimals", {"type": "integer", "description": "Optional. Digits after the decimal point. Default is 2."}),
    ("limit", {"type": "integer", "description": "Optional. Most results to return. Default is 10."}),
    ("language", {"type": "string", "description": "Optional. Language of the answer. Default is 'en'."}),
    ("verbose", {"type": "boolean", "description": "Optional. Return extra details. Default is false."}),
    ("timeout", {"type": "integer", "description": "Optional. Seconds to wait for an answer. Default is 30."}),
    ("format", {"type": "string", "description": "Optional. Output format, 'json' or 'text'. Default is 'json'."}),
)


def with_optional_extras(task: Task, share: float) -> Task:
    """`task` whose offered tools each get, with probability `share` (seeded by the task id and the
    tool), one of OPTIONAL_EXTRAS that its question never mentions (one the tool does not have under
    that name already); the gold calls are unchanged, so its SFT examples leave the optional
    parameter out (sft.optional_extras). Only the examples see these: the task's environment does not."""
    if share <= 0:
        return task
    tools = []
    for tool in task.tools:
        rng = random.Random(f"extras:{task.id}:{tool.get('name')}")
        params = tool.get("parameters") or {}
        props = dict(params.get("properties") or {})
        free = [(k, v) for k, v in OPTIONAL_EXTRAS if k not in props]
        if free and rng.random() < share:
            key, schema = rng.choice(free)
            props[key] = dict(schema)
            tool = {**tool, "parameters": {**params, "properties": props,
                                           "required": list(params.get("required") or [])}}
        tools.append(tool)
    return replace(task, tools=tools)
