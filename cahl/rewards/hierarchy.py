"""Rewards of the hierarchy and of the flat baseline (DESIGN §3), and scoring rolled-out episodes.

Executor, attempt at sub-task j:  r_L = w_fmt·format + w_call·correctness(j)
    Call tasks: the attempt's calls are scored (calls.py, `mode`) against its *target*: the gold
    calls not yet claimed by earlier sub-tasks of the same plan that its calls pair with by name
    (best ToolRL pair score, exact matches first); if none pairs, the first unclaimed gold call
    (a call-less or wrong-tool attempt is then scored against what the plan needs next, and gets
    the minimum). So an attempt that does its one step perfectly scores 1.0 even though other gold
    calls remain for later sub-tasks, and an attempt that does two steps at once is scored on both.
    Claiming: the *chosen* attempt of each sub-task claims the gold calls it made exactly; a gold
    call paired with wrong values is not claimed, so a later sub-task that retries it can earn it.
    Two sub-tasks doing the same gold call: only the first gets credit.
    Answer tasks (gold_answer, no gold_calls; Bamboogle): correctness = 1.0 if the attempt's
    successful tool observations contain the normalised gold answer, else 0.0. Its own <result>
    text does not count (it could state anything), nor do failed calls, whose errors repeat the
    arguments (a tool named after a guess would otherwise earn the guess credit).
    r_L = (1 − mix_outcome)·local + mix_outcome·outcome.
    Note: every attempt at a sub-task shares its plan's outcome, so under std-normalised GRPO
    advantages the mix changes nothing within a group; it matters only without std scaling.
    Relevance tasks (neither gold calls nor gold answer; BFCL live_relevance): any call is right.
    success = correctness ≥ success_threshold.
Capability c(j) = mean success of the G_L attempts at sub-task j.
Planner, per plan: r_H = w_fmt·format + w_out·outcome + w_align·mean_j c(j) − w_len·extra,
    extra = max(0, #sub-tasks − #needed), #needed = number of gold calls (1 for answer and
    relevance tasks). A plan with no sub-task gets alignment 0 (there is nothing to align), and
    where the task needs sub-tasks it gets no format credit either ("undelegated"): a direct
    answer is judged by its outcome alone. Otherwise, while outcomes are rare, answering at once,
    well-formed and wrong, outscores every attempt at delegating (whose format must hold over more
    turns): the quickstart's planner learned exactly that within 3 GRPO steps, and its executor
    then got no sub-tasks. With w_len ≥ w_align an extra sub-task never pays: it can raise mean
    c(j) by at most w_align·(1 − mean)/(n + 1) < w_len.
Flat (ToolRL): r = w_fmt·format + w_call·correctness, correctness = call rule against all gold
    calls, or for answer tasks the EM of the final <response> (one normalised answer; listing
    several candidates fails). The outcome is logged as a component but not added (ToolRL's reward).
Outcome = the verdict of the task's source on the episode (cahl/sources.py), as evaluation scores it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from cahl import checks
from cahl.eval.scoring import contains_answer, exact_match
from cahl.rewards.calls import LOWEST, REWARDS, call_correctness, pair_score, same_call
from cahl.rewards.format import trajectory_format
from cahl.sources import verdict
from cahl.types import CahlInputError, Episode, RewardResult, Task, ToolCall, Trajectory


@dataclass
class RewardConfig:
    w_fmt: float = 0.5  # weight of the format score (mean over turns, in [0, 1]) in every role's reward (not for
    #   a plan that issues no sub-task on a task that needs one)
    w_call: float = 1.0  # executor and flat: weight of correctness (toolrl: [-1, 1]; exact and answer: {0, 1})
    w_out: float = 1.0  # planner: weight of the episode's outcome (the benchmark's verdict, 0 or 1)
    w_align: float = 0.5  # planner: weight of mean capability c(j) of its sub-tasks; 0 = the no-alignment ablation
    w_len: float = 0.5  # planner: penalty per sub-task beyond those needed; keep >= w_align so spam never pays
    mix_outcome: float = 0.3  # executor on answer tasks: share of the plan's outcome in r_L (M-GRPO style)
    success_threshold: float = 0.5  # success: correctness >= this (toolrl 0.5: right tool and keys, most values)
    correctness: str = "toolrl"  # "toolrl" (graded: keeps small models' GRPO groups varied) | "exact" (Tool-N1 binary)
    custom: str = ""  # optional "module:function(trajectory, task) -> float" added to every trajectory's reward
    w_custom: float = 1.0  # weight of that custom term

    def __post_init__(self) -> None:
        if self.correctness not in REWARDS:
            raise CahlInputError(f"reward.correctness: expected one of {sorted(REWARDS)}, got {self.correctness!r}")
        if not 0.0 <= self.mix_outcome <= 1.0:
            raise CahlInputError(f"reward.mix_outcome: expected a value in [0, 1], got {self.mix_outcome}")
        for key in ("w_fmt", "w_call", "w_out", "w_align", "w_len"):  # a NaN weight makes every reward NaN
            checks.number(getattr(self, key), f"reward.{key}", 0)
        checks.number(self.w_custom, "reward.w_custom")
        # correctness lies in [-1, 1]: above 1 no attempt succeeds, at -1 every attempt does
        checks.number(self.success_threshold, "reward.success_threshold", -1, 1, low_open=True)
        if self.custom:  # resolved now, not at the first GRPO step after SFT
            load_callable(self.custom, "reward.custom")


def load_callable(path: str, key: str) -> Callable:
    """'package.module:function' -> the function (a plain import: no code from data is executed)."""
    import importlib

    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise CahlInputError(f"config key {key!r}: cannot load {path!r} (expected 'module:function'): {e}") from e
    if not callable(fn):
        raise CahlInputError(f"config key {key!r}: {path!r} is a {type(fn).__name__}, expected a function")
    return fn


# -- task kinds ---------------------------------------------------------------------------------
def is_answer_task(task: Task) -> bool:
    """Scored by its answer only (Bamboogle): a gold answer and no gold calls."""
    return task.gold_calls is None and task.gold_answer is not None


def needed_subtasks(task: Task) -> int:
    """How many sub-tasks a plan needs: one per gold call; one for answer and relevance tasks."""
    return len(task.gold_calls) if task.gold_calls is not None else 1


# -- claiming gold calls ------------------------------------------------------------------------
def subtask_target(pred: list[ToolCall], unclaimed: list[ToolCall]) -> tuple[list[ToolCall], list[int]]:
    """The gold calls an attempt is scored against, and the indices into `unclaimed` it did exactly.

    Each predicted call pairs with at most one unclaimed gold call of the same name: exact matches
    first, then the best ToolRL pair score. Target = the paired gold calls (in gold order), or the
    first unclaimed call when nothing pairs.
    """
    paired: set[int] = set()
    exact: list[int] = []
    rest: list[ToolCall] = []
    for p in pred:
        i = next((i for i, g in enumerate(unclaimed) if i not in paired and same_call(p, g)), -1)
        if i >= 0:
            paired.add(i)
            exact.append(i)
        else:
            rest.append(p)
    for p in rest:
        best, best_i = -1.0, -1
        for i, g in enumerate(unclaimed):
            s = pair_score(p, g) if i not in paired and g.name == p.name else -1.0
            if s > best:
                best, best_i = s, i
        if best_i >= 0:
            paired.add(best_i)
    target = [g for i, g in enumerate(unclaimed) if i in paired] or unclaimed[:1]
    return target, sorted(exact)


def claim_gold(gold: list[ToolCall], chosen_calls: list[list[ToolCall]]) -> list[list[ToolCall]]:
    """For each sub-task in plan order, the gold calls still unclaimed when it starts.

    `chosen_calls[k]` are the calls of sub-task k's chosen attempt; it claims the gold calls it made
    exactly, so later sub-tasks no longer face them.
    """
    remaining = list(gold)
    faced = []
    for calls in chosen_calls:
        faced.append(list(remaining))
        _, done = subtask_target(calls, remaining)
        remaining = [g for i, g in enumerate(remaining) if i not in done]
    return faced


def plan_subtasks(episode: Episode) -> tuple[list[dict], dict[str, Trajectory]]:
    """The planner's sub-tasks (meta["subtasks"]) and the episode's executor attempts by node.

    Every attempt listed must be present and every executor trajectory listed, else the episode
    was not produced by the rollout engine as documented and scoring it would be wrong.
    """
    planner = episode.trajectories[0]
    where = f"episode {episode.task.id}/{episode.node}"
    if planner.role != "planner":
        raise CahlInputError(f"{where}: first trajectory must be the planner's, got role {planner.role!r}")
    subtasks = planner.meta.get("subtasks", [])
    executors = {t.node: t for t in episode.trajectories[1:]}
    listed = [node for s in subtasks for node in s.get("attempts", [])]
    if sorted(listed) != sorted(executors):
        raise CahlInputError(f"{where}: sub-task attempts {sorted(listed)} do not match executor "
                             f"trajectories {sorted(executors)}")
    for s in subtasks:
        if s.get("chosen") not in s["attempts"]:
            raise CahlInputError(f"{where}: sub-task {s.get('node')!r} has no chosen attempt among {s['attempts']}")
    return subtasks, executors


def unclaimed_gold(episode: Episode) -> dict[str, list[ToolCall]]:
    """{sub-task node: gold calls not claimed by the chosen attempts of earlier sub-tasks}."""
    if episode.task.gold_calls is None:
        raise CahlInputError(f"task {episode.task.id}: unclaimed_gold needs gold_calls, the task has none")
    subtasks, executors = plan_subtasks(episode)
    faced = claim_gold(episode.task.gold_calls, [executors[s["chosen"]].calls for s in subtasks])
    return {s["node"]: f for s, f in zip(subtasks, faced)}


# -- per-role rewards ---------------------------------------------------------------------------
def _attempt_correctness(traj: Trajectory, task: Task, unclaimed: list[ToolCall] | None,
                         cfg: RewardConfig) -> tuple[float, dict[str, float]]:
    if is_answer_task(task):  # failed calls echo their arguments ("unknown tool 'Paris'"): they never count
        seen = "\n".join(o.content for o in traj.observations if o.ok)
        return float(contains_answer(seen, task.gold_answer)), {}
    if task.gold_calls is None:
        return _relevance(traj, cfg), {}
    if unclaimed is None:
        raise CahlInputError(f"task {task.id}: executor_reward needs the unclaimed gold calls of a call task")
    target, _ = subtask_target(traj.calls, unclaimed)
    return call_correctness(traj.calls, target, cfg.correctness)


def _relevance(traj: Trajectory, cfg: RewardConfig) -> float:
    """No reference at all (BFCL's relevance items): any call is right, as in BFCL's own rule."""
    return 1.0 if traj.calls else LOWEST[cfg.correctness]


def executor_reward(traj: Trajectory, task: Task, unclaimed_gold: list[ToolCall] | None, cfg: RewardConfig,
                    outcome: float | None = None) -> RewardResult:
    """r_L of one executor attempt (module docstring); `outcome` is required for answer tasks."""
    fmt = trajectory_format(traj)
    correctness, parts = _attempt_correctness(traj, task, unclaimed_gold, cfg)
    local = cfg.w_fmt * fmt + cfg.w_call * correctness
    components = {"format": fmt, "correctness": correctness, **{f"calls/{k}": v for k, v in parts.items()}}
    score = local
    if is_answer_task(task):
        if outcome is None:
            raise CahlInputError(f"task {task.id}: executor_reward on an answer task needs the episode outcome")
        score = (1 - cfg.mix_outcome) * local + cfg.mix_outcome * outcome
        components["outcome"] = outcome
    return RewardResult(score, components, success=correctness >= cfg.success_threshold)


def capability(attempt_rewards: list[RewardResult]) -> float:
    """c(j): the share of the executor's attempts at one sub-task that succeeded."""
    if not attempt_rewards:
        raise CahlInputError("capability: a sub-task with no executor attempt has no capability estimate")
    return sum(r.success for r in attempt_rewards) / len(attempt_rewards)


def planner_reward(planner_traj: Trajectory, outcome: float, capabilities: list[float], n_needed: int,
                   cfg: RewardConfig) -> RewardResult:
    """r_H of one plan (module docstring); `capabilities[j]` = c(j) for the plan's sub-tasks in order."""
    n_subtasks = len(planner_traj.meta.get("subtasks", []))
    if len(capabilities) != n_subtasks:
        raise CahlInputError(f"plan {planner_traj.task_id}/{planner_traj.node}: {len(capabilities)} capabilities "
                             f"for {n_subtasks} sub-tasks")
    fmt = trajectory_format(planner_traj)
    alignment = sum(capabilities) / n_subtasks if n_subtasks else 0.0
    extra = max(0, n_subtasks - n_needed)
    undelegated = n_subtasks == 0 and n_needed > 0  # judged by its outcome alone (module docstring)
    score = (0.0 if undelegated else cfg.w_fmt * fmt) + cfg.w_out * outcome + cfg.w_align * alignment - cfg.w_len * extra
    components = {"format": fmt, "outcome": outcome, "alignment": alignment, "subtasks": float(n_subtasks),
                  "extra_subtasks": float(extra), "undelegated": float(undelegated)}
    return RewardResult(score, components, success=outcome >= 1.0)


def final_response(traj: Trajectory) -> str | None:
    """The <response> of the trajectory's last turn (the answering turn), if it has one."""
    return traj.turns[-1].parsed.response if traj.turns else None


def flat_reward(traj: Trajectory, task: Task, cfg: RewardConfig) -> RewardResult:
    """ToolRL's reward for the flat agent: format + correctness against all gold calls (or answer EM)."""
    fmt = trajectory_format(traj)
    if is_answer_task(task):
        correctness, parts = exact_match(final_response(traj) or "", task.gold_answer), {}
    elif task.gold_calls is None:
        correctness, parts = _relevance(traj, cfg), {}
    else:
        correctness, parts = call_correctness(traj.calls, task.gold_calls, cfg.correctness)
    components = {"format": fmt, "correctness": correctness, **{f"calls/{k}": v for k, v in parts.items()}}
    return RewardResult(cfg.w_fmt * fmt + cfg.w_call * correctness, components,
                        success=correctness >= cfg.success_threshold)


# -- outcome: the benchmark's own verdict -------------------------------------------------------
def outcome(task: Task, episode: Episode) -> float:
    """The episode's outcome in {0, 1}: the verdict of the task's source (cahl/sources.py), the same
    checker evaluation reports."""
    return float(verdict(task, episode).correct)


# -- a batch of episodes ------------------------------------------------------------------------
def _score_plan(episode: Episode, plan_outcome: float, cfg: RewardConfig) -> list[float]:
    """Reward every executor attempt of a plan; return c(j) per sub-task."""
    task = episode.task
    subtasks, executors = plan_subtasks(episode)
    faced = unclaimed_gold(episode) if task.gold_calls is not None else {}
    capabilities = []
    for s in subtasks:
        results = []
        for node in s["attempts"]:
            traj = executors[node]
            traj.reward = executor_reward(traj, task, faced.get(s["node"]), cfg, outcome=plan_outcome)
            traj.meta["solved"] = traj.reward.success
            results.append(traj.reward)
        capabilities.append(capability(results))
    return capabilities


def score_episodes(episodes: list[Episode], cfg: RewardConfig) -> dict[str, float]:
    """Fill `reward` on every trajectory of every episode; return the batch's reward metrics.

    Also sets executor meta["solved"] (success) and planner meta["capabilities"] (c(j) per
    sub-task). Metrics: reward/{role} and reward/{role}/{component} (means over trajectories),
    success/{role}, outcome (mean over episodes), alignment (mean c(j) over all sub-tasks) and
    alignment/chosen_solved (share of chosen attempts that succeeded, as the eval harness counts).
    """
    values: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:
        o = outcome(ep.task, ep)
        values["outcome"].append(o)
        head = ep.trajectories[0]
        if head.role == "flat":
            head.reward = flat_reward(head, ep.task, cfg)
            head.reward.components["outcome"] = o  # logged, not added: ToolRL's reward has no outcome term
        elif head.role == "planner":
            caps = _score_plan(ep, o, cfg)
            head.meta["capabilities"] = caps
            head.reward = planner_reward(head, o, caps, needed_subtasks(ep.task), cfg)
            values["alignment"].extend(caps)
            values["alignment/chosen_solved"].extend(
                float(t.meta["solved"]) for t in ep.trajectories[1:] if t.meta.get("chosen"))
        else:
            raise CahlInputError(f"episode {ep.task.id}/{ep.node}: first trajectory has role {head.role!r}, "
                                 f"expected 'flat' or 'planner'")
        for traj in ep.trajectories:
            values[f"reward/{traj.role}"].append(traj.reward.score)
            values[f"success/{traj.role}"].append(float(traj.reward.success))
            for name, v in traj.reward.components.items():
                values[f"reward/{traj.role}/{name}"].append(v)
    return {k: sum(v) / len(v) for k, v in sorted(values.items()) if v}
