"""The training loop: GRPO under a schedule (DESIGN §5), from the cached SFT warm start (train/sft.py).

Each GRPO step reads top to bottom:
    1. rollout      episodes for this step's tasks (hierarchical, flat, or executor-only)
    2. rewards      every trajectory gets a RewardResult (components logged)
    3. advantages   group-normalised per role; zero-variance groups filtered and counted
    4. update       train.policy_epochs optimizer steps per trained role, on the tokens that role sampled
    5. log          metrics.jsonl + TensorBoard
    6. checkpoint   atomic; `--resume` continues from the newest verified one exactly

Schedules: joint = both roles every step on the same rollouts (CAHL); separate = executor alone on
oracle sub-tasks for the first half, then the planner on outcome with the executor frozen; flat =
one policy, ToolRL reward. Every step's tasks and seeds are a function of (seed, step), so a
resumed run sees the same batches and samples as an uninterrupted one.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cahl.agents.build import apply_runtime
from cahl.agents.chat import ChatFormat
from cahl.agents.rollout import Rollout
from cahl.sources import make_env
from cahl.rl.advantages import group_advantages
from cahl.train import sharding
from cahl.train.dist import dist
from cahl.train import checkpoint
from cahl.train.checkpoint import checkpoint_to_resume
from cahl.train.metrics import MetricsLogger
from cahl.train.oracle import (executor_examples, flat_example, oracle_subtasks, planner_example, recovery_examples,
                               with_optional_extras)
from cahl.train.update import grpo_step
from cahl.types import Task

SCHEDULE_ROLES = {"joint": ("planner", "executor"), "separate": ("planner", "executor"), "flat": ("flat",)}


# -- data -----------------------------------------------------------------------------------------
def training_tasks(cfg, seed: int | None = None) -> list[Task]:
    """The training pool: generated multi-step tasks (from `seed`, default the run's), ToolRL's
    SFT set (deduplicated against its test split), with its single-message calling items also as
    dialogues when train.toolrl_dialogues (data/toolrl.py: dialogue_variant), and task files
    (file:PATH, data/taskfile.py), in train.data's order; ToolRL's and the files' items offer their
    tools in a shuffled order when train.shuffle_tools (`shuffled_tools`)."""
    tasks: list[Task] = []
    t = cfg.train
    seed = cfg.seed if seed is None else seed
    offered = (lambda items: [shuffled_tools(x, seed) for x in items]) if t.shuffle_tools else list
    for source in t.data:
        if source == "synth":
            from cahl.envs.synth import generate_tasks

            tasks += generate_tasks(t.n_synth, seed=seed, min_steps=t.synth_min_steps,
                                    max_steps=t.synth_max_steps, n_distractors=t.synth_distractors, split="train",
                                    rename=t.synth_rename)
        elif source == "toolrl":
            from cahl.data.toolrl import dedup_against, load_toolrl_sft, load_toolrl_test

            from cahl.data.toolrl import dialogue_variant

            kept, _ = dedup_against(load_toolrl_sft(cfg.data_dir or None), load_toolrl_test(cfg.data_dir or None))
            kept = kept[: t.n_toolrl] if t.n_toolrl else kept
            kept = offered(kept)
            tasks += kept
            if t.toolrl_dialogues:
                tasks += [v for v in map(dialogue_variant, kept) if v is not None]
        elif source.startswith("file:"):
            from cahl.data.taskfile import file_path, load_task_file

            tasks += offered(load_task_file(file_path(source), split="train"))
        else:
            from cahl.types import CahlInputError

            raise CahlInputError(f"train.data: unknown source {source!r}; expected 'synth', 'toolrl' or 'file:PATH'")
    return tasks


def shuffled_tools(task: Task, seed: int) -> Task:
    """`task` offering its tools in an order shuffled by (seed, task id): where a tool is listed
    says nothing about which one to call (train.shuffle_tools)."""
    tools = list(task.tools)
    random.Random(f"{seed}:{task.id}:tools").shuffle(tools)
    return replace(task, tools=tools)


def sft_pools(chat: ChatFormat, tasks: list[Task], roles, max_len: int, recovery: float = 0.0,
              optional_extras: float = 0.0) -> dict[str, list]:
    """Oracle SFT examples per role; examples longer than max_len tokens are dropped (counted). With
    `recovery` (sft.recovery), that share of the generated tasks (chosen by task id) also gives the
    hierarchy's recovery examples (oracle.recovery_examples); with `optional_extras`
    (sft.optional_extras) the generated tasks' examples show unneeded optional parameters
    (oracle.with_optional_extras)."""
    pools: dict[str, list] = {r: [] for r in roles}
    for original in tasks:
        env = make_env(original)
        task = with_optional_extras(original, optional_extras) if original.source == "synth" else original
        once = env.ends_on_call
        if "flat" in roles:
            pools["flat"].append(flat_example(chat, task, once))
        if "planner" in roles:
            pools["planner"].append(planner_example(chat, task, once))
        if "executor" in roles:
            pools["executor"] += executor_examples(chat, task, once)
        if recovery and original.source == "synth" and random.Random(f"recovery:{original.id}").random() < recovery:
            env.reset(original)  # the environment knows the task's own tools, not the examples' extras
            pair = recovery_examples(chat, task, env)
            for role, example in zip(("planner", "executor"), pair or ()):
                if role in roles:
                    pools[role].append(example)
    kept = {r: [e for e in ex if len(e[0]) <= max_len] for r, ex in pools.items()}
    for role, ex in kept.items():
        dropped = len(pools[role]) - len(ex)
        if not ex:
            from cahl.types import CahlInputError

            raise CahlInputError(f"sft.max_len={max_len} leaves no {role} SFT example (all {len(pools[role])} are "
                                 "longer); raise sft.max_len")
        if dropped:
            print(f"cahl: SFT {role}: {dropped} of {len(pools[role])} examples are longer than sft.max_len={max_len} "
                  "and left out")
    return kept


def subtask_tasks(tasks: list[Task]) -> list[Task]:
    """Oracle sub-tasks as executor-only tasks (the separate schedule's stage 1)."""
    out = []
    for task in tasks:
        for k, (text, call) in enumerate(zip(oracle_subtasks(task), task.gold_calls or [])):
            out.append(replace(task, id=f"{task.id}#s{k}", messages=[{"role": "user", "content": text}],
                               gold_calls=[call], gold_answer=None, meta={**task.meta, "oracle_step": k}))
    return out


# -- the plan of steps ----------------------------------------------------------------------------
def step_plan(cfg) -> list[tuple[str, tuple[str, ...], str]]:
    """[(phase, roles trained, rollout agent)] for every GRPO step (the SFT warm start is a stage of
    its own before them: train/sft.py)."""
    roles = SCHEDULE_ROLES[cfg.train.schedule]
    plan: list[tuple[str, tuple[str, ...], str]] = []
    n = cfg.train.steps
    if cfg.train.schedule == "joint":
        plan += [("grpo", roles, "hierarchical")] * n
    elif cfg.train.schedule == "flat":
        plan += [("grpo", ("flat",), "flat")] * n
    else:  # separate: executor on oracle sub-tasks, then planner with the executor frozen
        plan += [("grpo", ("executor",), "executor")] * (n // 2) + [("grpo", ("planner",), "hierarchical")] * (n - n // 2)
    return plan


def _rng(seed: int, step: int, what: str) -> random.Random:
    return random.Random(f"{seed}:{step}:{what}")


# -- steps ----------------------------------------------------------------------------------------
def run_grpo_step(ctx: "TrainState", step: int, roles, agent: str) -> dict:
    """One GRPO step, numbered as the module docstring reads; returns its metrics."""
    cfg, t0 = ctx.cfg, time.perf_counter()
    pool = ctx.subtask_pool if agent == "executor" else ctx.tasks
    n_tasks = cfg.train.tasks_per_step
    tasks = _rng(cfg.seed, step, "tasks").sample(pool, min(n_tasks, len(pool)))
    tasks = dist().shard(tasks)  # whole GRPO groups per process: advantages stay local
    group = cfg.rollout.attempts_per_subtask if agent == "executor" else cfg.rollout.plans_per_task  # G_L or G_H
    rcfg = replace(cfg.rollout, agent=agent, plans_per_task=group, seed=_rng(cfg.seed, step, "rollout").getrandbits(31))

    # 1. rollout
    rollout = Rollout(ctx.policies, ctx.chat, rcfg)
    with sharding.full_weights(ctx.policies):  # sharded: decode without a collective per forward
        episodes = rollout.run(tasks, make_env)
    t1 = time.perf_counter()

    # 2. rewards
    reward_cfg = cfg.reward
    if cfg.train.schedule == "separate" and agent == "hierarchical":
        reward_cfg = replace(reward_cfg, w_align=0.0)  # stage 2 trains the planner on outcome alone
    metrics = score(episodes, reward_cfg, agent)
    t2 = time.perf_counter()

    # 3. advantages and 4. update, per role
    for role in roles:
        trajs = [tr for ep in episodes for tr in ep.trajectories if tr.role == role]
        keep = []
        if trajs:
            rewards = torch.tensor([tr.reward.score for tr in trajs], dtype=torch.float32)
            adv, zero, am = group_advantages(rewards, [tr.group_id for tr in trajs], scale_by_std=cfg.train.scale_by_std)
            metrics.update({f"adv/{role}/{k}": v for k, v in am.items()})
            keep = [i for i in range(len(trajs)) if not (cfg.train.filter_zero_variance and bool(zero[i]))]
        metrics[f"train/{role}/trajectories"] = len(keep)
        if dist().sum(len(keep)) == 0:  # no process has a group with signal: no update for this role
            continue
        batch, batch_adv = [trajs[i] for i in keep], [float(adv[i]) for i in keep]
        for tr, a in zip(batch, batch_adv):
            tr.advantage = a
        optimizer = with_lr(ctx.optimizers[role], ctx.lr[role])
        epochs = []
        for epoch in range(cfg.train.policy_epochs):  # old log-probs stay the first epoch's: later ones are clipped
            epochs.append(grpo_step(ctx.policies, role, optimizer, batch, batch_adv, eps_low=cfg.train.eps_low,
                                    eps_high=cfg.train.eps_high, kl_beta=cfg.train.kl_beta, max_tokens=cfg.train.max_tokens, grad_clip=cfg.train.grad_clip, pad_id=ctx.pad_id,
                                    temperature=max(cfg.rollout.temperature, 1e-6),
                                    # sampled in model.sample_dtype: the first epoch's forward gives the old log-probs
                                    refresh_old=epoch == 0 and ctx.policies.sample_dtype is not None))
            ctx.counters[f"optimizer_steps/{role}"] += 1
        metrics.update({f"train/{role}/{k}": v for k, v in epoch_means(epochs).items()})
        ctx.counters[f"forced_tokens/{role}"] += int(epochs[0].get("forced_tokens", 0))
    t3 = time.perf_counter()

    ctx.counters["episodes"] += len(episodes)
    ctx.counters["trajectories"] += sum(len(ep.trajectories) for ep in episodes)
    for k, v in rollout.stats.seconds.items():
        metrics[f"time/rollout_{k}"] = v
    for k, v in rollout.stats.generated_tokens.items():
        metrics[f"tokens/generated_{k}"] = v
    metrics.update({"time/rollout": t1 - t0, "time/reward": t2 - t1, "time/update": t3 - t2})
    ctx.last_episodes = episodes
    return metrics


def epoch_means(epochs: list[dict]) -> dict:
    """One step's update metrics over its policy epochs: the mean of each over the epochs that
    report it (sampler_gap: the first alone), the max of ratio_max."""
    keys = dict.fromkeys(k for e in epochs for k in e)
    values = {k: [e[k] for e in epochs if k in e] for k in keys}
    return {k: max(v) if k == "ratio_max" else sum(v) / len(v) for k, v in values.items()}


def score(episodes, reward_cfg, agent: str) -> dict:
    """Fill every trajectory's reward; return reward metrics (per role and component) and end reasons.

    Executor-only episodes (the separate schedule's stage 1) are scored against their oracle call;
    the metric names match score_episodes' (reward/{role}, reward/{role}/{component}, success/{role}).
    """
    from cahl.rewards.hierarchy import executor_reward, load_callable, score_episodes

    if agent == "executor":
        for ep in episodes:
            for tr in ep.trajectories:
                tr.reward = executor_reward(tr, ep.task, list(ep.task.gold_calls or []), reward_cfg)
                tr.meta["solved"] = tr.reward.success
        metrics = _reward_metrics(episodes)
    else:
        metrics = score_episodes(episodes, reward_cfg)
    if reward_cfg.custom:
        fn = load_callable(reward_cfg.custom, "reward.custom")
        values = []
        for ep in episodes:
            for tr in ep.trajectories:
                v = float(fn(tr, ep.task))
                tr.reward.score += reward_cfg.w_custom * v
                tr.reward.components["custom"] = v
                values.append(v)
        metrics["reward/custom"] = sum(values) / max(len(values), 1)
    reasons = Counter(ep.end_reason for ep in episodes)
    metrics.update({f"end_reason/{r}": c / len(episodes) for r, c in reasons.items()})
    lengths = [len(t.ids) - t.prompt_len for ep in episodes for t in ep.trajectories]
    metrics["length/mean_completion_tokens"] = sum(lengths) / max(len(lengths), 1)
    return metrics


def _reward_metrics(episodes) -> dict:
    by_role: dict[str, list] = {}
    for ep in episodes:
        for tr in ep.trajectories:
            if tr.reward is not None:
                by_role.setdefault(tr.role, []).append(tr.reward)
    out = {}
    for role, rs in by_role.items():
        out[f"reward/{role}"] = sum(r.score for r in rs) / len(rs)
        out[f"success/{role}"] = sum(r.success for r in rs) / len(rs)
        for comp in rs[0].components:
            out[f"reward/{role}/{comp}"] = sum(r.components.get(comp, 0.0) for r in rs) / len(rs)
    return out


def truncate_samples(run_dir: Path, step: int) -> None:
    import json

    path = Path(run_dir) / "samples.jsonl"
    if path.is_file():
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill mid-write
        path.write_text("".join(l + "\n" for l in keep))


def write_samples(run_dir: Path, step: int, episodes) -> None:
    """One sample trajectory per role (the best-rewarded) for the report."""
    import json

    best: dict[str, object] = {}
    for ep in episodes:
        for tr in ep.trajectories:
            if tr.reward is not None and (tr.role not in best or tr.reward.score > best[tr.role].reward.score):
                best[tr.role] = tr
    with open(Path(run_dir) / "samples.jsonl", "a") as f:
        for role, tr in best.items():
            text = "\n".join(t.text + ("\n" + t.feedback if t.feedback else "") for t in tr.turns)
            f.write(json.dumps({"step": step, "role": role, "task_id": tr.task_id, "reward": tr.reward.score,
                                "end_reason": tr.end_reason, "text": text}) + "\n")


# -- the run --------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What a training stage runs on: the SFT stage (train/sft.py) and the GRPO loop share it, and
    train/checkpoint.py saves and restores it (it owns the file layout)."""

    cfg: Any
    policies: Any  # PolicySet
    chat: ChatFormat
    pad_id: int
    roles: tuple[str, ...]
    optimizers: dict[str, torch.optim.Optimizer]  # role -> its adapter's optimizer (shared mode: one for all)
    lr: dict[str, float] = field(default_factory=dict)  # role -> GRPO learning rate
    tasks: list[Task] = field(default_factory=list)  # GRPO's task pool
    subtask_pool: list[Task] = field(default_factory=list)  # oracle sub-tasks (separate schedule, stage 1)
    counters: Counter = field(default_factory=Counter)  # episodes, trajectories, optimizer steps per role
    last_episodes: list = field(default_factory=list)  # the latest step's episodes (samples for the report)


def adapter_optimizers(policies, roles, lr: dict[str, float]) -> dict[str, torch.optim.AdamW]:
    """role -> AdamW, one per adapter: roles on one adapter (model.policies=shared) share one set of
    Adam moments instead of two optimizers each stepping the same weights with half the history.
    A role's own LR is set on its optimizer when it steps (`with_lr`)."""
    by_adapter: dict[str, torch.optim.AdamW] = {}
    for r in roles:
        adapter = policies.adapter_of[r]
        if adapter not in by_adapter:
            by_adapter[adapter] = torch.optim.AdamW(policies.parameters(r), lr=lr[r], weight_decay=0.0)
    return {r: by_adapter[policies.adapter_of[r]] for r in roles}


def with_lr(optimizer: torch.optim.Optimizer, lr: float) -> torch.optim.Optimizer:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return optimizer


def build_state(cfg, adapters: Path | None = None) -> TrainState:
    """Policies (fresh, or the adapters saved in `adapters`: a checkpoint or the SFT warm start),
    the GRPO task pool and one optimizer per role."""
    from cahl.agents.policy import PolicySet

    apply_runtime(cfg.model)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    roles = SCHEDULE_ROLES[cfg.train.schedule]
    # trained adapters come back from the checkpoint; optimizers are then built over those parameters
    policies = PolicySet.from_checkpoint(cfg.model, adapters) if adapters else PolicySet.create(cfg.model, roles=roles)
    if dist().fsdp:  # before the optimizers: they must hold the sharded parameters
        sharding.shard(policies, dist().world)
    every = training_tasks(cfg)
    tasks = every[:cfg.train.task_pool or len(every)]  # GRPO's pool
    lr = {"planner": cfg.train.lr_planner, "executor": cfg.train.lr_executor, "flat": cfg.train.lr_executor}
    return TrainState(cfg=cfg, policies=policies, chat=ChatFormat(policies.tokenizer),
                      pad_id=policies.tokenizer.pad_token_id or 0, roles=roles,
                      optimizers=adapter_optimizers(policies, roles, lr), lr=lr, tasks=tasks,
                      subtask_pool=subtask_tasks(tasks))


def train(cfg, resume: bool = False, stop_after: int | None = None, restart: bool = False) -> Path:
    """The SFT warm start (cached: run only if missing), then GRPO as configured; returns the run
    folder. `stop_after` ends early (for tests). `restart`: with `resume`, start from step 0 where no
    checkpoint can be trusted (else an error)."""
    from cahl.config import to_dict
    from cahl.train.sft import CURVE_FILE, SFT_FILE, warm_start

    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_to_resume(run_dir, restart) if resume else None
    if dist().is_main and dist().world > 1:  # a launch that silently ran one process shows here
        print(f"cahl: {dist().world} processes, {'sharded (FSDP2)' if dist().fsdp else 'replicated (DDP)'}")
    sft = warm_start(cfg)
    if sft is not None and dist().is_main:  # the warm start's curve and parse check, for the report
        for name in (CURVE_FILE, SFT_FILE):
            shutil.copy2(sft / name, run_dir / f"sft_{name}" if name == CURVE_FILE else run_dir / name)
    ctx = build_state(cfg, ckpt or sft)
    logger = MetricsLogger(run_dir, tensorboard=cfg.train.tensorboard,  # trackers: on the process that logs
                           report_to=cfg.train.report_to if dist().is_main else [], config=to_dict(cfg))
    plan = step_plan(cfg)

    start = 0
    if ckpt is not None:
        start = checkpoint.restore(ckpt, ctx)
        logger.truncate_after(start)
        print(f"cahl: resumed from {ckpt} at step {start}/{len(plan)}")
    elif resume:
        print(f"cahl: --resume given but {run_dir} has no checkpoint; starting from step 0")
    import yaml

    saved = run_dir / "config.yaml"
    if start == 0:
        logger.reset()
        (run_dir / "samples.jsonl").unlink(missing_ok=True)
    else:
        truncate_samples(run_dir, start)
        old = yaml.safe_load(saved.read_text()) if saved.is_file() else None
        if old is not None and old != yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)):
            from cahl.types import CahlInputError

            changed = sorted(k for k in set(old) | set(to_dict(cfg)) if old.get(k) != to_dict(cfg).get(k))
            raise CahlInputError(f"--resume with a config that differs from {saved} in section(s) {changed}; "
                                 "resume with the same config, or start a new --out")
    if start == 0 or not saved.is_file():
        saved.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    bar = tqdm(total=len(plan), initial=start, desc=f"train ({cfg.train.schedule})", unit="step", dynamic_ncols=True)
    for step in range(start, len(plan)):
        phase, step_roles, agent = plan[step]
        t0 = time.perf_counter()
        metrics = run_grpo_step(ctx, step, step_roles, agent)
        metrics.update({"phase": phase, "time/step": time.perf_counter() - t0, **dict(ctx.counters)})
        if dist().is_main:  # metrics are the main process's shard; checkpoints are identical on all
            logger.log(step + 1, metrics)
            write_samples(run_dir, step + 1, ctx.last_episodes)
        bar.update(1)
        shown = {k.split("/")[1][:4]: round(v, 3) for k, v in metrics.items() if k.startswith("reward/") and k.count("/") == 1}
        bar.set_postfix(phase=phase, **shown)
        if (step + 1) % cfg.train.checkpoint_every == 0 or step + 1 == len(plan):
            checkpoint.save(run_dir, step + 1, ctx)  # every process: sharded state is gathered in collectives
        if stop_after is not None and step + 1 >= stop_after:
            break
    bar.close()
    adapters = ctx.policies.adapter_states()  # every process (a collective when sharded)
    if dist().is_main:
        ctx.policies.save(run_dir / "final", adapters)
    logger.close()
    dist().finish()
    return run_dir
