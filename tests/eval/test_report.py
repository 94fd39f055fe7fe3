"""`cahl report RUN_DIR`: plots, the reward trend table, samples; Markdown and HTML."""

from __future__ import annotations

import json

import pytest

from cahl.eval.report import reward_trend, write_report


def _rows():
    rows = [{"step": 1, "phase": "sft", "sft/planner/loss": 2.0}]  # SFT steps log no reward: not in the trend
    planner = [0.1, 0.3, 0.2, 0.4, 0.5]
    executor = [-0.5, -0.6, -0.2, -0.1, -0.3]
    for i, (p, e) in enumerate(zip(planner, executor)):
        rows.append({"step": 2 + i, "phase": "grpo", "reward/planner": p, "reward/executor": e,
                     "reward/planner/format": 0.5, "time/step": 10.0, "train/planner/loss": 0.1})
    return rows


def test_reward_trend_halves_and_slope_by_hand():
    trend = {t["role"]: t for t in reward_trend(_rows())}
    assert set(trend) == {"planner", "executor"}  # reward/planner/format is a component, not a role
    p = trend["planner"]
    assert p["steps"] == 5
    assert p["first_half"] == pytest.approx((0.1 + 0.3) / 2) and p["second_half"] == pytest.approx((0.4 + 0.5) / 2)
    # steps 2..6 centred at 4: sum((x - 4) * y) / sum((x - 4)^2) = (-0.2 - 0.3 + 0 + 0.4 + 1.0) / 10
    assert p["slope"] == pytest.approx(0.09)
    e = trend["executor"]
    assert e["first_half"] == pytest.approx(-0.55) and e["second_half"] == pytest.approx(-0.2)
    assert e["slope"] == pytest.approx((1.0 + 0.6 + 0 - 0.1 - 0.6) / 10)


def test_reward_trend_needs_two_grpo_steps():
    assert reward_trend([{"step": 1, "phase": "grpo", "reward/planner": 0.3}]) == []


def test_report_writes_markdown_html_plots_trend_and_samples(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    sample = {"role": "executor", "step": 6, "reward": 0.25, "end_reason": "answered", "text": "<tool_call>x</tool_call>"}
    (tmp_path / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    md = write_report(tmp_path).read_text()
    assert "| planner | 5 | 0.200 | 0.450 | +0.0900 |" in md
    assert "### executor (step 6, reward 0.250, answered)" in md and "<tool_call>x</tool_call>" in md
    for name in ("reward.png", "components.png", "loss.png", "time.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
        assert f"(plots/{name})" in md
    assert not (tmp_path / "plots" / "end_reasons.png").exists()  # nothing logged: no empty plot
    page = (tmp_path / "report.html").read_text()
    assert "<td>planner</td><td>5</td>" in page and "&lt;tool_call&gt;x&lt;/tool_call&gt;" in page
