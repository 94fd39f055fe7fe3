"""The command line as a user runs it: subprocesses, exit codes, files written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_score_bfcl_counts_an_empty_call_object_as_no_call(tmp_path):
    """Before: `cahl score` stopped on `[{}]` with an input error; BFCL's runner counts it as no call."""
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "irrelevance_0", "category": "irrelevance", "calls": [{}]}) + "\n"
                     + json.dumps({"id": "simple_0", "category": "simple", "calls": [{}]}) + "\n")
    out = _cahl("score", "bfcl", "--predictions", str(preds))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [(r["valid"], r["error_type"]) for r in rows] == [(True, None), (False, "ast_decoder:decoder_wrong_output_format")]
    assert "1/2 valid" in out.stderr


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


REPO = Path(__file__).resolve().parents[1]


def test_rollout_takes_its_agent_from_the_schedule_on_the_quickstart_config(tmp_path):
    """Before: "unknown policy role 'flat'": rollout.agent defaults to flat while the command built
    the hierarchy's policies; `cahl train` takes the agent from train.schedule."""
    model = tiny_model(tmp_path / "tiny")
    dump = tmp_path / "rollouts.jsonl"
    out = _cahl("rollout", "--config", str(REPO / "configs" / "quickstart.yaml"), "--n", "2", "--dump", str(dump),
                f"model.name={model}", "model.threads=1", "rollout.max_new_tokens=32", "rollout.think_tokens=4")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len({r["task_id"] for r in rows}) == 2 and {r["role"] for r in rows} <= {"planner", "executor"}
    assert sum(r["role"] == "planner" for r in rows) == 2 * 4  # rollout.plans_per_task: 4 in the quickstart
    assert "invariant problems: 0" in out.stdout


def test_score_with_a_missing_predictions_file_names_it(tmp_path):
    """Before: a FileNotFoundError traceback."""
    out = _cahl("score", "bfcl", "--predictions", str(tmp_path / "missing.jsonl"))
    assert out.returncode == 2 and f"predictions file {tmp_path / 'missing.jsonl'} does not exist" in out.stderr


def test_a_predictions_line_nested_100k_deep_names_file_and_line(tmp_path):
    """Before: a RecursionError traceback."""
    preds = tmp_path / "deep.jsonl"
    preds.write_text('{"id": "simple_0", "category": "simple", "calls": []}\n'
                     '{"id": "simple_1", "category": "simple", "calls": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    out = _cahl("score", "bfcl", "--predictions", str(preds))
    assert out.returncode == 2 and f"{preds}:2: JSON nested too deeply" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--bench", "bfcl_v9:simple"], "unknown benchmark 'bfcl_v9'"),
    (["--bench", "bamboogle", "--data-dir", "/no/such/folder"], "'data_dir'"),
], ids=["unknown-bench", "missing-data-dir"])
def test_eval_reports_a_bad_bench_or_data_dir_before_the_model_loads(args, message, tmp_path, monkeypatch, capsys):
    """Before: both were found after the model had loaded (minutes, with a large model)."""
    import cahl.agents.build
    from cahl.cli import main

    def no_model(*a, **kw):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(cahl.agents.build, "build_policies", no_model)
    assert main(["eval", "--model", "embedded", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_data_file_missing_from_the_data_dir_is_reported_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import cahl.agents.build
    from cahl.cli import main

    monkeypatch.setattr(cahl.agents.build, "build_policies", lambda *a, **kw: pytest.fail("the model was loaded"))
    (tmp_path / "data").mkdir()
    assert main(["eval", "--model", "embedded", "--bench", "bamboogle", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "missing data file" in err and "cahl data fetch bamboogle" in err


def test_a_bad_task_file_line_is_reported_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """--bench file:, train.data and train.eval_bench read the whole task file when the config loads."""
    import cahl.agents.build
    import cahl.train.loop
    from cahl.cli import main

    monkeypatch.setattr(cahl.agents.build, "build_policies", lambda *a, **kw: pytest.fail("the model was loaded"))
    monkeypatch.setattr(cahl.train.loop, "train", lambda *a, **kw: pytest.fail("training started"))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"}], "tools": [],
                                 "gold_answer": "x"}) + "\n"
                     + json.dumps({"id": "b", "messages": [{"role": "user", "content": "q"}], "tools": []}) + "\n")
    expected = f"{tasks}:2: gold_calls/gold_answer: expected exactly one of them, got neither"
    assert main(["eval", "--model", "embedded", "--bench", f"file:{tasks}", "--out", str(tmp_path / "ev")]) == 2
    assert expected in capsys.readouterr().err
    for override in (f"train.data=[file:{tasks}]", f"train.eval_bench=file:{tasks}"):
        assert main(["train", "--out", str(tmp_path / "run"), override]) == 2
        assert expected in capsys.readouterr().err
