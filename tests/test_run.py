"""`cahl run` as a user drives it: a request, a 3-tool JSON list and a module implementing the tools.

The end-to-end tests script the policy's outputs (as tests/agents/test_rollout.py does), so the
plan, calls, results and answer are known; the tools really run, through the command's own
environment. One subprocess test runs the tiny model itself, with adapters and constrained decoding.
"""

import io
import json
import subprocess
import sys

import pytest

import cahl.agents.build
from cahl.agents.chat import ChatFormat
from cahl.agents.model import load_tokenizer
from cahl.agents.sampling import Grammars, Sample
from cahl.cli import main
from cahl.envs.base import render_result
from cahl.run import ModuleEnv, load_module, load_tools
from cahl.testing import tiny_model
from cahl.types import ToolCall

TOOLS = [
    {"type": "function", "function": {"name": "km_to_miles", "description": "kilometres to miles",
                                      "parameters": {"type": "object", "properties": {"km": {"type": "number"}},
                                                     "required": ["km"]}}},
    {"type": "function", "function": {"name": "weekday", "description": "weekday of an ISO date (YYYY-MM-DD)",
                                      "parameters": {"type": "object", "properties": {"date": {"type": "string"}},
                                                     "required": ["date"]}}},
    {"name": "add", "description": "a + b", "parameters": {"type": "object", "properties": {  # bare form
        "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
]

MODULE = '''
import datetime
import time


def km_to_miles(km):
    return round(km / 1.609344, 3)


def weekday(date):
    return datetime.date.fromisoformat(date).strftime("%A")


def add(a, b):
    return a + b


def slow(seconds):
    time.sleep(seconds)
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A user's folder: tools.json and my_tools.py, the working directory (so `--impl my_tools` imports)."""
    (tmp_path / "tools.json").write_text(json.dumps(TOOLS))
    (tmp_path / "my_tools.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_tools", raising=False)
    return tmp_path


# -- the scripted agent ----------------------------------------------------------------------------

def planner(prompt: str) -> str:
    if "Friday" in prompt:
        return "<think>both known</think>\n<response>5 km is 3.107 miles; 2024-03-01 is a Friday.</response>"
    if "3.107" in prompt:
        return '<think>now the date</think>\n<subtask>Call weekday with date="2024-03-01"</subtask>'
    return "<think>distance first</think>\n<subtask>Call km_to_miles with km=5</subtask>"


def executor(prompt: str) -> str:
    task = prompt.split("<|im_start|>user", 1)[1]
    if "Call km_to_miles with km=5" in task:
        if '"ok": true' not in task:
            return '<think>convert</think>\n<tool_call>\n{"name": "km_to_miles", "arguments": {"km": 5}}\n</tool_call>'
        return "<think>done</think>\n<result>5 km is 3.107 miles</result>"
    if '"ok": false' not in task:  # a wrong date first: the tool's error goes back to the executor
        return '<think>date</think>\n<tool_call>\n{"name": "weekday", "arguments": {"date": "2024-13-01"}}\n</tool_call>'
    if '"ok": true' not in task:
        return '<think>retry</think>\n<tool_call>\n{"name": "weekday", "arguments": {"date": "2024-03-01"}}\n</tool_call>'
    return "<think>done</think>\n<result>2024-03-01 is a Friday</result>"


def flat(prompt: str) -> str:
    if '"ok": true' in prompt:
        return "<think>known</think>\n<response>2 + 3 = 5</response>"
    return '<think>add</think>\n<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


class ScriptedBackend:
    """generate() answers every prompt with script(prompt text), tokenised; the grammar each turn
    was decoded under is recorded, and the scripted text must be one that grammar allows (what the
    constrained decoder could have sampled)."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.grammars = tokenizer, script, []
        self.matchers = Grammars(tokenizer, len(tokenizer))

    def generate(self, prompts, params, n=1, seed=None):
        counts = [n] * len(prompts) if isinstance(n, int) else list(n)
        self.grammars.append(params.grammar)
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            text = self.script(self.tokenizer.decode(prompt))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if params.grammar:
                m = self.matchers.matcher(params.grammar)
                assert m.consume_tokens(ids) and not m.is_error(), f"the grammar forbids the scripted turn {text!r}"
            out += [Sample(ids[: params.max_new_tokens], [-1.0] * len(ids[: params.max_new_tokens]), "stop",
                           prompt_index=i)] * count
        return out


class ScriptedPolicies:
    def __init__(self, tokenizer):
        self.backends = {role: ScriptedBackend(tokenizer, script)
                         for role, script in {"planner": planner, "executor": executor, "flat": flat}.items()}

    def backend(self, role):
        return self.backends[role]


@pytest.fixture
def scripted(model, monkeypatch):
    """`cahl run`'s policies are the scripted ones, on the tiny model's tokenizer (the model the
    command was given); returns them, to see how the turns were decoded."""
    made = {}

    def build(model_cfg, adapters=None, merge=False):
        assert model_cfg.name == model and adapters is None
        tokenizer = load_tokenizer(model_cfg.name)
        made["policies"] = ScriptedPolicies(tokenizer)
        return made["policies"], ChatFormat(tokenizer)

    monkeypatch.setattr(cahl.agents.build, "build_policies", build)
    return made


def _run(capsys, *args):
    code = main(["run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- end to end ------------------------------------------------------------------------------------

def test_run_prints_plan_calls_results_and_answer(user, model, scripted, capsys):
    code, out, err = _run(capsys, "--model", model, "--tools", "tools.json", "--impl", "my_tools",
                          "How far is 5 km in miles, and what weekday is 2024-03-01?")
    assert code == 0, err
    assert out.splitlines() == [
        "request: How far is 5 km in miles, and what weekday is 2024-03-01?",
        "plan:",
        "  1. Call km_to_miles with km=5",
        '     call:   {"name": "km_to_miles", "arguments": {"km": 5}}',
        "     result: 3.107",
        "     => 5 km is 3.107 miles",
        '  2. Call weekday with date="2024-03-01"',
        '     call:   {"name": "weekday", "arguments": {"date": "2024-13-01"}}',
        "     error:  Error: ValueError: month must be in 1..12",
        '     call:   {"name": "weekday", "arguments": {"date": "2024-03-01"}}',
        "     result: Friday",
        "     => 2024-03-01 is a Friday",
        "answer: 5 km is 3.107 miles; 2024-03-01 is a Friday.",
        "ended: answered",
        "",
    ]
    # decoded under the default constraint (eval.constrain = tools): every turn had a grammar
    grammars = [g for b in scripted["policies"].backends.values() for g in b.grammars]
    assert grammars and all(grammars)


def test_run_json_record(user, model, scripted, capsys):
    code, out, err = _run(capsys, "--model", model, "--tools", "tools.json", "--impl", str(user / "my_tools.py"),
                          "--json", "How far is 5 km in miles, and what weekday is 2024-03-01?")
    assert code == 0, err
    [line] = out.splitlines()
    record = json.loads(line)
    km = {"name": "km_to_miles", "arguments": {"km": 5}, "result": "3.107", "ok": True}
    bad = {"name": "weekday", "arguments": {"date": "2024-13-01"}, "result": "Error: ValueError: month must be in 1..12",
           "ok": False}
    good = {"name": "weekday", "arguments": {"date": "2024-03-01"}, "result": "Friday", "ok": True}
    assert record == {
        "request": "How far is 5 km in miles, and what weekday is 2024-03-01?", "agent": "hierarchical",
        "executed": True,
        "plan": [{"subtask": "Call km_to_miles with km=5", "calls": [km], "result": "5 km is 3.107 miles"},
                 {"subtask": 'Call weekday with date="2024-03-01"', "calls": [bad, good],
                  "result": "2024-03-01 is a Friday"}],
        "calls": [km, bad, good], "answer": "5 km is 3.107 miles; 2024-03-01 is a Friday.", "end_reason": "answered",
        "warnings": []}


def test_without_impl_the_calls_are_printed_and_the_run_stops_at_the_first(user, model, scripted, capsys):
    code, out, err = _run(capsys, "--model", model, "--tools", "tools.json", "--json",
                          "How far is 5 km in miles, and what weekday is 2024-03-01?")
    assert code == 0, err
    record = json.loads(out)
    assert record["executed"] is False and record["answer"] is None and record["end_reason"] == "answered"
    assert record["plan"] == [{"subtask": "Call km_to_miles with km=5", "result": None,
                               "calls": [{"name": "km_to_miles", "arguments": {"km": 5}}]}]
    code, out, err = _run(capsys, "--model", model, "--tools", "tools.json", "Convert 5 km to miles")
    assert '     call:   {"name": "km_to_miles", "arguments": {"km": 5}}' in out.splitlines()
    assert "result" not in out and "answer: (none)" in out


def test_flat_agent_and_a_prompt_loop_over_stdin(user, model, scripted, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 2 + 3?\n\nAnd 2 + 3 again?\n"))
    code, out, err = _run(capsys, "--model", model, "--tools", "tools.json", "--impl", "my_tools", "--agent", "flat",
                          "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["request"] for r in records] == ["What is 2 + 3?", "And 2 + 3 again?"]  # the blank line skipped
    for r in records:
        assert r["agent"] == "flat" and r["plan"] == [] and r["answer"] == "2 + 3 = 5"
        assert r["calls"] == [{"name": "add", "arguments": {"a": 2, "b": 3}, "result": "5", "ok": True}]


def test_run_with_trained_adapters_on_the_tiny_model(user, model):
    """The real path: adapters from a checkpoint (its base model found from policy.json), the tiny
    model decoding greedily under the tools grammar, the module's functions running."""
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig

    PolicySet.create(ModelConfig(name=model, lora_r=2)).save(user / "run" / "final")
    out = subprocess.run([sys.executable, "-m", "cahl.cli", "run", "--adapters", str(user / "run" / "final"),
                          "--tools", "tools.json", "--impl", "my_tools", "--json", "Convert 5 km to miles.",
                          "model.threads=1", "eval.max_new_tokens=128", "eval.think_tokens=4",
                          "rollout.max_context=1024"], capture_output=True, text=True, timeout=300, cwd=user)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(out.stdout)
    assert record["agent"] == "hierarchical" and record["executed"] and record["end_reason"]
    # the executor's first turn on a sub-task must call (rollout.executor_calls_first): a plan has calls
    assert record["plan"] and record["calls"]
    sys.path.insert(0, str(user))
    try:
        import my_tools
    finally:
        sys.path.remove(str(user))
    for call in record["calls"]:  # each ran: its result is the function's own on those arguments
        assert call["name"] in {"km_to_miles", "weekday", "add"}
        if call["ok"]:
            assert call["result"] == render_result(getattr(my_tools, call["name"])(**call["arguments"]))


# -- bad input, reported before any model loads ------------------------------------------------------

@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(cahl.agents.build, "build_policies",
                        lambda *a, **kw: pytest.fail("the model was loaded before the input was checked"))


@pytest.mark.parametrize("tools, message", [
    ({"name": "add"}, "tools.json: expected a non-empty JSON list of tools, got an object"),
    ([TOOLS[0], "add"], "tools.json: [1]: expected a tool object {name, description, parameters}, got \"add\""),
    ([{"type": "function", "function": {"description": "no name"}}], "tools.json: [0].function.name: expected a non-empty string"),
    ([{"type": "function", "function": "add"}], "tools.json: [0].function: expected a tool object"),
    ([{"name": "add", "parameters": {"type": "object", "properties": {"a": {}}, "required": ["b"]}}],
     "tools.json: [0].parameters.required: expected a list of names in parameters.properties (a)"),
    ([{"name": "add", "parameters": {"type": "array"}}], "tools.json: [0].parameters: expected a JSON schema"),
    ([TOOLS[2], TOOLS[2]], "tools.json: [1]: tool name 'add' is also the name of [0]"),
], ids=["not-a-list", "not-an-object", "no-name", "function-not-object", "required-unknown", "not-object-params",
        "repeated-name"])
def test_a_malformed_tool_list_names_the_file_and_key(tools, message, user, no_model, capsys):
    (user / "tools.json").write_text(json.dumps(tools))
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "tools.json", "hello")
    assert code == 2 and message in err


def test_missing_or_invalid_tools_file(user, no_model, capsys):
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "missing.json", "hello")
    assert code == 2 and "--tools missing.json: no such file; expected a JSON list of tools" in err
    (user / "tools.json").write_text('[{"name": "add",\n')
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "tools.json", "hello")
    assert code == 2 and "tools.json:2: invalid JSON" in err


def test_a_module_lacking_a_tools_function_names_the_tool(user, no_model, capsys):
    (user / "partial.py").write_text("def add(a, b):\n    return a + b\n")
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "tools.json", "--impl", "partial.py", "hello")
    assert code == 2
    assert "--impl partial.py: no function for tool(s) 'km_to_miles', 'weekday'; expected one function per tool" in err


@pytest.mark.parametrize("impl, message", [
    ("no_such_module", "--impl no_such_module: no module of that name"),
    ("missing.py", "--impl missing.py: no such file"),
    ("broken.py", "--impl broken.py: importing it failed: ZeroDivisionError"),
], ids=["unknown-name", "missing-path", "fails-on-import"])
def test_a_module_that_cannot_be_imported(impl, message, user, no_model, capsys):
    (user / "broken.py").write_text("x = 1 / 0\n")
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "tools.json", "--impl", impl, "hello")
    assert code == 2 and message in err


def test_flat_agent_on_a_hierarchys_adapters_is_refused(user, model, no_model, capsys):
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig

    PolicySet.create(ModelConfig(name=model, lora_r=2)).save(user / "final")
    code, _, err = _run(capsys, "--adapters", str(user / "final"), "--agent", "flat", "--tools", "tools.json", "hi")
    assert code == 2
    assert f"{user / 'final' / 'policy.json'}: these adapters have roles ['planner', 'executor'], --agent flat " \
           "needs ['flat']; use --agent hierarchical" in err


def test_an_unquoted_request_is_an_error(user, no_model, capsys):
    code, _, err = _run(capsys, "--model", "embedded", "--tools", "tools.json", "what", "is", "eval.limit=2")
    assert code == 2 and "expected one request (quote it" in err


# -- the environment -------------------------------------------------------------------------------

def test_module_env_never_raises_on_a_bad_call(user):
    module = load_module("my_tools.py")
    functions = {name: getattr(module, name) for name in ("km_to_miles", "add", "slow")}
    env = ModuleEnv(functions, timeout_s=0.2)
    unknown, missing, hung, ok = env.step([ToolCall("rm_rf", {}), ToolCall("add", {"a": 1}),
                                           ToolCall("slow", {"seconds": 5}), ToolCall("add", {"a": 1, "b": 2})])
    assert not unknown.ok and "unknown tool 'rm_rf'; available: km_to_miles, add, slow" in unknown.content
    assert not missing.ok and "bad arguments for add" in missing.content
    assert not hung.ok and "took longer than 0.2s" in hung.content
    assert ok.ok and ok.content == "3"


def test_load_tools_unwraps_openai_tools_and_keeps_bare_ones(user):
    tools = load_tools(user / "tools.json")
    assert [t["name"] for t in tools] == ["km_to_miles", "weekday", "add"]
    assert tools[0] == {"name": "km_to_miles", "description": "kilometres to miles",
                        "parameters": {"type": "object", "properties": {"km": {"type": "number"}}, "required": ["km"]}}
    assert tools[2] == TOOLS[2]


def test_the_benchmarks_demo_tools_pass_the_input_checks_and_compute():
    """benchmarks/run_agent.py hands these to `cahl run`; a schema or name that drifted would stop it."""
    from pathlib import Path

    from cahl.run import tool_functions

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "tools"
    tools = load_tools(folder / "demo_tools.json")
    functions = tool_functions(load_module(str(folder / "demo_tools.py")), tools, "demo_tools.py")
    env = ModuleEnv(functions)
    obs = env.step([ToolCall("convert_units", {"value": 12, "from_unit": "mile", "to_unit": "km"}),
                    ToolCall("calculate", {"a": 37, "op": "multiply", "b": 24}),
                    ToolCall("days_between", {"start": "2024-01-15", "end": "2024-03-01"}),
                    ToolCall("convert_units", {"value": 1, "from_unit": "kg", "to_unit": "km"})])
    assert [o.content for o in obs[:3]] == ["19.3121", "888", "46"]
    assert not obs[3].ok and "cannot convert mass (kg) to length (km)" in obs[3].content


def test_the_runs_own_config_is_read_beside_its_adapters(user, model, no_model, capsys):
    """RUN/final's run config (RUN/config.yaml) decides decoding unless --config is given: a bad key
    in it is reported, naming it, before the model loads."""
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig

    PolicySet.create(ModelConfig(name=model, lora_r=2)).save(user / "run" / "final")
    (user / "run" / "config.yaml").write_text("eval:\n  constrain: everything\n")
    code, _, err = _run(capsys, "--adapters", str(user / "run" / "final"), "--tools", "tools.json", "hi")
    assert code == 2 and f"{user / 'run' / 'config.yaml'} (the run's config" in err and "eval.constrain" in err


def test_a_tool_name_that_is_not_a_python_name_finds_its_function(user):
    from cahl.run import tool_functions

    (user / "mathlib.py").write_text("import math\n\ndef math_factorial(n):\n    return math.factorial(n)\n")
    tools = [{"name": "math.factorial", "description": "n!", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}]
    functions = tool_functions(load_module("mathlib.py"), tools, "mathlib.py")
    [obs] = ModuleEnv(functions).step([ToolCall("math.factorial", {"n": 5})])
    assert obs.ok and obs.content == "120"
