"""One optimizer step for one role: SFT (negative log-likelihood) or GRPO (clipped policy loss).

Both run over token sequences with a loss mask, micro-batched by a token budget; the step's loss
is a token mean over the whole step (each micro-batch divides by the step's total token count, so
accumulation gives exactly the full-batch gradient).
"""

from __future__ import annotations

import numpy as np
import torch

from cahl.agents import attention
from cahl.agents.sampling import allowed_count
from cahl.rl.losses import clipped_policy_loss, kl_k3
from cahl.train.batching import micro_batches, sequence_logprobs, trained_prompt, tree_tokens
from cahl.train.dist import dist


def sft_step(policies, role: str, optimizer, examples: list[tuple[list[int], list[int]]], max_tokens: int,
             grad_clip: float, pad_id: int) -> dict:
    total = dist().sum(sum(sum(m[1:]) for _, m in examples))  # trained tokens of the global batch
    loss_sum = 0.0
    optimizer.zero_grad(set_to_none=True)
    with policies.use_role(role) as model:
        model.train()
        for idx in dist().lockstep(micro_batches([len(e[0]) for e in examples], max_tokens)):
            if idx is None:
                _empty_pass(policies, model, pad_id, reference=False)
                continue
            logp, mask, _ = sequence_logprobs(model, [examples[i][0] for i in idx], [examples[i][1] for i in idx], pad_id)
            loss = -(logp[mask]).sum() / max(total, 1)
            loss.backward()
            loss_sum += float(loss.detach())
        model.eval()
    norm = _reduce_and_clip(policies.parameters(role), grad_clip)
    optimizer.step()
    return {"loss": loss_sum, "grad_norm": norm, "tokens": total}


def _reduce_and_clip(params: list[torch.nn.Parameter], grad_clip: float) -> float:
    """Sum gradients over processes (FSDP did it in backward), clip them; the norm before clipping."""
    dist().reduce_gradients(params)
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # sharded: a DTensor


def _empty_pass(policies, model, pad_id: int, reference: bool) -> None:
    """The forwards and backward of a pass that trains nothing: keeps a process whose share of the
    batch ran out in step with the collectives of sharded weights (see Dist.lockstep)."""
    seqs, masks = [[pad_id, pad_id]], [[0, 1]]
    logp, _, _ = sequence_logprobs(model, seqs, masks, pad_id)
    if reference:
        with policies.reference() as ref_model, torch.no_grad():
            sequence_logprobs(ref_model, seqs, masks, pad_id)
    (logp.sum() * 0.0).backward()


def forward_units(trajs, max_tokens: int, share_prefix: bool, trained: list[list[int]] | None = None) -> list[list[int]]:
    """Index lists processed in one forward. Shared: whole GRPO groups, as many as fit one packed
    prefix tree of at most max_tokens tokens (a larger group goes alone), taken in the order of
    their prompts so that groups sharing a start (one task's sub-tasks and tools, one role's
    instructions) share a tree. Else length-sorted micro-batches."""
    if not share_prefix:
        return micro_batches([len(t.ids) for t in trajs], max_tokens)
    groups: dict = {}
    for i, t in enumerate(trajs):
        groups.setdefault(t.group_id, []).append(i)
    trained = trained if trained is not None else [t.loss_mask for t in trajs]
    prompt = {i: t.ids[:trained_prompt(t.ids, trained[i])] for i, t in enumerate(trajs)}
    units, unit, prompts, rests = [], [], [], 0
    for members in sorted(groups.values(), key=lambda g: prompt[g[0]]):
        rest = sum(len(trajs[i].ids) - len(prompt[i]) for i in members)
        if unit and tree_tokens(prompts + [prompt[i] for i in members]) + rests + rest > max_tokens:
            units.append(unit)
            unit, prompts, rests = [], [], 0
        unit += members
        prompts += [prompt[i] for i in members]
        rests += rest
    return units + [unit] if unit else units


def trained_mask(traj) -> list[int]:
    """The positions the update trains: those the role sampled (loss_mask) where more than one
    token was allowed. A position whose grammar allowed one token (a forced tag, DESIGN §9) has
    log-prob 0 under every policy: it carries no gradient and is left out of the loss and its count."""
    if not traj.masks:
        return traj.loss_mask
    out = list(traj.loss_mask)
    for p in forced_positions(traj):
        out[p] = 0
    return out


def forced_positions(traj) -> list[int]:
    """Positions of `traj` sampled under a grammar that allowed exactly one token."""
    if not traj.masks:
        return []
    positions = sorted(traj.masks)
    counts = allowed_count(np.stack([traj.masks[p] for p in positions]))
    return [p for p, c in zip(positions, counts) if c == 1]


def _forward(model, trajs, idx, pad_id: int, temperature: float, share_prefix: bool, refresh_old: bool = False,
             trained: list[list[int]] | None = None):
    """(logp, old logp, trained mask, summed |sampler - update| log-prob gap) [rows, T] for the
    trajectories idx, each position's log-prob over the set its token was sampled from (a
    constrained turn's grammar mask; the whole vocabulary elsewhere). trained[i]: the positions
    to train of trajectory i (default its loss_mask). refresh_old: the sampler ran in another
    precision, so its log-probs are not this policy's: this forward's own (detached) become the
    old log-probs, in the trajectories too, for later policy epochs; the gap is summed over trained
    tokens (0 without refresh)."""
    trained = trained if trained is not None else [t.loss_mask for t in trajs]
    logp, mask, start = sequence_logprobs(model, [trajs[i].ids for i in idx], [trained[i] for i in idx], pad_id,
                                          temperature, packed=share_prefix, allowed=[trajs[i].masks for i in idx])
    old = torch.zeros_like(logp)
    for r, i in enumerate(idx):
        lp = trajs[i].logprobs[start:]
        old[r, :len(lp)] = torch.tensor(lp, dtype=old.dtype)
    if not refresh_old:
        return logp, old, mask, 0.0
    fresh = logp.detach().masked_fill(~mask, 0.0)
    gap = float((fresh - old)[mask].abs().sum())
    for r, i in enumerate(idx):
        n = len(trajs[i].logprobs) - start
        trajs[i].logprobs[start:] = fresh[r, :n].tolist()
    return logp, fresh, mask, gap


def grpo_step(policies, role: str, optimizer, trajs, advantages: list[float], *, eps_low: float,
              eps_high: float, kl_beta: float, max_tokens: int, grad_clip: float, pad_id: int,
              temperature: float = 1.0, apply: bool = True, share_prefix: bool = True, refresh_old: bool = False) -> dict:
    """Clipped policy-gradient step on the tokens this role sampled (loss_mask), old log-probs from rollout.

    share_prefix: GRPO groups are packed as the prefix tree of their prompts, each shared start
    (a group's prompt, a task's tools, the role's instructions) computed once (exact; see
    batching.shared_prefix_logprobs) instead of once per member; forwards of at most max_tokens.
    refresh_old: the rollout sampled in another precision (model.sample_dtype): the old log-probs
    are this step's own forward's instead (so the first policy epoch's ratio is exactly 1), and
    `sampler_gap` is the mean |sampler - update| log-prob over trained tokens.
    """
    trained = [trained_mask(t) for t in trajs]  # forced positions (one allowed token) are left out
    total = dist().sum(sum(sum(m) for m in trained))  # trained tokens of the global batch
    forced = dist().sum(sum(sum(t.loss_mask) for t in trajs)) - total
    sums = {"loss": 0.0, "kl": 0.0, "clip_frac_low": 0.0, "clip_frac_high": 0.0, "ratio_max": 0.0}
    gap = 0.0
    optimizer.zero_grad(set_to_none=True)
    with policies.use_role(role) as model:
        model.train()
        # a model whose attention cannot be packed takes padded micro-batches (rows x longest <= max_tokens)
        packed = share_prefix and attention.packable(model, max((len(t.ids) for t in trajs), default=0))
        for idx in dist().lockstep(forward_units(trajs, max_tokens, packed, trained)):
            if idx is None:
                _empty_pass(policies, model, pad_id, reference=kl_beta > 0)
                continue
            logp, old, mask, g = _forward(model, trajs, idx, pad_id, temperature, packed, refresh_old, trained)
            gap += g
            adv = torch.tensor([advantages[i] for i in idx], dtype=torch.float32, device=logp.device)
            loss, m = clipped_policy_loss(logp, old, adv, mask, eps_low=eps_low, eps_high=eps_high,
                                          agg="token_mean", global_count=total)
            if kl_beta > 0:
                with policies.reference() as ref_model, torch.no_grad():
                    ref, _, _, _ = _forward(ref_model, trajs, idx, pad_id, temperature, share_prefix, trained=trained)
                kl = kl_k3(logp, ref)[mask].sum() / total
                loss = loss + kl_beta * kl
                sums["kl"] += float(kl.detach())
            loss.backward()
            share = float(mask.sum()) / max(total, 1)
            sums["loss"] += float(loss.detach())
            sums["clip_frac_low"] += m["clip_frac_low"] * share
            sums["clip_frac_high"] += m["clip_frac_high"] * share
            sums["ratio_max"] = max(sums["ratio_max"], m["ratio_max"])
        model.eval()
    norm = _reduce_and_clip(policies.parameters(role), grad_clip)
    if apply:  # apply=False leaves the gradients in place (the distributed-equivalence test reads them)
        optimizer.step()
    out = {**sums, "grad_norm": norm, "tokens": total, "forced_tokens": forced}
    if refresh_old:
        out["sampler_gap"] = dist().sum(gap) / max(total, 1)
    return out
