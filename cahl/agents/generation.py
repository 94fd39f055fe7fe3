"""Batched sampling with the sampled ids and their log-probs, behind a small backend interface.

Why our own loop instead of `model.generate`: training needs the exact sampled ids and their
log-probs (DESIGN §4, token invariant), G samples of one prompt should prefill the prompt once and
share its KV cache, finished rows should leave the batch instead of being padded along, and turns
should stop at a closing tag. The loop is a plain KV-cached decode over left-padded rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # stop after any of these strings (kept in the output)


@dataclass
class Sample:
    ids: list[int]  # sampled token ids, including the stop/eos token when the row finished
    logprobs: list[float]  # log-prob of each sampled id under the sampling distribution
    finish: str  # "stop" (eos or stop string) or "length" (hit max_new_tokens)
    prompt_index: int = 0  # which prompt it continues


class GenerationBackend(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int | list[int] = 1,
                 seed: int | None = None) -> list[Sample]:
        """n (or n[i]) samples per prompt, prompt-major order: [p0s0, p0s1, ..., p1s0, ...]."""
        ...


@dataclass
class GenStats:
    """Counters a benchmark or the trainer reads after a call."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class HFBackend:
    """Sampling with a transformers causal LM (CPU or GPU); the model's active adapter is used."""

    def __init__(self, model, tokenizer, max_batch: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.eos_ids = set(_eos_ids(model, tokenizer))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.stats = GenStats()

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int | list[int] = 1,
                 seed: int | None = None) -> list[Sample]:
        import time

        t0 = time.perf_counter()
        counts = [n] * len(prompts) if isinstance(n, int) else list(n)
        rng = torch.Generator(device="cpu")
        rng.manual_seed(seed if seed is not None else torch.seed() % (2**63))
        out: list[Sample] = []
        start = 0
        while start < len(prompts):  # chunks of at most max_batch rows (a prompt's samples stay together)
            end, rows = start, 0
            while end < len(prompts) and (end == start or rows + counts[end] <= self.max_batch):
                rows += counts[end]
                end += 1
            for s in self._generate_chunk(prompts[start:end], params, counts[start:end], rng):
                s.prompt_index += start
                out.append(s)
            start = end
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _generate_chunk(self, prompts, params, counts, rng) -> list[Sample]:
        model, device = self.model, self.model.device
        from transformers import DynamicCache

        # 1. Prefill each distinct prompt once (left-padded), then repeat its cache counts[i] times.
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        self.stats.prompt_tokens += int(mask.sum())
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                       cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        owner = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(counts))  # [rows]
        if len(owner) != len(prompts):
            cache.batch_select_indices(owner.to(device))
            logits, mask, pos = logits[owner.to(device)], mask[owner], pos[owner]
        rows = len(owner)
        samples = [Sample([], [], "length", prompt_index=int(owner[r])) for r in range(rows)]
        active = torch.arange(rows)  # sample index of each row still in the batch
        next_pos = pos[:, -1] + 1  # [rows]
        mask = mask.to(device)

        # 2. Decode: sample, record, drop finished rows from the batch.
        for step in range(params.max_new_tokens):
            token, logp = _sample(logits, params, rng)
            done = []
            for r, (t, lp) in enumerate(zip(token.tolist(), logp.tolist())):
                s = samples[int(active[r])]
                s.ids.append(t)
                s.logprobs.append(lp)
                if t in self.eos_ids or (params.stop and self._hit_stop(s.ids, params.stop)):
                    s.finish = "stop"
                    done.append(r)
            self.stats.generated_tokens += len(active)
            if step == params.max_new_tokens - 1:
                break
            if done:
                keep = torch.tensor([r for r in range(len(active)) if r not in set(done)], dtype=torch.long)
                if len(keep) == 0:
                    break
                cache.batch_select_indices(keep.to(device))
                active, token, next_pos, mask = active[keep], token[keep], next_pos[keep], mask[keep.to(device)]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
            logits = model(input_ids=token.view(-1, 1).to(device), attention_mask=mask,
                           position_ids=next_pos.view(-1, 1).to(device), cache=cache,
                           use_cache=True).logits[:, -1].float()
            next_pos = next_pos + 1
        return samples

    def _hit_stop(self, ids: list[int], stop: tuple[str, ...]) -> bool:
        tail = self.tokenizer.decode(ids[-8:])
        return any(tail.endswith(s) for s in stop)


def _sample(logits: torch.Tensor, params: SamplingParams, rng: torch.Generator):
    """logits [B, V] -> (token [B], logprob [B]) under the temperature/top-p sampling distribution."""
    logits = logits.cpu()
    if params.temperature <= 0:
        logp = torch.log_softmax(logits, -1)
        token = logits.argmax(-1)
        return token, logp.gather(-1, token[:, None])[:, 0]
    logp = torch.log_softmax(logits / params.temperature, -1)
    if params.top_p < 1.0:
        sorted_lp, order = logp.sort(-1, descending=True)
        cum = sorted_lp.exp().cumsum(-1)
        cut = cum - sorted_lp.exp() > params.top_p  # keep the smallest prefix reaching top_p
        sorted_lp = sorted_lp.masked_fill(cut, float("-inf"))
        logp = torch.full_like(logp, float("-inf")).scatter(-1, order, sorted_lp)
        logp = torch.log_softmax(logp, -1)
    token = torch.multinomial(logp.exp(), 1, generator=rng)[:, 0]
    return token, logp.gather(-1, token[:, None])[:, 0]


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
