"""`cahl eval`: roll out an agent on benchmark items and score each exactly as the benchmark does.

Writes OUT/eval.json (per benchmark and category: n, accuracy, extra means, end reasons; per item:
id, output text, parsed calls, verdict, error type) and OUT/eval.md (a Markdown table).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from cahl.agents.chat import ChatFormat
from cahl.agents.rollout import Policies, Rollout, RolloutConfig
from cahl.eval.benchmarks import parse_bench_spec
from cahl.sources import make_env, verdict
from cahl.types import Episode


def load_bench_tasks(spec: str, limit: int, data_dir: str | None, rule: str = ""):
    """[(benchmark, category, tasks)] for a --bench spec, `limit` items per category (0 = all);
    `rule` overrides the scoring rule of task files' items."""
    out = []
    for bench, cat in parse_bench_spec(spec, rule):
        tasks = bench.load(cat, data_dir or None)
        out.append((bench, cat, tasks[:limit] if limit else tasks))
    return out


def evaluate(policies: Policies, chat: ChatFormat, rollout_cfg: RolloutConfig, bench_spec: str, limit: int,
             out_dir: str | Path, data_dir: str | None = None, batch_size: int = 16, label: str = "eval",
             groups: list | None = None) -> dict:
    """Run and score; return the summary dict that is also written to OUT/{label}.json. `groups`:
    load_bench_tasks(bench_spec, limit, data_dir) when the caller has loaded them already."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = groups if groups is not None else load_bench_tasks(bench_spec, limit, data_dir)
    cfg = replace(rollout_cfg, plans_per_task=1, attempts_per_subtask=1)
    items: list[dict] = []
    summary: dict = {}
    t0 = time.perf_counter()
    # One continuous batch over every item of every benchmark (rows join as others finish; a
    # category of 3 items alone would decode at batch 3), longest prompts first so that the first
    # prefill pads least and short prompts fill the slots late; each task gets its own source's
    # environment and verdict (cahl/sources.py). batch_size: the most tasks in one rollout (all = 0).
    entries = [(bench, cat, task) for bench, cat, tasks in groups for task in tasks]
    order = sorted(range(len(entries)), key=lambda i: -_prompt_size(entries[i][2]))
    rows: dict[tuple[str, str], list[dict]] = {(bench.name, cat): [] for bench, cat, _ in groups}
    done: dict[int, dict] = {}
    size = batch_size if batch_size > 0 else len(entries) or 1
    with tqdm(total=len(entries), desc=label, unit="task", dynamic_ncols=True) as bar:
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            rollout = Rollout(policies, chat, replace(cfg, seed=cfg.seed + start))
            episodes = rollout.run([entries[i][2] for i in chunk], make_env, on_episode=lambda ep: bar.update(1))
            if cfg.agent == "hierarchical":
                _mark_solved(episodes)
            for i, ep in zip(chunk, episodes, strict=True):  # one episode per task, in order
                bench, cat, task = entries[i]
                done[i] = _item(bench.name, cat, ep, verdict(task, ep))
    for i, (bench, cat, _) in enumerate(entries):
        rows[(bench.name, cat)].append(done[i])
    for (name, cat), group_rows in rows.items():
        items.extend(group_rows)
        summary.setdefault(name, {})[cat] = _summarize(group_rows)
    result = {"agent": cfg.agent, "constrain": cfg.constrain, "bench": bench_spec or ",".join(
                  f"{b.name}:{c}" for b, c, _ in groups), "limit": limit,
              "seconds": round(time.perf_counter() - t0, 1),
              "benchmarks": summary, "notes": {b.name: b.note for b, _, _ in groups if b.note}, "items": items}
    (out_dir / f"{label}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    (out_dir / f"{label}.md").write_text(markdown_table(result))
    return result


def cached_raw_evaluation(cfg, rollout_cfg: RolloutConfig, groups: list, out_dir: str | Path, label: str) -> dict:
    """`evaluate` of the untrained model, cached under a key of everything its figures depend on:
    the model, its sampling precision, the items, the prompt version and the decoding settings.
    The result is written to OUT/{label}.json either way."""
    import dataclasses
    import hashlib
    import shutil

    from cahl.agents.build import build_policies, sample_dtype
    from cahl.agents.prompts import PROMPT_VERSION
    from cahl.paths import cache_dir

    items = [[bench.name, cat, [t.id for t in tasks]] for bench, cat, tasks in groups]
    key = {"model": cfg.model.name, "sample_dtype": str(sample_dtype(cfg.model)), "items": items,
           "prompt_version": PROMPT_VERSION, "rollout": dataclasses.asdict(rollout_cfg), "search_k": cfg.eval.search_k}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cached = cache_dir() / "eval" / f"{rollout_cfg.agent}-{digest}.json"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cached.is_file():
        shutil.copy2(cached, out_dir / f"{label}.json")
        result = json.loads(cached.read_text())
        (out_dir / f"{label}.md").write_text(markdown_table(result))
        print(f"cahl: {label}: the untrained model's evaluation from the cache ({cached})")
        return result
    policies, chat = build_policies(cfg.model)
    result = evaluate(policies, chat, rollout_cfg, "", 0, out_dir, cfg.data_dir or None, cfg.eval.batch_size,
                      label=label, groups=groups)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    shutil.copy2(out_dir / f"{label}.json", tmp)
    tmp.replace(cached)
    return result


def _prompt_size(task) -> int:
    """Characters of a task's tools and dialogue: what its prompts' lengths follow."""
    return len(json.dumps(task.tools)) + sum(len(m.get("content") or "") for m in task.messages)


def _mark_solved(episodes) -> None:
    """Set meta["solved"] on executor attempts: the alignment metric is the share of sub-tasks
    whose chosen attempt succeeded, by the same rule the executor reward uses in training."""
    from cahl.rewards.hierarchy import RewardConfig, score_episodes

    score_episodes(episodes, RewardConfig())


def _item(bench: str, cat: str, ep: Episode, verdict) -> dict:
    from cahl.rewards.format import format_score

    head = ep.trajectories[0]
    executors = ep.trajectories[1:]
    solved = [t.meta.get("solved") for t in executors if t.meta.get("chosen")]
    turns: dict[str, list[int]] = {}  # role -> [turns, turns that follow the role's grammar]
    for tr in ep.trajectories:
        counts = turns.setdefault(tr.role, [0, 0])
        counts[0] += len(tr.turns)
        counts[1] += sum(format_score(t.parsed, tr.role, t.text) == 1.0 for t in tr.turns)
    return {
        "bench": bench, "category": cat, "id": ep.task.id, "correct": verdict.correct,
        "error_type": verdict.error_type, **verdict.scores, "end_reason": ep.end_reason,
        "calls": [c.to_json() for c in ep.calls], "response": ep.response,
        "output": [t.text for t in head.turns],
        "executor_outputs": [[t.text for t in x.turns] for x in executors if x.meta.get("chosen")],
        "subtasks": len(solved), "subtasks_solved": sum(bool(s) for s in solved), "turns": turns,
    }


def _summarize(rows: list[dict]) -> dict:
    """accuracy with its 95% Wilson interval, EM/F1 where scored, end reasons, calls per item, and
    per role the share of turns that parse as the role's grammar (format score 1)."""
    from cahl.eval.scoring import wilson_interval

    n = len(rows)
    right = sum(bool(r["correct"]) for r in rows)
    out = {"n": n, "accuracy": right / n if n else 0.0, "ci95": [round(x, 4) for x in wilson_interval(right, n)]}
    out["calls_per_item"] = sum(len(r["calls"]) for r in rows) / n if n else 0.0
    roles: dict[str, list[int]] = {}
    for r in rows:
        for role, (total, ok) in r.get("turns", {}).items():
            roles.setdefault(role, [0, 0])
            roles[role][0] += total
            roles[role][1] += ok
    out["parse_rate"] = {role: ok / total for role, (total, ok) in roles.items() if total}
    for key in ("em", "f1", "graded"):  # graded: a task file's ToolRL score (rule graded)
        if rows and key in rows[0]:
            out[key] = sum(r[key] for r in rows) / n
    out["end_reasons"] = dict(Counter(r["end_reason"] for r in rows))
    subtasks = sum(r["subtasks"] for r in rows)
    if subtasks:
        out["alignment"] = sum(r["subtasks_solved"] for r in rows) / subtasks
    return out


def markdown_table(result: dict) -> str:
    constrain = result.get("constrain", "")
    lines = [f"# Evaluation ({result['agent']} agent{', constrain ' + constrain if constrain else ''})", "",
             "| benchmark | category | n | accuracy (95% CI) | EM | F1 | alignment | parse rate by role | calls/item | end reasons |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for bench, cats in result["benchmarks"].items():
        for cat, s in cats.items():
            fmt = lambda k: f"{s[k]:.3f}" if k in s else ""
            ci = s.get("ci95")
            acc = f"{s['accuracy']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
            parse = ", ".join(f"{r} {v:.2f}" for r, v in s.get("parse_rate", {}).items())
            ends = ", ".join(f"{k} {v}" for k, v in s.get("end_reasons", {}).items())
            lines.append(f"| {bench} | {cat} | {s['n']} | {acc} | {fmt('em')} | {fmt('f1')} | {fmt('alignment')} | "
                         f"{parse} | {s.get('calls_per_item', 0):.2f} | {ends} |")
    for bench, note in result.get("notes", {}).items():
        lines.append(f"\n{bench}: {note}")
    return "\n".join(lines) + "\n"
