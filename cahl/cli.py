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


def _require_data(cfg, bench: str = "", training: bool = False) -> None:
    """Before any model loads: the data files `bench` and (when `training`) train.data read are
    there, else an error naming `cahl data fetch NAME`."""
    from cahl.data.fetch import bench_needs, require_data, train_needs

    require_data(bench_needs(bench) + (train_needs(cfg.train.data) if training else []), cfg.data_dir or None)


def cmd_eval(args) -> None:
    from cahl.agents.build import build_policies
    from cahl.eval.harness import evaluate, load_bench_tasks

    extra = [f"model.name={args.model}"] if args.model else []
    for key, value in [("bench", args.bench), ("limit", args.limit), ("agent", args.agent), ("rule", args.rule)]:
        if value is not None:
            extra.append(f"eval.{key}={value}")
    cfg = _config(args, extra)
    _require_data(cfg, cfg.eval.bench)
    groups = load_bench_tasks(cfg.eval.bench, cfg.eval.limit, cfg.data_dir or None,  # a missing file: before the model
                              cfg.eval.rule)
    policies, chat = build_policies(cfg.model, adapters=args.adapters, merge=cfg.eval.merge_adapters)
    result = evaluate(policies, chat, _eval_rollout(cfg, cfg.eval.agent), cfg.eval.bench, cfg.eval.limit, cfg.out,
                      cfg.data_dir or None, cfg.eval.batch_size, groups=groups)
    print(Path(cfg.out, "eval.md").read_text())
    print(f"wrote {Path(cfg.out, 'eval.json')} ({result['seconds']} s)")


def _eval_rollout(cfg, agent: str, constrain: str | None = None):
    from dataclasses import replace

    return replace(cfg.rollout, agent=agent, temperature=cfg.eval.temperature, max_new_tokens=cfg.eval.max_new_tokens,
                   constrain=constrain or cfg.eval.constrain, think_tokens=cfg.eval.think_tokens)


def cmd_train(args) -> None:
    from cahl.agents.build import for_evaluation
    from cahl.agents.chat import ChatFormat
    from cahl.agents.policy import PolicySet
    from cahl.eval.harness import cached_raw_evaluation, evaluate, load_bench_tasks
    from cahl.eval.report import comparison_table, write_report
    from cahl.train.dist import dist
    from cahl.train.loop import train

    if args.restart and not args.resume:
        raise CahlInputError("--restart goes with --resume: it says what to do when no checkpoint can be trusted")
    cfg = _config(args, [])
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    agent = "flat" if cfg.train.schedule == "flat" else "hierarchical"
    evaluating = bool(cfg.train.eval_bench)
    _require_data(cfg, cfg.train.eval_bench if evaluating else "", training=True)  # the raw eval loads a model first
    main_process = dist().is_main  # under accelerate launch, one process evaluates and reports
    groups = (load_bench_tasks(cfg.train.eval_bench, cfg.train.eval_limit, cfg.data_dir or None, cfg.eval.rule)
              if evaluating else [])
    if main_process and evaluating:  # the untrained model, cached per (model, agent, items, prompt version, decoding)
        for raw_agent in cfg.train.eval_raw:
            cached_raw_evaluation(cfg, _eval_rollout(cfg, raw_agent), groups, run_dir, f"eval_before_{raw_agent}")
    train(cfg, resume=args.resume, restart=args.restart)
    if not main_process:
        return
    if evaluating:
        trained = PolicySet.from_checkpoint(cfg.model, run_dir / "final")
        policies = for_evaluation(trained, cfg.eval.merge_adapters)
        for mode in cfg.train.eval_constrain:
            evaluate(policies, ChatFormat(trained.tokenizer), _eval_rollout(cfg, agent, mode), cfg.train.eval_bench,
                     cfg.train.eval_limit, run_dir, cfg.data_dir or None, cfg.eval.batch_size,
                     label=f"eval_after_{mode}", groups=groups)
    report = write_report(run_dir)
    print(report.read_text().split("## Plots")[0])
    print(comparison_table(run_dir))
    print(f"report: {report} (and {report.with_suffix('.html')})")


def cmd_sft(args) -> None:
    from cahl.train.sft import SFT_FILE, warm_start

    cfg = _config(args, [])
    _require_data(cfg, training=True)
    folder = warm_start(cfg)
    if folder is None:
        raise CahlInputError("sft.steps is 0 for every role of train.schedule: there is no warm start to train")
    print((folder / SFT_FILE).read_text())
    print(f"warm start: {folder} (cached; `cahl train` with the same model, data and sft section starts from it)")


def cmd_report(args) -> None:
    from cahl.eval.report import write_report

    print(f"wrote {write_report(args.run_dir)}")


def cmd_rollout(args) -> None:
    import dataclasses
    import time

    from cahl.agents.invariants import episode_problems
    from cahl.agents.policy import PolicySet
    from cahl.agents.chat import ChatFormat
    from cahl.agents.rollout import Rollout
    from cahl.sources import make_env
    from cahl.train.loop import SCHEDULE_ROLES, training_tasks

    if args.n < 1:
        raise CahlInputError(f"--n: expected a number of tasks >= 1, got {args.n}")
    cfg = _config(args, [])
    _require_data(cfg, training=True)
    # The agent and its policies follow train.schedule, as in `cahl train` (rollout.agent is what the
    # training loop sets per step; its default, flat, has no policy in a hierarchy's PolicySet).
    agent = "flat" if cfg.train.schedule == "flat" else "hierarchical"
    tasks = training_tasks(cfg)[: args.n]
    policies = (PolicySet.from_checkpoint(cfg.model, args.adapters) if args.adapters
                else PolicySet.create(cfg.model, roles=SCHEDULE_ROLES[cfg.train.schedule]))
    rollout = Rollout(policies, ChatFormat(policies.tokenizer), dataclasses.replace(cfg.rollout, agent=agent))
    t0 = time.perf_counter()
    episodes = rollout.run(tasks, make_env)
    wall = time.perf_counter() - t0
    problems = [p for ep in episodes for p in episode_problems(ep)]
    n = 0
    with open(args.dump, "w") as f:
        for ep in episodes:
            for tr in ep.trajectories:
                row = dataclasses.asdict(tr)
                row["turns"] = [{"start": t.start, "end": t.end, "text": t.text, "status": t.parsed.status,
                                 "finish": t.finish, "feedback": t.feedback} for t in tr.turns]
                f.write(json.dumps(row, default=str) + "\n")
                n += 1
    st = rollout.stats
    tokens = sum(st.generated_tokens.values())
    print(f"{len(episodes)} episodes, {n} trajectories -> {args.dump}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in st.seconds.items()) + f", wall {wall:.1f}")
    print(f"generated tokens: {st.generated_tokens} ({tokens / wall:.1f} tok/s overall)")
    print(f"invariant problems: {len(problems)}" + ("".join("\n  " + p for p in problems[:20])))
    if problems:
        raise SystemExit(1)


def cmd_run(args) -> None:
    from cahl import run
    from cahl.agents.build import build_policies
    from cahl.agents.policy import read_policy_meta
    from cahl.config import load_config

    # every input is checked before the model loads: words, config, adapters, tools, module
    request, overrides = run.split_words(args.words)
    if not 0 < args.timeout < float("inf"):
        raise CahlInputError(f"--timeout: expected seconds > 0, got {args.timeout:g}")
    config, first = args.config, []
    if args.adapters:  # the run's own config and base model, unless the user says otherwise
        meta = read_policy_meta(args.adapters)
        run.check_adapter_roles(meta, args.adapters, args.agent)
        saved = Path(args.adapters).parent / "config.yaml"
        config = config or (str(saved) if saved.is_file() else None)
        first = [f"model.name={meta['base_model']}"] if meta.get("base_model") else []
    last = [f"model.name={args.model}"] if args.model else []
    last += [f"seed={args.seed}"] if args.seed is not None else []
    last += [f"eval.constrain={args.constrain}"] if args.constrain else []
    try:
        cfg = load_config(config, first + overrides + last)
    except CahlInputError as e:
        if config == args.config:
            raise
        raise CahlInputError(f"{config} (the run's config, read since no --config was given): {e}") from e
    tools = run.load_tools(args.tools)
    functions = run.tool_functions(run.load_module(args.impl), tools, args.impl) if args.impl else None
    policies, chat = build_policies(cfg.model, adapters=args.adapters, merge=cfg.eval.merge_adapters)
    requests = [request] if request is not None else run.stdin_requests()
    run.serve(policies, chat, _eval_rollout(cfg, args.agent), tools, functions, requests, args.json, sys.stdout,
              args.timeout)


def cmd_experiment(args) -> None:
    from cahl.experiment import SMOKE, run_experiment

    cfg = _config(args, SMOKE if args.smoke else [])
    _require_data(cfg, cfg.experiment.bench, training=True)  # the raw arm loads a model before any data
    print(run_experiment(cfg))
    print(f"results: {Path(cfg.out, 'results.md')}")


def cmd_score(args) -> None:
    from cahl.eval.bfcl_checker import score_predictions

    rows = score_predictions(args.version, Path(args.predictions))
    out = open(args.output, "w") if args.output else sys.stdout
    for r in rows:
        out.write(json.dumps({"id": r["id"], "valid": r["valid"], "error_type": r["error_type"]}) + "\n")
    valid = sum(r["valid"] for r in rows)
    print(f"{valid}/{len(rows)} valid", file=sys.stderr)


def cmd_data_convert(args) -> None:
    from cahl.data.convert import convert

    written, skipped = convert(args.fmt, args.input, args.output)
    print(f"wrote {written} tasks to {args.output}" + (f"; skipped {len(skipped)} records:" if skipped else ""))
    for reason in skipped[:5]:
        print(f"  {reason}")
    if not written:
        raise CahlInputError(f"{args.input}: no record converted to a task (reasons above)")


def cmd_export(args) -> None:
    from cahl.export import export

    out = export(args.checkpoint, args.out, merge=args.merge, base=args.model)
    print((out / "README.md").read_text())
    print(f"exported {'merged models' if args.merge else 'adapters'} of {args.checkpoint} to {out}")


def cmd_data_fetch(args) -> None:
    from cahl.data.fetch import DATASETS, fetch

    for name in args.names or DATASETS:
        fetch(name, args.data_dir, args.mirror)


def _add_data_fetch(data_sub) -> None:
    from cahl.data.fetch import DATASETS, GITHUB_RAW

    p = data_sub.add_parser("fetch", help="download API-Bank / ToolRL / Bamboogle from their public sources "
                            "(pinned commits) into the data folder, checking pinned sha256 sums")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"data sets to fetch, of {list(DATASETS)} (default: all)")
    p.add_argument("--data-dir", help="data folder to fill (default: $CAHL_DATA_DIR or ../shared/data; created)")
    p.add_argument("--mirror", help=f"base URL laid out as OWNER/REPO/COMMIT/PATH in place of {GITHUB_RAW} "
                   "(e.g. file:///srv/mirror)")
    p.set_defaults(func=cmd_data_fetch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cahl", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("eval", help="evaluate a model/agent on benchmarks, scored as each benchmark does")
    p.add_argument("--model", help="'embedded', an HF model id, or a local path")
    p.add_argument("--adapters", help="checkpoint folder with trained LoRA adapters")
    p.add_argument("--bench", help="comma list of BENCH[:CAT[+CAT]], e.g. bfcl_v3:simple,api_bank,bamboogle")
    p.add_argument("--limit", type=int, help="items per benchmark category (0 = all)")
    p.add_argument("--agent", choices=["flat", "hierarchical"])
    p.add_argument("--rule", choices=["calls", "graded", "answer"],
                   help="score task files' items (--bench file:PATH) by this rule (docs/task_files.md)")
    _common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="SFT warm start + GRPO (joint / separate / flat), then evaluate and report")
    p.add_argument("--resume", action="store_true", help="continue from the newest verified checkpoint in --out "
                   "(where none passes verification: stop, naming them)")
    p.add_argument("--restart", action="store_true", help="with --resume: where no checkpoint passes verification, "
                   "start again from step 0 instead (its metrics and those checkpoints are replaced)")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sft", help="the SFT warm start of train.schedule's roles, cached (cahl train runs it first)")
    _common(p)
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("report", help="write RUN_DIR/report.md and report.html with plots")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("rollout", help="roll out training tasks and dump trajectories (one JSON per line)")
    p.add_argument("--n", type=int, default=8, help="number of tasks")
    p.add_argument("--dump", required=True, help="output JSONL")
    p.add_argument("--adapters", help="checkpoint folder with trained adapters")
    _common(p)
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("run", help="the trained agent on your request with your tools (OpenAI-style JSON list)",
                       description="Run the agent on REQUEST (none: one request per line from stdin) with the tools "
                       "of --tools. With --impl the calls run and their results go back to the agent; without, "
                       "the calls are printed and the run stops at the first. Decodes as `cahl eval` does "
                       "(eval.temperature, eval.constrain, eval.max_new_tokens, eval.think_tokens; greedy, "
                       "constrained to the tools by default). With --adapters RUN/final and no --config, "
                       "RUN/config.yaml is the config and the adapters' base model the model.")
    p.add_argument("words", nargs="*", metavar="[REQUEST] [key.sub=value ...]",
                   help="the request (quoted) and config overrides")
    p.add_argument("--tools", required=True, help='JSON list of tools: [{"type": "function", "function": {"name", '
                   '"description", "parameters"}}] or bare {"name", "description", "parameters"} objects')
    p.add_argument("--impl", help="Python module (importable name or .py path) with one function per tool, named "
                   "like it: calls are executed and the results fed back")
    p.add_argument("--adapters", help="checkpoint folder with trained LoRA adapters (e.g. runs/quickstart/final)")
    p.add_argument("--model", help="'embedded', an HF model id, or a local path (the untrained model without "
                   "--adapters)")
    p.add_argument("--agent", choices=["hierarchical", "flat"], default="hierarchical")
    p.add_argument("--json", action="store_true", help="one JSON record per request instead of text")
    p.add_argument("--constrain", choices=["off", "protocol", "tools"], help="decoding (default: eval.constrain, tools)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds one tool call may take (default 2)")
    p.add_argument("--config", help="YAML config file (see docs/config.md)")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("experiment", help="raw / SFT / flat / separate / joint / joint w_align=0 over seeds, equal budget")
    p.add_argument("--smoke", action="store_true", help="a few steps per arm, 1 seed, tiny eval (minutes)")
    _common(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("score", help="score a predictions file with a benchmark's checker")
    p.add_argument("benchmark", choices=["bfcl"])
    p.add_argument("--version", default="v3", choices=["v3", "v4"])
    p.add_argument("--predictions", required=True, help='JSONL of {"id", "category", "calls": [{"fn": {"arg": v}}]}')
    p.add_argument("--output", help="write verdicts here instead of stdout")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="write a checkpoint's policies per role as PEFT adapters or (--merge) merged "
                       "transformers models, with a model card holding the run's eval table")
    p.add_argument("checkpoint", help="checkpoint folder, e.g. RUN/final")
    p.add_argument("out", help="new folder to write")
    p.add_argument("--merge", action="store_true", help="merge each adapter into the base (loads in plain transformers)")
    p.add_argument("--model", help="base model (default: the one the checkpoint was trained on)")
    p.set_defaults(func=cmd_export)


    p = sub.add_parser("data", help="data tools: fetch the data sets cahl reads; convert public function-calling sets into task files")
    data_sub = p.add_subparsers(dest="data_cmd", required=True)
    q = data_sub.add_parser("convert", help="xLAM / ToolACE / Hermes function-calling JSON(L) -> a task file "
                            "(docs/task_files.md)")
    q.add_argument("--from", dest="fmt", required=True, choices=["xlam", "toolace", "hermes"])
    q.add_argument("input", help="the dataset file: a JSON array of records or JSONL")
    q.add_argument("output", help="the task file to write (JSONL)")
    q.set_defaults(func=cmd_data_convert)
    _add_data_fetch(data_sub)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CahlInputError, DataMissingError) as e:
        print(f"cahl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
