"""Batched sampling with the sampled ids and their log-probs, behind a small backend interface.

Why our own loop instead of `model.generate`: training needs the exact sampled ids and their
log-probs (DESIGN §4, token invariant), G samples of one prompt should prefill the prompt once and
share its KV cache, finished rows should leave the batch instead of being padded along, and turns
should stop at a closing tag or where their grammar ends (DESIGN §9). The loop is a KV-cached
continuous batch (`decoder.Decoder`); this module holds the backend that owns the model, the
prefix cache and the counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from cahl.agents.prefix_cache import PrefixCache
from cahl.agents.sampling import Sample, SamplingParams


class GenerationBackend(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int | list[int] = 1,
                 seed: int | None = None) -> list[Sample]:
        """n (or n[i]) samples per prompt, prompt-major order: [p0s0, p0s1, ..., p1s0, ...]."""
        ...


@dataclass
class GenStats:
    """Counters a benchmark or the trainer reads after a call."""

    prompt_tokens: int = 0  # prompt tokens computed (cached prefixes not counted)
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    generated_tokens: int = 0
    seconds: float = 0.0
    prefill_seconds: float = 0.0  # part of `seconds`
    joined_tokens: int = 0  # part of prompt_tokens computed inside decode forwards (not in prefill_seconds)
    steps: int = 0  # decode forwards
    rows: int = 0  # live rows over all decode forwards (rows / steps = mean batch)
    slots: int = 0  # rows computed over all decode forwards, empty slots included
    mask_seconds: float = 0.0  # part of `seconds`: filling constrained rows' grammar masks


class HFBackend:
    """Sampling with a transformers causal LM (CPU or GPU).

    Rows decode with the model's active adapter, or with the LoRA adapter their request names when
    the model's LoRA layers were given the routed forward (`lora_fast.install_fused_lora`)."""

    def __init__(self, model, tokenizer, max_batch: int = 32, cache_tokens: int = 64_000):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.cache = PrefixCache(cache_tokens)  # KV kept across turns (0 = off); ~46 KB/token for 135M
        self.eos_ids = set(_eos_ids(model, tokenizer))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.stats = GenStats()
        self._grammars = None

    @property
    def grammars(self):
        """The constrained-decoding matchers over this tokenizer (built on first use: ~0.5 s)."""
        if self._grammars is None:
            from cahl.agents.sampling import Grammars

            self._grammars = Grammars(self.tokenizer, self.model.config.vocab_size)
        return self._grammars

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int | list[int] = 1,
                 seed: int | None = None, adapter: str | None = None) -> list[Sample]:
        counts = [n] * len(prompts) if isinstance(n, int) else list(n)
        if len(counts) != len(prompts) or any(c < 0 for c in counts):
            raise ValueError(f"generate: n must be >= 0, one count per prompt; got {n!r} for {len(prompts)} prompts")
        decoder = self.decoder(seed)
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            if count:  # prompts with no samples are not prefilled
                decoder.submit(prompt, params, n=count, adapter=adapter, tags=[(i, j) for j in range(count)])
        done: dict = {}
        while decoder.busy:
            done.update(decoder.step())
        out = []
        for i, count in enumerate(counts):
            for j in range(count):
                done[i, j].prompt_index = i
                out.append(done[i, j])
        return out

    def decoder(self, seed: int | None = None) -> "Decoder":
        """A continuous batch over this backend's model; seed=None draws the seed from torch's global
        generator (not torch.seed(), which reseeds it from OS entropy), so unseeded sampling is
        reproducible after torch.manual_seed."""
        rng = torch.Generator(device=self.model.device)
        rng.manual_seed(seed if seed is not None else int(torch.randint(2**63 - 1, ())))
        from cahl.agents.decoder import Decoder

        return Decoder(self, rng)

    def clear_cache(self) -> None:
        self.cache.clear()

    def prune_cache(self, live: list[list[int]]) -> None:
        self.cache.prune(live)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
