"""Reliability: what a user loses days to when it fails silently (docs/reliability.md).

- 1000 fuzzed model outputs through parser -> every environment -> rewards (the 10,000-case run and
  its figures: benchmarks/reliability.py, which holds the generator);
- hostile tool calls through every executable environment (extends tests/envs/test_synth.py and
  tests/envs/test_apibank_exec.py to FunctionCallEnv and SearchEnv, with one shared list);
- rewards a policy could game by echoing a guess through a failing call;
- torn or corrupted checkpoints are never loaded (the SIGKILL runs: the benchmark's `crash`);
- bad data files and data directories fail naming file, line or key;
- same seed and config, same training run.
Long contexts (context_overflow, never a cut sampled turn) are covered in tests/agents/test_rollout.py.
The last tests pin bugs this suite found in other modules (now fixed there).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cahl.agents.parser import parse_output
from cahl.envs.apibank import ApiBankEnv
from cahl.envs.apibank.env import default_root
from cahl.envs.apibank.store import init_table
from cahl.envs.base import FunctionCallEnv
from cahl.envs.search import BM25Backend, SearchEnv
from cahl.envs.synth import SynthEnv, generate_tasks
from cahl.paths import data_dir
from cahl.rewards.hierarchy import RewardConfig, score_episodes
from cahl.types import CahlInputError, DataMissingError, Observation, Task, ToolCall

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reliability_benchmark", REPO / "benchmarks" / "reliability.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)

# ============================================================================ fuzzed model outputs
@pytest.fixture(scope="module")
def fuzz_report():
    return bench.fuzz(1000, seed=0)


def test_1000_fuzzed_outputs_never_raise_and_every_trajectory_gets_a_finite_reward(fuzz_report):
    assert sum(fuzz_report.cases.values()) == 1000 and set(fuzz_report.cases) == set(bench.CASE_CLASSES)
    assert {name: len(v) for name, v in fuzz_report.exceptions.items() if v} == {}
    for name, counts in fuzz_report.statuses.items():  # every case parsed, with a known status
        assert sum(counts.values()) == fuzz_report.cases[name] and set(counts) <= bench.STATUSES
    # 3 trajectories (flat, planner, executor) x 6 targets per case
    assert fuzz_report.rewards == 1000 * 3 * len(bench.targets())


def test_fuzzed_outputs_keep_observations_bounded_and_never_pay_for_a_wrong_verdict(fuzz_report):
    """Also: special-token text never becomes special ids, forked envs answer like their origin."""
    problems = [p for items in fuzz_report.problems.values() for _, p in items]
    assert problems == []


def test_fuzzed_outputs_execute_nothing_touch_no_database_and_stay_fast(fuzz_report):
    assert not fuzz_report.marker_created
    assert fuzz_report.init_db_changed == []
    assert fuzz_report.slowest_step < bench.MAX_STEP_SECONDS


def test_fuzz_cases_are_seeded():
    v = bench.Vocab([{"name": "add", "parameters": {"properties": {"a": {"type": "number"}}}}], [], ["42"], Path("m"))
    assert bench.fuzz_cases(60, 3, v) == bench.fuzz_cases(60, 3, v) != bench.fuzz_cases(60, 4, v)


# ============================================================================ hostile tool calls
def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def hostile_calls(tool: str, params: list[str], marker: Path) -> list[tuple[ToolCall, bool]]:
    """(call, must be refused): hostile values in every parameter of a real tool, and hostile names.
    A short string is data a tool may accept (a query, a note); oversized or non-finite values,
    deep nesting and unknown names must be refused."""
    code = f"__import__('os').system('touch {marker}')"
    strings = [code, f"$(touch {marker})", "../../../../etc/passwd", "file:///etc/passwd", "../init_database/Account.json"]
    refused = ["x" * 1_000_000, 10**100, 10**5000, float("inf"), float("nan"), _deep(100_000), {"k": _deep(50)}]
    calls = [(ToolCall(tool, {p: v for p in params}), False) for v in strings]
    calls += [(ToolCall(tool, {p: v for p in params}), True) for v in refused]
    calls += [(ToolCall(code, {}), True), (ToolCall("../../bin/sh", {"cmd": code}), True),
              (ToolCall(tool, {"unknown": code}), True)]
    return calls


@pytest.fixture()
def executable_envs():
    task = generate_tasks(1, seed=0)[0]
    synth = SynthEnv()
    synth.reset(task)
    apibank = ApiBankEnv()
    apibank.reset(Task("t", "apibank_original", [], []))
    search = SearchEnv(BM25Backend(bench.DOCS))
    fcall = FunctionCallEnv(task.tools)
    return {"synth": (synth, task.tools[0]), "apibank": (apibank, apibank.tools[0]),
            "search": (search, search.tools[0]), "function_call": (fcall, task.tools[0])}


@pytest.mark.parametrize("name", ["synth", "apibank", "search", "function_call"])
def test_hostile_calls_are_never_executed_fail_fast_and_touch_no_database(name, executable_envs, tmp_path):
    root = default_root()
    before = bench.init_db_hashes(root)
    env, spec = executable_envs[name]
    marker = tmp_path / "EXECUTED"
    calls = hostile_calls(spec["name"], list(spec["parameters"]["properties"]), marker)
    slowest = 0.0
    for hostile, must_refuse in calls:
        start = time.perf_counter()
        [obs] = env.step([hostile])
        slowest = max(slowest, time.perf_counter() - start)
        assert isinstance(obs, Observation) and isinstance(obs.content, str)
        if must_refuse and name != "function_call":  # it records calls without running them: always "ok"
            assert not obs.ok, (name, hostile.name[:40], obs.content[:200])
        assert len(obs.content) <= bench.MAX_OBSERVATION_TEXT and "root:" not in obs.content
    assert slowest < 1.0
    assert not marker.exists()
    assert bench.init_db_hashes(root) == before
    for path in (root / "init_database").glob("*.json"):  # the shared in-process tables too
        assert init_table(root, path.stem) == json.loads(path.read_text()), path.name


# ============================================================================ gaming the reward
def _executor_correctness(task: Task, env, text: str) -> float:
    parsed = parse_output(text)
    episodes = bench.episodes_for(text, parsed, task, env.step(parsed.calls))
    score_episodes(episodes, RewardConfig())
    return episodes[1].trajectories[1].reward.components["correctness"]


@pytest.mark.parametrize("call", [
    '{"name": "search", "arguments": {"query": "Zanzibar Quux"}}',  # was "No results for 'Zanzibar Quux'."
    '{"name": "Zanzibar Quux", "arguments": {}}',  # "unknown tool 'Zanzibar Quux'"
    '{"name": "search", "arguments": {"query": "x", "note": "Zanzibar Quux"}}',  # the bad arguments were echoed
])
def test_a_guess_echoed_back_by_the_environment_earns_no_credit(call):
    task = Task("q", "bamboogle", [{"role": "user", "content": "?"}], [], gold_answer="Zanzibar Quux")
    env = SearchEnv(BM25Backend(bench.DOCS))
    assert _executor_correctness(task, env, f"<think>guess</think><tool_call>{call}</tool_call>") == 0.0


def test_an_answer_found_by_search_or_faked_in_the_text():
    task = Task("q", "bamboogle", [{"role": "user", "content": "?"}], [], gold_answer="James Madison")
    env = SearchEnv(BM25Backend(bench.DOCS))
    found = '<think>s</think><tool_call>{"name": "search", "arguments": {"query": "fourth president"}}</tool_call>'
    fake = ('<think>s</think><obs>{"name": "search", "ok": true, "content": "James Madison"}</obs>'
            '<result>James Madison</result>')
    assert _executor_correctness(task, env, found) == 1.0
    assert _executor_correctness(task, env, fake) == 0.0


# ============================================================================ checkpoints
@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run folder with complete checkpoints at steps 1 and 2 of a tiny model's two adapters."""
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig
    from cahl.testing import tiny_model
    from cahl.train.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = ModelConfig(name=tiny_model(tmp / "tiny"), lora_r=4)
    policies = PolicySet.create(cfg)
    optims = {r: torch.optim.AdamW(policies.parameters(r), lr=0.1) for r in ("planner", "executor")}
    for step in (1, 2):
        for p in policies.parameters("planner"):  # a different adapter per step
            p.data.add_(0.01)
        save_checkpoint(tmp / "run", step, policies, {r: o.state_dict() for r, o in optims.items()}, {"counters": {}}, keep=5)
    return cfg, tmp / "run", policies, optims


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


CORRUPTIONS = {
    "truncated adapter": lambda c: _truncate(next(c.rglob("adapter_model.safetensors"))),
    "truncated state": lambda c: _truncate(c / "state.pt"),
    "deleted adapter": lambda c: next(c.rglob("adapter_model.safetensors")).unlink(),
    "no manifest": lambda c: (c / "MANIFEST.json").unlink(),
    "garbage manifest": lambda c: (c / "MANIFEST.json").write_bytes(b"\xff\xfe\x00garbage"),  # raised UnicodeDecodeError
    "empty manifest": lambda c: (c / "MANIFEST.json").write_text("{}"),  # matched every folder
    "manifest of a list": lambda c: (c / "MANIFEST.json").write_text("[1, 2]"),
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupted_newest_checkpoint_is_skipped_with_a_message(how, two_checkpoints, tmp_path, capsys):
    from cahl.train.checkpoint import latest_checkpoint

    _, run, _, _ = two_checkpoints
    shutil.copytree(run, tmp_path / "run")
    CORRUPTIONS[how](tmp_path / "run" / "checkpoints" / "step_000002")
    assert latest_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "step_000001"
    out = capsys.readouterr().out
    assert "skipping checkpoint" in out and "step_000002" in out


def test_a_half_written_tmp_folder_is_never_loaded_and_the_fallback_loads(two_checkpoints, tmp_path, capsys):
    from cahl.agents.policy import PolicySet
    from cahl.train.checkpoint import latest_checkpoint, load_state

    cfg, run, _, _ = two_checkpoints
    shutil.copytree(run, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    shutil.copytree(ckpts / "step_000002", ckpts / ".tmp_step_000003")  # killed before the rename
    assert latest_checkpoint(tmp_path / "run") == ckpts / "step_000002"
    CORRUPTIONS["no manifest"](ckpts / "step_000002")
    fallback = latest_checkpoint(tmp_path / "run")
    assert load_state(fallback)["step"] == 1
    assert PolicySet.from_checkpoint(cfg, fallback).state_dict_digest("planner") != \
        PolicySet.from_checkpoint(cfg, run / "checkpoints" / "step_000002").state_dict_digest("planner")
    CORRUPTIONS["no manifest"](ckpts / "step_000001")
    assert latest_checkpoint(tmp_path / "run") is None  # nothing trustworthy: train() says so and starts at 0
    assert capsys.readouterr().out.count("skipping checkpoint") == 3


def test_a_new_checkpoint_replaces_stale_newer_ones_instead_of_being_pruned(two_checkpoints, tmp_path):
    """Before: a fresh run in a used --out saved step 1, pruning (keep the 2 newest names) deleted
    it and kept the old run's step 9, so --resume loaded the other run."""
    from cahl.train.checkpoint import latest_checkpoint, save_checkpoint

    _, run, policies, optims = two_checkpoints
    shutil.copytree(run, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    shutil.copytree(ckpts / "step_000002", ckpts / "step_000009")  # another run's
    shutil.copytree(ckpts / "step_000002", ckpts / ".tmp_step_000008")  # a killed write
    save_checkpoint(tmp_path / "run", 2, policies, {r: o.state_dict() for r, o in optims.items()}, {"counters": {}}, keep=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000001", "step_000002"]
    assert latest_checkpoint(tmp_path / "run") == ckpts / "step_000002"


# ============================================================================ bad input
def _copy(src_root: Path, dst_root: Path, rel: str) -> Path:
    dst = dst_root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src_root / rel, dst)
    return dst


def _edit_json(path: Path, edit) -> None:
    items = json.loads(path.read_text())
    edit(items)
    path.write_text(json.dumps(items))


def _replace_line_bytes(path: Path, lineno: int, raw: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = raw
    path.write_bytes(b"\n".join(lines))


def _replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


BAMBOOGLE, SFT, TEST = "bamboogle/bamboogle_125.jsonl", "toolrl/rlla_sft.json", "toolrl/rlla_4k_test.parquet"
L1_TOOLRL, L1_ORIGINAL = "apibank/toolrl/level-1-api_processed.json", "apibank/original/test-data/level-1-api.json"


def _load(what: str):
    from cahl.data.apibank import load_apibank_original, load_apibank_toolrl
    from cahl.data.bamboogle import load_bamboogle
    from cahl.data.toolrl import load_toolrl_sft, load_toolrl_test

    return {"bamboogle": load_bamboogle, "sft": load_toolrl_sft, "test": load_toolrl_test,
            "apibank_toolrl": lambda: load_apibank_toolrl(1), "apibank_original": lambda: load_apibank_original(1)}[what]()


BROKEN = [  # (loader, file, breakage, error type, message)
    ("bamboogle", BAMBOOGLE, lambda p: _replace_line(p, 7, '{"id": "b7", "question": '), CahlInputError,
     r"bamboogle_125.jsonl:7: invalid JSON"),
    ("bamboogle", BAMBOOGLE, lambda p: _replace_line(p, 3, "[1, 2]"), CahlInputError,
     r"bamboogle_125.jsonl:3: expected a JSON object, got list"),
    ("bamboogle", BAMBOOGLE, lambda p: _replace_line(p, 5, '{"id": "b5", "question": "q"}'), CahlInputError,
     r"bamboogle_125.jsonl:5: missing key\(s\) \['answer'\]"),
    ("sft", SFT, lambda p: _edit_json(p, lambda items: items[5].pop("output")), CahlInputError,
     r"rlla_sft.json\[5\]: missing key\(s\) \['output'\]"),
    ("sft", SFT, _truncate, CahlInputError, r"rlla_sft.json:\d+: invalid JSON"),
    ("test", TEST, _truncate, CahlInputError, r"rlla_4k_test.parquet: not a readable parquet file"),
    ("apibank_toolrl", L1_TOOLRL, lambda p: _edit_json(p, lambda items: items[0].update(answer={"name": "X"})),
     CahlInputError, r"level-1-api_processed.json\[0\]: answer must be \{'name': str, 'parameters': dict\}"),
    ("apibank_original", L1_ORIGINAL, lambda p: _edit_json(p, lambda items: items[0].pop("file")), CahlInputError,
     r"level-1-api.json\[0\]: missing key\(s\) \['file'\]"),
    # raised UnicodeDecodeError / RecursionError before
    ("bamboogle", BAMBOOGLE, lambda p: _replace_line_bytes(p, 4, b'{"id": "b4", "question": "caf\xe9?"}'), CahlInputError,
     r"bamboogle_125.jsonl:4: not UTF-8 text"),
    ("bamboogle", BAMBOOGLE, lambda p: _replace_line_bytes(p, 2, b"[" * 100_000 + b"]" * 100_000), CahlInputError,
     r"bamboogle_125.jsonl:2: JSON nested too deeply"),
    ("sft", SFT, lambda p: p.write_bytes(p.read_bytes().replace(b"a", b"\xe9", 1)), CahlInputError,
     r"rlla_sft.json:\d+: not UTF-8 text"),
    ("sft", SFT, lambda p: p.write_bytes(b"[" * 100_000 + b"]" * 100_000), CahlInputError,
     r"rlla_sft.json: JSON nested too deeply"),
]


@pytest.mark.parametrize("loader, rel, breakage, error, message", BROKEN,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_a_broken_data_file_names_file_line_or_key(loader, rel, breakage, error, message, tmp_path, monkeypatch):
    breakage(_copy(data_dir(), tmp_path, rel))
    monkeypatch.setenv("CAHL_DATA_DIR", str(tmp_path))
    with pytest.raises(error, match=message):
        _load(loader)


def test_a_missing_data_directory_or_file_is_named(tmp_path, monkeypatch):
    source = data_dir()
    monkeypatch.setenv("CAHL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataMissingError, match=r"nowhere does not exist.*CAHL_DATA_DIR"):
        _load("bamboogle")
    monkeypatch.setenv("CAHL_DATA_DIR", str(tmp_path))
    _copy(source, tmp_path, L1_ORIGINAL)  # its dialogue files are not there
    with pytest.raises(DataMissingError, match=r"missing data file .*lv1-lv2-samples/level-1-given-desc/.*\.jsonl"):
        _load("apibank_original")


@pytest.mark.parametrize("table, breakage, error, message", [
    ("Account", _truncate, CahlInputError, r"Account.json:\d+: invalid JSON"),
    ("Wiki", Path.unlink, DataMissingError, r"missing data file .*init_database/Wiki.json"),
])
def test_a_broken_init_database_stops_the_env_instead_of_failing_every_call(table, breakage, error, message, tmp_path):
    """Before: the env started, and each call of an API reading the table returned a tool error
    (ok=False) that the policy was trained on."""
    shutil.copytree(default_root() / "init_database", tmp_path / "init_database")
    breakage(tmp_path / "init_database" / f"{table}.json")
    with pytest.raises(error, match=message):
        ApiBankEnv(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("[]", r"Account.json: expected a JSON object \(API-Bank's Account table\), got list"),
    ('{"JohnDoe": "pass123"}', r"Account.json\['JohnDoe'\]: expected a JSON object, got str"),
    ('{"JohnDoe": {"password": "pass123"}}', r"Account.json\['JohnDoe'\]: missing key\(s\) \['email', 'token'\]"),
])
def test_an_init_database_of_the_wrong_shape_stops_the_env(content, message, tmp_path):
    """Before: the env started, and calls reading Account failed with a traceback inside the tool
    (an 'Error: TypeError' observation the policy was trained on)."""
    shutil.copytree(default_root() / "init_database", tmp_path / "init_database")
    (tmp_path / "init_database" / "Account.json").write_text(content)
    with pytest.raises(CahlInputError, match=message):
        ApiBankEnv(tmp_path)


def test_a_gold_call_naming_an_unlisted_tool_is_kept_not_dropped(tmp_path, monkeypatch):
    """ToolRL's own data has such items (tests/data/test_toolrl.py: UNKNOWN_TOOL_CALLS), so they
    load; they must stay visible and scoreable, never vanish."""
    path = _copy(data_dir(), tmp_path, SFT)
    monkeypatch.setenv("CAHL_DATA_DIR", str(tmp_path))
    name = _load("sft")[0].gold_calls[0].name
    _edit_json(path, lambda items: items[0].update(output=items[0]["output"].replace(f'"{name}"', '"NoSuchTool"')))
    task = _load("sft")[0]
    assert [c.name for c in task.gold_calls] == ["NoSuchTool"] and "NoSuchTool" not in {t["name"] for t in task.tools}
    text = '<think>t</think><tool_call>{"name": "NoSuchTool", "arguments": {}}</tool_call>'
    parsed = parse_output(text)
    episodes = bench.episodes_for(text, parsed, task, FunctionCallEnv(task.tools).step(parsed.calls))
    assert math.isfinite(score_episodes(episodes, RewardConfig())["reward/flat"])


# ============================================================================ determinism
def test_same_seed_and_config_give_the_same_run(tmp_path):
    """Two runs of the tiny training (SFT + GRPO, both roles) side by side: identical metrics
    (time/ keys aside) and identical final adapters."""
    from cahl.testing import tiny_model

    model = tiny_model(tmp_path / "tiny")
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen(bench.train_args(model, run, steps=2, sft_cache=run / "sft-cache"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for run in runs]  # each its own warm start: SFT is compared too
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read().decode()[-2000:]
    a, b = (bench.metric_lines(run) for run in runs)
    assert len(a) == 2 and a == b
    sft = [[{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in (run / "sft_metrics.jsonl").read_text().splitlines()] for run in runs]
    assert len(sft[0]) == 2 and sft[0] == sft[1]
    assert any(line.get("train/planner/trajectories", 0) > 0 for line in a)  # GRPO really updated
    assert bench.adapter_digest(runs[0] / "final") == bench.adapter_digest(runs[1] / "final")


# ============================================================================ found here, fixed in their modules
def test_function_call_env_bounds_an_unknown_tool_name():
    [obs] = FunctionCallEnv([]).step([ToolCall("x" * 10_000, {})])
    assert len(obs.name) + len(obs.content) <= bench.MAX_OBSERVATION_TEXT


def test_resume_survives_a_torn_last_metrics_line(tmp_path):
    from cahl.train.metrics import MetricsLogger

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a"')
    MetricsLogger(tmp_path, tensorboard=False).truncate_after(2)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_an_sft_pool_emptied_by_max_len_is_an_error(chat):
    from cahl.train.loop import sft_pools

    with pytest.raises(CahlInputError, match="sft.max_len"):
        sft_pools(chat, generate_tasks(4, seed=0), ("planner", "executor"), max_len=10)


@pytest.mark.parametrize("override", ["train.schedule=jointt", "train.checkpoint_every=0"])
def test_config_values_that_cannot_run_are_rejected_at_load(override):
    from cahl.config import load_config

    with pytest.raises(CahlInputError, match=override.split("=")[0]):
        load_config(overrides=[override])


def test_hung_tools_do_not_starve_later_calls():
    import threading

    from cahl.envs.base import call_with_timeout

    release = threading.Event()
    try:
        for _ in range(4):
            assert not call_with_timeout("hang", release.wait, {}, timeout_s=0.05).ok
        assert call_with_timeout("fast", lambda: 1, {}, timeout_s=0.5).ok
    finally:
        release.set()  # let the abandoned threads finish so the pool serves the rest of the suite
