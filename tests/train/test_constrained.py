"""Constrained decoding (DESIGN §9) end to end on a tiny random model: every role's turns follow
its grammar, a turn that reaches its budget has still closed its tags, and the update's log-probs
over each position's allowed set equal the sampler's (the trained policy is the masked one)."""

import pytest
import torch

from cahl.agents.chat import ChatFormat
from cahl.agents.parser import parse_output
from cahl.agents.policy import PolicySet
from cahl.agents.rollout import Rollout, RolloutConfig
from cahl.config import ModelConfig
from cahl.envs.base import FunctionCallEnv
from cahl.envs.synth import SynthEnv, generate_tasks
from cahl.rewards.format import format_score
from cahl.testing import tiny_model
from cahl.train.update import _forward, forced_positions, trained_mask
from cahl.types import Task


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    torch.manual_seed(0)
    path = tiny_model(tmp_path_factory.mktemp("m") / "tiny")
    p = PolicySet.create(ModelConfig(name=path, lora_r=4, threads=1), roles=("planner", "executor", "flat"))
    with torch.no_grad():  # adapters that differ from the base and from each other
        for role in p.roles:
            for w in p.parameters(role):
                w.add_(torch.randn_like(w) * 0.05)
    return p


def _tasks():
    synth = generate_tasks(3, seed=1, min_steps=2, max_steps=2, n_distractors=1, split="train")
    tool = {"name": "area", "description": "Area of a shape.", "parameters": {"type": "object", "properties": {
        "shape": {"type": "string", "enum": ["circle", "square"]}, "size": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "integer"}}, "exact": {"type": "boolean"}},
        "required": ["shape", "size"]}}
    call = Task("call1", "toolrl", [{"role": "user", "content": "Area of a circle of size 2."}], [tool])
    return synth + [call]


def _env(task):
    return SynthEnv() if task.source == "synth" else FunctionCallEnv()


def _rollout(policies, agent, **kw):
    cfg = RolloutConfig(agent=agent, plans_per_task=2, attempts_per_subtask=2, max_planner_turns=2,
                        max_executor_rounds=2, max_new_tokens=48, think_tokens=4, temperature=1.0, seed=3,
                        constrain="tools", **kw)
    return Rollout(policies, ChatFormat(policies.tokenizer), cfg).run(_tasks(), _env)


@pytest.fixture(scope="module")
def episodes(policies):
    return _rollout(policies, "hierarchical") + _rollout(policies, "flat")


def test_every_constrained_turn_follows_its_roles_grammar_and_closes_within_budget(episodes):
    tasks = {t.id: t for t in _tasks()}
    turns = 0
    for ep in episodes:
        assert ep.end_reason != "invalid_output_limit"
        for tr in ep.trajectories:
            names = {t["name"] for t in tasks[tr.task_id].tools}
            for turn in tr.turns:
                turns += 1
                assert turn.end - turn.start <= 48
                assert format_score(turn.parsed, tr.role, turn.text) == 1.0, (tr.role, turn.text)
                assert all(c.name in names for c in turn.parsed.calls)
                # every sampled id came with the allowed set it was drawn from
                assert all(p in tr.masks for p in range(turn.start, turn.end))
    assert turns > 20


def test_update_logprobs_over_the_allowed_sets_equal_the_samplers(policies, episodes):
    """|sampler - update| <= 1e-5 per token in float32, for every role; with unmasked log-probs
    (the sabotage) the same check fails."""
    by_role = {}
    for ep in episodes:
        for tr in ep.trajectories:
            by_role.setdefault(tr.role, []).append(tr)
    assert set(by_role) == {"planner", "executor", "flat"}
    for role, trajs in by_role.items():
        trained = [trained_mask(t) for t in trajs]
        with policies.use_role(role) as model, torch.no_grad():
            for unmasked in (False, True):
                subjects = [_without_masks(t) if unmasked else t for t in trajs]
                logp, old, mask, _ = _forward(model, subjects, list(range(len(trajs))), 0, 1.0, True, trained=trained)
                gap = (logp - old)[mask].abs().max().item()
                if unmasked:
                    assert gap > 1e-2, (role, gap)  # the check can fail
                else:
                    assert gap <= 1e-5, (role, gap)


def _without_masks(traj):
    from dataclasses import replace

    return replace(traj, masks={})


def test_forced_positions_carry_no_gradient_and_are_counted(episodes):
    trajs = [tr for ep in episodes for tr in ep.trajectories]
    forced = sum(len(forced_positions(t)) for t in trajs)
    sampled = sum(sum(t.loss_mask) for t in trajs)
    assert 0 < forced < sampled
    for t in trajs:
        for p in forced_positions(t):
            assert t.logprobs[p] == 0.0 and t.loss_mask[p] == 1 and trained_mask(t)[p] == 0


def test_a_turn_that_reaches_its_budget_still_closes_its_tags(policies):
    """A budget just large enough for the tags: free text is cut at its cap and the tags close."""
    eps = _rollout(policies, "flat", max_context=4096)
    short = RolloutConfig(agent="hierarchical", max_new_tokens=28, think_tokens=4, temperature=1.0, seed=5,
                          constrain="tools", max_planner_turns=1, max_executor_rounds=1)
    eps += Rollout(policies, ChatFormat(policies.tokenizer), short).run(_tasks(), _env)
    for ep in eps:
        for tr in ep.trajectories:
            for turn in tr.turns:
                assert parse_output(turn.text).status == "ok", turn.text


def test_an_executors_first_turn_on_a_subtask_calls_a_tool(policies):
    """rollout.executor_calls_first (the default): no <result> before any tool ran, wherever a call
    of some tool fits the turn's budget; later turns may answer. Before it, a trained executor
    wrote '<result>5</result>' for BFCL sub-tasks instead of calling."""
    from cahl.agents.grammar import turn_grammar

    cfg = RolloutConfig(agent="executor", plans_per_task=3, attempts_per_subtask=3, max_executor_rounds=2,
                        max_new_tokens=160, max_context=4096, think_tokens=4, temperature=1.0, seed=4, constrain="tools")
    chat = ChatFormat(policies.tokenizer)
    eps = Rollout(policies, chat, cfg).run(_tasks(), _env)
    tasks = {t.id: t for t in _tasks()}
    firsts = []
    for ep in eps:
        for tr in ep.trajectories:
            if tr.role != "executor" or not tr.turns:
                continue
            tools = tasks[tr.task_id].tools
            g = turn_grammar("executor", tools, "tools", 160, 4, cfg.max_calls, lambda t: len(chat.encode(t)), calls_only=True)
            if len(g.dropped) < len(tools):  # some call fits: the first turn must be one
                firsts.append(tr.turns[0])
    assert len(firsts) > 5
    assert all(t.parsed.calls and t.parsed.result is None for t in firsts), [t.text for t in firsts if not t.parsed.calls]


def _encode(policies, text):
    return policies.tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def grammars(policies):
    from cahl.agents.sampling import Grammars

    return Grammars(policies.tokenizer, len(policies.tokenizer))


def test_calls_only_grammar_rejects_a_result_and_accepts_a_call(policies, grammars):
    from cahl.agents.grammar import turn_grammar

    tool = _tasks()[-1].tools[0]
    count = lambda text: len(_encode(policies, text))  # noqa: E731
    call = '<think>Go.</think>\n<tool_call>\n{"name": "area", "arguments": {"shape": "circle", "size": 2}}\n</tool_call>'
    result = "<think>Go.</think>\n<result>4</result>"

    def accepts(grammar, text):
        m = grammars.matcher(grammar.text)
        ok = m.consume_tokens(_encode(policies, text))
        return bool(ok) and not m.is_error()

    first = turn_grammar("executor", [tool], "tools", 400, 4, 2, count, calls_only=True)
    later = turn_grammar("executor", [tool], "tools", 400, 4, 2, count)
    assert not first.dropped and not later.dropped
    assert accepts(first, call) and accepts(later, call)
    assert not accepts(first, result)
    assert accepts(later, result)


def test_answer_tokens_caps_the_answer_body_and_the_tag_still_closes(policies, grammars):
    from cahl.agents.grammar import turn_grammar

    enc = lambda text: _encode(policies, text)  # noqa: E731
    count = lambda text: len(enc(text))  # noqa: E731
    capped = turn_grammar("executor", [], "tools", 200, 4, 1, count, answer_tokens=6)
    free = turn_grammar("executor", [], "tools", 200, 4, 1, count)
    long_body = " ".join(["Brasilia"] * 12)
    m = grammars.matcher(capped.text)
    assert m.consume_tokens(enc("<think>Go.</think>\n<result>"))
    import numpy as np

    from cahl.agents.sampling import allowed_count
    from cahl.rl.losses import unpack_bitmask

    body, taken = enc(long_body), 0
    mask = np.zeros((1, grammars.width), dtype=np.int32)
    for tok in body:  # as the decoder does: a token is sampled only from the mask's allowed set
        grammars.fill([m], mask)
        if not unpack_bitmask(torch.from_numpy(mask), grammars.vocab_size)[0, tok]:
            break
        assert m.consume_token(tok)
        taken += 1
    assert len(body) > 6 and 1 <= taken <= 6 and not m.is_error()
    assert allowed_count(mask)[0] >= 1
    assert m.consume_tokens(enc("</result>")) and m.is_accepting()
    m = grammars.matcher(free.text)
    assert m.consume_tokens(enc("<think>Go.</think>\n<result>" + long_body + "</result>")) and m.is_accepting()
    assert capped.worst_case < free.worst_case


def test_call_shaped_subtask_grammar_admits_the_oracles_steps_and_nothing_else(policies, grammars):
    from cahl.agents.grammar import turn_grammar
    from cahl.train.oracle import oracle_subtasks

    task = _tasks()[-1]
    tool = task.tools[0]
    count = lambda text: len(_encode(policies, text))  # noqa: E731

    def accepts(grammar, text):
        m = grammars.matcher(grammar.text)
        return bool(m.consume_tokens(_encode(policies, text))) and not m.is_error() and m.is_accepting()

    calls = turn_grammar("planner", [tool], "tools", 400, 4, 2, count, answer_tokens=96, subtask_calls=True)
    free = turn_grammar("planner", [tool], "tools", 400, 4, 2, count, answer_tokens=96)
    from cahl.types import ToolCall

    gold = [ToolCall("area", {"size": 2.5, "shape": "circle", "tags": [1, 2]}), ToolCall("area", {"shape": "square", "size": 3})]
    step = oracle_subtasks(Task("t", "toolrl", task.messages, [tool], gold_calls=gold), ends_on_call=True)[0]
    assert step == 'Call area with shape="circle", size=2.5, tags=[1, 2]; Call area with shape="square", size=3'
    for text in (step, 'Call area with shape="circle", size=2'):
        assert accepts(calls, f"<think>Go.</think>\n<subtask>{text}</subtask>")
    for bad in ("Find the area of a circle.",  # free text
                'Call volume with shape="circle", size=2',  # a tool not offered
                'Call area with size=2',  # a required key missing
                'Call area with shape="circle", size="2"',  # a number written as a string
                'Call area with shape="oval", size=2',  # outside the enum
                'Call area with shape="circle", size=2, colour="red"'):  # a key the schema lacks
        assert not accepts(calls, f"<think>Go.</think>\n<subtask>{bad}</subtask>"), bad
        assert accepts(free, f"<think>Go.</think>\n<subtask>{bad}</subtask>")
    assert accepts(calls, "<think>Done.</think>\n<response>It is 4.</response>")  # answering stays free
    no_args = {"name": "now", "description": "The time.", "parameters": {"type": "object", "properties": {}}}
    assert accepts(turn_grammar("planner", [no_args], "tools", 200, 4, 2, count, subtask_calls=True),
                   "<think>Go.</think>\n<subtask>Call now</subtask>")
    assert calls.worst_case <= 400


def test_a_turn_makes_one_call_with_a_long_string_or_several_with_short_ones(policies, grammars):
    """One alternative per number of calls, decoded together: a 30-token ID fits one call (and
    three, at this budget), four short calls fit too, and the ID in a four-call turn does not."""
    from cahl.agents.grammar import turn_grammar

    tool = {"name": "lookup", "description": "Look up an ID.", "parameters": {"type": "object", "properties": {
        "id": {"type": "string"}}, "required": ["id"]}}
    enc = lambda text: _encode(policies, text)  # noqa: E731
    g = turn_grammar("executor", [tool], "tools", 200, 4, 4, lambda t: len(enc(t)))
    assert not g.dropped and g.worst_case <= 200

    def accepts(text):
        m = grammars.matcher(g.text)
        return bool(m.consume_tokens(enc(text))) and not m.is_error() and m.is_accepting()

    long_id = "-".join(str(1000 + i) for i in range(6))  # ~30 tokens: more than a 4-call turn's cap
    assert 24 < len(enc(long_id)) <= 32
    call = lambda v: '{"name": "lookup", "arguments": {"id": "%s"}}' % v  # noqa: E731
    head = "<think>Go.</think>\n<tool_call>\n"
    assert accepts(head + call(long_id) + "\n</tool_call>")
    assert accepts(head + "\n".join(call(c) for c in ("Paris", "Rome", "Oslo", "Bern")) + "\n</tool_call>")
    assert accepts(head + "\n".join(call(c) for c in (long_id, "Rome", "Oslo")) + "\n</tool_call>")  # 3 fit at 32
    assert not accepts(head + "\n".join(call(c) for c in (long_id, "Rome", "Oslo", "Bern")) + "\n</tool_call>")
    assert not accepts(head + "\n".join(call(c) for c in ("a", "b", "c", "d", "e")) + "\n</tool_call>")  # max_calls
