"""Sequences -> padded tensors, and per-token log-probs computed only where they are trained.

Why not `model(ids).logits`: the vocabulary projection is ~20% of a 135M model's FLOPs per token
and most positions (prompts, observations) are never trained. We run the transformer body, pick
the hidden states that predict a trained token, and project only those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cahl.agents import attention
from cahl.rl.losses import selective_log_softmax


@dataclass
class Packed:
    ids: torch.Tensor  # [B, T] right-padded
    attention: torch.Tensor  # [B, T] 1 on real tokens
    mask: torch.Tensor  # [B, T] bool, True where the token is trained (predicted from position t-1)


def pack(seqs: list[list[int]], masks: list[list[int]], pad_id: int = 0) -> Packed:
    width = max(len(s) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    attention = torch.zeros((B, width), dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = len(s)
        ids[i, :n] = torch.tensor(s, dtype=torch.long)
        attention[i, :n] = 1
        mask[i, :n] = torch.tensor(masks[i], dtype=torch.bool)
    mask[:, 0] = False  # the first token is never predicted
    return Packed(ids, attention, mask)


def token_logprobs(model, batch: Packed, temperature: float = 1.0) -> torch.Tensor:
    """[B, T] log p(ids[t] | ids[<t]) at positions where batch.mask is True, 0 elsewhere."""
    body, head = attention.body_and_head(model)
    device = next(model.parameters()).device
    hidden = body(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device)).last_hidden_state
    target = batch.mask.to(device)
    src = torch.zeros_like(target)
    src[:, :-1] = target[:, 1:]  # hidden state at t-1 predicts token t
    logits = head(hidden[src]).float()  # [N, V] only for trained tokens
    if temperature != 1.0:
        logits = logits / temperature
    picked = selective_log_softmax(logits, batch.ids.to(device)[target])
    out = torch.zeros(target.shape, dtype=picked.dtype, device=device)
    out[target] = picked
    return out


def sequence_logprobs(model, seqs: list[list[int]], masks: list[list[int]], pad_id: int, temperature: float = 1.0,
                      packed: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logp [g, S], trained mask [g, S], start): the sequences' token log-probs from position
    `start` on. Packed (their shared start once, unpadded: `shared_prefix_logprobs`) where the
    model allows it and `packed`, else one padded batch (start 0)."""
    if packed and attention.packable(model, max(map(len, seqs))):
        return shared_prefix_logprobs(model, seqs, masks, pad_id, temperature)
    batch = pack(seqs, masks, pad_id=pad_id)
    logp = token_logprobs(model, batch, temperature)
    return logp, batch.mask.to(logp.device), 0


def micro_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped so that rows x longest row <= max_tokens; similar lengths together (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if cur and new_longest * (len(cur) + 1) > max_tokens:
            groups.append(cur)
            cur, new_longest = [], lengths[i]
        cur.append(i)
        longest = new_longest
    if cur:
        groups.append(cur)
    return groups


def common_prefix_len(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def shared_prefix_logprobs(model, seqs: list[list[int]], masks: list[list[int]], pad_id: int,
                           temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Log-probs of sequences that start alike (a GRPO group's members, an SFT micro-batch), their
    common prefix computed once and nothing padded.

    Exact, not an approximation: the sequences are packed into one, the prefix once and then each
    sequence's rest (positions continuing the prefix's). The prefix attends causally to itself and
    each rest to the prefix and its own earlier tokens (attention.tree_attention), so every sequence
    sees what it would see alone; gradients through the prefix are summed over the sequences
    exactly as g separate forwards would produce them. With no common prefix, as in `pack`, a
    sequence's first token is not predicted.
    Returns (logp [g, S], trained mask [g, S], P) over the positions after the shared prefix P.
    """
    body, head = attention.body_and_head(model)
    device = next(model.parameters()).device
    g = len(seqs)
    P = common_prefix_len(seqs)
    # keep at least one token of every member after the prefix, and no trained token inside it
    P = min(P, min(len(s) for s in seqs) - 1, min(m.index(1) if 1 in m else len(m) for m in masks))
    lengths = [len(s) - P for s in seqs]
    S = max(lengths)
    ids = torch.tensor(seqs[0][:P] + [x for s in seqs for x in s[P:]], dtype=torch.long, device=device)
    pos = torch.cat([torch.arange(P)] + [torch.arange(P, P + n) for n in lengths]).to(device)
    trained = torch.zeros((g, S), dtype=torch.bool)
    source = torch.zeros((g, S), dtype=torch.long)  # packed index of the hidden state predicting each token
    start = P
    for i, (n, m) in enumerate(zip(lengths, masks)):
        trained[i, :n] = torch.tensor(m[P:], dtype=torch.bool)
        trained[i, 0] &= P > 0  # nothing before it predicts a sequence's first token
        source[i, 0] = P - 1
        source[i, 1:n] = torch.arange(start, start + n - 1)
        start += n
    tree = attention.Tree.of(P, lengths, body.dtype, device)
    with attention.attention(model, attention.TREE):
        hidden = body(input_ids=ids[None], position_ids=pos[None], use_cache=False, cahl_tree=tree).last_hidden_state[0]
    t = trained.to(device)
    logits = head(hidden[source.to(device)[t]]).float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = torch.full((g, S), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        targets[i, :lengths[i]] = torch.tensor(s[P:], dtype=torch.long)
    out = torch.zeros((g, S), dtype=torch.float32, device=device)
    out[t] = selective_log_softmax(logits, targets.to(device)[t])
    return out, t, P
