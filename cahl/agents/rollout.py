"""The rollout engine: flat and hierarchical episodes as small state machines, batched generation.

Flat (DESIGN §1): think -> tool_call(s) -> obs -> ... -> response.
Hierarchical: planner turn -> <subtask> -> G_L executor attempts (each: tool_call -> obs -> ...
-> <result>) -> one attempt chosen uniformly at random -> its <result> back to the planner -> ...
-> <response>.

Every episode ends with a named reason (types.END_REASONS). The engine never generates for one
episode at a time: each step collects the pending turns of every live actor, groups them by role
(= adapter), merges identical prompts (the G plans of a task, the G_L attempts at a sub-task) so
their prefix is prefilled once, and makes one batched call per role.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from cahl.agents.chat import ChatFormat, valid_text
from cahl.agents.generation import GenerationBackend, Sample, SamplingParams
from cahl.agents.parser import parse_output
from cahl.agents.prompts import initial_messages, render_observations, render_result, subtask_dialogue
from cahl.envs.base import Env, fork_env
from cahl.types import CahlInputError, Episode, Task, ToolCall, Trajectory, Turn

STOP = {
    "flat": ("</tool_call>", "</response>"),
    "planner": ("</subtask>", "</response>"),
    "executor": ("</tool_call>", "</result>"),
}
AGENTS = ("flat", "hierarchical", "executor")


@dataclass
class RolloutConfig:
    agent: str = "flat"  # "flat", "hierarchical", or "executor" (executor alone on sub-tasks)
    plans_per_task: int = 1  # G_H: planner samples per task (flat: samples per task)
    attempts_per_subtask: int = 1  # G_L: executor samples per sub-task
    max_planner_turns: int = 4  # planner turns per episode
    max_executor_rounds: int = 3  # tool-calling turns per executor attempt (and per flat episode)
    max_new_tokens: int = 192  # per turn
    max_context: int = 4096  # tokens; an episode that would pass it ends with context_overflow
    invalid_output_limit: int = 2  # turns without a usable tag before the episode ends
    tool_error_limit: int = 3  # failed tool calls before the episode ends
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0


def check_config(cfg: RolloutConfig) -> None:
    """Raise CahlInputError naming the first rollout.<key> whose value cannot run.

    A zero count or limit would make an episode that never ends (a planner waiting on zero
    attempts) or never starts; a context no longer than one turn leaves no room for the prompt.
    """
    if cfg.agent not in AGENTS:
        raise CahlInputError(f"rollout.agent: expected one of {list(AGENTS)}, got {cfg.agent!r}")
    for key in ("plans_per_task", "attempts_per_subtask", "max_planner_turns", "max_executor_rounds",
                "max_new_tokens", "invalid_output_limit", "tool_error_limit"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CahlInputError(f"rollout.{key}: expected an integer >= 1, got {value!r}")
    if not isinstance(cfg.max_context, int) or cfg.max_context <= cfg.max_new_tokens:
        raise CahlInputError(f"rollout.max_context: expected an integer > rollout.max_new_tokens "
                             f"({cfg.max_new_tokens}), got {cfg.max_context!r}")


class Policies(Protocol):
    def backend(self, role: str) -> GenerationBackend: ...


@dataclass
class RolloutStats:
    seconds: dict = field(default_factory=lambda: {"planner_gen": 0.0, "executor_gen": 0.0, "flat_gen": 0.0, "env": 0.0})
    generated_tokens: dict = field(default_factory=lambda: {"planner": 0, "executor": 0, "flat": 0})
    generate_calls: int = 0


class _Actor:
    """A trajectory being generated. `prompt()` returns ids while it wants a turn, else None."""

    def __init__(self, engine: "Rollout", traj: Trajectory, env: Env, task: Task):
        self.engine, self.traj, self.env, self.task = engine, traj, env, task
        self.done = False
        self.waiting = False
        self.invalid = 0
        self.tool_errors = 0
        self.rounds = 0
        self.final_text: str | None = None

    def prompt(self) -> list[int] | None:
        if self.done or self.waiting:
            return None
        if len(self.traj.ids) + self.engine.cfg.max_new_tokens > self.engine.cfg.max_context:
            self.finish("context_overflow")
            return None
        return self.traj.ids

    def add_turn(self, sample: Sample) -> Turn:
        start = len(self.traj.ids)
        self.traj.append(sample.ids, sampled=True, logprobs=sample.logprobs)
        text = self.engine.decode(sample.ids)
        turn = Turn(start, len(self.traj.ids), text, parse_output(text), sample.finish)
        self.traj.turns.append(turn)
        return turn

    def feedback(self, turn: Turn, text: str) -> None:
        """Append the text that follows `turn`; if it would pass max_context, end the episode
        instead (the trajectory never holds more than max_context tokens)."""
        turn.feedback = valid_text(text)  # what the ids say (a lone surrogate becomes "?")
        ids = self.engine.chat.continuation_ids(self.traj.ids[turn.start:turn.end], text)
        if len(self.traj.ids) + len(ids) > self.engine.cfg.max_context:
            self.finish("context_overflow")
        else:
            self.traj.append(ids, sampled=False)

    def invalid_turn(self, turn: Turn, hint: str) -> None:
        self.invalid += 1
        if self.invalid >= self.engine.cfg.invalid_output_limit:
            self.finish("invalid_output_limit")
        else:
            why = turn.parsed.errors[0] if turn.parsed.errors else "no usable tag"
            self.feedback(turn, f"Invalid output ({why}). {hint}")

    def finish(self, reason: str) -> None:
        self.done = True
        self.traj.end_reason = reason
        self.engine.on_done(self)


class _ToolActor(_Actor):
    """Flat agent or executor attempt: calls tools until it answers (<response> / <result>)."""

    def __init__(self, *args, answer_tag: str, parent: "_PlannerActor | None" = None):
        super().__init__(*args)
        self.answer_tag = answer_tag
        self.parent = parent

    def receive(self, sample: Sample) -> None:
        turn = self.add_turn(sample)
        parsed, cfg = turn.parsed, self.engine.cfg
        answer = getattr(parsed, self.answer_tag)
        if parsed.calls:
            self.rounds += 1
            t0 = time.perf_counter()
            obs = self.env.step(parsed.calls)
            self.engine.stats.seconds["env"] += time.perf_counter() - t0
            self.traj.calls.extend(parsed.calls)
            self.traj.observations.extend(obs)
            self.tool_errors += sum(not o.ok for o in obs)
            if getattr(self.env, "ends_on_call", False):
                self.final_text = answer
                turn.feedback = render_observations(obs)
                self.finish("answered")
            elif self.tool_errors >= cfg.tool_error_limit:
                self.finish("tool_error_limit")
            elif self.rounds >= cfg.max_executor_rounds:
                self.finish("max_turns")
            else:
                self.feedback(turn, render_observations(obs))
        elif answer is not None and answer.strip():
            self.final_text = answer
            self.finish("answered")
        else:
            self.invalid_turn(turn, f"Use <tool_call>...</tool_call> or <{self.answer_tag}>...</{self.answer_tag}>.")

    def result_text(self) -> str:
        """What the planner is told: the executor's <result>, else a summary of its calls."""
        if self.final_text:
            return self.final_text
        parts = [f"{c.name}({c.arguments}) -> {o.content[:200]}" for c, o in zip(self.traj.calls, self.traj.observations)]
        return ("; ".join(parts) or "no tool was called") + f" [{self.traj.end_reason}]"


class _PlannerActor(_Actor):
    def __init__(self, *args):
        super().__init__(*args)
        self.children: list[_ToolActor] = []
        self.subtasks: list[dict] = []
        self.calls: list[ToolCall] = []

    def receive(self, sample: Sample) -> None:
        turn = self.add_turn(sample)
        parsed = turn.parsed
        if parsed.subtask:
            self.rounds += 1
            k = len(self.subtasks)
            self.subtasks.append({"node": f"{self.traj.node}.s{k}", "text": parsed.subtask, "attempts": []})
            self.children = [self.engine.spawn_executor(self, k, j) for j in range(self.engine.cfg.attempts_per_subtask)]
            self.subtasks[-1]["attempts"] = [c.traj.node for c in self.children]
            self.waiting = True
        elif parsed.response is not None and parsed.response.strip():
            self.final_text = parsed.response
            self.finish("answered")
        else:
            self.invalid_turn(turn, "Use <subtask>...</subtask> or <response>...</response>.")

    def child_done(self) -> None:
        if not all(c.done for c in self.children):
            return
        chosen = self.engine.rng.choice(self.children)  # the planner sees on-policy executor behaviour
        for c in self.children:
            c.traj.meta["chosen"] = c is chosen
        self.subtasks[-1]["chosen"] = chosen.traj.node
        self.env = chosen.env
        self.calls.extend(chosen.traj.calls)
        self.waiting = False
        self.children = []
        turn = self.traj.turns[-1]
        if self.rounds >= self.engine.cfg.max_planner_turns:
            turn.feedback = render_result(chosen.result_text())
            self.finish("max_turns")
        else:
            self.feedback(turn, render_result(chosen.result_text()))


class Rollout:
    def __init__(self, policies: Policies, chat: ChatFormat, cfg: RolloutConfig):
        check_config(cfg)
        self.policies, self.chat, self.cfg = policies, chat, cfg
        self.rng = random.Random(cfg.seed)
        self.stats = RolloutStats()
        self._live: list[_Actor] = []
        self._executors: dict[int, list[_ToolActor]] = {}

    def decode(self, ids: list[int]) -> str:
        text = self.chat.tokenizer.decode(ids, skip_special_tokens=False)
        eos = self.chat.eos_text
        return text[: -len(eos)] if eos and text.endswith(eos) else text

    # -- actors ---------------------------------------------------------------------------------
    def _new_traj(self, role, task, node, parent, group_node, dialogue) -> Trajectory:
        ids = self.chat.prompt_ids(initial_messages(role, task.tools, dialogue))
        return Trajectory(role=role, task_id=task.id, node=node, parent=parent,
                          group_id=(task.id, role, group_node), ids=list(ids), loss_mask=[0] * len(ids),
                          logprobs=[0.0] * len(ids), prompt_len=len(ids))

    def spawn_executor(self, planner: _PlannerActor, k: int, j: int) -> _ToolActor:
        sub = planner.subtasks[k]
        traj = self._new_traj("executor", planner.task, f"{sub['node']}.a{j}", planner.traj.node, sub["node"],
                              subtask_dialogue(sub["text"]))
        traj.meta["subtask"] = sub["text"]
        actor = _ToolActor(self, traj, fork_env(planner.env), planner.task, answer_tag="result", parent=planner)
        self._live.append(actor)
        self._executors.setdefault(id(planner), []).append(actor)
        return actor

    def on_done(self, actor: _Actor) -> None:
        if isinstance(actor, _ToolActor) and actor.parent is not None:
            actor.traj.meta["result"] = actor.result_text()
            actor.parent.child_done()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, tasks: list[Task], make_env: Callable[[Task], Env],
            on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        roots: list[tuple[Task, _Actor]] = []
        self._executors = {}
        for task in tasks:
            for i in range(self.cfg.plans_per_task):
                env = make_env(task)
                env.reset(task)
                if self.cfg.agent == "flat":
                    traj = self._new_traj("flat", task, f"f{i}", None, "root", task.messages)
                    actor: _Actor = _ToolActor(self, traj, env, task, answer_tag="response")
                elif self.cfg.agent == "executor":  # executor alone on (oracle) sub-tasks
                    traj = self._new_traj("executor", task, f"e{i}", None, "root", task.messages)
                    actor = _ToolActor(self, traj, env, task, answer_tag="result")
                else:  # hierarchical (check_config admits no other agent)
                    traj = self._new_traj("planner", task, f"p{i}", None, "root", task.messages)
                    actor = _PlannerActor(self, traj, env, task)
                roots.append((task, actor))
        self._live = [a for _, a in roots]
        reported: set[int] = set()
        while True:
            self._step()
            for task, a in roots:
                if a.done and id(a) not in reported:
                    reported.add(id(a))
                    if on_episode is not None:
                        on_episode(self._episode(task, a))
            self._live = [a for a in self._live if not a.done]
            if not self._live:
                break
            self._prune()
        self._release()
        episodes = [self._episode(task, a) for task, a in roots]
        self._executors = {}  # the episodes hold the trajectories; the actors (and envs) can go
        return episodes

    def _backends(self):
        for role in ("planner", "executor", "flat"):
            try:
                yield self.policies.backend(role)
            except (KeyError, ValueError):
                continue

    def _prune(self) -> None:
        """Let the sampler drop cached KV of episodes that ended (only live ones will continue)."""
        live = [a.traj.ids for a in self._live]
        for backend in self._backends():
            prune = getattr(backend, "prune_cache", None)
            if callable(prune):
                prune(live)

    def _release(self) -> None:
        """Drop cached KV: it belongs to this run's weights, which training is about to change."""
        for backend in self._backends():
            clear = getattr(backend, "clear_cache", None)
            if callable(clear):
                clear()

    def _step(self) -> None:
        pending: dict[str, list[tuple[_Actor, list[int]]]] = {}
        for actor in list(self._live):
            ids = actor.prompt()
            if ids is not None:
                pending.setdefault(actor.traj.role, []).append((actor, ids))
        for role, items in pending.items():
            unique: dict[tuple[int, ...], list[_Actor]] = {}
            for actor, ids in items:
                unique.setdefault(tuple(ids), []).append(actor)
            prompts = [list(k) for k in unique]
            counts = [len(v) for v in unique.values()]
            params = SamplingParams(self.cfg.max_new_tokens, self.cfg.temperature, self.cfg.top_p, STOP[role])
            t0 = time.perf_counter()
            samples = self.policies.backend(role).generate(prompts, params, n=counts, seed=self.rng.getrandbits(63))
            self.stats.seconds[f"{role}_gen"] += time.perf_counter() - t0
            self.stats.generate_calls += 1
            self.stats.generated_tokens[role] += sum(len(s.ids) for s in samples)
            actors = [a for group in unique.values() for a in group]
            for actor, sample in zip(actors, samples):
                actor.receive(sample)

    def _episode(self, task: Task, root: _Actor) -> Episode:
        if isinstance(root, _PlannerActor):
            root.traj.meta["subtasks"] = root.subtasks
            root.traj.calls = list(root.calls)
            children = self._executors.get(id(root), [])
            return Episode(task, root.traj.node, list(root.calls), root.final_text, root.traj.end_reason,
                           [root.traj] + [c.traj for c in children])
        return Episode(task, root.traj.node, list(root.traj.calls), root.final_text, root.traj.end_reason, [root.traj])


class SharedBackend:
    """Every role generates with one backend (the raw model, or a single policy)."""

    def __init__(self, backend: GenerationBackend):
        self._backend = backend

    def backend(self, role: str) -> GenerationBackend:
        return self._backend
