"""The rollout engine: flat and hierarchical episodes as small state machines, batched generation.

Flat (DESIGN §1): think -> tool_call(s) -> obs -> ... -> response.
Hierarchical: planner turn -> <subtask> -> G_L executor attempts (each: tool_call -> obs -> ...
-> <result>) -> one attempt chosen uniformly at random -> its <result> back to the planner -> ...
-> <response>. The attempt is chosen when the attempts start (uniformly and independently of how
they go, so the same distribution as choosing at the end) and the planner goes on as soon as that
one ends: the others still run to their end for the executor's group, but the planner's next
turn no longer waits for the slowest of G_L attempts.

Every episode ends with a named reason (types.END_REASONS). The engine never generates for one
episode at a time: it hands every pending turn to a sampler, merging identical prompts (the G
plans of a task, the G_L attempts at a sub-task) so their prefix is prefilled once, and the
sampler decodes all of them as one continuous batch: a turn that finishes is handed to its actor
at once, and the turns it causes (the executor attempts at a new sub-task, the next tool round)
join the batch at the next token instead of waiting for the slowest turn of the step. Planner and
executor rows share that batch, each through its own adapter (PolicySet.sampler). A policy that
only offers `generate` gets lock-step turns instead: one call per role per step (LockstepSampler).
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from cahl import checks
from cahl.agents.chat import ChatFormat, valid_text
from cahl.agents.decoder import Sampler
from cahl.agents.generation import GenerationBackend, HFBackend
from cahl.agents.grammar import MODES, turn_grammar
from cahl.agents.sampling import Sample, SamplingParams
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
SUBTASK_FORMS = ("calls", "free")


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
    constrain: str = "tools"  # decoding under each role's grammar (agents/grammar.py): off | protocol (the tags:
    #   think, then exactly one of the role's blocks) | tools (also every <tool_call> line a JSON call of an offered
    #   tool whose arguments follow its JSON schema). The policy trained is then the masked distribution
    think_tokens: int = 16  # constrained turns: most tokens inside <think> (then </think> is forced)
    max_calls: int = 4  # constrained turns: most calls in one <tool_call> block
    answer_tokens: int = 96  # constrained turns: most tokens inside <subtask>, <response> or <result> (0 = the rest
    #   of the turn's budget)
    subtask: str = "calls"  # constrained planner turns under tools: calls (a <subtask> is one or more steps
    #   `Call NAME with key=VALUE, ...` naming offered tools, keys from the schema, required ones present,
    #   values typed; the oracle's form) | free (any text)
    executor_calls_first: bool = True  # constrained turns: an executor's first turn on a sub-task is a <tool_call>
    #   block (no <result> before any tool ran: the planner delegates tool work and answers the rest itself)


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
    if cfg.constrain not in MODES:
        raise CahlInputError(f"rollout.constrain: expected one of {list(MODES)}, got {cfg.constrain!r}")
    checks.integer(cfg.answer_tokens, "rollout.answer_tokens", 0)
    if cfg.subtask not in SUBTASK_FORMS:
        raise CahlInputError(f"rollout.subtask: expected one of {list(SUBTASK_FORMS)}, got {cfg.subtask!r}")
    for key in ("think_tokens", "max_calls"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CahlInputError(f"rollout.{key}: expected an integer >= 1, got {value!r}")
    if cfg.constrain != "off" and cfg.max_new_tokens < cfg.think_tokens + 24:
        raise CahlInputError(f"rollout.max_new_tokens={cfg.max_new_tokens}: a constrained turn needs room for a "
                             f"<think> of rollout.think_tokens={cfg.think_tokens} tokens, the tags and a body; "
                             f"expected >= {cfg.think_tokens + 24}")
    if not isinstance(cfg.max_context, int) or cfg.max_context <= cfg.max_new_tokens:
        raise CahlInputError(f"rollout.max_context: expected an integer > rollout.max_new_tokens "
                             f"({cfg.max_new_tokens}), got {cfg.max_context!r}")
    # temperature -1 or top_p 0 would sample nothing sensible (or divide by zero) in every decode
    checks.number(cfg.temperature, "rollout.temperature", 0)
    checks.number(cfg.top_p, "rollout.top_p", 0, 1, low_open=True)
    checks.integer(cfg.seed, "rollout.seed", 0)


class Policies(Protocol):
    def backend(self, role: str) -> GenerationBackend: ...

    # optional: `sampler(roles, seed)` -> a continuous sampler (decoder.Sampler); without it the
    # rollout runs lock-step turns through backend(role).generate
    # optional: `sampling()` -> a context the whole run decodes inside (PolicySet: sampling precision)


class LockstepSampler:
    """The sampler interface over plain `generate` backends: each step makes one call per role with
    every request queued for it, and returns all of their samples."""

    def __init__(self, policies: Policies, rng: random.Random):
        self.policies, self.rng = policies, rng
        self.queue: dict[str, dict[tuple[int, ...], tuple[SamplingParams, list]]] = {}  # role -> prompt -> tags
        self.seconds: dict[str, float] = {}

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    def submit(self, role: str, prompt: list[int], params: SamplingParams, n: int, tags: list, priority: int = 0) -> None:
        """Every request runs in the next step (priority has no use); requests of one prompt merge."""
        self.queue.setdefault(role, {}).setdefault(tuple(prompt), (params, []))[1].extend(tags)

    def step(self) -> list[tuple[object, Sample]]:
        queue, self.queue, done = self.queue, {}, []
        for role, items in queue.items():
            t0 = time.perf_counter()
            params = next(iter(items.values()))[0]
            samples = self.policies.backend(role).generate([list(p) for p in items], params,
                                                           n=[len(tags) for _, tags in items.values()],
                                                           seed=self.rng.getrandbits(63))
            self.seconds[role] = self.seconds.get(role, 0.0) + time.perf_counter() - t0
            done += zip([tag for _, tags in items.values() for tag in tags], samples)
        return done


@dataclass
class RolloutStats:
    # *_gen: decode seconds per role; a step shared by both roles is split by the rows each held
    seconds: dict = field(default_factory=lambda: {"planner_gen": 0.0, "executor_gen": 0.0, "flat_gen": 0.0, "env": 0.0})
    generated_tokens: dict = field(default_factory=lambda: {"planner": 0, "executor": 0, "flat": 0})


class _Actor:
    """A trajectory being generated. `prompt()` returns ids while it wants a turn, else None."""

    def __init__(self, engine: "Rollout", traj: Trajectory, env: Env, task: Task):
        self.engine, self.traj, self.env, self.task = engine, traj, env, task
        self.done = False
        self.waiting = False  # a planner whose executor attempts are running
        self.in_flight = False  # a turn is being sampled
        self.invalid = 0
        self.tool_errors = 0
        self.rounds = 0
        self.final_text: str | None = None

    def prompt(self) -> list[int] | None:
        if self.done or self.waiting or self.in_flight:
            return None
        if len(self.traj.ids) + self.engine.cfg.max_new_tokens > self.engine.cfg.max_context:
            self.finish("context_overflow")
            return None
        return self.traj.ids

    def priority(self) -> int:
        """1 for turns an episode waits on, 0 for executor attempts no planner waits for: those
        fill the batch when it has room, but never delay the attempts and turns that others wait on."""
        return 1

    def add_turn(self, sample: Sample) -> Turn:
        start = len(self.traj.ids)
        self.traj.append(sample.ids, sampled=True, logprobs=sample.logprobs, masks=sample.masks)
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

    def priority(self) -> int:
        return 0 if self.parent is not None and self.parent.chosen is not self else 1

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
            if self.env.ends_on_call:
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
        self.chosen: _ToolActor | None = None  # the attempt at the current sub-task the planner goes on with
        self.subtasks: list[dict] = []
        self.calls: list[ToolCall] = []

    def receive(self, sample: Sample) -> None:
        turn = self.add_turn(sample)
        parsed = turn.parsed
        if parsed.subtask:
            self.rounds += 1
            k = len(self.subtasks)
            self.subtasks.append({"node": f"{self.traj.node}.s{k}", "text": parsed.subtask, "attempts": []})
            attempts = [self.engine.spawn_executor(self, k, j) for j in range(self.engine.cfg.attempts_per_subtask)]
            self.subtasks[-1]["attempts"] = [c.traj.node for c in attempts]
            self.chosen = self.engine.rng.choice(attempts)  # the planner sees on-policy executor behaviour
            for c in attempts:
                c.traj.meta["chosen"] = c is self.chosen
            self.subtasks[-1]["chosen"] = self.chosen.traj.node
            self.waiting = True
        elif parsed.response is not None and parsed.response.strip():
            self.final_text = parsed.response
            self.finish("answered")
        else:
            self.invalid_turn(turn, "Use <subtask>...</subtask> or <response>...</response>.")

    def child_done(self, child: _ToolActor) -> None:
        if child is not self.chosen:
            return
        chosen, self.chosen = self.chosen, None
        self.env = chosen.env
        self.calls.extend(chosen.traj.calls)
        self.waiting = False
        turn = self.traj.turns[-1]
        if chosen.traj.calls and self.env.ends_on_call:
            # the benchmark scores the first turn that calls (BFCL, API-Bank's ToolRL protocol), so the
            # episode ends with the executor's calls: a planner going on would only add calls it counts wrong
            turn.feedback = render_result(chosen.result_text())
            self.finish("answered")
        elif self.rounds >= self.engine.cfg.max_planner_turns:
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
        self._grammars: dict[tuple[str, int], str | None] = {}  # (role, id(task)) -> its turn grammar
        self.dropped_tools = 0  # tools left out of constrained (role, task) grammars: no call of theirs fits
        #   max_new_tokens

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
            actor.parent.child_done(actor)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, tasks: list[Task], make_env: Callable[[Task], Env],
            on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        """One episode per (task, plan), in task-major order. Policies that offer `sampling()` (a
        PolicySet) decode inside it: in their sampling precision."""
        sampling = getattr(self.policies, "sampling", None)
        with sampling() if callable(sampling) else nullcontext():
            return self._run(tasks, make_env, on_episode)

    def _run(self, tasks, make_env, on_episode) -> list[Episode]:
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
        roles = {"flat": ("flat",), "executor": ("executor",)}.get(self.cfg.agent, ("planner", "executor"))
        make = getattr(self.policies, "sampler", None)
        sampler = make(roles, self.rng.getrandbits(63)) if callable(make) else None
        sampler = sampler or LockstepSampler(self.policies, self.rng)
        params = {role: SamplingParams(self.cfg.max_new_tokens, self.cfg.temperature, self.cfg.top_p, STOP[role])
                  for role in roles}
        reported: set[int] = set()
        while self._live:
            self._submit(sampler, params)  # may end episodes (context_overflow)
            if sampler.busy:
                for actor, sample in sampler.step():
                    actor.in_flight = False
                    self.stats.generated_tokens[actor.traj.role] += len(sample.ids)
                    actor.receive(sample)
            elif not any(a.done for a in self._live):
                raise RuntimeError(f"rollout: {len(self._live)} live actors but no turn to sample")
            for task, a in roots:
                if id(a) not in reported and a.done and all(c.done for c in self._executors.get(id(a), [])):
                    reported.add(id(a))
                    if on_episode is not None:
                        on_episode(self._episode(task, a))
            if any(a.done for a in self._live):
                self._live = [a for a in self._live if not a.done]
                self._prune()
        for role, seconds in sampler.seconds.items():
            self.stats.seconds[f"{role}_gen"] += seconds
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

    def grammar(self, role: str, task: Task, first: bool = False) -> str | None:
        """The Lark text constraining `role`'s turns on `task` (None when rollout.constrain is off);
        `first`: the trajectory's first turn (an executor's must call, rollout.executor_calls_first)."""
        calls_only = first and role == "executor" and self.cfg.executor_calls_first
        key = (role, id(task), calls_only)
        if key not in self._grammars:
            cfg = self.cfg
            g = turn_grammar(role, task.tools, cfg.constrain, cfg.max_new_tokens, cfg.think_tokens, cfg.max_calls,
                             lambda text: len(self.chat.encode(text)), calls_only=calls_only,
                             answer_tokens=cfg.answer_tokens, subtask_calls=cfg.subtask == "calls")
            self._grammars[key] = g.text if g is not None else None
            self.dropped_tools += len(g.dropped) if g is not None else 0
        return self._grammars[key]

    def _submit(self, sampler, params: dict[str, SamplingParams]) -> None:
        """Hand every actor's pending turn to the sampler, identical prompts of a role as one request."""
        pending: dict[tuple[str, tuple[int, ...], int], list[_Actor]] = {}
        for actor in list(self._live):
            ids = actor.prompt()
            if ids is not None:
                pending.setdefault((actor.traj.role, tuple(ids), actor.priority()), []).append(actor)
        for (role, ids, priority), actors in pending.items():
            for actor in actors:
                actor.in_flight = True
            # one prompt: one task, one role, one turn number
            grammar = self.grammar(role, actors[0].task, first=not actors[0].traj.turns)
            turn = replace(params[role], grammar=grammar) if grammar else params[role]
            sampler.submit(role, list(ids), turn, n=len(actors), tags=actors, priority=priority)

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

    def sampler(self, roles: tuple[str, ...], seed: int):
        """Continuous batching when the backend is an HFBackend (all roles in one batch), else None."""
        if not isinstance(self._backend, HFBackend):
            return None
        decoder = self._backend.decoder(seed)
        return Sampler({role: (decoder, None) for role in roles})
