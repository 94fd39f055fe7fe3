"""The rollout engine driven by a scripted policy: episode structure, tree addresses and groups,
the token invariant (loss mask / logprobs / ids), every end reason, and prompt merging."""

import collections
import gc
import signal
import weakref

import pytest

from cahl.agents.sampling import Sample, SamplingParams
from cahl.agents.prompts import initial_messages, render_result, subtask_dialogue
from cahl.agents.rollout import STOP, Rollout, RolloutConfig
from cahl.envs.base import FunctionCallEnv
from cahl.types import END_REASONS, CahlInputError, Observation, Task, ToolCall

TOOLS = [{"name": "add", "description": "a + b", "parameters": {"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}]
TASK = Task("t0", "test", [{"role": "user", "content": "Add 1 and 2, then add 3."}], TOOLS)


def logprob_of(token: int) -> float:
    """The scripted policy's deterministic log-prob for a token."""
    return -((token % 89) + 1) / 64


class ScriptedBackend:
    """generate() answers with script(prompt_text, k) for the k-th sample of each prompt.

    The text is tokenised (a trailing <|im_end|> becomes the eos id), cut at max_new_tokens like a
    real sampler, and every call and sample is recorded.
    """

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script = tokenizer, script
        self.calls: list[tuple[list[list[int]], list[int], SamplingParams]] = []
        self.samples: list[Sample] = []

    def generate(self, prompts, params, n=1, seed=None):
        counts = [n] * len(prompts) if isinstance(n, int) else list(n)
        self.calls.append(([list(p) for p in prompts], counts, params))
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            text = self.tokenizer.decode(prompt)
            for k in range(count):
                ids = self.tokenizer(self.script(text, k), add_special_tokens=False)["input_ids"]
                finish = "length" if len(ids) > params.max_new_tokens else "stop"
                ids = ids[: params.max_new_tokens]
                out.append(Sample(ids, [logprob_of(t) for t in ids], finish, prompt_index=i))
        self.samples += out
        return out


class Policies:
    def __init__(self, tokenizer, **scripts):
        self.backends = {role: ScriptedBackend(tokenizer, s) for role, s in scripts.items()}

    def backend(self, role):
        return self.backends[role]

    def samples(self):
        return [s for b in self.backends.values() for s in b.samples]


class CalcEnv:
    """`add` over numbers; unknown tools fail. Each observation tells how many calls this env has
    run, so shared state between forked attempts would show."""

    ends_on_call = False  # the Env protocol: calls run and the episode goes on

    tools = TOOLS

    def __init__(self):
        self.count = 0

    def reset(self, task):
        self.count = 0

    def step(self, calls):
        out = []
        for c in calls:
            self.count += 1
            if c.name != "add":
                out.append(Observation(c.name, f"Error: unknown tool {c.name}", ok=False))
            else:
                out.append(Observation(c.name, f"{c.arguments['a'] + c.arguments['b']} #{self.count}"))
        return out


def turns_so_far(prompt: str) -> int:
    return prompt.count("<|im_start|>assistant") - 1


def call(a, b, name="add"):
    return f'<think>c</think><tool_call>{{"name": "{name}", "arguments": {{"a": {a}, "b": {b}}}}}</tool_call>'


EOS = "<|im_end|>"


def run(tokenizer, chat, cfg, tasks=(TASK,), make_env=lambda t: CalcEnv(), **scripts):
    policies = Policies(tokenizer, **scripts)
    reported = []
    episodes = Rollout(policies, chat, cfg).run(list(tasks), make_env, on_episode=reported.append)
    key = sorted((e.task.id, e.node) for e in episodes)
    assert sorted((e.task.id, e.node) for e in reported) == key and len(set(key)) == len(key)  # each once
    check_token_invariant(episodes, policies, chat)
    return episodes, policies


def check_token_invariant(episodes, policies, chat):
    """Every trajectory: mask = 1 exactly on sampled ids, sampled logprobs there, 0 elsewhere; the
    ids of all turns are exactly the ids the policies sampled; the prompt is the role's prompt."""
    turn_ids = []
    for e in episodes:
        assert e.end_reason in END_REASONS
        for t in e.trajectories:
            assert t.end_reason in END_REASONS
            assert len(t.ids) == len(t.loss_mask) == len(t.logprobs)
            sampled = [i for turn in t.turns for i in range(turn.start, turn.end)]
            assert [i for i, m in enumerate(t.loss_mask) if m] == sampled
            assert all(t.logprobs[i] == (logprob_of(t.ids[i]) if m else 0.0) for i, m in enumerate(t.loss_mask))
            assert all(turn.start >= t.prompt_len for turn in t.turns)
            dialogue = subtask_dialogue(t.meta["subtask"]) if t.role == "executor" else e.task.messages
            assert t.ids[: t.prompt_len] == chat.prompt_ids(initial_messages(t.role, e.task.tools, dialogue))
            for turn in t.turns:
                ids = t.ids[turn.start:turn.end]
                turn_ids.append(tuple(ids))
                assert turn.text == chat.tokenizer.decode(ids).removesuffix(EOS)
    seen = {id(t) for e in episodes for t in e.trajectories}
    assert len(seen) == sum(len(e.trajectories) for e in episodes)  # no trajectory listed twice
    assert collections.Counter(turn_ids) == collections.Counter(tuple(s.ids) for s in policies.samples())


# -- flat ------------------------------------------------------------------------------------------

def flat_calc(prompt, k):
    return call(1, 2) if turns_so_far(prompt) == 0 else "<think>d</think><response>3</response>" + EOS


def test_flat_episode(tokenizer, chat):
    (e,), policies = run(tokenizer, chat, RolloutConfig(agent="flat"), flat=flat_calc)
    (t,) = e.trajectories
    assert (e.end_reason, e.response, e.node) == ("answered", "3", "f0")
    assert e.calls == t.calls == [ToolCall("add", {"a": 1, "b": 2})]
    assert t.observations == [Observation("add", "3 #1")]
    assert (t.role, t.node, t.parent, t.group_id) == ("flat", "f0", None, ("t0", "flat", "root"))
    assert [turn.finish for turn in t.turns] == ["stop", "stop"]
    assert '"content": "3 #1"' in t.turns[0].feedback and t.turns[1].feedback == ""
    assert t.ids[-1] == tokenizer.eos_token_id  # nothing follows the final answer's eos
    (b,) = policies.backends.values()
    assert [params.stop for _, _, params in b.calls] == [STOP["flat"]] * 2


def test_function_call_env_ends_at_the_first_call(tokenizer, chat):
    (e,), _ = run(tokenizer, chat, RolloutConfig(agent="flat"), make_env=lambda t: FunctionCallEnv(),
                  flat=lambda p, k: call(1, 2) + call(3, 4).replace("<think>c</think>", ""))
    assert e.end_reason == "answered" and len(e.trajectories[0].turns) == 1
    assert e.calls == [ToolCall("add", {"a": 1, "b": 2})]  # the repeated <tool_call> is not a second call


def test_identical_prompts_are_merged_into_one_call(tokenizer, chat):
    tasks = [TASK, Task("t1", "test", [{"role": "user", "content": "Other"}], TOOLS),
             Task("t2", "test", TASK.messages, TOOLS)]
    episodes, policies = run(tokenizer, chat, RolloutConfig(agent="flat", plans_per_task=3), tasks=tasks, flat=flat_calc)
    (b,) = policies.backends.values()
    prompts, counts, _ = b.calls[0]
    assert len(b.calls) == 2 and len(prompts) == 2 and counts == [6, 3]  # t0 and t2 share their prompt
    assert b.calls[1][1] == [6, 3]  # same turn, same observation: still one prefix
    assert [(e.task.id, e.node) for e in episodes] == [(t, f"f{i}") for t in ("t0", "t1", "t2") for i in range(3)]
    assert {e.trajectories[0].group_id for e in episodes} == {(t, "flat", "root") for t in ("t0", "t1", "t2")}


# -- hierarchical ----------------------------------------------------------------------------------

SUBTASKS = ["Add 1 and 2.", "Add 3 to that."]


def planner_two_steps(prompt, k):
    n = turns_so_far(prompt)
    if n < 2:
        return f"<think>p</think><subtask>{SUBTASKS[n]}</subtask>"
    return "<think>p</think><response>done</response>" + EOS


def executor_by_index(prompt, k):
    """First turn: attempt k adds k to the sub-task's number; then a result quoting the obs."""
    if turns_so_far(prompt) == 0:
        return call(1 if SUBTASKS[0] in prompt else 3, k)
    obs = prompt.rsplit('"content": "', 1)[1].split('"', 1)[0]
    return f"<result>got {obs}</result>" + EOS


def test_hierarchical_tree(tokenizer, chat):
    G_H, G_L = 2, 3
    cfg = RolloutConfig(agent="hierarchical", plans_per_task=G_H, attempts_per_subtask=G_L, seed=7)
    episodes, policies = run(tokenizer, chat, cfg, planner=planner_two_steps, executor=executor_by_index)
    assert [e.node for e in episodes] == ["p0", "p1"]
    for i, e in enumerate(episodes):
        planner, attempts = e.trajectories[0], e.trajectories[1:]
        assert (e.end_reason, e.response) == ("answered", "done")
        assert (planner.role, planner.node, planner.parent, planner.group_id) == ("planner", f"p{i}", None, ("t0", "planner", "root"))
        assert len(planner.turns) == 3 and len(attempts) == 2 * G_L
        chosen_calls = []
        for k, sub in enumerate(planner.meta["subtasks"]):
            node = f"p{i}.s{k}"
            group = [a for a in attempts if a.group_id == ("t0", "executor", node)]
            assert [a.node for a in group] == [f"{node}.a{j}" for j in range(G_L)] == sub["attempts"]
            assert all(a.role == "executor" and a.parent == f"p{i}" and a.end_reason == "answered" for a in group)
            assert all(a.meta["subtask"] == SUBTASKS[k] == sub["text"] for a in group)
            chosen = [a for a in group if a.meta["chosen"]]
            assert len(chosen) == 1 and sub["chosen"] == chosen[0].node
            assert planner.turns[k].feedback == render_result(chosen[0].meta["result"])
            chosen_calls += chosen[0].calls
            # forked envs: every attempt of sub-task k starts from the chosen env of sub-task k-1
            assert all(a.observations[0].content.endswith(f"#{k + 1}") for a in group)
        assert e.calls == planner.calls == chosen_calls
        assert [c.arguments["a"] for c in e.calls] == [1, 3]
    planner_calls, executor_calls = policies.backends["planner"].calls, policies.backends["executor"].calls
    assert (len(planner_calls[0][0]), planner_calls[0][1]) == (1, [G_H])  # the G_H plans share one prefill
    assert (len(executor_calls[0][0]), executor_calls[0][1]) == (1, [G_H * G_L])  # identical sub-tasks too
    assert [params.stop for _, _, params in planner_calls] == [STOP["planner"]] * len(planner_calls)
    assert [params.stop for _, _, params in executor_calls] == [STOP["executor"]] * len(executor_calls)


def test_hierarchical_rollout_is_deterministic(tokenizer, chat):
    cfg = RolloutConfig(agent="hierarchical", plans_per_task=2, attempts_per_subtask=4, seed=3)

    def chosen(episodes):
        return [(t.node, t.meta.get("chosen"), t.ids) for e in episodes for t in e.trajectories]

    a, _ = run(tokenizer, chat, cfg, planner=planner_two_steps, executor=executor_by_index)
    b, _ = run(tokenizer, chat, cfg, planner=planner_two_steps, executor=executor_by_index)
    cfg.seed = 4
    c, _ = run(tokenizer, chat, cfg, planner=planner_two_steps, executor=executor_by_index)
    assert chosen(a) == chosen(b)
    assert chosen(a) != chosen(c)  # the seed drives which attempt each plan continues with


def test_planner_goes_on_when_its_chosen_attempt_ends(tokenizer, chat):
    """Attempt k makes k + 1 tool calls before its result. When the chosen attempt is the quickest,
    the planner's next turn is sampled while the slower attempts still run, and the episode is
    reported only once all of them have ended."""
    log = []

    def planner(prompt, k):
        log.append(("planner", turns_so_far(prompt)))
        return planner_two_steps(prompt, k)

    def executor(prompt, k):  # k tells the attempts apart only in their first turn (then prompts differ)
        n = turns_so_far(prompt)
        log.append(("executor", n))
        if n == 0:
            return call(1, k)
        attempt = int(prompt.rsplit('"content": "', 1)[1].split(" #", 1)[0]) - 1
        return call(1, attempt) if n <= attempt else "<think>r</think><result>3</result>" + EOS

    for seed in range(50):
        log.clear()
        cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=3, max_executor_rounds=4, seed=seed)
        (episode,), _ = run(tokenizer, chat, cfg, planner=planner, executor=executor)
        first = [t for t in episode.trajectories if t.meta.get("subtask") == SUBTASKS[0]]
        if first[0].meta["chosen"]:
            break
    assert first[0].meta["chosen"] and [len(t.turns) for t in first] == [2, 3, 4]
    assert log.index(("planner", 1)) < log.index(("executor", 3))  # before the slowest attempt's last turn
    assert episode.end_reason == "answered" and all(t.end_reason == "answered" for t in episode.trajectories)


# -- limits and end reasons ------------------------------------------------------------------------

def test_invalid_output_limit(tokenizer, chat):
    cfg = RolloutConfig(agent="flat", invalid_output_limit=3)
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: "I do not know the format." + EOS)
    turns = e.trajectories[0].turns
    assert e.end_reason == "invalid_output_limit" and len(turns) == 3
    assert all(t.feedback.startswith("Invalid output") for t in turns[:-1]) and turns[-1].feedback == ""


def test_empty_answer_and_broken_call_count_as_invalid(tokenizer, chat):
    outputs = ["<response> </response>", "<tool_call>{not json</tool_call>"]
    cfg = RolloutConfig(agent="flat", invalid_output_limit=2)
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: outputs[turns_so_far(p)])
    assert e.end_reason == "invalid_output_limit" and e.calls == []


def test_invalid_planner_and_executor_outputs(tokenizer, chat):
    cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=2, invalid_output_limit=2)
    (e,), _ = run(tokenizer, chat, cfg, planner=lambda p, k: "no tags" if turns_so_far(p) else "<subtask>x</subtask>",
                  executor=lambda p, k: "no tags either")
    planner, *attempts = e.trajectories
    assert [a.end_reason for a in attempts] == ["invalid_output_limit"] * 2
    assert all(len(a.turns) == 2 for a in attempts)
    assert "invalid_output_limit" in planner.turns[0].feedback  # the planner is told how the attempt ended
    assert e.end_reason == "invalid_output_limit" and len(planner.turns) == 3


def test_tool_error_limit(tokenizer, chat):
    cfg = RolloutConfig(agent="flat", tool_error_limit=3, max_executor_rounds=10)
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: call(1, 2, name="nope"))
    t = e.trajectories[0]
    assert e.end_reason == "tool_error_limit" and len(t.turns) == 3
    assert [o.ok for o in t.observations] == [False] * 3


def test_tool_error_limit_counts_calls_not_turns(tokenizer, chat):
    cfg = RolloutConfig(agent="flat", tool_error_limit=2, max_executor_rounds=10)
    two_bad = call(1, 2, name="nope").replace("}}</tool_call>", '}}\n{"name": "nope", "arguments": {}}</tool_call>')
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: two_bad)
    assert e.end_reason == "tool_error_limit" and len(e.trajectories[0].turns) == 1


def test_flat_max_turns(tokenizer, chat):
    cfg = RolloutConfig(agent="flat", max_executor_rounds=3)
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: call(1, turns_so_far(p)))
    assert e.end_reason == "max_turns" and len(e.trajectories[0].turns) == 3
    assert [c.arguments["b"] for c in e.calls] == [0, 1, 2]


def test_planner_and_executor_max_turns(tokenizer, chat):
    cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=2, max_planner_turns=2, max_executor_rounds=2)
    (e,), _ = run(tokenizer, chat, cfg, planner=lambda p, k: f"<subtask>step {turns_so_far(p)}</subtask>",
                  executor=lambda p, k: call(1, 2))
    planner, *attempts = e.trajectories
    assert e.end_reason == "max_turns" and len(planner.turns) == 2 and e.response is None
    assert len(attempts) == 4 and all(a.end_reason == "max_turns" and len(a.turns) == 2 for a in attempts)
    assert len(e.calls) == 4  # 2 sub-tasks x the chosen attempt's 2 calls
    assert "[max_turns]" in planner.turns[0].feedback


def test_context_overflow_never_truncates_a_sampled_turn(tokenizer, chat):
    max_new = 48
    prompt_len = len(chat.prompt_ids(initial_messages("flat", TOOLS, TASK.messages)))
    cfg = RolloutConfig(agent="flat", max_new_tokens=max_new, max_context=prompt_len + max_new + 10, constrain="off")
    (e,), policies = run(tokenizer, chat, cfg, flat=flat_calc)
    t = e.trajectories[0]
    assert e.end_reason == "context_overflow" and len(t.turns) == 1 and t.turns[0].finish == "stop"
    assert t.ids[t.turns[0].start:t.turns[0].end] == policies.samples()[0].ids
    (b,) = policies.backends.values()
    assert all(len(p) + max_new <= cfg.max_context for prompts, _, _ in b.calls for p in prompts)


def test_prompt_longer_than_the_context(tokenizer, chat):
    (e,), policies = run(tokenizer, chat, RolloutConfig(agent="flat", max_new_tokens=16, max_context=50, constrain="off"), flat=flat_calc)
    assert e.end_reason == "context_overflow" and e.trajectories[0].turns == []
    assert policies.samples() == []


def test_executor_context_overflow_is_reported_to_the_planner(tokenizer, chat):
    max_new = 32
    plan_len = len(chat.prompt_ids(initial_messages("planner", TOOLS, TASK.messages)))
    cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=2, max_new_tokens=max_new, max_context=plan_len + max_new, constrain="off")
    (e,), policies = run(tokenizer, chat, cfg, planner=lambda p, k: "<subtask>Add 1 and 2.</subtask>",
                         executor=lambda p, k: call(1, 2))
    planner, *attempts = e.trajectories
    assert [(a.end_reason, len(a.turns)) for a in attempts] == [("context_overflow", 1)] * 2
    assert planner.turns[0].feedback.endswith("[context_overflow]</result>")
    assert e.end_reason == "context_overflow" and e.calls == [ToolCall("add", {"a": 1, "b": 2})]
    for b in policies.backends.values():
        assert all(len(p) + max_new <= cfg.max_context for prompts, _, _ in b.calls for p in prompts)


def test_sample_cut_at_max_new_tokens_is_kept(tokenizer, chat):
    cfg = RolloutConfig(agent="flat", max_new_tokens=5, invalid_output_limit=1, constrain="off")
    (e,), _ = run(tokenizer, chat, cfg, flat=lambda p, k: "<think>" + "long " * 20 + "</think>")
    (turn,) = e.trajectories[0].turns
    assert turn.finish == "length" and turn.end - turn.start == 5
    assert turn.parsed.status == "truncated" and e.end_reason == "invalid_output_limit"


def test_feedback_that_would_pass_the_context_ends_the_episode(tokenizer, chat):
    """The last feedback once pushed a trajectory to 239 tokens with max_context 224: now it is
    not appended, and no trajectory ever holds more than max_context tokens."""
    class LongObsEnv(CalcEnv):
        def step(self, calls):
            return [Observation(c.name, "x " * 200) for c in calls]

    max_new = 48
    prompt_len = len(chat.prompt_ids(initial_messages("flat", TOOLS, TASK.messages)))
    cfg = RolloutConfig(agent="flat", max_new_tokens=max_new, max_context=prompt_len + max_new + 100, constrain="off")
    (e,), _ = run(tokenizer, chat, cfg, make_env=lambda t: LongObsEnv(), flat=flat_calc)
    t = e.trajectories[0]
    assert e.end_reason == "context_overflow" and len(t.turns) == 1
    assert len(t.ids) == t.turns[0].end <= cfg.max_context  # the sampled turn is whole, nothing after it
    assert '"content": "x x' in t.turns[0].feedback  # the log still shows what the env returned


def test_planner_result_that_would_pass_the_context_ends_the_plan(tokenizer, chat):
    max_new = 32
    plan_len = len(chat.prompt_ids(initial_messages("planner", TOOLS, TASK.messages)))
    cfg = RolloutConfig(agent="hierarchical", max_new_tokens=max_new, max_context=plan_len + max_new + 10, constrain="off")
    (e,), _ = run(tokenizer, chat, cfg, planner=lambda p, k: "<subtask>Add 1 and 2.</subtask>",
                  executor=lambda p, k: "<result>" + "long " * 80 + "</result>" + EOS)
    planner = e.trajectories[0]
    assert e.end_reason == planner.end_reason == "context_overflow" and len(planner.turns) == 1
    assert all(len(t.ids) <= cfg.max_context for t in e.trajectories)


def test_lone_surrogate_in_a_call_does_not_crash_the_rollout(tokenizer, chat):
    bad = '<tool_call>{"name": "x\\ud800", "arguments": {}}</tool_call>'
    (e,), _ = run(tokenizer, chat, RolloutConfig(agent="flat", tool_error_limit=2), flat=lambda p, k: bad)
    t = e.trajectories[0]
    assert e.end_reason == "tool_error_limit" and e.calls == [ToolCall("x\ud800", {})] * 2
    assert "unknown tool x?" in t.turns[0].feedback and "\ud800" not in t.turns[0].feedback
    assert "unknown tool x?" in tokenizer.decode(t.ids[t.turns[0].end:t.turns[1].start])


def _alarm(signum, frame):
    raise TimeoutError("rollout did not finish")


def test_zero_attempts_per_subtask_is_rejected(tokenizer, chat):
    """It used to leave the planner waiting on no attempts, and Rollout.run looped forever."""
    cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=0)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(1)
    try:
        with pytest.raises(CahlInputError, match=r"rollout\.attempts_per_subtask: expected an integer >= 1, got 0"):
            run(tokenizer, chat, cfg, planner=lambda p, k: "<subtask>x</subtask>", executor=lambda p, k: call(1, 2))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("changes, key, expected", [
    ({"plans_per_task": 0}, "plans_per_task", ">= 1"),
    ({"max_planner_turns": 0}, "max_planner_turns", ">= 1"),
    ({"max_executor_rounds": -1}, "max_executor_rounds", ">= 1"),
    ({"max_new_tokens": 0}, "max_new_tokens", ">= 1"),
    ({"invalid_output_limit": 0}, "invalid_output_limit", ">= 1"),
    ({"tool_error_limit": 0}, "tool_error_limit", ">= 1"),
    ({"max_context": 192}, "max_context", "> rollout.max_new_tokens (192)"),
    ({"agent": "tree"}, "agent", "one of ['flat', 'hierarchical', 'executor']"),
])
def test_config_that_cannot_run_is_rejected_at_construction(chat, changes, key, expected):
    with pytest.raises(CahlInputError) as e:
        Rollout(Policies(chat.tokenizer), chat, RolloutConfig(**changes))
    assert f"rollout.{key}: expected" in str(e.value) and expected in str(e.value)


def test_a_reused_rollout_keeps_nothing_of_earlier_runs(tokenizer, chat):
    """The trainer runs one Rollout per step; actors and their forked envs must not pile up."""
    forks = []

    class ForkEnv(CalcEnv):
        def fork(self):
            env = ForkEnv()
            forks.append(weakref.ref(env))
            return env

    cfg = RolloutConfig(agent="hierarchical", plans_per_task=2, attempts_per_subtask=3)
    rollout = Rollout(Policies(tokenizer, planner=planner_two_steps, executor=executor_by_index), chat, cfg)
    first = rollout.run([TASK], lambda t: ForkEnv())
    second = rollout.run([TASK], lambda t: ForkEnv())
    assert [len(e.trajectories) for e in first + second] == [1 + 2 * 3] * 4  # each run: its own attempts
    del first, second
    gc.collect()
    assert len(forks) == 2 * 2 * 2 * 3 and all(ref() is None for ref in forks)


# -- deeply nested arguments ---------------------------------------------------------------------

class RecordingEnv(CalcEnv):
    """Keeps every call's arguments, as ApiBankEnv's results do: forking deep-copies them."""

    def __init__(self):
        super().__init__()
        self.log = []

    def step(self, calls):
        self.log += [c.arguments for c in calls]
        return super().step(calls)


@pytest.mark.parametrize("depth", [490, 990])
def test_arguments_nested_hundreds_deep_are_an_invalid_call_not_a_crash(tokenizer, chat, depth):
    """Before: the call parsed, then forking the env for the next sub-task's attempts (deepcopy),
    the rollout dump (asdict) and the call reward recursed past Python's limit."""
    import dataclasses
    import json

    from cahl.rewards.hierarchy import RewardConfig, score_episodes

    deep = "[" * depth + "]" * depth

    def executor(prompt, k):
        if turns_so_far(prompt) == 0:
            return f'<think>c</think><tool_call>{{"name": "store", "arguments": {{"x": {deep}}}}}</tool_call>'
        return "<result>stored</result>" + EOS

    task = Task("t0", "test", TASK.messages, TOOLS, gold_calls=[ToolCall("store", {"x": [[1]]})])
    cfg = RolloutConfig(agent="hierarchical", plans_per_task=1, attempts_per_subtask=2, max_new_tokens=4000,
                        max_context=20_000)
    (e,), _ = run(tokenizer, chat, cfg, tasks=[task], make_env=lambda t: RecordingEnv(),
                  planner=planner_two_steps, executor=executor)
    attempts = e.trajectories[1:]
    assert e.end_reason == "answered" and len(attempts) == 4 and e.calls == []
    assert all(a.turns[0].parsed.status == "invalid_call" for a in attempts)
    assert all("nested more than 64 levels deep" in a.turns[0].parsed.errors[0] for a in attempts), \
        attempts[0].turns[0].parsed.errors
    score_episodes([e], RewardConfig())
    assert all(json.dumps(dataclasses.asdict(t), default=str) for t in e.trajectories)
