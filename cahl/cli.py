"""The `cahl` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cahl.types import CahlInputError, DataMissingError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see docs/config.md)")
    p.add_argument("--data-dir", help="data folder (default: $CAHL_DATA_DIR or ../shared/data)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--seed", type=int)
    p.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")


def _config(args, extra: list[str]):
    from cahl.config import load_config

    overrides = list(args.overrides)
    for key, value in [("data_dir", args.data_dir), ("out", args.out), ("seed", args.seed)]:
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, overrides + extra)


def cmd_eval(args) -> None:
    from cahl.agents.build import build_policies
    from cahl.eval.harness import evaluate

    extra = [f"model.name={args.model}"] if args.model else []
    for key, value in [("bench", args.bench), ("limit", args.limit), ("agent", args.agent)]:
        if value is not None:
            extra.append(f"eval.{key}={value}")
    cfg = _config(args, extra)
    policies, chat = build_policies(cfg.model, adapters=args.adapters)
    rollout = cfg.rollout.__class__(**{**cfg.rollout.__dict__, "agent": cfg.eval.agent,
                                       "temperature": cfg.eval.temperature, "max_new_tokens": cfg.eval.max_new_tokens})
    result = evaluate(policies, chat, rollout, cfg.eval.bench, cfg.eval.limit, cfg.out, cfg.data_dir or None,
                      cfg.eval.batch_size)
    print(Path(cfg.out, "eval.md").read_text())
    print(f"wrote {Path(cfg.out, 'eval.json')} ({result['seconds']} s)")


def cmd_score(args) -> None:
    from cahl.eval.bfcl_checker import score_predictions

    rows = score_predictions(args.version, Path(args.predictions))
    out = open(args.output, "w") if args.output else sys.stdout
    for r in rows:
        out.write(json.dumps({"id": r["id"], "valid": r["valid"], "error_type": r["error_type"]}) + "\n")
    valid = sum(r["valid"] for r in rows)
    print(f"{valid}/{len(rows)} valid", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cahl", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("eval", help="evaluate a model/agent on benchmarks, scored as each benchmark does")
    p.add_argument("--model", help="'embedded', an HF model id, or a local path")
    p.add_argument("--adapters", help="checkpoint folder with trained LoRA adapters")
    p.add_argument("--bench", help="comma list of BENCH[:CAT[+CAT]], e.g. bfcl_v3:simple,api_bank,bamboogle")
    p.add_argument("--limit", type=int, help="items per benchmark category (0 = all)")
    p.add_argument("--agent", choices=["flat", "hierarchical"])
    _common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="score a predictions file with a benchmark's checker")
    p.add_argument("benchmark", choices=["bfcl"])
    p.add_argument("--version", default="v3", choices=["v3", "v4"])
    p.add_argument("--predictions", required=True, help='JSONL of {"id", "category", "calls": [{"fn": {"arg": v}}]}')
    p.add_argument("--output", help="write verdicts here instead of stdout")
    p.set_defaults(func=cmd_score)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CahlInputError, DataMissingError) as e:
        print(f"cahl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
