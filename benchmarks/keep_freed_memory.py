"""GRPO update time with and without `model.keep_freed_memory`, in one run.

The setting changes glibc malloc's policy for the whole process, so each side runs in its own
subprocess: the flat GRPO step of benchmarks/grpo_step_vs_trl.py (embedded model, 4 prompts x 4
generations, 64 new tokens, LoRA r=16), `--steps` steps from the same seed, so both sides train
on the same batches. The sides alternate over `--rounds` rounds. Per step it prints the update's
seconds and the page faults and system CPU seconds it caused; then

    ratio: X   (median update seconds without / with, over every step after the first)

The first step is left out of the ratio: with the setting on, the heap still grows to its
working size during that step, and the pages it faults in are then reused.

Run: python3 benchmarks/keep_freed_memory.py [--rounds 2] [--steps 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys


def child(keep: bool, steps: int) -> None:
    import resource
    import time

    import torch

    import cahl.train.loop as loop
    from cahl.config import load_config
    from grpo_step_vs_trl import OVERRIDES

    torch.set_num_threads(2)
    cfg = load_config(None, OVERRIDES + [f"model.keep_freed_memory={str(keep).lower()}"])
    ctx = loop.build_state(cfg)
    update, rows = loop.grpo_step, []

    def measured(*args, **kwargs):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = update(*args, **kwargs)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"seconds": time.perf_counter() - t0, "faults": r1.ru_minflt - r0.ru_minflt,
                     "sys": r1.ru_stime - r0.ru_stime, "tokens": out["tokens"]})
        return out

    loop.grpo_step = measured
    for step in range(steps):
        loop.run_grpo_step(ctx, step, ("flat",), "flat")
    print("RESULT " + json.dumps(rows))


def run_side(keep: bool, steps: int) -> list[dict]:
    out = subprocess.run([sys.executable, __file__, "--child", str(keep).lower(), "--steps", str(steps)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--child", choices=["true", "false"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child == "true", args.steps)
        return
    seconds = {False: [], True: []}
    for r in range(args.rounds):
        for keep in (False, True):
            rows = run_side(keep, args.steps)
            for step, row in enumerate(rows):
                print(f"round {r} keep_freed_memory={str(keep).lower():5s} step {step}: update {row['seconds']:5.1f} s, "
                      f"{row['faults']:7d} page faults, {row['sys']:4.1f} s system CPU, {row['tokens']} trained tokens",
                      flush=True)
            seconds[keep] += [row["seconds"] for row in rows[1:]]
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"median update after the first step: {off:.1f} s without, {on:.1f} s with")
    print(f"ratio: {off / on:.2f}")


if __name__ == "__main__":
    main()
