"""The trained agent on a user's own tools, through `cahl run`: 5 requests, what it did on each.

The agent: the embedded model with the adapters of a finished run (default runs/quickstart/final;
`cahl train --config configs/quickstart.yaml` makes it), hierarchical unless `--agent flat`, decoding
as that run's evaluation did (RUN/config.yaml: greedy, constrained to the tools). The tools: three
small real functions in benchmarks/tools/demo_tools.py (unit conversion, arithmetic, a date
helper), their OpenAI-style schemas in demo_tools.json. The 5 requests go to one `cahl run --json`
process on stdin (its prompt loop: the model loads once), whose calls run through the module.

Prints per request the plan, each call with its result (and whether it is the value the request
asks for), the answer and the end reason; then totals: requests with a call, calls that ran,
requests whose expected value appears among the results or in the answer, and seconds.

Run: python3 benchmarks/run_agent.py [--adapters RUN/final] [--agent flat] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "benchmarks" / "tools"

# (request, the value a correct run finds: among its tool results or in its answer)
REQUESTS = [
    ("Convert 12 miles to kilometres.", 19.3121),
    ("What is 37 multiplied by 24?", 888),
    ("How many days are there from 2024-01-15 to 2024-03-01?", 46),
    ("Convert 100 fahrenheit to celsius, then add 10 to the result.", 47.7778),
    ("How many days are there from 2025-12-25 to 2026-01-01? Multiply that number by 24 to get the hours.", 168),
]


def found(value: float, record: dict) -> bool:
    """The expected value among the record's successful results (as numbers) or in its answer text."""
    for call in record["calls"]:
        try:
            if call.get("ok") and abs(float(call["result"]) - value) < 1e-3:
                return True
        except ValueError:
            continue
    answer = record["answer"] or ""
    return f"{value:g}" in answer or (float(value).is_integer() and str(int(value)) in answer)


def show(record: dict, value: float) -> str:
    lines = [f"request: {record['request']}   (expected {value:g})"]
    for k, step in enumerate(record["plan"], 1):
        lines.append(f"  {k}. {step['subtask'][:160]}")
        for call in step["calls"]:
            lines.append(f"     {json.dumps({'name': call['name'], 'arguments': call['arguments']})} -> "
                         f"{'' if call['ok'] else 'ERROR '}{call['result'][:120]}")
        lines.append(f"     => {(step['result'] or '')[:160]}")
    if record["agent"] == "flat":
        for call in record["calls"]:
            lines.append(f"  {json.dumps({'name': call['name'], 'arguments': call['arguments']})} -> "
                         f"{'' if call['ok'] else 'ERROR '}{call['result'][:120]}")
    lines.append(f"  answer: {record['answer']}")
    lines.append(f"  ended: {record['end_reason']}; expected value found: {'yes' if found(value, record) else 'no'}")
    lines += [f"  warning: {w}" for w in record["warnings"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", default=str(REPO / "runs" / "quickstart" / "final"),
                    help="checkpoint folder of a finished run (default: runs/quickstart/final)")
    ap.add_argument("--agent", choices=["hierarchical", "flat"], default="hierarchical")
    ap.add_argument("--out", help="also write the records here (JSONL)")
    ap.add_argument("overrides", nargs="*", help="config overrides for cahl run, key.sub=value")
    args = ap.parse_args()
    if not (Path(args.adapters) / "policy.json").is_file():
        sys.exit(f"no trained adapters at {args.adapters} (policy.json missing): run "
                 "`cahl train --config configs/quickstart.yaml` first, or pass --adapters RUN/final")
    command = [sys.executable, "-m", "cahl.cli", "run", "--adapters", args.adapters, "--agent", args.agent,
               "--tools", str(TOOLS / "demo_tools.json"), "--impl", str(TOOLS / "demo_tools.py"), "--json",
               *args.overrides]
    print("$ " + " ".join(command) + f"  < {len(REQUESTS)} requests on stdin", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(command, input="".join(r + "\n" for r, _ in REQUESTS), capture_output=True, text=True,
                          cwd=REPO)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"cahl run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(records) != len(REQUESTS):
        sys.exit(f"expected {len(REQUESTS)} records from cahl run, got {len(records)}:\n{done.stdout[-2000:]}")
    for record, (_, value) in zip(records, REQUESTS):
        print(show(record, value), end="\n\n")
    calls = [c for r in records for c in r["calls"]]
    print(f"requests with a call: {sum(bool(r['calls']) for r in records)}/{len(records)}; "
          f"calls that ran without error: {sum(c['ok'] for c in calls)}/{len(calls)}; "
          f"expected value found: {sum(found(v, r) for r, (_, v) in zip(records, REQUESTS))}/{len(records)}; "
          f"answered: {sum(r['end_reason'] == 'answered' for r in records)}/{len(records)}; "
          f"{seconds:.0f} s (model load included)")
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"records: {args.out}")


if __name__ == "__main__":
    main()
