"""Policy-gradient losses over per-token tensors and masks (DESIGN §4).

Shapes: B sequences, T token positions, V vocabulary. `mask[B, T]` is 1 (True) exactly on the
tokens the policy being trained sampled; prompts, tool observations, the other role's text and
padding are 0, so they neither enter a loss nor a metric. Position t of `logp`/`logits` is the
prediction of token t (the caller shifts logits by one before calling). Masks are bool or 0/1.

Masked positions are *selected away* (torch.where), never multiplied by 0, so padding holding
-inf or huge values cannot turn a loss or a gradient into NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cahl.types import CahlInputError

AGG_MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum")
MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: past this a ratio is a bug, and exp would overflow bf16/fp16
DEFAULT_CHUNK_ROWS = 256  # rows of [., V] logits upcast at once: 256 x 152k vocab x 4 B = 156 MB


def _bool_mask(mask: Tensor, shape: torch.Size, name: str = "mask") -> Tensor:
    """The mask as bool, after checking it has `shape` and only 0/1 values (weights are not masks)."""
    if mask.shape != shape:
        raise CahlInputError(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if not ((mask == 0) | (mask == 1)).all():
        raise CahlInputError(f"{name}: expected only 0/1 (or bool) values")
    return mask != 0


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of x over positions where mask is 1; over all dims when dim is None."""
    m = _bool_mask(mask, x.shape)
    picked = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return picked.sum() if dim is None else picked.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over positions where mask is 1. An empty selection gives 0, not NaN: a batch in
    which a role sampled no token contributes no loss instead of poisoning the step."""
    m = _bool_mask(mask, x.shape)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, m, dim) / count.clamp_min(1)


def aggregate_loss(
    per_token_loss: Tensor, mask: Tensor, mode: str = "token_mean", *, global_count: float | None = None
) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    - "token_mean" (default; DAPO): sum over every trained token of the batch / number of those
      tokens. Each token weighs the same, so long answers are not down-weighted per token.
    - "seq_mean_token_mean" (GRPO as published in DeepSeekMath): mean over each sequence's tokens,
      then mean over sequences. Tokens of short sequences weigh more.
    - "seq_mean_token_sum": sum over each sequence's tokens, then mean over sequences (the loss
      grows with length; Dr. GRPO's variant divides this by a constant instead).
    Sequences with no trained token (e.g. rows of the other role) are left out of sequence means.

    `global_count`: when this call sees one micro-batch of an optimizer step, pass the count over
    the whole step (trained tokens for token_mean, non-empty sequences for the seq modes); then the
    micro-batch losses *sum* to the step's loss. Without it each call divides by its own count,
    and averaging micro-batch token-means is not the token-mean of the step.
    """
    if per_token_loss.dim() != 2:
        raise CahlInputError(f"per_token_loss: expected shape [B, T], got {tuple(per_token_loss.shape)}")
    m = _bool_mask(mask, per_token_loss.shape)
    if mode == "token_mean":
        total = masked_sum(per_token_loss, m)  # scalar
        count = m.sum()
    elif mode in ("seq_mean_token_mean", "seq_mean_token_sum"):
        per_seq = masked_sum(per_token_loss, m, dim=1)  # [B]
        tokens = m.sum(dim=1)  # [B]
        if mode == "seq_mean_token_mean":
            per_seq = per_seq / tokens.clamp_min(1)
        total = per_seq.sum()  # empty rows have per_seq == 0
        count = (tokens > 0).sum()
    else:
        raise CahlInputError(f"loss aggregation mode: expected one of {AGG_MODES}, got {mode!r}")
    if global_count is not None:
        if global_count <= 0:
            raise CahlInputError(f"global_count: expected a positive count, got {global_count}")
        return total / global_count
    return total / count.clamp_min(1)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token [B, T], for tokens sampled from pi:
    exp(ref - logp) - (ref - logp) - 1. Unbiased, and >= 0 for every sample (unlike k1 = -x),
    so its per-token values can be read. Computed as expm1(x) - x, which keeps the x^2/2 term
    when x is tiny (exp(x) - x - 1 rounds to a negative number there in float32). Gradients
    flow into both arguments; compute ref_logp under no_grad."""
    if logp.shape != ref_logp.shape:
        raise CahlInputError(f"ref_logp: expected shape {tuple(logp.shape)} like logp, got {tuple(ref_logp.shape)}")
    x = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # [B, T]
    return (torch.expm1(x) - x).clamp_min(0)


def kl_penalty(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, agg: str = "token_mean", *, global_count: float | None = None
) -> Tensor:
    """k3 KL to the reference, aggregated like the policy loss; the trainer adds beta * this."""
    return aggregate_loss(kl_k3(logp, ref_logp), mask, agg, global_count=global_count)


def clipped_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float,
    eps_high: float,
    agg: str = "token_mean",
    global_count: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric clip range [1 - eps_low, 1 + eps_high] (DAPO's
    clip-higher: a larger eps_high lets unlikely tokens with positive advantage gain probability,
    which keeps entropy from collapsing). Per token: max(-A r, -A clip(r)), r = exp(logp - old).

    `advantages` is [B] (one per sequence, GRPO) or [B, T]. `old_logp` is the sampling policy's
    log-prob and is treated as a constant. With one update per rollout logp == old_logp, r == 1,
    nothing is clipped and the gradient is the REINFORCE gradient -A * grad(logp).

    Metrics (token means over the mask, whatever `agg` is): clip_frac_low / clip_frac_high = share
    of tokens whose gradient the lower / upper clip removed (r < 1 - eps_low with A < 0, r > 1 +
    eps_high with A > 0); ratio_mean, ratio_max; approx_kl = k3 estimate of KL(old || new).
    """
    if logp.dim() != 2:
        raise CahlInputError(f"logp: expected shape [B, T], got {tuple(logp.shape)}")
    if old_logp.shape != logp.shape:
        raise CahlInputError(f"old_logp: expected shape {tuple(logp.shape)} like logp, got {tuple(old_logp.shape)}")
    if advantages.shape == logp.shape[:1]:
        adv = advantages.unsqueeze(1)  # [B, 1], broadcast over T
    elif advantages.shape == logp.shape:
        adv = advantages  # [B, T]
    else:
        raise CahlInputError(
            f"advantages: expected shape [B]={tuple(logp.shape[:1])} or [B, T]={tuple(logp.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise CahlInputError(f"clip range: expected 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    m = _bool_mask(mask, logp.shape)
    adv = adv.detach()
    old_logp = old_logp.detach()

    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    unclipped = -adv * ratio  # [B, T]
    clipped = -adv * ratio.clamp(1 - eps_low, 1 + eps_high)  # [B, T]
    per_token = torch.maximum(unclipped, clipped)  # [B, T] pessimistic bound
    loss = aggregate_loss(per_token, m, agg, global_count=global_count)

    with torch.no_grad():
        r = ratio.float()
        clipped_high = (r > 1 + eps_high) & (adv > 0)  # [B, T]
        clipped_low = (r < 1 - eps_low) & (adv < 0)  # [B, T]
        any_token = bool(m.any())
        metrics = {
            "clip_frac_low": masked_mean(clipped_low.float(), m).item(),
            "clip_frac_high": masked_mean(clipped_high.float(), m).item(),
            "ratio_mean": masked_mean(r, m).item(),
            "ratio_max": r[m].max().item() if any_token else 0.0,
            "approx_kl": masked_mean(kl_k3(old_logp.float(), logp.float()), m).item(),
        }
    return loss, metrics


def _flat_rows(logits: Tensor) -> Tensor:
    """[..., V] logits as [R, V] rows (a view when possible)."""
    if logits.dim() < 2 or logits.shape[-1] == 0:
        raise CahlInputError(f"logits: expected shape [..., V] with V > 0, got {tuple(logits.shape)}")
    return logits.reshape(-1, logits.shape[-1])


def entropy_from_logits(logits: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Tensor:
    """Entropy of softmax(logits) per position: [..., V] -> [...], in float32.

    Rows are processed `chunk_rows` at a time, so at most one chunk is upcast and softmaxed at
    once. Meant for logging: call it under torch.no_grad(); with autograd on, every chunk's
    intermediates are kept for backward and the memory saving is gone.
    """
    rows = _flat_rows(logits)  # [R, V]
    if chunk_rows < 1:
        raise CahlInputError(f"chunk_rows: expected >= 1, got {chunk_rows}")
    out = [torch.zeros(0, device=logits.device)]  # so that zero rows give an empty result
    for start in range(0, rows.shape[0], chunk_rows):
        logp = torch.log_softmax(rows[start : start + chunk_rows].float(), dim=-1)  # [c, V]
        p = logp.exp()
        # Tokens with p == 0 (logit -inf) contribute 0; keep -inf out of the product and its grad.
        safe_logp = torch.where(p > 0, logp, torch.zeros((), device=logp.device))
        out.append(-(p * safe_logp).sum(-1))  # [c]
    return torch.cat(out).reshape(logits.shape[:-1])


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log_softmax(logits).gather(ids) computed chunk by chunk, forward and backward.

    Forward saves only the per-row logsumexp [R] besides the inputs, so neither pass holds a
    float32 [R, V] tensor beyond one chunk; the only full-size result is the logits' gradient,
    which autograd needs anyway. d logp_r / d z_rv = 1[v == id_r] - softmax(z_r)_v.
    """

    @staticmethod
    def forward(ctx, rows: Tensor, ids: Tensor, chunk_rows: int, allowed: Tensor | None) -> Tensor:
        # rows [R, V], ids [R]; allowed: packed bitmasks [R, ceil(V / 32)] int32 or None (all allowed)
        lse = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)  # [R]
        picked = torch.empty_like(lse)  # [R]
        scratch = torch.empty((min(chunk_rows, rows.shape[0]), rows.shape[1]), dtype=torch.float32, device=rows.device)
        for s in range(0, rows.shape[0], chunk_rows):
            z = rows[s : s + chunk_rows].float()  # [c, V]
            if allowed is not None:  # disallowed tokens leave the softmax (a new tensor: rows stay as they are)
                z = z.masked_fill(~unpack_bitmask(allowed[s : s + chunk_rows], rows.shape[1]), float("-inf"))
            top = z.amax(-1, keepdim=True)  # [c, 1]
            top.masked_fill_(top.isinf(), 0.0)  # as torch.logsumexp: rows of -inf give -inf, not nan
            e = torch.sub(z, top, out=scratch[: z.shape[0]]).exp_()  # one reused buffer, exponentiated in place
            lse[s : s + chunk_rows] = top.squeeze(-1) + e.sum(-1).log()
            picked[s : s + chunk_rows] = z.gather(-1, ids[s : s + chunk_rows, None]).squeeze(-1)
        ctx.save_for_backward(rows, ids, lse, allowed if allowed is not None else torch.empty(0))
        ctx.chunk_rows = chunk_rows
        ctx.masked = allowed is not None
        return picked - lse

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # grad_out [R]
        rows, ids, lse, allowed = ctx.saved_tensors
        grad_rows = torch.empty_like(rows)  # [R, V]
        for s in range(0, rows.shape[0], ctx.chunk_rows):
            e = s + ctx.chunk_rows
            g = grad_out[s:e, None].float()  # [c, 1]
            if rows.dtype == torch.float32:  # computed in place in the result
                grad = torch.sub(rows[s:e], lse[s:e, None], out=grad_rows[s:e])
            else:
                grad = rows[s:e].float() - lse[s:e, None]
            grad.exp_().mul_(-g)  # -g * softmax
            if ctx.masked:  # the masked softmax is 0 off the allowed set: no gradient there
                grad.masked_fill_(~unpack_bitmask(allowed[s:e], rows.shape[1]), 0.0)
            grad.scatter_add_(-1, ids[s:e, None], g)
            if grad.dtype != rows.dtype:
                grad_rows[s:e] = grad.to(rows.dtype)
        return grad_rows, None, None, None


def unpack_bitmask(packed: Tensor, vocab: int) -> Tensor:
    """Packed bitmasks [c, W] int32 -> bool [c, vocab] (bit v % 32 of word v // 32 = token v allowed)."""
    bits = torch.arange(32, dtype=torch.int32, device=packed.device)
    return ((packed.unsqueeze(-1) >> bits) & 1).bool().reshape(packed.shape[0], -1)[:, :vocab]


def selective_log_softmax(logits: Tensor, ids: Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                          allowed: Tensor | None = None) -> Tensor:
    """Log-prob of the chosen token ids: [..., V], [...] -> [...] float32, equal to
    log_softmax(logits.float()).gather(-1, ids), computed as gathered logit minus per-row
    logsumexp, `chunk_rows` rows at a time (forward and backward), so the full-vocabulary
    log_softmax is never materialised — the logits are the largest tensor of an LLM RL step.

    `allowed` [..., ceil(V / 32)] int32: packed bitmasks of the tokens each position could be
    sampled from (constrained decoding); the log-prob is then over that set (the masked,
    renormalised distribution), unpacked one chunk at a time. An id outside its set gets -inf.
    """
    rows = _flat_rows(logits)  # [R, V]
    if ids.shape != logits.shape[:-1]:
        raise CahlInputError(f"ids: expected shape {tuple(logits.shape[:-1])} (logits without V), got {tuple(ids.shape)}")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise CahlInputError(f"ids: expected an integer tensor, got {ids.dtype}")
    flat_ids = ids.reshape(-1).long()  # [R]
    vocab = rows.shape[1]
    if flat_ids.numel() and (flat_ids.min() < 0 or flat_ids.max() >= vocab):
        raise CahlInputError(
            f"ids: expected token ids in [0, {vocab}), got range [{int(flat_ids.min())}, {int(flat_ids.max())}]"
        )
    if chunk_rows < 1:
        raise CahlInputError(f"chunk_rows: expected >= 1, got {chunk_rows}")
    packed = None
    if allowed is not None:
        width = (vocab + 31) // 32
        if allowed.shape != (*ids.shape, width) or allowed.dtype != torch.int32:
            raise CahlInputError(f"allowed: expected int32 of shape {(*ids.shape, width)}, got {allowed.dtype} "
                                 f"{tuple(allowed.shape)}")
        packed = allowed.reshape(-1, width).to(rows.device)
    return _SelectiveLogSoftmax.apply(rows, flat_ids, chunk_rows, packed).reshape(ids.shape)
