"""`cahl export`: a checkpoint's policies as plain transformers models (merged) or PEFT adapters,
with logits equal to the adapters' inside cahl, and a model card holding the run's eval table."""

import json

import pytest
import torch

from cahl.agents.policy import PolicySet
from cahl.cli import main
from cahl.config import ModelConfig
from cahl.testing import tiny_model

IDS = [1, 504, 1912, 314, 253, 1345, 28, 2286, 17, 3010, 30]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder: final/ with two perturbed adapters, and one evaluation after training."""
    root = tmp_path_factory.mktemp("run")
    base = tiny_model(root / "base")
    ps = PolicySet.create(ModelConfig(name=base, lora_r=4, lora_alpha=8, threads=1))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from LoRA's identity init (B = 0), differently per role
        for role in ps.roles:
            for p in ps.parameters(role):
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    ps.save(root / "run" / "final")
    (root / "run" / "eval_after_tools.json").write_text(json.dumps(
        {"agent": "hierarchical", "constrain": "tools",
         "benchmarks": {"bfcl_v3": {"simple": {"accuracy": 0.625, "n": 8, "ci95": [0.31, 0.86]}}}}))
    expected = {}
    for role in ps.roles:
        with ps.use_role(role) as model, torch.no_grad():
            expected[role] = model(input_ids=torch.tensor([IDS])).logits[0]
    assert (expected["planner"] - expected["executor"]).abs().max() > 1e-2  # the checks below can tell roles apart
    return root / "run", base, expected


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([IDS])).logits[0]


def test_merged_export_loads_in_plain_transformers_with_the_adapters_logits(run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _, expected = run
    out = tmp_path / "export"
    assert main(["export", str(run_dir / "final"), str(out), "--merge"]) == 0
    for role in ("planner", "executor"):
        model = AutoModelForCausalLM.from_pretrained(out / role, dtype=torch.float32).eval()
        assert not any("lora" in n for n, _ in model.named_parameters())
        # float32 merging rounds once per weight (W + s*B@A): ~1e-5 on these logits, against the
        # roles' own difference checked far above it
        torch.testing.assert_close(_logits(model), expected[role], atol=1e-4, rtol=1e-5)
        assert AutoTokenizer.from_pretrained(out / role).eos_token is not None
        card = (out / role / "README.md").read_text()
        assert card.startswith(f"# {role} ({role})") and "| bfcl_v3:simple | 0.625 [0.31, 0.86] (n=8) |" in card
    assert "merge_and_unload" in capsys.readouterr().out


def test_adapter_export_is_peft_and_a_cahl_checkpoint(run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, base, expected = run
    out = tmp_path / "export"
    assert main(["export", str(run_dir / "final"), str(out)]) == 0
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), out / "executor")
    torch.testing.assert_close(_logits(model.eval()), expected["executor"], atol=1e-5, rtol=0)
    again = PolicySet.from_checkpoint(ModelConfig(name=base, threads=1), out)
    with again.use_role("planner") as m:
        torch.testing.assert_close(_logits(m), expected["planner"], atol=1e-5, rtol=0)
    assert "Each folder is a PEFT LoRA adapter" in (out / "README.md").read_text()


def test_export_refuses_a_folder_that_is_not_empty(run, tmp_path, capsys):
    run_dir, _, _ = run
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir / "final"), str(tmp_path / "taken")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "taken" / "keep.txt").read_text() == "mine"
