"""Losses, KL and log-prob helpers against naive per-token loops, autograd and hand-computed cases."""

import math

import pytest
import torch

from cahl.rl.losses import (
    AGG_MODES,
    aggregate_loss,
    clipped_policy_loss,
    entropy_from_logits,
    kl_k3,
    kl_penalty,
    masked_mean,
    masked_sum,
    selective_log_softmax,
)
from cahl.types import CahlInputError


def ragged_mask(gen, b, t):
    """[B, T] mask of a prompt-then-answer layout: each row trains a random span, some rows none."""
    mask = torch.zeros(b, t, dtype=torch.bool)
    for row in range(b):
        start = int(torch.randint(0, t, (1,), generator=gen))
        length = int(torch.randint(0, t - start + 1, (1,), generator=gen))
        mask[row, start : start + length] = True
    mask[0, :] = True  # at least one token overall
    return mask


def naive_aggregate(loss, mask, mode):
    """Python loop over rows and tokens; works on torch scalars so autograd follows it."""
    rows = []
    for b in range(loss.shape[0]):
        tokens = [loss[b, t] for t in range(loss.shape[1]) if mask[b, t]]
        rows.append(tokens)
    if mode == "token_mean":
        flat = [x for row in rows for x in row]
        return sum(flat) / len(flat)
    per_seq = [sum(row) / (len(row) if mode == "seq_mean_token_mean" else 1) for row in rows if row]
    return sum(per_seq) / len(per_seq)


def naive_clipped_loss(logp, old_logp, adv, mask, eps_low, eps_high, mode):
    terms = {}
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            a = float(adv[b] if adv.dim() == 1 else adv[b, t])
            ratio = torch.exp(logp[b, t] - float(old_logp[b, t]))
            clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
            terms[b, t] = torch.maximum(-a * ratio, -a * clipped)
    per_token = torch.stack([torch.stack([terms[b, t] for t in range(logp.shape[1])]) for b in range(logp.shape[0])])
    return naive_aggregate(per_token, mask, mode)


SHAPES = [(1, 1), (3, 7), (5, 12)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", AGG_MODES)
def test_aggregate_matches_naive_loop(seed, shape, mode):
    gen = torch.Generator().manual_seed(seed)
    loss = torch.randn(*shape, generator=gen, dtype=torch.float64)
    mask = ragged_mask(gen, *shape)
    assert aggregate_loss(loss, mask, mode).item() == pytest.approx(float(naive_aggregate(loss, mask, mode)))


@pytest.mark.parametrize("mode", AGG_MODES)
def test_micro_batch_losses_with_global_count_sum_to_the_batch_loss(mode):
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    mask = ragged_mask(gen, 6, 9)
    count = int(mask.sum()) if mode == "token_mean" else int(mask.any(dim=1).sum())
    parts = [aggregate_loss(loss[s : s + 2], mask[s : s + 2], mode, global_count=count) for s in (0, 2, 4)]
    assert sum(parts).item() == pytest.approx(aggregate_loss(loss, mask, mode).item())


def test_masked_reductions_ignore_padding_even_when_it_is_inf():
    x = torch.tensor([[1.0, 3.0, float("-inf")], [2.0, float("nan"), 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_sum(x, mask).item() == 6.0
    assert masked_mean(x, mask).item() == 2.0
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([2.0, 2.0]))
    masked_mean(x, mask).backward()
    assert torch.isfinite(x.grad).all()
    assert masked_mean(torch.ones(2, 2), torch.zeros(2, 2)).item() == 0.0  # nothing trained -> 0, not NaN


def test_aggregate_rejects_unknown_mode_and_non_binary_mask():
    with pytest.raises(CahlInputError, match="token_mean"):
        aggregate_loss(torch.zeros(2, 2), torch.ones(2, 2), "sum")
    with pytest.raises(CahlInputError, match="0/1"):
        aggregate_loss(torch.zeros(2, 2), torch.full((2, 2), 0.5), "token_mean")
    with pytest.raises(CahlInputError, match=r"expected shape \(2, 2\)"):
        aggregate_loss(torch.zeros(2, 2), torch.ones(2, 3), "token_mean")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("per_token_adv", [False, True])
def test_clipped_loss_and_gradient_match_naive_loop(seed, shape, mode, per_token_adv):
    gen = torch.Generator().manual_seed(seed)
    old = torch.randn(*shape, generator=gen, dtype=torch.float64) - 2
    # spread the ratio over [e^-0.5, e^0.5] so both clip bounds are hit
    new = (old + 0.5 * (2 * torch.rand(*shape, generator=gen, dtype=torch.float64) - 1)).requires_grad_()
    adv = torch.randn(*(shape if per_token_adv else shape[:1]), generator=gen, dtype=torch.float64)
    mask = ragged_mask(gen, *shape)

    loss, _ = clipped_policy_loss(new, old, adv, mask, eps_low=0.2, eps_high=0.28, agg=mode)
    (grad,) = torch.autograd.grad(loss, new)
    naive = naive_clipped_loss(new, old, adv, mask, 0.2, 0.28, mode)
    (naive_grad,) = torch.autograd.grad(naive, new)
    assert loss.item() == pytest.approx(naive.item())
    torch.testing.assert_close(grad, naive_grad)


def test_clip_boundaries_by_hand():
    # ratio 1.3 > 1 + 0.28: clipped for A > 0 (no gradient), not for A < 0.
    # ratio 0.7 < 1 - 0.2: clipped for A < 0 (no gradient), not for A > 0.
    ratio = torch.tensor([[1.3], [1.3], [0.7], [0.7]], dtype=torch.float64)
    old = torch.zeros(4, 1, dtype=torch.float64)
    new = ratio.log().requires_grad_()
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    mask = torch.ones(4, 1)
    per_row = []
    for i in range(4):
        loss, _ = clipped_policy_loss(new[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], eps_low=0.2, eps_high=0.28)
        (grad,) = torch.autograd.grad(loss, new)
        per_row.append((loss.item(), grad[i, 0].item()))
    assert per_row[0] == pytest.approx((-1.28, 0.0))  # -A * (1 + eps_high)
    assert per_row[1] == pytest.approx((1.3, 1.3))  # -A * r, d/dlogp = -A * r
    assert per_row[2] == pytest.approx((0.8, 0.0))  # -A * (1 - eps_low)
    assert per_row[3] == pytest.approx((-0.7, -0.7))

    _, metrics = clipped_policy_loss(new, old, adv, mask, eps_low=0.2, eps_high=0.28)
    assert metrics["clip_frac_high"] == pytest.approx(0.25)
    assert metrics["clip_frac_low"] == pytest.approx(0.25)
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    assert metrics["ratio_max"] == pytest.approx(1.3)
    k3 = [r - math.log(r) - 1 for r in (1.3, 1.3, 0.7, 0.7)]  # KL(old || new), samples from old
    assert metrics["approx_kl"] == pytest.approx(sum(k3) / 4)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_on_policy_gradient_is_reinforce(mode):
    gen = torch.Generator().manual_seed(1)
    logp = (torch.randn(4, 6, generator=gen, dtype=torch.float64) - 1).requires_grad_()
    adv = torch.randn(4, generator=gen, dtype=torch.float64)
    mask = ragged_mask(gen, 4, 6)
    loss, metrics = clipped_policy_loss(logp, logp.detach().clone(), adv, mask, eps_low=0.2, eps_high=0.28, agg=mode)
    (grad,) = torch.autograd.grad(loss, logp)
    reinforce = aggregate_loss(-adv[:, None] * logp, mask, mode)
    (want,) = torch.autograd.grad(reinforce, logp)
    torch.testing.assert_close(grad, want)
    assert metrics["clip_frac_low"] == metrics["clip_frac_high"] == 0.0
    assert metrics["ratio_mean"] == metrics["ratio_max"] == 1.0
    assert metrics["approx_kl"] == 0.0


def test_clipped_loss_rejects_mismatched_advantages():
    with pytest.raises(CahlInputError, match="advantages"):
        clipped_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), eps_low=0.2, eps_high=0.2)


@pytest.mark.parametrize("seed", range(3))
def test_k3_matches_formula_is_non_negative_and_zero_at_equality(seed):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.randn(4, 9, generator=gen) - 2
    gaps = torch.cat([torch.randn(4, 3, generator=gen), torch.full((4, 3), 1e-8), torch.full((4, 3), -3e-7)], dim=1)
    ref = logp + gaps
    k3 = kl_k3(logp, ref)
    for b in range(4):
        for t in range(9):
            x = float(ref[b, t]) - float(logp[b, t])
            assert float(k3[b, t]) == pytest.approx(math.exp(x) - x - 1, rel=1e-4, abs=1e-7)
    assert (k3 >= 0).all()
    assert (kl_k3(logp, logp) == 0).all()
    mask = ragged_mask(gen, 4, 9)
    assert kl_penalty(logp, ref, mask).item() == pytest.approx(masked_mean(k3, mask).item())


def test_k3_estimates_kl_on_samples():
    # E_{x ~ p}[k3] = KL(p || q): checked on a 5-way categorical with 200k samples
    gen = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    logp_all, logq_all = p_logits.log_softmax(0), q_logits.log_softmax(0)
    samples = torch.multinomial(logp_all.exp(), 200_000, replacement=True, generator=gen)
    estimate = kl_k3(logp_all[samples][None], logq_all[samples][None]).mean().item()
    exact = (logp_all.exp() * (logp_all - logq_all)).sum().item()
    assert estimate == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("shape", [(2, 5, 11), (7, 3), (1, 1, 1, 4)])
@pytest.mark.parametrize("chunk_rows", [1, 3, 256])
def test_selective_log_softmax_equals_log_softmax_gather(shape, chunk_rows):
    gen = torch.Generator().manual_seed(sum(shape))
    logits = (3 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    ids = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    got = selective_log_softmax(logits, ids, chunk_rows=chunk_rows)
    want = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, want.float())
    upstream = torch.randn(*shape[:-1], generator=gen)
    (grad,) = torch.autograd.grad((got * upstream).sum(), logits)
    (want_grad,) = torch.autograd.grad((want * upstream.double()).sum(), logits)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-6)


def test_selective_log_softmax_on_bf16_logits_is_computed_in_float32():
    gen = torch.Generator().manual_seed(0)
    logits = (5 * torch.randn(3, 4, 1000, generator=gen)).bfloat16()
    ids = torch.randint(0, 1000, (3, 4), generator=gen)
    got = selective_log_softmax(logits, ids, chunk_rows=5)
    want = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_selective_log_softmax_rejects_out_of_vocab_ids():
    with pytest.raises(CahlInputError, match=r"\[0, 4\)"):
        selective_log_softmax(torch.zeros(2, 4), torch.tensor([1, 4]))
    with pytest.raises(CahlInputError, match="ids: expected shape"):
        selective_log_softmax(torch.zeros(2, 4), torch.tensor([1]))


@pytest.mark.parametrize("chunk_rows", [1, 4, 256])
def test_entropy_matches_naive_loop(chunk_rows):
    gen = torch.Generator().manual_seed(chunk_rows)
    logits = 2 * torch.randn(2, 5, 9, generator=gen, dtype=torch.float64)
    got = entropy_from_logits(logits, chunk_rows=chunk_rows)
    assert got.shape == (2, 5)
    for b in range(2):
        for t in range(5):
            z = logits[b, t].tolist()
            top = max(z)
            total = sum(math.exp(v - top) for v in z)
            probs = [math.exp(v - top) / total for v in z]
            assert float(got[b, t]) == pytest.approx(-sum(p * math.log(p) for p in probs), rel=1e-5)


def test_entropy_with_masked_vocabulary_is_finite_with_finite_gradient():
    logits = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]], requires_grad=True)
    ent = entropy_from_logits(logits)
    assert ent.item() == pytest.approx(math.log(2))
    ent.sum().backward()
    assert torch.isfinite(logits.grad).all()
