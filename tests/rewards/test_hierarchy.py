"""Hierarchy rewards on hand-built episodes: claiming, capability, planner terms, answer tasks, outcome."""

import pytest

from cahl.agents.parser import format_calls, parse_output
from cahl.rewards.hierarchy import (RewardConfig, capability, claim_gold, executor_reward, flat_reward, outcome,
                                    planner_reward, score_episodes, subtask_target, unclaimed_gold)
from cahl.types import CahlInputError, Episode, Observation, RewardResult, Task, ToolCall as C, Trajectory, Turn

A = C("get_weather", {"city": "Paris", "days": 2})
A_BAD = C("get_weather", {"city": "Paris", "days": 5})
B = C("convert", {"amount": 10, "to": "EUR"})
CFG = RewardConfig()  # w_fmt 0.5, w_call 1, w_out 1, w_align 0.5, w_len 0.5, mix 0.3, threshold 0.5


def task(gold_calls=None, gold_answer=None, source="toolrl", **kw):
    return Task("t1", source, [{"role": "user", "content": "q"}], [], gold_calls=gold_calls,
                gold_answer=gold_answer, **kw)


def turns(texts):
    return [Turn(0, 0, t, parse_output(t), "stop") for t in texts]


def attempt(*calls, obs=(), result="done"):
    """An executor attempt: one well-formed turn per call, then <result>. Node set by `plan`."""
    texts = [f"<think>call</think><tool_call>\n{format_calls([c])}\n</tool_call>" for c in calls]
    texts.append(f"<think>done</think><result>{result}</result>")
    return Trajectory("executor", "t1", "", "p0", ("t1", "executor", ""), [], [], [], 0, turns=turns(texts),
                      calls=list(calls), observations=list(obs), end_reason="answered")


def plan(t, subtasks, chosen=None, response="final", node="p0"):
    """An episode: sub-task k has attempts subtasks[k]; chosen[k] (default 0) continues the episode."""
    chosen = chosen or [0] * len(subtasks)
    texts = [f"<think>step</think><subtask>step {k}</subtask>" for k in range(len(subtasks))]
    texts.append(f"<think>done</think><response>{response}</response>")
    planner = Trajectory("planner", t.id, node, None, (t.id, "planner", "root"), [], [], [], 0, turns=turns(texts))
    meta, executors, calls = [], [], []
    for k, attempts in enumerate(subtasks):
        sub = f"{node}.s{k}"
        for j, a in enumerate(attempts):
            a.node, a.group_id, a.parent = f"{sub}.a{j}", (t.id, "executor", sub), node
            a.meta.update(subtask=f"step {k}", chosen=j == chosen[k])
        meta.append({"node": sub, "text": f"step {k}", "attempts": [a.node for a in attempts],
                     "chosen": attempts[chosen[k]].node})
        executors += attempts
        calls += attempts[chosen[k]].calls
    planner.meta["subtasks"] = meta
    planner.calls = calls
    return Episode(t, node, calls, response, "answered", [planner] + executors)


def corr(traj):
    return traj.reward.components["correctness"]


# -- claiming -----------------------------------------------------------------------------------
def test_two_subtasks_doing_the_same_gold_call_only_the_first_gets_credit():
    assert claim_gold([A, B], [[A], [A]]) == [[A, B], [B]]
    ep = plan(task([A, B]), [[attempt(A)], [attempt(A)]])
    score_episodes([ep], CFG)
    first, second = ep.trajectories[1:]
    assert corr(first) == 1.0 and first.meta["solved"]
    assert corr(second) == -1.0 and not second.meta["solved"]
    assert ep.trajectories[0].meta["capabilities"] == [1.0, 0.0]


def test_a_call_with_wrong_values_does_not_claim_so_a_retry_can_earn_it():
    assert claim_gold([A, B], [[A_BAD], [A]]) == [[A, B], [A, B]]
    ep = plan(task([A, B]), [[attempt(A_BAD)], [attempt(A)]])
    score_episodes([ep], CFG)
    assert corr(ep.trajectories[1]) == pytest.approx(0.5)  # names 1, keys 1, one value of two: 3/4
    assert corr(ep.trajectories[2]) == 1.0


def test_only_the_chosen_attempt_claims():
    ep = plan(task([A, B]), [[attempt(A), attempt()], [attempt(A)]], chosen=[1, 0])
    assert unclaimed_gold(ep) == {"p0.s0": [A, B], "p0.s1": [A, B]}
    score_episodes([ep], CFG)
    done, idle, retry = ep.trajectories[1:]
    assert (corr(done), corr(idle), corr(retry)) == (1.0, -1.0, 1.0)
    assert ep.trajectories[0].meta["capabilities"] == [0.5, 1.0]
    # planner: format 1, outcome 0 (calls [A] vs gold [A, B]), alignment 0.75, no extra sub-task
    assert ep.trajectories[0].reward.score == pytest.approx(0.5 * 1 + 0 + 0.5 * 0.75)


def test_an_attempt_is_scored_on_the_gold_calls_it_pairs_with():
    assert subtask_target([B], [A, B]) == ([B], [1])
    assert subtask_target([A, B], [A, B]) == ([A, B], [0, 1])
    assert subtask_target([A_BAD], [A, B]) == ([A], [])
    assert subtask_target([], [A, B]) == ([A], [])  # nothing done: scored against the next gold call
    assert subtask_target([C("get_weather_v2", A.arguments)], [A, B]) == ([A], [])
    # an exact match is paired first even when a partial one comes before it
    assert subtask_target([A_BAD, A], [A]) == ([A], [0])
    both = executor_reward(attempt(A, B), task([A, B]), [A, B], CFG)
    assert both.components["correctness"] == 1.0 and both.score == pytest.approx(1.5)


def test_duplicating_a_correct_call_in_an_attempt_does_not_pay():
    once = executor_reward(attempt(A), task([A, B]), [A, B], CFG)
    twice = executor_reward(attempt(A, A), task([A, B]), [A, B], CFG)
    assert twice.components["correctness"] < once.components["correctness"] == 1.0
    assert twice.score < once.score


def test_exact_mode_gives_binary_correctness():
    cfg = RewardConfig(correctness="exact")
    assert corr_of(attempt(A_BAD), cfg) == 0.0 and corr_of(attempt(A), cfg) == 1.0


def corr_of(traj, cfg):
    return executor_reward(traj, task([A, B]), [A, B], cfg).components["correctness"]


# -- planner ------------------------------------------------------------------------------------
def test_subtask_spam_is_penalised():
    lean = plan(task([A]), [[attempt(A)]], node="p0")
    spam = plan(task([A]), [[attempt(A)]] + [[attempt()] for _ in range(4)], node="p1")
    score_episodes([lean, spam], CFG)
    # every extra sub-task is "solved" (nothing left to do, nothing done), yet the plan loses w_len each
    assert spam.trajectories[0].meta["capabilities"] == [1.0] * 5
    assert lean.trajectories[0].reward.score - spam.trajectories[0].reward.score == pytest.approx(4 * 0.5)
    # padding a failed plan with an easy extra sub-task raises mean c(j) by less than it costs
    padded = planner_reward(spam.trajectories[0], 0.0, [0.0, 1.0, 1.0, 1.0, 1.0], 1, CFG)
    honest = planner_reward(lean.trajectories[0], 0.0, [0.0], 1, CFG)
    assert padded.score < honest.score


def test_a_direct_response_has_no_alignment_term():
    ep = plan(task([], gold_answer="Hello"), [], response="Hi there")
    metrics = score_episodes([ep], CFG)
    r = ep.trajectories[0].reward
    assert r.components["alignment"] == 0.0 and r.components["subtasks"] == 0.0
    assert r.components["outcome"] == 1.0  # toolrl irrelevance item: no call is the right call
    assert r.score == pytest.approx(0.5 + 1.0) and r.success
    assert "alignment" not in metrics  # no sub-task, nothing to average


def test_answering_a_call_task_at_once_earns_no_format_credit():
    """A well-formed direct answer to a task that needs calls must not outscore a plan that
    delegates and fails: the planner would learn to stop delegating (seen in the quickstart)."""
    direct = plan(task([A]), [], node="p0")
    failed = plan(task([A]), [[attempt()]], node="p1")
    score_episodes([direct, failed], CFG)
    d, f = direct.trajectories[0].reward, failed.trajectories[0].reward
    assert d.components["format"] == 1.0 and d.components["undelegated"] == 1.0
    assert d.score == 0.0  # outcome 0, nothing else
    assert f.components["undelegated"] == 0.0 and f.score == pytest.approx(0.5)  # format 1, capability 0
    assert f.score > d.score


def test_planner_reward_checks_capabilities_against_subtasks():
    ep = plan(task([A]), [[attempt(A)]])
    with pytest.raises(CahlInputError, match="capabilities"):
        planner_reward(ep.trajectories[0], 1.0, [], 1, CFG)


def test_capability_is_mean_success():
    rs = [RewardResult(0.0, success=s) for s in (True, False, True, True)]
    assert capability(rs) == 0.75
    with pytest.raises(CahlInputError):
        capability([])


# -- answer tasks -------------------------------------------------------------------------------
def bamboogle(answer="Paris"):
    return task(gold_answer=answer, source="bamboogle")


def test_answer_task_executor_credits_observations_not_its_own_result():
    found = attempt(C("search", {"query": "capital of France"}),
                    obs=[Observation("search", "Paris is the capital of France.")], result="Paris")
    claimed = attempt(C("search", {"query": "capital"}), obs=[Observation("search", "Lyon is a city.")],
                      result="Paris")
    ep = plan(bamboogle(), [[found, claimed]], response="Paris")
    score_episodes([ep], CFG)
    assert corr(found) == 1.0 and corr(claimed) == 0.0
    # r_L = 0.7 * (0.5 * format + 1 * correctness) + 0.3 * outcome
    assert found.reward.score == pytest.approx(0.7 * 1.5 + 0.3 * 1.0)
    assert claimed.reward.score == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)
    assert ep.trajectories[0].meta["capabilities"] == [0.5]
    with pytest.raises(CahlInputError, match="outcome"):
        executor_reward(found, bamboogle(), None, CFG)


def flat(t, texts, calls=()):
    return Trajectory("flat", t.id, "f0", None, (t.id, "flat", "root"), [], [], [], 0, turns=turns(texts),
                      calls=list(calls))


@pytest.mark.parametrize("response,em", [("paris.", 1.0), ("The Paris", 1.0), ("Paris, London or Berlin", 0.0),
                                         ("Paris Paris", 0.0), ("", 0.0)])
def test_flat_answer_is_exact_match_so_listing_candidates_fails(response, em):
    r = flat_reward(flat(bamboogle(), [f"<think>a</think><response>{response}</response>"]), bamboogle(), CFG)
    assert r.components["correctness"] == em and r.success == bool(em)


def test_flat_call_task_uses_toolrl_against_all_gold():
    t = task([A, B])
    r = flat_reward(flat(t, [f"<think>a</think><tool_call>\n{format_calls([A])}\n</tool_call>"], [A]), t, CFG)
    assert r.components["correctness"] == pytest.approx(0.0)  # names 1/2 + 3 of max 7
    assert r.score == pytest.approx(0.5)


def test_relevance_task_any_call_is_right():
    t = task(source="bfcl_v3")
    assert flat_reward(flat(t, [], [A]), t, CFG).components["correctness"] == 1.0
    assert flat_reward(flat(t, [], []), t, CFG).components["correctness"] == -1.0


# -- outcome ------------------------------------------------------------------------------------
def ep_with(t, calls=(), response=None):
    return Episode(t, "f0", list(calls), response, "answered", [])


def test_outcome_synth_is_decided_by_the_answer():
    t = task([A, B], gold_answer="204.6", source="synth")
    assert outcome(t, ep_with(t, [], "It is 204.60.")) == 1.0
    assert outcome(t, ep_with(t, [A, B], "204.6 or 205")) == 0.0
    assert outcome(t, ep_with(t, [A, B], None)) == 0.0


def test_outcome_per_source():
    t = task([A, B])
    assert outcome(t, ep_with(t, [B, A])) == 1.0 and outcome(t, ep_with(t, [A])) == 0.0
    bank = task([A], source="apibank_toolrl")
    assert outcome(bank, ep_with(bank, [B, A])) == 1.0  # ToolRL's API-Bank rule: any call matching
    assert outcome(bamboogle(), ep_with(bamboogle(), [], "the paris")) == 1.0
    other = task(gold_answer="x", source="mine")
    assert outcome(other, ep_with(other, [], "X")) == 1.0
    with pytest.raises(CahlInputError, match="undefined"):
        outcome(task(source="mine"), ep_with(task(source="mine")))


def test_outcome_bfcl_uses_the_ast_checker():
    fn = {"name": "area", "description": "", "parameters": {"type": "dict", "properties": {
        "r": {"type": "integer"}}, "required": ["r"]}}
    t = task([C("area", {"r": 3})], source="bfcl_v3", category="simple",
             meta={"functions": [fn], "possible_answer": [{"area": {"r": [3]}}]})
    assert outcome(t, ep_with(t, [C("area", {"r": 3})])) == 1.0
    assert outcome(t, ep_with(t, [C("area", {"r": "3"})])) == 0.0


# -- batch scoring ------------------------------------------------------------------------------
def test_score_episodes_fills_every_reward_and_reports_metrics():
    hier = plan(task([A, B]), [[attempt(A), attempt(A_BAD)], [attempt(B), attempt()]])
    t = task([A, B])
    fl = Episode(t, "f0", [A], None, "answered",
                 [flat(t, [f"<think>a</think><tool_call>\n{format_calls([A])}\n</tool_call>"], [A])])
    m = score_episodes([hier, fl], CFG)
    assert all(tr.reward is not None for ep in (hier, fl) for tr in ep.trajectories)
    assert m["alignment"] == pytest.approx(0.75)  # c = [1.0 (A, A_BAD at 0.5 passes), 0.5]
    assert m["alignment/chosen_solved"] == 1.0
    assert m["outcome"] == 0.5  # the plan's calls [A, B] are exact; the flat episode's are not
    assert m["success/executor"] == 0.75
    assert m["reward/flat/outcome"] == 0.0
    assert {"reward/planner", "reward/executor", "reward/flat", "reward/planner/alignment",
            "reward/executor/correctness", "reward/executor/calls/names"} <= set(m)


def test_malformed_episodes_are_errors():
    ep = plan(task([A]), [[attempt(A)]])
    ep.trajectories.append(attempt(B))  # an executor trajectory no sub-task lists
    with pytest.raises(CahlInputError, match="do not match"):
        score_episodes([ep], CFG)
    with pytest.raises(CahlInputError, match="correctness"):
        RewardConfig(correctness="fuzzy")
    with pytest.raises(CahlInputError, match="mix_outcome"):
        RewardConfig(mix_outcome=1.5)


# -- the rollout engine's episodes --------------------------------------------------------------
class _Scripted:
    """Per-role queues of turn texts, encoded as the policy would sample them (ending in eos)."""

    def __init__(self, tokenizer, texts):
        self.tokenizer, self.queue = tokenizer, list(texts)

    def generate(self, prompts, params, n=1, seed=None):
        from cahl.agents.sampling import Sample

        counts = [n] * len(prompts) if isinstance(n, int) else n
        out = []
        for i, c in enumerate(counts):
            for _ in range(c):
                ids = self.tokenizer.encode(self.queue.pop(0), add_special_tokens=False) + [self.tokenizer.eos_token_id]
                out.append(Sample(ids, [-1.0] * len(ids), "stop", prompt_index=i))
        return out


class _AddEnv:
    ends_on_call = False  # the Env protocol: calls run and the episode goes on
    def reset(self, task):
        pass

    def step(self, calls):
        return [Observation(c.name, str(c.arguments["a"] + c.arguments["b"])) for c in calls]


def test_rollout_engine_episodes_score_as_documented(tokenizer, chat):
    from cahl.agents.rollout import Rollout, RolloutConfig

    add = C("add", {"a": 1, "b": 2})
    t = task([add], gold_answer="3", source="synth")
    call = f"<think>add</think>\n<tool_call>\n{format_calls([add])}\n</tool_call>"
    scripts = {"planner": ["<think>one step</think>\n<subtask>add 1 and 2</subtask>",
                           "<think>done</think>\n<response>3</response>"],
               # the two attempts are sampled together: one calls, one answers at once; then the caller's result
               "executor": [call, "<think>easy</think>\n<result>3</result>", "<think>done</think>\n<result>3</result>"]}

    class Policies:
        backends = {role: _Scripted(tokenizer, texts) for role, texts in scripts.items()}

        def backend(self, role):
            return self.backends[role]

    cfg = RolloutConfig(agent="hierarchical", attempts_per_subtask=2)
    (ep,) = Rollout(Policies(), chat, cfg).run([t], lambda task: _AddEnv())
    metrics = score_episodes([ep], CFG)
    planner, caller, guesser = ep.trajectories
    assert caller.calls == [add] and guesser.calls == []
    assert caller.reward.components == {"format": 1.0, "correctness": 1.0, "calls/names": 1.0,
                                        "calls/matched": 3.0, "calls/max": 4.0}
    assert guesser.reward.components["correctness"] == -1.0 and not guesser.meta["solved"]
    assert planner.meta["capabilities"] == [0.5]
    assert planner.reward.components == {"format": 1.0, "outcome": 1.0, "alignment": 0.5, "subtasks": 1.0,
                                         "extra_subtasks": 0.0, "undelegated": 0.0}
    assert metrics["alignment/chosen_solved"] == float(caller.meta["chosen"])
