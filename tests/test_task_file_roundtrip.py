"""A user's own tasks end to end: a public-format sample converted into a task file, trained on
for one GRPO step (after its SFT warm start), and evaluated with --bench file:, all through the
command line with a tiny model."""

import json
import subprocess
import sys

from cahl.testing import tiny_model

TOOLS = [{"name": "get_weather", "description": "Weather of a city.",
          "parameters": {"city": {"type": "str", "description": "city name"}}},
         {"name": "convert_currency", "description": "Convert an amount.",
          "parameters": {"amount": {"type": "float", "description": "amount"}, "to": {"type": "str", "description": "ISO code"}}}]
SAMPLE = [
    {"id": 1, "query": "Weather in Paris?", "tools": json.dumps(TOOLS),
     "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])},
    {"id": 2, "query": "Turn 10 into EUR and tell me the weather in Rome.", "tools": json.dumps(TOOLS),
     "answers": json.dumps([{"name": "convert_currency", "arguments": {"amount": 10.0, "to": "EUR"}},
                            {"name": "get_weather", "arguments": {"city": "Rome"}}])},
    {"id": 3, "query": "Weather in Oslo?", "tools": json.dumps(TOOLS),
     "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}}])},
]


def _cahl(*args):
    return subprocess.run([sys.executable, "-m", "cahl.cli", *args], capture_output=True, text=True, timeout=600)


def test_convert_train_one_step_and_evaluate_a_task_file(tmp_path):
    sample, tasks = tmp_path / "xlam.json", tmp_path / "tasks.jsonl"
    sample.write_text(json.dumps(SAMPLE))
    out = _cahl("data", "convert", "--from", "xlam", str(sample), str(tasks))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote 3 tasks" in out.stdout and len(tasks.read_text().splitlines()) == 3

    model, run = tiny_model(tmp_path / "tiny"), tmp_path / "run"
    common = [f"model.name={model}", "model.threads=1", "model.lora_r=4", "rollout.max_context=1024"]
    out = _cahl("train", "--out", str(run), *common, f"train.data=[file:{tasks}]", "train.steps=1",
                "train.tasks_per_step=2", "train.tensorboard=false", f"sft.cache_dir={tmp_path / 'sft'}",
                "sft.check_items=0", "sft.steps=1", "sft.batch_size=2", "rollout.plans_per_task=2",
                "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=16", "rollout.think_tokens=2",
                "rollout.max_planner_turns=2", "rollout.constrain=off")
    assert out.returncode == 0, out.stderr[-3000:]
    step = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert step["step"] == 1 and "reward/planner" in step and "outcome" in step
    assert (run / "final").is_dir()

    out = _cahl("eval", "--adapters", str(run / "final"), "--bench", f"file:{tasks}", "--agent", "hierarchical",
                "--out", str(tmp_path / "ev"), *common, "eval.max_new_tokens=8", "eval.constrain=off")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["benchmarks"][f"file:{tasks}"]["all"]["n"] == 3
    assert sorted(i["id"] for i in result["items"]) == ["xlam-1", "xlam-2", "xlam-3"]
    assert all(i["error_type"] or i["correct"] for i in result["items"])  # each item got the calls rule's verdict
