"""The SFT warm start as a stage of its own (`cahl sft`, DESIGN §5), cached under a content key.

The warm start teaches each role its content on oracle decompositions (train/oracle.py): the
planner to delegate every step with its values, the executor to copy those values into calls
with their types. It is a function of the model, the LoRA layout, the SFT examples themselves
(their token ids: data, prompt version and tokenizer all show in them), the `sft` section and
the roles, and of nothing else: not the run's seed. So it runs once and every `cahl train`,
every experiment arm and every seed starting from the same warm start loads the same adapters;
seeds vary the RL phase only.

Cache layout: SFT_CACHE/<key>/ = the PolicySet (policy.json + one PEFT adapter per role),
metrics.jsonl (the SFT curve: loss per role and step) and sft.json (key inputs, steps, seconds,
and the held-out parse check: per role, the share of unconstrained greedy turns that parse as
the role's grammar). It is written to a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from cahl.train.dist import dist

SFT_FILE = "sft.json"
CURVE_FILE = "metrics.jsonl"


def sft_roles(cfg) -> tuple[str, ...]:
    """The roles the schedule's warm start trains (those with SFT steps)."""
    from cahl.train.loop import SCHEDULE_ROLES

    return tuple(r for r in SCHEDULE_ROLES[cfg.train.schedule] if cfg.sft.steps_of(r) > 0)


def sft_key(cfg, roles: tuple[str, ...], pools: dict[str, list]) -> str:
    """sha256 (first 16 hex digits) of everything the warm start depends on (module docstring)."""
    import dataclasses

    from cahl.agents.prompts import PROMPT_VERSION

    m = cfg.model
    h = hashlib.sha256()
    head = {"model": m.name, "dtype": m.dtype, "policies": m.policies, "lora": [m.lora_r, m.lora_alpha, m.lora_dropout,
            list(m.lora_targets)], "roles": list(roles), "prompt_version": PROMPT_VERSION,
            "sft": {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k != "cache_dir"},
            "grad_clip": cfg.train.grad_clip, "max_tokens": cfg.train.max_tokens}
    h.update(json.dumps(head, sort_keys=True).encode())
    for role in roles:
        for ids, mask in pools[role]:
            h.update(repr((role, ids, mask)).encode())
    return h.hexdigest()[:16]


def cache_root(cfg) -> Path:
    from cahl.paths import cache_dir

    return Path(cfg.sft.cache_dir) if cfg.sft.cache_dir else cache_dir() / "sft"


def warm_start(cfg, chat=None) -> Path | None:
    """The cached warm start of cfg's schedule, running the SFT stage first if it is not cached;
    None when no role has SFT steps. Every process of a distributed run calls it (the stage's
    steps are collectives); the main process writes the cache."""
    roles = sft_roles(cfg)
    if not roles:
        return None
    if chat is None:
        from cahl.agents.chat import ChatFormat
        from cahl.agents.model import load_tokenizer

        chat = ChatFormat(load_tokenizer(cfg.model.name))
    pools = sft_data(cfg, chat, roles)
    folder = cache_root(cfg) / sft_key(cfg, roles, pools)
    if (folder / SFT_FILE).is_file():
        return folder
    run_sft(cfg, roles, pools, folder)
    return folder


def sft_data(cfg, chat, roles) -> dict[str, list]:
    """The oracle SFT examples of the training pool, generated with sft.seed (not the run's seed)."""
    from cahl.train.loop import sft_pools, training_tasks

    return sft_pools(chat, training_tasks(cfg, seed=cfg.sft.seed), roles, cfg.sft.max_len, cfg.sft.recovery,
                     cfg.sft.optional_extras)


def run_sft(cfg, roles: tuple[str, ...], pools: dict[str, list], folder: Path) -> dict:
    """SFT steps for `roles` (a role past its own sft.role_steps sits the rest out), then the
    held-out parse check; writes `folder` (module docstring). Returns sft.json's content."""
    import torch

    from cahl.agents.policy import PolicySet
    from cahl.train.loop import TrainState, adapter_optimizers
    from cahl.train.update import sft_step

    from cahl.agents.build import apply_runtime
    from cahl.agents.chat import ChatFormat

    apply_runtime(cfg.model)
    random.seed(cfg.sft.seed)
    torch.manual_seed(cfg.sft.seed)
    policies = PolicySet.create(cfg.model, roles=roles)
    state = TrainState(cfg=cfg, policies=policies, chat=ChatFormat(policies.tokenizer),
                       pad_id=policies.tokenizer.pad_token_id or 0, roles=roles,
                       optimizers=adapter_optimizers(policies, roles, {r: cfg.sft.lr for r in roles}))
    steps = cfg.sft.phase_steps(roles)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    curve = []
    bar = tqdm(total=steps, desc="sft (warm start)", unit="step", dynamic_ncols=True, disable=not dist().is_main)
    with open(tmp / CURVE_FILE, "w") as log:
        for step in range(steps):
            row = {"step": step + 1}
            for role in (r for r in roles if cfg.sft.steps_of(r) > step):
                pool = pools[role]
                batch = random.Random(f"{cfg.sft.seed}:{step}:sft-{role}").sample(pool, min(cfg.sft.batch_size, len(pool)))
                m = sft_step(state.policies, role, state.optimizers[role], dist().shard(batch), cfg.train.max_tokens,
                             cfg.train.grad_clip, state.pad_id)
                row.update({f"sft/{role}/{k}": v for k, v in m.items()})
            row["time/step"] = time.perf_counter() - t0 - sum(r.get("time/step", 0.0) for r in curve)
            curve.append(row)
            log.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix({r[:4]: round(row[f"sft/{r}/loss"], 3) for r in roles if f"sft/{r}/loss" in row})
    bar.close()
    seconds = time.perf_counter() - t0
    adapters = state.policies.adapter_states()  # every process (a collective when sharded)
    record = {"key": folder.name, "roles": list(roles), "steps": steps, "examples": {r: len(p) for r, p in pools.items()},
              "seconds": round(seconds, 1), "final_loss": {r: _last(curve, f"sft/{r}/loss") for r in roles}}
    if dist().is_main:
        state.policies.save(tmp, adapters)
        record["parse_check"] = parse_check(cfg, state)
        (tmp / SFT_FILE).write_text(json.dumps(record, indent=1) + "\n")
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same warm start meanwhile (folders are only renamed in whole)
            if not (folder / SFT_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    dist().barrier()
    return record


def parse_check(cfg, state) -> dict:
    """Per role: of the unconstrained greedy turns on `sft.check_items` held-out items (ToolRL's
    test split and generated test-split tasks, never trained on), the share that parse as the
    role's grammar (format score 1), and how many turns that was."""
    from dataclasses import replace

    from cahl.agents.rollout import Rollout
    from cahl.data.toolrl import load_toolrl_test
    from cahl.sources import make_env
    from cahl.envs.synth import generate_tasks
    from cahl.rewards.format import format_score

    n = cfg.sft.check_items
    if n <= 0:
        return {}
    tasks = load_toolrl_test(cfg.data_dir or None)[: n - n // 2] if "toolrl" in cfg.train.data else []
    tasks += generate_tasks(n - len(tasks), seed=cfg.sft.seed + 1, min_steps=cfg.train.synth_min_steps,
                            max_steps=cfg.train.synth_max_steps, n_distractors=cfg.train.synth_distractors, split="test")
    agent = "flat" if "flat" in state.roles else "hierarchical"
    rc = replace(cfg.rollout, agent=agent, temperature=0.0, constrain="off", plans_per_task=1, attempts_per_subtask=1,
                 max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.sft.seed)
    episodes = Rollout(state.policies, state.chat, rc).run(tasks, make_env)
    counts: dict[str, list[int]] = {}
    for ep in episodes:
        for tr in ep.trajectories:
            c = counts.setdefault(tr.role, [0, 0])
            c[0] += len(tr.turns)
            c[1] += sum(format_score(t.parsed, tr.role, t.text) == 1.0 for t in tr.turns)
    return {role: {"turns": total, "parse_rate": ok / total if total else 0.0} for role, (total, ok) in counts.items()}


def _last(curve: list[dict], key: str):
    """The last logged value of `key` (a role with fewer steps than the phase stops logging early)."""
    return next((row[key] for row in reversed(curve) if key in row), None)
