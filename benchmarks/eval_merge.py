"""Evaluation with merged adapters (eval.merge_adapters, the default) against the adapters as
trained (routed per row), on the same items in the same process.

Both arms run `cahl.eval.harness.evaluate` on the same held-out items with the same greedy,
constrained decoding of a finished run's policies (default runs/quickstart/final; `cahl train
--config configs/quickstart.yaml` makes it); arm `merged` decodes MergedPolicies (each role's adapter
merged into its own copy of the base, in the sampling dtype), arm `routed` the PolicySet itself.
The arms alternate (routed, merged, routed, merged, ...) so that a slow spell of the machine falls on
both. Prints each arm's wall seconds per repeat, the ratio routed / merged (> 1: merged is faster),
and how far the verdicts agree: items scored the same, and each arm's accuracy.

Run: python3 benchmarks/eval_merge.py [--adapters RUN/final] [--bench SPEC] [--limit N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", default=str(REPO / "runs" / "quickstart" / "final"))
    ap.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"))
    ap.add_argument("--bench", default="bfcl_v3:simple,api_bank:level-1,synth_unseen:steps-2")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not (Path(args.adapters) / "policy.json").is_file():
        sys.exit(f"{args.adapters}: no policy.json; train first (cahl train --config configs/quickstart.yaml) "
                 "or pass --adapters RUN/final")

    from cahl.agents.build import apply_runtime
    from cahl.agents.chat import ChatFormat
    from cahl.agents.policy import MergedPolicies, PolicySet
    from cahl.cli import _eval_rollout
    from cahl.config import load_config
    from cahl.eval.harness import evaluate, load_bench_tasks

    cfg = load_config(args.config, [])
    data_dir = cfg.data_dir or os.environ.get("CAHL_DATA_DIR") or None
    apply_runtime(cfg.model)
    groups = load_bench_tasks(args.bench, args.limit, data_dir)
    trained = PolicySet.from_checkpoint(cfg.model, args.adapters)
    t0 = time.perf_counter()
    merged = MergedPolicies(trained)
    merge_seconds = time.perf_counter() - t0
    chat = ChatFormat(trained.tokenizer)
    rollout = _eval_rollout(cfg, "hierarchical" if "planner" in trained.roles else "flat")
    arms = {"routed": trained, "merged": merged}
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    verdicts: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.repeats):
            for arm, policies in arms.items():
                t = time.perf_counter()
                result = evaluate(policies, chat, rollout, args.bench, args.limit, out, data_dir,
                                  cfg.eval.batch_size, label=f"{arm}{r}", groups=groups)
                seconds[arm].append(time.perf_counter() - t)
                verdicts.setdefault(arm, [bool(i["correct"]) for i in result["items"]])
    n = len(verdicts["routed"])
    same = sum(a == b for a, b in zip(verdicts["routed"], verdicts["merged"]))
    print(f"{n} items ({args.bench}, limit {args.limit}), {args.repeats} repeats per arm, "
          f"merging took {merge_seconds:.1f} s once")
    for arm in arms:
        print(f"  {arm:7s} seconds {', '.join(f'{s:.1f}' for s in seconds[arm])}  "
              f"(median {statistics.median(seconds[arm]):.1f}); accuracy {sum(verdicts[arm])}/{n}")
    ratio = statistics.median(seconds["routed"]) / statistics.median(seconds["merged"])
    print(f"ratio routed/merged (median wall): {ratio:.2f}; verdicts agree on {same}/{n} items")


if __name__ == "__main__":
    main()
