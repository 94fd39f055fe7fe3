"""PolicySet on a tiny random Llama: adapter switching, the reference, gradient isolation, layouts,
generation per role and checkpoints that plain transformers + peft can load."""

import json

import pytest
import torch

from cahl.agents.sampling import SamplingParams
from cahl.agents.model import load_model
from cahl.agents.policy import PolicySet
from cahl.config import ModelConfig
from cahl.testing import tiny_model
from cahl.types import CahlInputError, DataMissingError

IDS = [1, 504, 1912, 314, 253, 1345, 28, 2286, 17, 3010, 30]  # any in-vocabulary prompt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def cfg(path: str, policies: str = "adapters") -> ModelConfig:
    return ModelConfig(name=path, policies=policies, lora_r=4, lora_alpha=8, threads=1)


def perturb(params, seed: int, scale: float = 0.5) -> None:
    """Move an adapter away from its identity init (LoRA B = 0) so its role's outputs change."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * scale)


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def role_logits(ps: PolicySet, role: str) -> torch.Tensor:
    with ps.use_role(role) as model:
        return logits(model)


def ref_logits(ps: PolicySet) -> torch.Tensor:
    with ps.reference() as model:
        return logits(model)


def greedy_by_full_forward(model, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding without a KV cache: the plainest possible check of the backend's output."""
    out = list(ids)
    for _ in range(steps):
        out.append(int(logits(model, out)[-1].argmax()))
    return out[len(ids):]


def test_adapters_start_as_base_then_switch_per_role(tiny):
    ps = PolicySet.create(cfg(tiny))
    base, _ = load_model(tiny)
    expected = logits(base)
    assert ps.adapters == ["planner", "executor"]
    for role in ("planner", "executor"):
        torch.testing.assert_close(role_logits(ps, role), expected)  # LoRA B = 0: identity at start

    perturb(ps.parameters("planner"), seed=0)
    planner, executor, ref = role_logits(ps, "planner"), role_logits(ps, "executor"), ref_logits(ps)
    assert (planner - expected).abs().max() > 1e-2
    torch.testing.assert_close(executor, expected)
    torch.testing.assert_close(ref, expected)
    torch.testing.assert_close(role_logits(ps, "planner"), planner)  # switching back restores the planner


def test_parameters_are_per_role_and_gradients_stay_in_their_role(tiny):
    ps = PolicySet.create(cfg(tiny))
    planner, executor = ps.parameters("planner"), ps.parameters("executor")
    assert planner and len(planner) == len(executor)
    assert not {id(p) for p in planner} & {id(p) for p in executor}
    perturb(planner + executor, seed=1)

    # Policy forward, reference forward (KL), then backward: the pattern of a GRPO step with KL.
    x = torch.tensor([IDS])
    with ps.use_role("planner") as model:
        out = model(input_ids=x).logits
        with ps.reference() as ref_model, torch.no_grad():
            ref = ref_model(input_ids=x).logits
        assert model.active_adapter == "planner"
        (out - ref).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in planner)
    assert all(p.grad is None for p in executor)

    # Two roles' forwards before one backward: each adapter gets its own gradient, none is dropped.
    for p in planner:
        p.grad = None
    with ps.use_role("planner") as model:
        loss = model(input_ids=x).logits.mean()
    with ps.use_role("executor") as model:
        loss = loss + model(input_ids=x).logits.mean()
    loss.backward()
    assert all(p.grad is not None for p in planner + executor)


def test_backend_generates_with_its_roles_adapter(tiny):
    ps = PolicySet.create(cfg(tiny))
    perturb(ps.parameters("planner"), seed=2)
    params = SamplingParams(max_new_tokens=6, temperature=0)
    planner = ps.backend("planner").generate([IDS], params)[0].ids
    executor = ps.backend("executor").generate([IDS], params)[0].ids
    assert planner != executor
    with ps.use_role("planner") as model:
        assert planner == greedy_by_full_forward(model, IDS, 6)
    with ps.use_role("executor") as model:
        assert executor == greedy_by_full_forward(model, IDS, 6)
    # The adapter is stated per call: the active adapter left by the previous call does not leak.
    assert ps.backend("planner").generate([IDS], params)[0].ids == planner


def test_switching_inside_an_open_block_is_refused(tiny):
    ps = PolicySet.create(cfg(tiny))
    params = SamplingParams(max_new_tokens=2, temperature=0)
    with ps.use_role("planner"):
        with pytest.raises(RuntimeError, match="executor"):
            ps.backend("executor").generate([IDS], params)
        ps.backend("planner").generate([IDS], params)  # the same role is fine
    with ps.reference():
        with pytest.raises(RuntimeError, match="reference"):
            ps.backend("planner").generate([IDS], params)
    ps.backend("executor").generate([IDS], params)  # blocks closed: switching works again


def test_shared_mode_maps_every_role_to_one_adapter(tiny, tmp_path):
    ps = PolicySet.create(cfg(tiny, "shared"))
    assert ps.adapters == ["shared"]
    assert ps.parameters("planner") is ps.parameters("executor")
    perturb(ps.parameters("planner"), seed=3)
    torch.testing.assert_close(role_logits(ps, "planner"), role_logits(ps, "executor"))
    assert (role_logits(ps, "planner") - ref_logits(ps)).abs().max() > 1e-2
    ps.save(tmp_path)
    assert (tmp_path / "shared" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "planner").exists()
    assert json.loads((tmp_path / "policy.json").read_text())["adapters"] == {"planner": "shared", "executor": "shared"}


def test_separate_models_have_their_own_base_and_adapter(tiny, tmp_path):
    ps = PolicySet.create(cfg(tiny, "separate_models"))
    base, _ = load_model(tiny)
    with ps.use_role("planner") as planner_model, ps.use_role("executor") as executor_model:
        assert planner_model is not executor_model
    with pytest.raises(RuntimeError, match="separate_models"):
        ps.model
    perturb(ps.parameters("planner"), seed=4)
    assert (role_logits(ps, "planner") - logits(base)).abs().max() > 1e-2
    torch.testing.assert_close(role_logits(ps, "executor"), logits(base))
    torch.testing.assert_close(ref_logits(ps), logits(base))
    # Another role's block does not block this role: the models are distinct.
    with ps.use_role("planner"):
        ps.backend("executor").generate([IDS], SamplingParams(max_new_tokens=2, temperature=0))

    ps.save(tmp_path)
    loaded = PolicySet.from_checkpoint(cfg(tiny), tmp_path)  # layout comes from the checkpoint
    assert loaded.mode == "separate_models"
    for role in ("planner", "executor"):
        assert loaded.state_dict_digest(role) == ps.state_dict_digest(role)
        torch.testing.assert_close(role_logits(loaded, role), role_logits(ps, role))


def test_saved_adapters_load_in_plain_peft(tiny, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ps = PolicySet.create(cfg(tiny))
    perturb(ps.parameters("planner"), seed=5)
    perturb(ps.parameters("executor"), seed=6)
    ps.save(tmp_path)
    assert json.loads((tmp_path / "policy.json").read_text())["roles"] == ["planner", "executor"]
    for role in ("planner", "executor"):
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / role).iterdir()}
        plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(tmp_path / role))
        torch.testing.assert_close(logits(plain), role_logits(ps, role))


def test_checkpoint_round_trip_and_in_place_resume(tiny, tmp_path):
    ps = PolicySet.create(cfg(tiny))
    perturb(ps.parameters("planner"), seed=7)
    perturb(ps.parameters("executor"), seed=8)
    ps.save(tmp_path)
    digests = {r: ps.state_dict_digest(r) for r in ps.roles}
    assert digests["planner"] != digests["executor"]

    loaded = PolicySet.from_checkpoint(cfg(tiny), tmp_path)
    assert {r: loaded.state_dict_digest(r) for r in loaded.roles} == digests
    torch.testing.assert_close(role_logits(loaded, "planner"), role_logits(ps, "planner"))

    fresh = PolicySet.create(cfg(tiny))
    before = [id(p) for p in fresh.parameters("planner")]
    assert fresh.state_dict_digest("planner") != digests["planner"]
    fresh.load_adapters(tmp_path)
    assert [id(p) for p in fresh.parameters("planner")] == before  # optimizers keep their tensors
    assert {r: fresh.state_dict_digest(r) for r in fresh.roles} == digests
    with pytest.raises(CahlInputError, match="expected mode 'shared'"):
        PolicySet.create(cfg(tiny, "shared")).load_adapters(tmp_path)


def test_flat_role_and_bad_input(tiny, tmp_path):
    ps = PolicySet.create(cfg(tiny), roles=("flat",))
    assert ps.adapters == ["flat"] and ps.roles == ("flat",)
    with pytest.raises(CahlInputError, match="unknown policy role 'planner'"):
        ps.backend("planner")
    with pytest.raises(CahlInputError, match="model.policies"):
        PolicySet.create(cfg(tiny, "two_adapters"))
    with pytest.raises(DataMissingError, match="policy.json"):
        PolicySet.from_checkpoint(cfg(tiny), tmp_path)
    ps.save(tmp_path)
    (tmp_path / "flat" / "adapter_model.safetensors").unlink()
    with pytest.raises(DataMissingError, match="adapter_model.safetensors"):
        PolicySet.from_checkpoint(cfg(tiny), tmp_path)


@pytest.mark.parametrize("mode", ["adapters", "separate_models"])
def test_sampler_decodes_both_roles_together_each_through_its_adapter(tiny, mode):
    """PolicySet.sampler: planner and executor rows join one continuous batch (two batches for
    separate_models), and each row's tokens are its own role's greedy decode."""
    ps = PolicySet.create(cfg(tiny, mode))
    perturb(ps.parameters("planner"), seed=2)
    perturb(ps.parameters("executor"), seed=3)
    expected = {}
    for role in ("planner", "executor"):
        with ps.use_role(role) as model:
            expected[role] = greedy_by_full_forward(model, IDS, 6)
    assert expected["planner"] != expected["executor"]
    sampler = ps.sampler(("planner", "executor"), seed=0)
    assert len(sampler.decoders) == (1 if mode == "adapters" else 2)
    params = SamplingParams(max_new_tokens=6, temperature=0)
    sampler.submit("planner", IDS, params, n=2, tags=["p0", "p1"])
    done = dict(sampler.step())  # the executor joins a batch that is already decoding
    sampler.submit("executor", IDS, params, n=1, tags=["e0"])
    while sampler.busy:
        done.update(sampler.step())
    assert {tag: s.ids for tag, s in done.items()} == {"p0": expected["planner"], "p1": expected["planner"],
                                                        "e0": expected["executor"]}
    assert set(sampler.seconds) == {"planner", "executor"}
    # one batch: the executor's prompt was computed inside a decode forward, through its adapter
    assert sampler.lanes["executor"][0].backend.stats.joined_tokens == (len(IDS) if mode == "adapters" else 0)


@pytest.mark.parametrize("mode", ["adapters", "shared", "separate_models"])
def test_merged_policies_decode_each_role_as_its_adapter_does(tiny, mode):
    """MergedPolicies (evaluation's eval.merge_adapters): each role's adapter merged into its own
    copy of the base; a role's greedy tokens are those of the PolicySet with that role active, its
    logits the same function (float32, rounding aside), and the trained PolicySet is untouched."""
    from cahl.agents.policy import MergedPolicies

    ps = PolicySet.create(cfg(tiny, mode))
    for i, adapter in enumerate(ps.adapters):
        perturb(ps._params[adapter], seed=2 + i)
    expected, reference = {}, {}
    for role in ("planner", "executor"):
        with ps.use_role(role) as model:
            expected[role] = greedy_by_full_forward(model, IDS, 6)
            reference[role] = logits(model)
    digests = {r: ps.state_dict_digest(r) for r in ps.roles}
    merged = MergedPolicies(ps)
    assert {r: ps.state_dict_digest(r) for r in ps.roles} == digests  # merged on a copy
    assert len(merged.models()) == (1 if mode == "shared" else 2)
    for model in merged.models():
        assert not any("lora" in name for name, _ in model.named_parameters())
    for role in ("planner", "executor"):
        assert torch.allclose(logits(merged.backend(role).model), reference[role], atol=1e-4)
    if mode != "shared":
        assert expected["planner"] != expected["executor"]
    sampler = merged.sampler(("planner", "executor"), seed=0)
    assert len(sampler.decoders) == len(merged.models())
    params = SamplingParams(max_new_tokens=6, temperature=0)
    sampler.submit("planner", IDS, params, n=2, tags=["p0", "p1"])
    done = dict(sampler.step())
    sampler.submit("executor", IDS, params, n=1, tags=["e0"])
    while sampler.busy:
        done.update(sampler.step())
    assert {tag: s.ids for tag, s in done.items()} == {"p0": expected["planner"], "p1": expected["planner"],
                                                        "e0": expected["executor"]}
    assert merged.backend("executor").generate([IDS], params)[0].ids == expected["executor"]
    with pytest.raises(CahlInputError, match="roles"):
        merged.backend("flat")
