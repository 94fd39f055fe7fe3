"""The fused LoRA forward computes PEFT's function: same outputs and gradients, same fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from cahl.agents.lora_fast import install_fused_lora

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def two_models(tiny_model, dropout: float = 0.0):
    base = copy.deepcopy(tiny_model)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS), adapter_name="planner")
    peft.add_adapter("executor", LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS))
    with torch.no_grad():  # fresh B is zero: give every LoRA weight a value so the path matters
        g = torch.Generator().manual_seed(0)
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    fused = copy.deepcopy(peft)
    assert install_fused_lora(fused) == len(TARGETS) * 2  # two layers in the tiny model
    assert install_fused_lora(fused) == 0  # idempotent
    return peft, fused


def loss_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids).logits
    loss = out.float().square().mean()
    loss.backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("adapter", ["planner", "executor"])
def test_fused_forward_matches_peft_outputs_and_lora_gradients(tiny_model, adapter):
    peft, fused = two_models(tiny_model)
    ids = torch.randint(0, 1000, (3, 17), generator=torch.Generator().manual_seed(1))
    for m in (peft, fused):
        m.set_adapter(adapter)

    def not_expected(*a, **k):
        raise AssertionError("the fused path should have handled this call")

    for module in fused.modules():
        if getattr(module, "_cahl_fused", False):
            module._cahl_peft_forward = not_expected
    (out_a, grads_a), (out_b, grads_b) = loss_and_grads(peft, ids), loss_and_grads(fused, ids)
    assert torch.allclose(out_a, out_b, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and any(f".{adapter}." in n for n in grads_a)
    for n in grads_a:
        assert torch.allclose(grads_a[n], grads_b[n], atol=1e-6, rtol=1e-4), n


def test_disabled_adapters_and_mixed_batches_take_peft_forward(tiny_model):
    peft, fused = two_models(tiny_model)
    ids = torch.randint(0, 1000, (2, 9), generator=torch.Generator().manual_seed(2))
    peft.eval(), fused.eval()  # PEFT takes adapter_names only in eval mode
    with torch.no_grad():
        with peft.disable_adapter(), fused.disable_adapter():
            assert torch.equal(peft(input_ids=ids).logits, fused(input_ids=ids).logits)
        names = ["planner", "executor"]
        assert torch.equal(peft(input_ids=ids, adapter_names=names).logits, fused(input_ids=ids, adapter_names=names).logits)


def test_dropout_takes_peft_forward(tiny_model):
    peft, fused = two_models(tiny_model, dropout=0.5)
    ids = torch.randint(0, 1000, (2, 9), generator=torch.Generator().manual_seed(3))
    peft.train(), fused.train()
    torch.manual_seed(0)
    a = peft(input_ids=ids).logits
    torch.manual_seed(0)
    b = fused(input_ids=ids).logits
    assert torch.equal(a, b)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("names", [["planner", "executor", None, "executor"], ["executor"] * 4])
def test_routed_rows_equal_peft_mixed_batch(tiny_model, dropout, names):
    """route_adapters runs each row through its own adapter (None: the base), whichever adapter is
    active: PEFT's mixed-batch forward gives the same logits. With dropout the fused path does not
    apply and routing falls back to PEFT itself (the model is in eval mode, so dropout is off)."""
    from cahl.agents.lora_fast import BASE, route_adapters

    peft, fused = two_models(tiny_model, dropout=dropout)
    peft.eval(), fused.eval()
    fused.set_adapter("planner")
    ids = torch.randint(0, 1000, (4, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = peft(input_ids=ids, adapter_names=[BASE if n is None else n for n in names]).logits
        if dropout == 0.0:  # the fused path must handle it
            for module in fused.modules():
                if getattr(module, "_cahl_fused", False):
                    module._cahl_peft_forward = None
        with route_adapters(fused, names):
            got = fused(input_ids=ids).logits
        assert torch.allclose(expected, got, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(got, fused(input_ids=ids).logits, atol=1e-3)  # routed, not the active adapter
        for model in (peft, fused):  # an optimizer step changes the weights in place: no stale copy is used
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(-2.0)
        expected = peft(input_ids=ids, adapter_names=[BASE if n is None else n for n in names]).logits
        with route_adapters(fused, names):
            assert torch.allclose(expected, fused(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_routing_refuses_what_it_cannot_honour(tiny_model):
    from cahl.agents.lora_fast import route_adapters

    peft, fused = two_models(tiny_model)
    ids = torch.randint(0, 1000, (2, 5), generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="no routed forward"), route_adapters(tiny_model, ["planner", "executor"]):
        pass
    with torch.no_grad(), pytest.raises(RuntimeError, match="disabled"), fused.disable_adapter():
        with route_adapters(fused, ["planner", "executor"]):
            fused(input_ids=ids)
    with pytest.raises(RuntimeError, match="do not nest"), route_adapters(fused, ["planner"]):
        with route_adapters(fused, ["executor"]):
            pass


def test_float32_adapters_on_a_bfloat16_base_take_the_fused_path(tiny_model):
    """PEFT keeps adapter weights in float32 on a bfloat16 base (the usual GPU setup); the fused
    forward handles it (no fallback) with PEFT's outputs and gradients, routed or not."""
    from cahl.agents.lora_fast import route_adapters

    peft, fused = two_models(tiny_model)
    for model in (peft, fused):
        for name, p in model.named_parameters():
            if "lora_" not in name:
                p.data = p.data.to(torch.bfloat16)
    for module in fused.modules():
        if getattr(module, "_cahl_fused", False):
            module._cahl_peft_forward = None
    ids = torch.randint(0, 1000, (3, 13), generator=torch.Generator().manual_seed(6))
    (out_a, grads_a), (out_b, grads_b) = loss_and_grads(peft, ids), loss_and_grads(fused, ids)
    assert out_b.dtype == torch.bfloat16 and torch.allclose(out_a.float(), out_b.float(), atol=2e-2, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for n in grads_a:
        assert torch.allclose(grads_a[n], grads_b[n], atol=1e-3, rtol=5e-2), n
    peft.eval(), fused.eval()
    names = ["executor", "planner", "planner"]
    with torch.no_grad(), route_adapters(fused, names):
        routed = fused(input_ids=ids).logits
    with torch.no_grad():  # each row as PEFT computes it with that row's adapter active
        for i, name in enumerate(names):
            peft.set_adapter(name)
            assert torch.allclose(peft(input_ids=ids[i:i + 1]).logits[0].float(), routed[i].float(), atol=2e-2, rtol=0)
