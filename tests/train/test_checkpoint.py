"""Checkpoints a user can trust: no code runs on load, `--resume` never silently starts over,
adapters load only onto the base model they were trained on."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
import torch

from cahl.types import CahlInputError


@pytest.fixture(scope="module")
def run_with_checkpoints(tmp_path_factory):
    """A run folder with verified checkpoints at steps 1 and 2 of a tiny model's two adapters."""
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig
    from cahl.testing import tiny_model
    from cahl.train.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = ModelConfig(name=tiny_model(tmp / "tiny"), lora_r=4)
    policies = PolicySet.create(cfg)
    optims = {r: torch.optim.AdamW(policies.parameters(r), lr=0.1) for r in ("planner", "executor")}
    for step in (1, 2):
        save_checkpoint(tmp / "run", step, policies, {r: o.state_dict() for r, o in optims.items()}, {"counters": {}},
                        keep=5)
    (tmp / "run" / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n')
    return cfg, tmp / "run"


def _rewrite_manifest(folder):
    """What an attacker who can write the run folder does: make the manifest match the new files."""
    manifest = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "MANIFEST.json"}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("victim", ["state.pt", "optim_planner.pt"])
def test_a_crafted_checkpoint_file_with_a_matching_manifest_runs_no_code(victim, run_with_checkpoints, tmp_path):
    from cahl.train.checkpoint import checkpoint_to_resume, load_state, saved_optimizer

    _, run = run_with_checkpoints
    shutil.copytree(run, tmp_path / "run")
    folder = tmp_path / "run" / "checkpoints" / "step_000002"
    marker = tmp_path / "CODE_RAN"
    torch.save({"step": 2, "counters": {}, "payload": _RunsCode(marker)}, folder / victim)
    _rewrite_manifest(folder)
    assert checkpoint_to_resume(tmp_path / "run") == folder  # the checksums match: only loading can refuse it
    with pytest.raises(CahlInputError, match=f"{victim}: holds objects other than tensors"):
        load_state(folder) if victim == "state.pt" else saved_optimizer(folder, "planner")
    assert not marker.exists()


def test_a_real_checkpoint_loads_with_weights_only(run_with_checkpoints):
    from cahl.train.checkpoint import load_state, saved_optimizer

    _, run = run_with_checkpoints
    folder = run / "checkpoints" / "step_000002"
    assert load_state(folder)["step"] == 2
    assert set(saved_optimizer(folder, "executor")) == {"state", "param_groups"}
    assert saved_optimizer(folder, "sft_executor", optional=True) is None
    with pytest.raises(CahlInputError, match="optim_flat.pt"):
        saved_optimizer(folder, "flat")


def _corrupt_all(run):
    for folder in (run / "checkpoints").glob("step_*"):
        state = folder / "state.pt"
        state.write_bytes(state.read_bytes()[:100])


def test_resume_with_no_trusted_checkpoint_stops_naming_them_and_changes_nothing(run_with_checkpoints, tmp_path,
                                                                                 capsys):
    """Before: training restarted at step 0, metrics.jsonl was wiped and the first save deleted the
    (corrupt, newer) checkpoints."""
    from cahl.cli import main

    cfg, run = run_with_checkpoints
    shutil.copytree(run, tmp_path / "run")
    _corrupt_all(tmp_path / "run")
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", f"model.name={cfg.name}"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "step_000002: state.pt does not match its checksum" in err
    assert "step_000001: state.pt does not match its checksum" in err and "--restart" in err
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.timeout(300)
def test_resume_with_restart_starts_again_when_no_checkpoint_is_trusted(run_with_checkpoints, tmp_path):
    from cahl.testing import train_args
    from cahl.train.checkpoint import latest_checkpoint

    cfg, run = run_with_checkpoints
    shutil.copytree(run, tmp_path / "run")
    _corrupt_all(tmp_path / "run")
    done = subprocess.run(train_args(cfg.name, tmp_path / "run", steps=1) + ["--resume", "--restart"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "starting again from step 0" in done.stdout
    # the warm start is a cached stage of its own: the run's one GRPO step, logged and checkpointed anew
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
    assert latest_checkpoint(tmp_path / "run").name == "step_000001"


def test_adapters_load_only_onto_the_base_model_they_were_trained_on(run_with_checkpoints):
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig

    cfg, run = run_with_checkpoints
    with pytest.raises(CahlInputError, match=r"policy.json: these adapters were trained on base model .*tiny.*"
                                             r"but model.name is 'embedded'"):
        PolicySet.from_checkpoint(ModelConfig(name="embedded"), run / "checkpoints" / "step_000001")


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00garbage", r"policy.json:1: not UTF-8 text"),
    (b"[[[[" * 50_000 + b"]]]]" * 50_000, r"policy.json: JSON nested too deeply"),
    (json.dumps({"mode": "adapters", "roles": [{}], "adapters": {}}).encode(), r"key 'roles': expected a list of role names"),
    (json.dumps({"mode": 5, "roles": ["planner"], "adapters": {}}).encode(), r"key 'mode': expected one of"),
    (json.dumps({"mode": "adapters", "roles": ["planner"], "adapters": {"planner": "planner"}, "base_model": 3}).encode(),
     r"key 'base_model'"),
])
def test_a_garbage_policy_json_is_an_input_error_naming_it(content, message, run_with_checkpoints, tmp_path):
    from cahl.agents.policy import read_policy_meta

    _, run = run_with_checkpoints
    folder = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoints" / "step_000001", folder)
    (folder / "policy.json").write_bytes(content)
    with pytest.raises(CahlInputError, match=message):
        read_policy_meta(folder)
