"""GRPO update time with groups packed as one prefix tree per forward vs one group per forward,
on identical work, in one run.

One joint GRPO step of the quickstart (configs/quickstart.yaml: 3 tasks, G_H=4 plans, G_L=2
attempts per sub-task) rolls out with the policies of `--adapters DIR` (a trained run's `final/`,
so that the executor has sub-tasks to attempt). Then each role's update of that step (same
trajectories, same advantages, no optimizer step) runs with `train.max_tokens` = 1 (every group
alone in its forward: its prompt once, as before groups were packed together) and with the
`--budgets` given, alternated over `--rounds` rounds. Per role and budget it prints the forwards,
the tokens they compute (each shared start of the prompts once) and the median seconds; then

    ratio: X   (seconds of one group per forward / seconds at the largest budget, both roles)

Run: python3 benchmarks/update_packing.py --adapters runs/quickstart/final [--budgets 2048 4096] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import cahl.train.loop as loop
from cahl.config import load_config
from cahl.train.update import forward_units, grpo_step
from grpo_step_vs_trl import computed_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", required=True, help="a run's final/ folder (planner/ and executor/ adapters)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(str(root / "configs" / "quickstart.yaml"),
                      ["model.threads=2", "train.tensorboard=false", "out=/tmp/cahl-bench-packing", f"seed={args.seed}"])
    ctx = loop.build_state(cfg, Path(args.adapters))
    calls = []
    update = loop.grpo_step

    def recorded(policies, role, optimizer, trajs, advantages, **kwargs):
        calls.append((role, optimizer, list(trajs), list(advantages), kwargs))
        return update(policies, role, optimizer, trajs, advantages, **kwargs)

    loop.grpo_step = recorded
    try:
        loop.run_grpo_step(ctx, 0, ("planner", "executor"), "hierarchical")
    finally:
        loop.grpo_step = update
    budgets = [1] + args.budgets
    seconds = {(c[0], b): [] for c in calls for b in budgets}
    for _ in range(args.rounds):
        for budget in budgets:
            for role, optimizer, trajs, adv, kwargs in calls:
                kw = {**kwargs, "max_tokens": budget, "refresh_old": False}
                t0 = time.perf_counter()
                grpo_step(ctx.policies, role, optimizer, trajs, adv, apply=False, **kw)
                seconds[(role, budget)].append(time.perf_counter() - t0)
    total = {b: 0.0 for b in budgets}
    for role, _, trajs, _, _ in calls:
        for budget in budgets:
            tokens, _ = computed_tokens(trajs, budget)
            s = statistics.median(seconds[(role, budget)])
            total[budget] += s
            label = "one group per forward" if budget == 1 else f"max_tokens={budget}"
            print(f"{role:8s} {label:22s}: {len(forward_units(trajs, budget, True)):3d} forwards, "
                  f"{tokens:6d} tokens computed, {len(trajs)} trajectories, {s:6.2f} s")
    print("both roles: " + ", ".join(f"{'one group per forward' if b == 1 else f'max_tokens={b}'} {total[b]:.2f} s"
                                     for b in budgets))
    print(f"ratio: {total[1] / total[budgets[-1]]:.2f}")


if __name__ == "__main__":
    main()
