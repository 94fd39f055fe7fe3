"""Sequences -> padded tensors, and per-token log-probs computed only where they are trained.

Why not `model(ids).logits`: the vocabulary projection is ~20% of a 135M model's FLOPs per token
and most positions (prompts, observations) are never trained. We run the transformer body, pick
the hidden states that predict a trained token, and project only those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


def allowed_rows(masks: list[dict] | None, where: list[tuple[int, int]], vocab: int) -> torch.Tensor | None:
    """Packed allowed sets [N, ceil(vocab / 32)] int32 for the positions `where` = [(sequence,
    position)] (all allowed where a sequence has no mask there); None when no sequence has any."""
    if not masks or not any(masks):
        return None
    width = (vocab + 31) // 32
    out = np.full((len(where), width), -1, dtype=np.int32)
    for k, (i, p) in enumerate(where):
        m = masks[i].get(p)
        if m is not None:
            out[k] = m
    return torch.from_numpy(out)


def _trained_where(trained: torch.Tensor, offset: int = 0) -> list[tuple[int, int]]:
    """[(row, position)] of a bool [g, S] mask's True entries in row-major order (boolean indexing's)."""
    return [(int(i), int(j) + offset) for i, j in trained.nonzero().tolist()]


def token_logprobs(model, batch: Packed, temperature: float = 1.0, masks: list[dict] | None = None) -> torch.Tensor:
    """[B, T] log p(ids[t] | ids[<t]) at positions where batch.mask is True, 0 elsewhere; where
    masks[b] holds a packed allowed set for position t, over that set (constrained decoding)."""
    body, head = attention.body_and_head(model)
    device = next(model.parameters()).device
    hidden = body(input_ids=batch.ids.to(device), attention_mask=batch.attention.to(device)).last_hidden_state
    target = batch.mask.to(device)
    src = torch.zeros_like(target)
    src[:, :-1] = target[:, 1:]  # hidden state at t-1 predicts token t
    logits = head(hidden[src]).float()  # [N, V] only for trained tokens
    if temperature != 1.0:
        logits = logits / temperature
    allowed = allowed_rows(masks, _trained_where(batch.mask), logits.shape[-1])
    picked = selective_log_softmax(logits, batch.ids.to(device)[target], allowed=allowed)
    out = torch.zeros(target.shape, dtype=picked.dtype, device=device)
    out[target] = picked
    return out


def sequence_logprobs(model, seqs: list[list[int]], masks: list[list[int]], pad_id: int, temperature: float = 1.0,
                      packed: bool = True, allowed: list[dict] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logp [g, S], trained mask [g, S], start): the sequences' token log-probs from position
    `start` on. Packed (their shared start once, unpadded: `shared_prefix_logprobs`) where the
    model allows it and `packed`, else one padded batch (start 0). `allowed[i]`: position -> the
    packed allowed set sequence i's token there was sampled from (Trajectory.masks)."""
    if packed and attention.packable(model, max(map(len, seqs))):
        return shared_prefix_logprobs(model, seqs, masks, pad_id, temperature, allowed)
    batch = pack(seqs, masks, pad_id=pad_id)
    logp = token_logprobs(model, batch, temperature, allowed)
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


def common_prefix_len(seqs: list[list[int]], start: int = 0) -> int:
    """Length of the prefix all `seqs` share, counted from position `start` of each."""
    first = seqs[0]
    n = min(len(s) for s in seqs) - start
    for s in seqs[1:]:
        i = 0
        while i < n and s[start + i] == first[start + i]:
            i += 1
        n = i
    return max(n, 0)


@dataclass
class Node:
    """A node of the prefix tree of the sequences' prompts: tokens [start, start + n) of every
    prompt below it; `members` are the sequences whose prompt ends here."""

    start: int
    n: int
    members: list[int]
    children: list["Node"]


def prompt_tree(prompts: list[list[int]], items: list[int] | None = None, start: int = 0) -> Node:
    """The compressed prefix tree (radix tree) of `prompts` (of the `items` among them, from
    position `start`): every node ends where two prompts part or a prompt ends, so each distinct
    prefix is one node's tokens, and the tree holds each shared start once."""
    items = list(range(len(prompts))) if items is None else items
    n = common_prefix_len([prompts[i] for i in items], start)
    end = start + n
    node = Node(start, n, [i for i in items if len(prompts[i]) == end], [])
    by_next: dict[int, list[int]] = {}
    for i in items:
        if len(prompts[i]) > end:
            by_next.setdefault(prompts[i][end], []).append(i)
    node.children = [prompt_tree(prompts, sub, end) for sub in by_next.values()]
    return node


def tree_spans(prompts: list[list[int]]) -> list[tuple[int, int]]:
    """The positions [start, end) each prompt adds to the prefix tree of `prompts`, taken in sorted
    order: a sorted prompt shares with the tree exactly its common start with the one before."""
    ordered = sorted(prompts)
    return [(common_prefix_len([before, p]) if i else 0, len(p)) for i, (before, p) in enumerate(zip([[]] + ordered, ordered))]


def tree_tokens(prompts: list[list[int]]) -> int:
    """Tokens in the prefix tree of `prompts`: each shared start counted once."""
    return sum(end - start for start, end in tree_spans(prompts))


def trained_prompt(seq: list[int], mask: list[int]) -> int:
    """Where a sequence's own part starts in a packed tree: its first trained token, keeping at
    least its last token out of the shared part (so each sequence has a row of its own)."""
    return min(mask.index(1) if 1 in mask else len(mask), len(seq) - 1)


def shared_prefix_logprobs(model, seqs: list[list[int]], masks: list[list[int]], pad_id: int,
                           temperature: float = 1.0, allowed: list[dict] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Log-probs of sequences packed as the prefix tree of their prompts (a GRPO group's members
    share their whole prompt; groups of one task share its instructions and tools; SFT examples
    of one role share its instructions): every shared start computed once, nothing padded.

    Exact, not an approximation: a sequence's prompt is everything before its first trained token.
    The packed sequence holds each node of the prompts' prefix tree once (positions continuing its
    parent's), then each sequence's rest (positions continuing its prompt's). Every token attends
    to its ancestors' tokens and its own node's or sequence's earlier tokens
    (attention.tree_attention), so every sequence sees what it would see alone; gradients through a
    shared node are summed over the sequences below it exactly as separate forwards would produce
    them. With nothing shared at the start, as in `pack`, a sequence's first token is not predicted.
    Returns (logp [g, S], trained mask [g, S], R) over the positions after the root's R tokens
    (what all the prompts share), in the order of `seqs`.
    """
    body, head = attention.body_and_head(model)
    device = next(model.parameters()).device
    g = len(seqs)
    prompts = [s[:trained_prompt(s, m)] for s, m in zip(seqs, masks)]
    root = prompt_tree(prompts)
    R = root.n
    ids: list[int] = seqs[0][:R]
    pos: list[int] = list(range(R))
    tree = attention.Tree(R, [], max(map(len, seqs)))
    last = [0] * g  # packed index of the hidden state that predicts each sequence's first own token
    rest_start = [0] * g  # packed index of each sequence's first own token

    def place(node: Node, ancestors: list[tuple[int, int]]) -> None:
        here = len(ids)
        if node is not root:  # the root's tokens are already in place
            ids.extend(seqs[_any_member(node)][node.start:node.start + node.n])
            pos.extend(range(node.start, node.start + node.n))
            tree.add_node(ancestors, here, node.n, body.dtype, device)
        span = (0, R) if node is root else (here, here + node.n)
        context = ancestors + [span]
        lengths = []
        for i in node.members:
            last[i], rest_start[i] = span[1] - 1, len(ids)
            ids.extend(seqs[i][len(prompts[i]):])
            pos.extend(range(len(prompts[i]), len(seqs[i])))
            lengths.append(len(seqs[i]) - len(prompts[i]))
        if lengths:
            tree.add_sequences(context, rest_start[node.members[0]], lengths, body.dtype, device)
        for child in node.children:
            place(child, context)

    place(root, [])
    S = max(len(s) for s in seqs) - R
    trained = torch.zeros((g, S), dtype=torch.bool)
    source = torch.zeros((g, S), dtype=torch.long)  # packed index of the hidden state predicting each token
    targets = torch.full((g, S), pad_id, dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        p, n = len(prompts[i]), len(s) - len(prompts[i])
        trained[i, p - R:p - R + n] = torch.tensor(m[p:], dtype=torch.bool)
        trained[i, p - R] &= p > 0  # nothing before it predicts a sequence's first token
        source[i, p - R] = last[i]
        source[i, p - R + 1:p - R + n] = torch.arange(rest_start[i], rest_start[i] + n - 1)
        targets[i, :len(s) - R] = torch.tensor(s[R:], dtype=torch.long)
    ids_t = torch.tensor(ids, dtype=torch.long, device=device)
    pos_t = torch.tensor(pos, dtype=torch.long, device=device)
    with attention.attention(model, attention.TREE):
        hidden = body(input_ids=ids_t[None], position_ids=pos_t[None], use_cache=False, cahl_tree=tree).last_hidden_state[0]
    t = trained.to(device)
    logits = head(hidden[source.to(device)[t]]).float()
    if temperature != 1.0:
        logits = logits / temperature
    out = torch.zeros((g, S), dtype=torch.float32, device=device)
    where = allowed_rows(allowed, _trained_where(trained, R), logits.shape[-1])
    out[t] = selective_log_softmax(logits, targets.to(device)[t], allowed=where)
    return out, t, R


def _any_member(node: Node) -> int:
    """A sequence below `node` (whose prompt holds the node's tokens)."""
    while not node.members:
        node = node.children[0]
    return node.members[0]
