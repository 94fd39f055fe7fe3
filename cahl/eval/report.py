"""`cahl report RUN_DIR`: Markdown + HTML with PNG plots, the eval table and sample rollouts."""

from __future__ import annotations

import html
import json
from pathlib import Path

from cahl.train.metrics import read_metrics

PLOTS = {
    "reward.png": ("reward per role", lambda k: k.startswith("reward/") and k.count("/") == 1),
    "components.png": ("reward components", lambda k: k.startswith("reward/") and k.count("/") == 2),
    "success.png": ("success / alignment", lambda k: k.startswith("success/") or k.startswith("alignment")),
    "end_reasons.png": ("episode end reasons (share)", lambda k: k.startswith("end_reason/")),
    "zero_variance.png": ("zero-variance group share", lambda k: k.endswith("zero_variance_share")),
    "loss.png": ("SFT / policy loss", lambda k: k.endswith("/loss")),
    "time.png": ("seconds per phase", lambda k: k in ("time/rollout", "time/reward", "time/update", "time/step")),
}


def _plot(rows: list[dict], title: str, select, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in rows for k in r if select(k)})
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=k)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def reward_trend(rows: list[dict]) -> list[dict]:
    """Per role, over the GRPO steps that logged its reward: the mean of the first and of the second
    half of those steps (the middle one left out when odd) and the least-squares slope per step.
    A noisy curve reads more reliably from these than from its first and last point."""
    out = []
    for key in sorted({k for r in rows for k in r if k.startswith("reward/") and k.count("/") == 1}):
        pts = [(r["step"], r[key]) for r in rows if r.get("phase") == "grpo" and isinstance(r.get(key), (int, float))]
        if len(pts) < 2:
            continue
        steps, values = zip(*pts)
        half = len(values) // 2
        mean_x, mean_y = sum(steps) / len(steps), sum(values) / len(values)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in pts) / sum((x - mean_x) ** 2 for x in steps))
        out.append({"role": key.split("/")[1], "steps": len(values), "first_half": sum(values[:half]) / half,
                    "second_half": sum(values[-half:]) / half, "slope": slope})
    return out


def _eval_files(run_dir: Path) -> list[Path]:
    """The run's evaluations: before training (untrained model, per agent), then after (per decoding)."""
    return sorted(run_dir.glob("eval_before*.json")) + sorted(run_dir.glob("eval_after*.json"))


def comparison_table(run_dir: str | Path) -> str:
    """One row per benchmark category, one column per evaluation of the run: accuracy, 95% interval, n."""
    run_dir = Path(run_dir)
    results = [(p.stem, json.loads(p.read_text())) for p in _eval_files(Path(run_dir))]
    if not results:
        return ""
    heads = [f"{label.replace('eval_', '')} ({r.get('agent', '?')}, {r.get('constrain', '?')})" for label, r in results]
    rows = dict.fromkeys((b, c) for _, r in results for b, cats in r["benchmarks"].items() for c in cats)
    lines = ["| benchmark | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for b, c in rows:
        cells = []
        for _, r in results:
            s = r["benchmarks"].get(b, {}).get(c)
            ci = s.get("ci95") if s else None
            cells.append(f"{s['accuracy']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] (n={s['n']})" if s and ci else
                         f"{s['accuracy']:.3f} (n={s['n']})" if s else "")
        lines.append(f"| {b}:{c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sft_section(run_dir: Path) -> list[str]:
    """The warm start's loss curve per role and its held-out parse check (sft.json)."""
    path = run_dir / "sft.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    md = ["## SFT warm start", "", f"{record['steps']} steps in {record['seconds']} s; examples per role: "
          f"{record['examples']}; final loss: {record['final_loss']}.", ""]
    check = record.get("parse_check") or {}
    if check:
        md += ["Held-out parse check (unconstrained greedy turns that follow the role's grammar):", "",
               "| role | turns | parse rate |", "|---|---|---|"]
        md += [f"| {role} | {c['turns']} | {c['parse_rate']:.3f} |" for role, c in check.items()] + [""]
    curve = run_dir / "sft_metrics.jsonl"
    if curve.is_file():
        rows = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
        (run_dir / "plots").mkdir(exist_ok=True)
        if _plot(rows, "SFT loss per role", lambda k: k.startswith("sft/") and k.endswith("/loss"),
                 run_dir / "plots" / "sft_loss.png"):
            md += ["![SFT loss per role](plots/sft_loss.png)", ""]
    return md


def write_report(run_dir: str | Path) -> Path:
    from cahl.eval.harness import markdown_table

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    made = [(name, title) for name, (title, sel) in PLOTS.items() if _plot(rows, title, sel, plots_dir / name)]
    md = [f"# cahl run report: {run_dir}", ""]
    trend = reward_trend(rows)
    if trend:
        md += ["## Reward trend (GRPO steps)", "", "| role | steps | first-half mean | second-half mean | slope per step |",
               "|---|---|---|---|---|"]
        md += [f"| {t['role']} | {t['steps']} | {t['first_half']:.3f} | {t['second_half']:.3f} | {t['slope']:+.4f} |"
               for t in trend] + [""]
    if rows:
        last = rows[-1]
        md += [f"{len(rows)} steps logged. Last step:", "", "| metric | value |", "|---|---|"]
        md += [f"| {k} | {v:.4g} |" for k, v in sorted(last.items()) if isinstance(v, (int, float)) and not k.startswith("time/")]
        md.append("")
    md += sft_section(run_dir)
    table = comparison_table(run_dir)
    if table:
        md += ["## Before and after training", "", table, ""]
    for path in _eval_files(run_dir):
        md += [f"## {path.stem.replace('_', ' ')}", "", markdown_table(json.loads(path.read_text())), ""]
    md += ["## Plots", ""] + [f"![{title}](plots/{name})" for name, title in made] + [""]
    samples = run_dir / "samples.jsonl"
    if samples.is_file():
        md += ["## Sample rollouts (last step, one per role)", ""]
        for line in samples.read_text().splitlines()[-6:]:
            s = json.loads(line)
            md += [f"### {s['role']} (step {s['step']}, reward {s['reward']:.3f}, {s['end_reason']})", "", "```"]
            md += [s["text"][:3000], "```", ""]
    text = "\n".join(md)
    (run_dir / "report.md").write_text(text)
    (run_dir / "report.html").write_text(_html(text))
    return run_dir / "report.md"


def _html(markdown: str) -> str:
    """A plain HTML rendering: headings, tables, images and code blocks (no dependency)."""
    out, in_code, in_table = ["<html><body style='font-family:sans-serif;max-width:60em'>"], False, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table border=1 cellpadding=3>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append(f"<img src='{html.escape(src.rstrip(')'))}' alt='{html.escape(alt)}'>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out + ["</body></html>"])
