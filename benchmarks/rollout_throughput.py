"""Generated tokens/s of a hierarchical rollout, constrained vs unconstrained, and vs one plain
batched HF `generate` of the same size.

The rollout: 8 generated multi-step tasks x G_H=4 plans x G_L=4 executor attempts per sub-task,
on the embedded model through a PolicySet (two LoRA adapters; `--adapters DIR` to use trained
ones, e.g. runs/quickstart/final). The peer: `model.generate` on the same base model, batch of
32 rows of a typical planner prompt, forced to produce the same total number of new tokens.
Prints per-phase timings, both throughputs and `ratio: X` (rollout / generate; target >= 0.8).
Constrained decoding (DESIGN §9): the same rollout with rollout.constrain=tools and =off, `--repeats`
times each, alternating; prints the median tokens/s of each, the grammar-mask seconds, and
`constrained ratio: X` (tools / off; target >= 0.95). The two decode different tokens (the
grammar changes what is sampled), so the work is the same tasks, prompts and budgets.
Peak-memory ratio of two adapters vs one policy: benchmarks/policy_memory.py.

Run: python3 benchmarks/rollout_throughput.py [--adapters DIR] [--tasks 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from cahl.agents.chat import ChatFormat
from cahl.agents.invariants import episode_problems
from cahl.agents.policy import PolicySet
from cahl.agents.prompts import initial_messages
from cahl.agents.rollout import Rollout, RolloutConfig
from cahl.config import ModelConfig
from cahl.sources import make_env
from cahl.envs.synth import generate_tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    mcfg = ModelConfig(name="embedded")
    policies = PolicySet.from_checkpoint(mcfg, args.adapters) if args.adapters else PolicySet.create(mcfg)
    chat = ChatFormat(policies.tokenizer)
    tasks = generate_tasks(args.tasks, seed=123, min_steps=2, max_steps=2, n_distractors=1)
    cfg = RolloutConfig(agent="hierarchical", plans_per_task=4, attempts_per_subtask=4, max_planner_turns=3,
                        max_executor_rounds=2, max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0,
                        constrain="off")
    constrained_ratio(policies, chat, tasks, cfg, args.repeats)
    rollout = Rollout(policies, chat, cfg)
    t0 = time.perf_counter()
    episodes = rollout.run(tasks, make_env)
    wall = time.perf_counter() - t0
    tokens = sum(rollout.stats.generated_tokens.values())
    problems = [p for ep in episodes for p in episode_problems(ep)]
    print(f"rollout: {len(episodes)} episodes, {sum(len(e.trajectories) for e in episodes)} trajectories, "
          f"{tokens} generated tokens in {wall:.1f} s = {tokens / wall:.1f} tok/s; invariant problems: {len(problems)}")
    print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in rollout.stats.seconds.items()))
    stats = policies.backend("planner").stats  # one sampler serves both roles of the base model
    print(f"  decode: {stats.steps} steps, mean batch {stats.rows / max(stats.steps, 1):.1f} live rows "
          f"({stats.slots / max(stats.steps, 1):.1f} slots); prefill: "
          f"{stats.prompt_tokens} prompt tokens computed ({stats.joined_tokens} of them inside decode forwards, "
          f"the rest in {stats.prefill_seconds:.1f} s of prefill forwards), {stats.cached_tokens} reused from the prefix cache")
    print(f"  end reasons: { {r: sum(e.end_reason == r for e in episodes) for r in {e.end_reason for e in episodes}} }")

    rows = 32
    per_row = max(1, tokens // rows)
    prompt = chat.prompt_ids(initial_messages("planner", tasks[0].tools, tasks[0].messages))
    ids = torch.tensor([prompt] * rows)
    model = policies.model
    with policies.reference() as base, torch.no_grad():
        t0 = time.perf_counter()
        base.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=per_row,
                      min_new_tokens=per_row, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                      pad_token_id=policies.tokenizer.pad_token_id)
        plain = time.perf_counter() - t0
    del model
    plain_tps = rows * per_row / plain
    print(f"plain generate: {rows} x {per_row} tokens in {plain:.1f} s = {plain_tps:.1f} tok/s")
    print(f"ratio: {tokens / wall / plain_tps:.2f}")


def constrained_ratio(policies, chat, tasks, cfg, repeats: int) -> float:
    """Median generated tokens/s with rollout.constrain=tools over the same with off."""
    from dataclasses import replace
    from statistics import median

    speed: dict[str, list[float]] = {"off": [], "tools": []}
    for rep in range(repeats):
        for mode in ("off", "tools") if rep % 2 == 0 else ("tools", "off"):
            stats = policies.backend("planner").stats
            masks0 = stats.mask_seconds
            rollout = Rollout(policies, chat, replace(cfg, constrain=mode))
            t0 = time.perf_counter()
            episodes = rollout.run(tasks, make_env)
            wall = time.perf_counter() - t0
            tokens = sum(rollout.stats.generated_tokens.values())
            speed[mode].append(tokens / wall)
            invalid = sum(e.end_reason == "invalid_output_limit" for e in episodes)
            print(f"  constrain={mode}: {tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} tok/s, grammar masks "
                  f"{stats.mask_seconds - masks0:.2f} s, episodes ending on invalid output: {invalid}/{len(episodes)}")
    ratio = median(speed["tools"]) / median(speed["off"])
    print(f"constrained ratio: {ratio:.2f} (median tok/s tools {median(speed['tools']):.1f} / off {median(speed['off']):.1f})")
    return ratio


if __name__ == "__main__":
    main()
