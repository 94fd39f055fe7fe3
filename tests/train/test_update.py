"""The GRPO update computes a group's shared prompt once; that must give exactly the gradient of
processing every member separately."""

import torch

from cahl.agents.policy import PolicySet
from cahl.config import ModelConfig
from cahl.testing import tiny_model
from cahl.train.update import grpo_step, sft_step
from cahl.types import Trajectory


def _group(vocab: int):
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (25,), generator=g).tolist()
    trajs = []
    for j, n in enumerate((6, 14, 9, 11)):
        # a multi-turn member: sampled turn, untrained feedback, sampled turn
        a = torch.randint(0, vocab, (n,), generator=g).tolist()
        fb = torch.randint(0, vocab, (4,), generator=g).tolist()
        b = torch.randint(0, vocab, (3,), generator=g).tolist()
        ids = prompt + a + fb + b
        mask = [0] * 25 + [1] * n + [0] * 4 + [1] * 3
        lp = [0.0] * 25 + (-torch.rand(n, generator=g)).tolist() + [0.0] * 4 + (-torch.rand(3, generator=g)).tolist()
        trajs.append(Trajectory("executor", "t", f"p0.s0.a{j}", "p0", ("t", "executor", "p0.s0"), ids, mask, lp, 25))
    return trajs, [1.0, -0.5, 0.25, -0.75]


def _grads(policies, trajs, adv, share: bool):
    opt = torch.optim.SGD(policies.parameters("executor"), lr=0.0)
    m = grpo_step(policies, "executor", opt, trajs, adv, eps_low=0.2, eps_high=0.28, kl_beta=0.1, max_tokens=10_000,
                  grad_clip=1e9, pad_id=0, apply=False, share_prefix=share)
    return [p.grad.clone() for p in policies.parameters("executor")], m


def test_shared_prefix_update_equals_separate_forwards(tmp_path):
    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=tiny_model(tmp_path / "m"), lora_r=4), roles=("planner", "executor"))
    with torch.no_grad():
        for p in policies.parameters("executor"):
            p.add_(torch.randn_like(p) * 0.05)
    trajs, adv = _group(len(policies.tokenizer))
    shared, m1 = _grads(policies, trajs, adv, True)
    separate, m2 = _grads(policies, trajs, adv, False)
    assert any(float(g.abs().sum()) > 0 for g in shared)
    for a, b in zip(shared, separate):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert abs(m1["loss"] - m2["loss"]) < 1e-5 and m1["kl"] > 0


def test_sft_step_lowers_the_loss_on_its_batch(tmp_path):
    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=tiny_model(tmp_path / "m"), lora_r=8), roles=("executor",))
    trajs, _ = _group(len(policies.tokenizer))
    # a learnable target: every trained position should become token 42
    examples = [([42 if m else i for i, m in zip(t.ids, t.loss_mask)], t.loss_mask) for t in trajs]
    opt = torch.optim.AdamW(policies.parameters("executor"), lr=1e-3)
    losses = [sft_step(policies, "executor", opt, examples, 10_000, 1.0, 0)["loss"] for _ in range(12)]
    # the tiny model's frozen RMSNorm bounds how far LoRA can push one logit (floor ~9.5 nats)
    assert losses[-1] < losses[0] - 0.2, losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def _sft_grads(policies, examples, packed: bool, monkeypatch):
    from cahl.agents import attention

    monkeypatch.setattr(attention, "packable", lambda model, longest: packed)
    opt = torch.optim.SGD(policies.parameters("executor"), lr=0.0)
    m = sft_step(policies, "executor", opt, examples, 10_000, 1e9, 0)
    return [p.grad.clone() for p in policies.parameters("executor")], m["loss"]


def test_sft_packed_unpadded_equals_padded_batch(tmp_path, monkeypatch):
    """SFT packs a micro-batch into one sequence (shared start once, rests unpadded, one attention
    chunk per rest longer than the shared start): same loss and gradients as the padded batch,
    also when the examples share no first token (then none predicts its first token)."""
    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=tiny_model(tmp_path / "m"), lora_r=4), roles=("executor",))
    with torch.no_grad():
        for p in policies.parameters("executor"):
            p.add_(torch.randn_like(p) * 0.05)
    trajs, _ = _group(len(policies.tokenizer))
    shared = [(t.ids[20:], t.loss_mask[20:]) for t in trajs]  # 5 shared tokens, rests of 18-26
    apart = [([i + 1] + ids[1:], [1] * len(ids)) for i, (ids, _) in enumerate(shared)]  # nothing shared
    for examples in (shared, apart):
        packed, loss_packed = _sft_grads(policies, examples, True, monkeypatch)
        padded, loss_padded = _sft_grads(policies, examples, False, monkeypatch)
        assert any(float(g.abs().sum()) > 0 for g in packed)
        for a, b in zip(packed, padded):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert abs(loss_packed - loss_padded) < 1e-5


def test_sequences_longer_than_a_sliding_window_are_not_packed(tmp_path):
    from cahl.agents import attention
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "m"))
    assert attention.packable(model, 5000)
    model.config.sliding_window = 64
    assert attention.packable(model, 64) and not attention.packable(model, 65)
