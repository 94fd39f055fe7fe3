"""`cahl experiment`: the paper's claim as one command (DESIGN §5).

Arms, each over several seeds, all trained arms under the same budget:
    raw              the untrained model, hierarchical agent
    sft              SFT warm start on oracle decompositions only
    flat             SFT + GRPO of one flat policy (ToolRL-style reward)
    separate         SFT + executor GRPO on oracle sub-tasks, then planner GRPO on outcome (frozen executor)
    joint            SFT + joint GRPO of planner and executor (CAHL)
    joint_no_align   joint with w_align = 0 (isolates the alignment term)
Budget rule: with the base config's train.steps = N (joint steps, each updating both roles) and
train.tasks_per_step = T, every trained arm makes 2N optimizer steps in total and rolls out N*T
tasks: separate and flat run 2N steps of ceil(T/2) tasks. The counters are printed per arm.
Runs go seed by seed (all arms of seed 0, then seed 1, ...), so a cut-short experiment still has
every arm for its first seeds. SFT is one cached stage (train/sft.py) keyed by its content, not by
the seed: every hierarchical arm of every seed starts from the same warm start, and flat from the
flat one, so seeds vary the RL phase and paired differences measure GRPO alone. `raw` under greedy evaluation (eval.temperature = 0) involves no
randomness and is evaluated once, for the first seed.
Every (arm, seed) writes OUT/<arm>/seed_<s>/done.json when finished; a re-run skips those, and an
interrupted training run resumes from its newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cahl import checks

ARMS = ("raw", "sft", "flat", "separate", "joint", "joint_no_align")


@dataclass
class ExperimentConfig:
    arms: list[str] = field(default_factory=lambda: list(ARMS))  # which arms to run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one run per arm and seed
    bench: str = "bfcl_v3:simple+multiple+parallel+live_simple,api_bank:level-1+level-2,bamboogle,synth_unseen"  # held-out evaluation
    eval_limit: int = 10  # items per benchmark category

    def __post_init__(self) -> None:
        checks.items(self.arms, ARMS, "experiment.arms")
        checks.items(self.seeds, None, "experiment.seeds")
        for i, seed in enumerate(self.seeds):
            checks.integer(seed, f"experiment.seeds[{i}]", 0)
        checks.bench_spec(self.bench, "experiment.bench")
        checks.integer(self.eval_limit, "experiment.eval_limit", 0)


def arm_config(cfg, arm: str, seed: int, out: Path):
    """The RunConfig of one arm and seed under the equal-budget rule (module docstring)."""
    t = cfg.train
    half = max(1, math.ceil(t.tasks_per_step / 2))
    base = replace(cfg, seed=seed, out=str(out), train=replace(t, eval_bench=""))
    if arm == "raw":
        return replace(base, sft=replace(cfg.sft, steps=0), train=replace(base.train, steps=0, schedule="joint"))
    if arm == "sft":
        return replace(base, train=replace(base.train, steps=0, schedule="joint"))
    if arm == "flat":
        return replace(base, train=replace(base.train, schedule="flat", steps=2 * t.steps, tasks_per_step=half))
    if arm == "separate":
        return replace(base, train=replace(base.train, schedule="separate", steps=2 * t.steps, tasks_per_step=half))
    if arm == "joint":
        return replace(base, train=replace(base.train, schedule="joint"))
    if arm == "joint_no_align":
        return replace(base, train=replace(base.train, schedule="joint"), reward=replace(cfg.reward, w_align=0.0))
    from cahl.types import CahlInputError

    raise CahlInputError(f"experiment.arms: unknown arm {arm!r}; expected one of {list(ARMS)}")


def run_arm(cfg, arm: str, seed: int, out: Path) -> dict:
    from cahl.agents.build import build_policies, for_evaluation
    from cahl.agents.chat import ChatFormat
    from cahl.agents.policy import PolicySet
    from cahl.eval.harness import evaluate
    from cahl.train.loop import SCHEDULE_ROLES, train
    from cahl.train.metrics import read_metrics

    done = out / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    acfg = arm_config(cfg, arm, seed, out)
    agent = "flat" if arm == "flat" else "hierarchical"
    rollout = replace(cfg.rollout, agent=agent, temperature=cfg.eval.temperature, max_new_tokens=cfg.eval.max_new_tokens,
                      constrain=cfg.eval.constrain, seed=seed)
    exp = cfg.experiment
    if arm == "raw":
        policies, chat = build_policies(cfg.model)
    else:
        train(acfg, resume=True)
        trained = PolicySet.from_checkpoint(cfg.model, out / "final")
        policies, chat = for_evaluation(trained, cfg.eval.merge_adapters), ChatFormat(trained.tokenizer)
    result = evaluate(policies, chat, rollout, exp.bench, exp.eval_limit, out, cfg.data_dir or None,
                      cfg.eval.batch_size, label="eval")
    metrics = read_metrics(out)
    last = metrics[-1] if metrics else {}
    record = {"arm": arm, "seed": seed, "benchmarks": _pooled(result),
              "budget": {k: v for k, v in last.items() if k.startswith("optimizer_steps/") or k in ("episodes", "trajectories")},
              "sft_steps": acfg.sft.phase_steps(SCHEDULE_ROLES[acfg.train.schedule]), "grpo_steps": acfg.train.steps,
              "seconds": round(time.perf_counter() - t0, 1)}  # this arm's training + evaluation in this process
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(done)
    return record


def _pooled(result: dict) -> dict:
    """Per benchmark: accuracy over all its evaluated items, and the alignment metric if any."""
    out = {}
    for bench, cats in result["benchmarks"].items():
        n = sum(c["n"] for c in cats.values())
        acc = sum(c["accuracy"] * c["n"] for c in cats.values()) / n if n else 0.0
        out[bench] = {"n": n, "accuracy": acc}
    items = result["items"]
    subtasks = sum(i["subtasks"] for i in items)
    out["_alignment"] = {"n": subtasks, "accuracy": sum(i["subtasks_solved"] for i in items) / subtasks if subtasks else float("nan")}
    return out


def _mean_std(xs: list[float]) -> str:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def summarize(records: list[dict], out: Path, arms: list[str], seeds: list[int]) -> str:
    benches = sorted({b for r in records for b in r["benchmarks"] if not b.startswith("_")})
    by = {(r["arm"], r["seed"]): r for r in records}
    lines = ["# cahl experiment results", "", f"Seeds: {seeds}. Mean ± std over seeds of each benchmark's own "
             "accuracy on held-out items; alignment = share of planner sub-tasks the chosen executor attempt solved.", "",
             "| arm | " + " | ".join(benches) + " | alignment | optimizer steps | episodes |",
             "|---|" + "---|" * (len(benches) + 3)]
    for arm in arms:
        rs = [by[(arm, s)] for s in seeds if (arm, s) in by]
        if not rs:
            continue
        cells = [_mean_std([r["benchmarks"].get(b, {}).get("accuracy", float("nan")) for r in rs]) for b in benches]
        align = _mean_std([r["benchmarks"]["_alignment"]["accuracy"] for r in rs])
        steps = sum(v for k, v in rs[0]["budget"].items() if k.startswith("optimizer_steps/"))
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {align} | {steps} | {rs[0]['budget'].get('episodes', 0)} |")
    lines += ["", "## Paired comparisons (per-seed differences in accuracy)", ""]
    for a, b in (("joint", "separate"), ("joint", "flat"), ("joint", "joint_no_align")):
        if a not in arms or b not in arms:
            continue
        lines += [f"### {a} − {b}", "", "| benchmark | per-seed differences | mean ± std |", "|---|---|---|"]
        for bench in benches:
            diffs = [by[(a, s)]["benchmarks"][bench]["accuracy"] - by[(b, s)]["benchmarks"][bench]["accuracy"]
                     for s in seeds if (a, s) in by and (b, s) in by and bench in by[(a, s)]["benchmarks"]
                     and bench in by[(b, s)]["benchmarks"]]
            lines.append(f"| {bench} | {', '.join(f'{d:+.3f}' for d in diffs)} | {_mean_std(diffs)} |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    _curves(out, arms, seeds)
    return text


def _curves(out: Path, arms: list[str], seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cahl.train.metrics import read_metrics

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in arms:
        for role in ("planner", "executor", "flat"):
            runs = [read_metrics(out / arm / f"seed_{s}") for s in seeds]
            series = [[(m["step"], m[f"reward/{role}"]) for m in run if f"reward/{role}" in m] for run in runs]
            series = [s for s in series if s]
            if not series:
                continue
            n = min(len(s) for s in series)
            steps = [p[0] for p in series[0][:n]]
            mean = [statistics.mean(s[i][1] for s in series) for i in range(n)]
            ax.plot(steps, mean, marker=".", label=f"{arm} {role}")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward over seeds")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=110)
    plt.close(fig)


def run_experiment(cfg) -> str:
    exp = cfg.experiment
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    t0 = time.perf_counter()
    for i, seed in enumerate(exp.seeds):
        for arm in exp.arms:
            if arm == "raw" and i > 0 and cfg.eval.temperature == 0:
                continue  # greedy, untrained: the same numbers for every seed
            run_dir = out / arm / f"seed_{seed}"
            print(f"== experiment arm {arm}, seed {seed} ({(time.perf_counter() - t0) / 60:.1f} min so far)")
            records.append(run_arm(cfg, arm, seed, run_dir))
            print(f"   {records[-1]['benchmarks']} budget {records[-1]['budget']}")
    return summarize(records, out, exp.arms, exp.seeds)


SMOKE = ["sft.steps=2", "train.steps=1", "train.tasks_per_step=2", "rollout.plans_per_task=2",
         "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=48", "eval.max_new_tokens=48",
         "experiment.seeds=[0]", "experiment.eval_limit=2",
         "experiment.bench=bfcl_v3:simple,api_bank:level-1,synth_unseen:steps-2"]
