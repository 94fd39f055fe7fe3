"""The command line as a user runs it: subprocesses, exit codes, files written."""

import json
import subprocess
import sys

from cahl.data.bfcl import load_bfcl
from cahl.testing import tiny_model


def _cahl(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cahl.cli", *args], capture_output=True, text=True, timeout=300, **kw)


def test_score_bfcl_gives_one_verdict_per_line(tmp_path):
    tasks = load_bfcl("v3", "simple")[:2]
    right = {task.gold_calls[0].name: task.gold_calls[0].arguments for task in tasks[:1]}
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": tasks[0].id, "category": "simple", "calls": [right]}) + "\n"
                     + json.dumps({"id": tasks[1].id, "category": "simple", "calls": []}) + "\n")
    out = _cahl("score", "bfcl", "--version", "v3", "--predictions", str(preds))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [r["valid"] for r in rows] == [True, False]
    assert rows[0]["error_type"] is None and rows[1]["error_type"]


def test_malformed_prediction_line_names_file_and_line(tmp_path):
    preds = tmp_path / "bad.jsonl"
    preds.write_text('{"id": "simple_0", "category": "simple", "calls": []}\n{not json\n')
    out = _cahl("score", "bfcl", "--predictions", str(preds))
    assert out.returncode == 2
    assert f"{preds}:2" in out.stderr


def test_eval_writes_items_and_table(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    out = _cahl("eval", "--model", model, "--bench", "bfcl_v3:simple,synth_unseen:steps-2", "--limit", "2",
                "--agent", "hierarchical", "--out", str(tmp_path / "ev"), "eval.max_new_tokens=8", "eval.constrain=off",
                "rollout.max_context=1024", "model.threads=1")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["benchmarks"]["bfcl_v3"]["simple"]["n"] == 2
    assert len(result["items"]) == 4 and all("end_reason" in i and "correct" in i for i in result["items"])
    assert "| bfcl_v3 | simple | 2 |" in (tmp_path / "ev" / "eval.md").read_text()


def test_unknown_config_key_is_a_clear_error(tmp_path):
    out = _cahl("eval", "--model", "embedded", "--out", str(tmp_path), "rollout.temprature=0.5")
    assert out.returncode == 2 and "rollout.temprature" in out.stderr
