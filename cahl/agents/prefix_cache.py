"""KV of token sequences already computed, kept across turns and reused by prompts that start alike."""

from __future__ import annotations

import numpy as np


class PrefixCache:
    """KV of token sequences already computed, reused by any prompt that starts like one of them.

    The KV of tokens[:k] does not depend on what follows them (causal attention), so an entry
    serves every prompt sharing at least `min_reuse` leading tokens with it: the next turn of the
    same episode (its previous prompt + sample), another sub-task of the same task (same system
    prompt and tools), any prompt of the same role (its fixed instructions). Entries are per adapter
    (KV differs per adapter), at most `budget` tokens in all (least recently used go first), and
    must be dropped (`clear`) whenever the weights change: the rollout clears them after every run.
    """

    def __init__(self, budget: int, min_reuse: int = 32):
        from collections import OrderedDict

        self.budget, self.min_reuse = budget, min_reuse
        self.entries: OrderedDict[int, tuple[str | None, np.ndarray, list]] = OrderedDict()  # adapter, tokens, KV
        self.tokens = 0
        self._next = 0

    def wants(self, length: int) -> bool:
        return self.min_reuse <= length <= self.budget

    def clear(self) -> None:
        self.entries.clear()
        self.tokens = 0

    def store(self, adapter: str | None, tokens: list[int] | np.ndarray, kv: list) -> None:
        """kv: per layer (keys, values) [heads, len(tokens), dim]. An entry that this one extends is
        dropped; one that already extends it makes it redundant."""
        tokens = np.asarray(tokens)
        if not self.wants(len(tokens)):
            return
        for key, (a, t, _) in list(self.entries.items()):
            if a == adapter and shared_length(t, tokens) == min(len(t), len(tokens)):
                if len(t) >= len(tokens):
                    return
                self._drop(key)
        while self.entries and self.tokens + len(tokens) > self.budget:
            self._drop(next(iter(self.entries)))
        self.entries[self._next] = (adapter, tokens, kv)
        self._next += 1
        self.tokens += len(tokens)

    def find(self, adapter: str | None, prompt: list[int]) -> tuple[int, list | None]:
        """(n, kv): the most tokens n of `prompt` an entry holds (leaving one to compute, so the
        prompt's last logits come from a forward), with kv[layer] covering at least prompt[:n]."""
        prompt = np.asarray(prompt)
        best, best_key = 0, None
        for key, (a, t, _) in self.entries.items():
            if a == adapter:
                n = min(shared_length(t, prompt), len(prompt) - 1)
                if n > best:
                    best, best_key = n, key
        if best < self.min_reuse:
            return 0, None
        self.entries.move_to_end(best_key)
        return best, self.entries[best_key][2]

    def prune(self, live: list[list[int]]) -> None:
        """Keep of each entry only what some live sequence still starts with (an ended episode's
        own turns are never reused; the instructions it shares with live ones are)."""
        width = max((len(x) for x in live), default=0)
        table = np.full((len(live), width), -1)
        for i, x in enumerate(live):
            table[i, :len(x)] = x
        for key, (adapter, t, kv) in list(self.entries.items()):
            m = min(len(t), width)
            equal = table[:, :m] == t[:m]
            shared = int(np.where(equal.all(1), m, equal.argmin(1)).max()) if len(live) and m else 0
            if shared < len(t):
                self._drop(key)
                self.store(adapter, t[:shared], [(k[:, :shared].clone(), v[:, :shared].clone()) for k, v in kv])

    def remember(self, tokens: list[int], adapter: str | None, kv, mask, row: int) -> None:
        """Cache row `row` of per-layer (keys, values) [B, heads, W, dim]: the columns its mask keeps,
        which must be exactly `tokens` (a finished row's prompt + sample but the last token, or a
        prefilled prompt)."""
        keep = mask[row].bool()
        if int(keep.sum()) != len(tokens) or not self.wants(len(tokens)):
            return  # a mismatch should not happen; never store a cache that does not match its tokens
        self.store(adapter, tokens, [(k[row][:, keep].clone(), v[row][:, keep].clone()) for k, v in kv])

    def _drop(self, key: int) -> None:
        self.tokens -= len(self.entries.pop(key)[1])


def shared_length(a, b) -> int:
    """How many leading tokens two sequences have in common."""
    m = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:m]) != np.asarray(b[:m]))
    return int(differ[0]) if len(differ) else m
