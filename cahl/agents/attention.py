"""Attention for a batch layout that transformers' own masks cannot express, through its attention
interface: the attention module computes q/k/v (with LoRA and rotary) as usual and hands them to
the function registered under the name the config selects for the duration of a forward.

`joined`: a decode step whose batch also carries prompts that join it (decoder.Decoder).
`tree`: sequences packed into one as a prefix tree, every shared start once, then every
sequence's rest, unpadded (batching.shared_prefix_logprobs: GRPO groups, an SFT micro-batch).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

JOINED = "cahl_joined"
TREE = "cahl_tree"
SUPPORTED = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"}  # logits =
# lm_head(decoder output), attention through the interface with the key/value layout assumed here


def core(model):
    """The causal LM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def body_and_head(model):
    """(transformer body, lm_head) of a causal LM, PEFT-wrapped or not."""
    lm = core(model)
    return lm.model, lm.lm_head


def supported(model) -> bool:
    return type(core(model)).__name__ in SUPPORTED


def packable(model, longest: int) -> bool:
    """Whether sequences of up to `longest` tokens may go through `tree_attention` (which has no
    sliding window: longer sequences of a sliding-window model take the padded path)."""
    window = getattr(core(model).config, "sliding_window", None)
    return supported(model) and (window is None or longest <= window)


@contextmanager
def attention(model, name: str) -> Iterator[None]:
    """Forwards of `model` inside the block attend through the function registered as `name`."""
    config = core(model).config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


@dataclass
class Joins:
    """What `joined_attention` needs of a joined decode forward."""

    mask: torch.Tensor  # [slots, 1, 1, columns] bool: the slots' rows' attention mask
    groups: list  # per joining prompt: (first extra row, count, its first slot, first column, column of
    # its first extra token, [1, 1, count, columns from its first] bool mask: each sees up to its own)


def joined_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cahl_joins=None, **kwargs):
    """Attention of a joined decode forward: query [slots + extra, heads, 1, dim]; key/value the
    store [slots, kv heads, columns, dim]. The slots' rows attend as in a plain decode step; each
    joining prompt's extra rows attend causally within its first slot's columns."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    slots = key.shape[0]
    out = [sdpa_attention_forward(module, query[:slots], key, value, cahl_joins.mask, scaling=scaling)[0]]
    for start, count, slot, first, column, mask in cahl_joins.groups:
        q = query[slots + start:slots + start + count].transpose(0, 2)  # [1, heads, count, dim]
        k, v = key[slot:slot + 1, :, first:column + count], value[slot:slot + 1, :, first:column + count]
        out.append(sdpa_attention_forward(module, q, k, v, mask, scaling=scaling)[0].transpose(0, 1))
    return torch.cat(out), None


@dataclass
class Tree:
    """What `tree_attention` needs of a packed prefix tree: the root's `prompt` tokens first (they
    attend causally to themselves), then blocks of consecutive packed positions (start, end, key
    spans, additive mask [1, 1, end - start, keys], or None: causal over the spans, see add_node).
    A block's queries attend to the keys of its spans concatenated in order: the packed spans of
    its ancestors in the tree, then its own tokens; the mask is 0 on the ancestors and on a
    token's own earlier tokens, -inf elsewhere.

    A block is either a tree node's own tokens (a prompt continuing its parent's: causal) or a
    chunk of consecutive sequences that continue the same node, each attending to its own tokens
    only. A chunk's sequences attend to each other's keys only to be masked: chunks are kept to
    about the length of the context they continue, so that waste stays below that context's share."""

    prompt: int
    blocks: list
    longest: int  # the furthest any token looks back (the longest sequence)

    def add_node(self, ancestors: list[tuple[int, int]], start: int, n: int, dtype, device) -> None:
        """A node of n tokens at packed `start`, continuing the packed spans `ancestors`.

        Its queries over the keys of its context and itself: an explicit mask makes the kernel
        compute all n x (context + n) scores, n^2 / 2 of them masked. When the context is shorter
        than the node, the context's own queries go along instead and the kernel runs causally
        over the whole chain, skipping the masked half: (context + n)^2 / 2 scores, and the
        context's rows are dropped (mask None)."""
        context = sum(e - s for s, e in ancestors)
        spans = _merged(ancestors + [(start, start + n)])
        if context < n:
            self.blocks.append((start, start + n, spans, None))
            return
        causal = torch.ones((n, n), dtype=torch.bool, device=device).tril()
        seen = torch.cat([torch.ones((n, context), dtype=torch.bool, device=device), causal], dim=1)
        self.blocks.append((start, start + n, spans, _additive(seen, dtype)))

    def add_sequences(self, context: list[tuple[int, int]], start: int, lengths: list[int], dtype, device) -> None:
        """Sequences of `lengths` tokens packed from `start` on, each continuing the packed spans
        `context`, in chunks of consecutive sequences."""
        width = sum(e - s for s, e in context)
        members: list[int] = []
        for i, n in enumerate(lengths):
            members.append(n)
            if i + 1 == len(lengths) or sum(members) + lengths[i + 1] > max(width, 64):
                end = start + sum(members)
                self.blocks.append((start, end, _merged(context + [(start, end)]),
                                    _chunk_mask(width, members, dtype, device)))
                start, members = end, []


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Spans with adjacent ones joined (fewer copies when the keys are gathered)."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if s == e:
            continue
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return tuple(out)


def _additive(seen: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(seen.shape, dtype=dtype, device=seen.device).masked_fill_(~seen, float("-inf"))[None, None]


def _chunk_mask(prompt: int, lengths: list[int], dtype: torch.dtype, device) -> torch.Tensor:
    member = torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device))
    n = len(member)
    index = torch.arange(n, device=device)
    own = (member[:, None] == member[None, :]) & (index[None, :] <= index[:, None])  # [n, n]
    seen = torch.cat([torch.ones((n, prompt), dtype=torch.bool, device=device), own], dim=1)
    return _additive(seen, dtype)


def tree_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cahl_tree=None,
                   sliding_window=None, **kwargs):
    """Attention of a packed prefix tree (`Tree`): query [1, heads, L, dim], key/value [1, kv heads,
    L, dim], the root's P tokens first. The root attends causally to itself; every other token to
    its ancestors' tokens and to its own earlier tokens (Tree's blocks). Key/value heads are shared
    by their query heads inside the kernel (no per-head copies)."""
    import torch.nn.functional as F

    P = cahl_tree.prompt
    if sliding_window is not None and sliding_window < cahl_tree.longest:
        raise ValueError(f"tree attention: a sequence of {cahl_tree.longest} tokens exceeds the model's sliding window "
                         f"{sliding_window}")
    grouped = query.shape[1] != key.shape[1]
    out = []
    if P:
        out.append(F.scaled_dot_product_attention(query[:, :, :P], key[:, :, :P], value[:, :, :P], is_causal=True,
                                                  scale=scaling, dropout_p=dropout, enable_gqa=grouped))
    for start, end, spans, mask in cahl_tree.blocks:
        k, v = _gather(key, spans), _gather(value, spans)
        if mask is None:  # a node after a shorter context: causal over the chain, its own rows kept
            chain = F.scaled_dot_product_attention(_gather(query, spans), k, v, is_causal=True, scale=scaling,
                                                   dropout_p=dropout, enable_gqa=grouped)
            out.append(chain[:, :, chain.shape[2] - (end - start):])
            continue
        out.append(F.scaled_dot_product_attention(query[:, :, start:end], k, v, attn_mask=mask, scale=scaling,
                                                  dropout_p=dropout, enable_gqa=grouped))
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def _gather(x: torch.Tensor, spans) -> torch.Tensor:
    """x [1, heads, L, dim] at the packed spans, concatenated along L (one span: a view, no copy)."""
    if len(spans) == 1:
        return x[:, :, spans[0][0]:spans[0][1]]
    return torch.cat([x[:, :, s:e] for s, e in spans], dim=2)


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(JOINED, joined_attention)
    AttentionInterface.register(TREE, tree_attention)


_register()
