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
