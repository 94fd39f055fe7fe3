"""The continuous batch: requests join at the next token once a slot is free and leave when they end.

Prefill (a prompt's KV computed in a forward of its own), the decode step (one token for every
row, joining prompts' tokens computed beside them), and `Sampler`, which routes a rollout's roles
to their decoders. The KV store is `kv_store.SlotLayer`, the cross-turn cache `prefix_cache`, the
token choice `sampling`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer

from cahl.agents import attention
from cahl.agents.kv_store import SlotLayer
from cahl.agents.lora_fast import route_adapters
from cahl.agents.prefix_cache import shared_length
from cahl.agents.sampling import Sample, SamplingParams, hit_stop, mask_logits, sample_tokens, single_token

if TYPE_CHECKING:
    from cahl.agents.generation import HFBackend

JOIN_TOKENS = 1024  # most prompt tokens one decode forward computes for joining prompts
WIDEN_MARGIN = 64  # extra columns when a prompt is longer than the batch is wide (fewer copies)
DROP_COLUMNS_MIN = 64  # drop leading columns no live row uses once there are this many and a quarter
# of the store: attention computes masked columns too, a copy of the store costs about one step


@dataclass
class _Request:
    prompt: list[int]
    params: SamplingParams
    adapter: str | None
    label: object  # whom its decode time is charged to (the rollout: the role)
    tags: list  # one caller handle per sample
    priority: int = 0


@dataclass
class _Row:
    request: _Request
    tag: object
    sample: Sample
    first: int  # first KV column holding one of its tokens
    fed: bool = False  # its prompt's last token is the slot's next input: no logits to sample from yet
    pending: list[int] = field(default_factory=list)  # prompt tokens before that one still to compute
    # (in the next decode forward; rows of one prompt share the list, computed once)
    matcher: object = None  # the row's grammar state (llguidance.LLMatcher) when its request has a grammar


def prefill(backend, prompts: list[list[int]], adapters: list[str | None], found: list):
    """Prefill rows in two groups (with / without a cached prefix, so short and long rows are not
    padded to each other), each row through its own adapter; `found`: their cache lookups.
    Returns per-layer (keys, values) [B, heads, W, dim], mask [B, W] (rows left-padded to W
    columns) and last logits [B, V]."""
    t0 = time.perf_counter()
    if share_new_prefixes(backend, prompts, adapters, found):
        found = [backend.cache.find(a, p) for p, a in zip(prompts, adapters)]
    groups = [[i for i in range(len(prompts)) if (found[i][0] > 0) == hit] for hit in (False, True)]
    parts = [_prefill_group(backend, [prompts[i] for i in g], [found[i] for i in g], [adapters[i] for i in g])
             for g in groups if g]
    order = [i for g in groups for i in g]
    inverse = torch.argsort(torch.tensor(order)).to(backend.model.device)  # back to prompt order
    width = max(mask.shape[1] for _, mask, _ in parts)

    def merged(tensors: list[torch.Tensor]) -> torch.Tensor:  # left-pad dim 2 (KV) or 1 (mask) to `width`
        kv = tensors[0].dim() == 4
        return torch.cat([torch.nn.functional.pad(t, (0, 0, width - t.shape[2], 0) if kv else (width - t.shape[1], 0))
                          for t in tensors])[inverse]

    kv = [tuple(merged([p[0][layer][i] for p in parts]) for i in (0, 1)) for layer in range(len(parts[0][0]))]
    mask = merged([p[1] for p in parts])
    backend.stats.prompt_tokens += sum(len(p) - f[0] for p, f in zip(prompts, found))
    backend.stats.cached_tokens += sum(f[0] for f in found)
    for i, (prompt, adapter) in enumerate(zip(prompts, adapters)):  # for later requests of the same start
        backend.cache.remember(prompt, adapter, kv, mask, i)
    backend.stats.prefill_seconds += time.perf_counter() - t0
    return kv, mask, torch.cat([p[2] for p in parts])[inverse]


def share_new_prefixes(backend, prompts, adapters, found) -> bool:
    """Prompts of one adapter that the cache does not cover but that share a long prefix (the
    fixed instructions of a role, the tools of a task): compute that prefix once and cache it."""
    added = False
    for adapter in dict.fromkeys(adapters):
        misses = list({tuple(p): p for p, a, f in zip(prompts, adapters, found) if a == adapter and f[0] == 0}.values())
        if len(misses) < 2:
            continue
        shared = min(len(p) for p in misses) - 1
        for p in misses[1:]:
            shared = min(shared, shared_length(misses[0], p))
        if backend.cache.wants(shared) and shared >= backend.cache.min_reuse:
            kv, _, _ = _prefill_group(backend, [misses[0][:shared]], [(0, None)], [adapter])
            backend.cache.store(adapter, misses[0][:shared], [(k[0], v[0]) for k, v in kv])
            backend.stats.prompt_tokens += shared
            added = True
    return added


def _prefill_group(backend, prompts, found, adapters):
    from transformers import DynamicCache

    model, device = backend.model, backend.model.device
    B = len(prompts)
    c = [f[0] for f in found]
    C = max(c)
    new = [p[n:] for p, n in zip(prompts, c)]
    U = max(len(x) for x in new)
    ids = torch.full((B, U), backend.pad_id, dtype=torch.long)
    pos = torch.zeros((B, U), dtype=torch.long)
    mask = torch.zeros((B, C + U), dtype=torch.long)
    for i, x in enumerate(new):
        ids[i, U - len(x):] = torch.tensor(x, dtype=torch.long)
        pos[i, U - len(x):] = torch.arange(c[i], c[i] + len(x))
        mask[i, C - c[i]:C] = 1
        mask[i, C + U - len(x):] = 1
    cache = DynamicCache(config=model.config)
    if C > 0:  # cached rows: their KV right-aligned at column C, gaps masked out
        some = next(kv for n, kv in found if n)
        for layer in range(len(some)):
            k0, v0 = some[layer]
            k = k0.new_zeros((B, k0.shape[0], C, k0.shape[2]))
            v = v0.new_zeros((B, v0.shape[0], C, v0.shape[2]))
            for i, (n, kv) in enumerate(found):
                if n:
                    k[i, :, C - n:] = kv[layer][0][:, :n]
                    v[i, :, C - n:] = kv[layer][1][:, :n]
            cache.update(k, v, layer)
    with route_adapters(model, adapters):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                       cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    return kv, mask.to(device), logits


class Decoder:
    """Continuous batching over one HFBackend: a request joins the running batch at the first step
    with a free slot and leaves it at the step it finishes, so the batch neither waits for its
    slowest row nor idles while requests are queued.

    Layout: each layer's KV is one store [slots, heads, columns, dim] (`SlotLayer`). Every slot
    writes the token it decodes at the same column `n`; a joining row's prompt is written
    right-aligned to column n and a mask hides the columns before it. A finished row's slot is
    taken by the next request without moving any other row's KV: the store is copied only to add
    slots, to make room for a prompt longer than `n`, to drop leading columns no live row uses, and
    to shrink once most slots are empty. Rows may name different LoRA adapters: every forward then
    runs each row through its own adapter (`route_adapters`), so planner and executor turns of a
    rollout decode in one batch. A prompt that joins while rows decode is computed inside the next
    decode forward (`_forward_joined`), not in a prefill forward of its own.
    """

    def __init__(self, backend: HFBackend, rng: torch.Generator):
        self.backend, self.model, self.rng = backend, backend.model, rng
        self.device = self.model.device
        self.queue: list[_Request] = []  # by priority (highest first), then arrival
        self.rows: list[_Row | None] = []  # per slot
        self.layers: list[SlotLayer] = []
        self.cache = None  # a DynamicCache whose layers are self.layers
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)  # [slots, n]
        self.pos = torch.zeros(0, dtype=torch.long, device=self.device)  # [slots] position of each slot's next token
        self.token = torch.zeros(0, dtype=torch.long, device=self.device)  # [slots] token each slot feeds next
        self.logits: torch.Tensor | None = None  # [slots, V] next-token logits
        self.n = 0  # KV columns in use
        self.named: bool | None = None  # do requests name adapters? (all do or none do)
        self.joinable = attention.supported(self.model)  # prompts may join through decode forwards
        self.seconds: dict = {}  # label -> seconds: each step's time split over the rows it served
        self._masks: dict[bytes, np.ndarray] = {}  # each distinct grammar mask once, shared by the samples

    @property
    def busy(self) -> bool:
        return bool(self.queue) or any(r is not None for r in self.rows)

    def submit(self, prompt: list[int], params: SamplingParams, n: int = 1, adapter: str | None = None,
               tags: list | None = None, label: object = None, priority: int = 0) -> None:
        """Queue n samples of `prompt` (one prefill, shared KV); step() returns them as (tag, Sample).
        Requests of higher priority join the batch first (a rollout gives turns that others wait
        for a higher one than turns nothing waits for)."""
        tags = list(range(n)) if tags is None else list(tags)
        if n < 1 or len(tags) != n or not prompt:
            raise ValueError(f"Decoder.submit: expected a non-empty prompt, n >= 1 and n tags; got "
                             f"{len(prompt)} prompt tokens, n={n}, {len(tags)} tags")
        if self.named is not None and self.named != (adapter is not None):
            raise ValueError("Decoder.submit: either every request names an adapter or none does")
        self.named = adapter is not None
        size = self.backend.max_batch
        at = next((i for i, r in enumerate(self.queue) if r.priority < priority), len(self.queue))
        for k in range(0, n, size):  # a request never needs more rows than a batch has
            self.queue.insert(at + k // size, _Request(list(prompt), params, adapter, label, tags[k:k + size], priority))

    @torch.no_grad()
    def step(self) -> list[tuple[object, Sample]]:
        """Admit queued requests into free slots, sample one token for every row, retire finished
        rows, and run the forward that gives the next logits. Returns the samples that finished."""
        t0 = time.perf_counter()
        self._admit()
        self._tidy()
        served = [r.request.label for r in self.rows if r is not None]
        finished = self._draw_tokens() if served else []
        if any(r is not None for r in self.rows):
            self._forward()
            self.backend.stats.steps += 1
            self.backend.stats.rows += sum(r is not None for r in self.rows)
            self.backend.stats.slots += len(self.rows)
        seconds = time.perf_counter() - t0
        self.backend.stats.seconds += seconds
        for label in served:
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds / len(served)
        return finished

    # -- the steps -----------------------------------------------------------------------------
    def _admit(self) -> None:
        free = [s for s, r in enumerate(self.rows) if r is None]
        room = len(free) + self.backend.max_batch - len(self.rows)
        taken: list[_Request] = []
        while self.queue and len(self.queue[0].tags) <= room:
            room -= len(self.queue[0].tags)
            taken.append(self.queue.pop(0))
        if not taken:
            return
        # Distinct prompts (requests of one prompt and adapter, e.g. a rollout's priorities, are
        # computed once). While rows decode, a prompt joins through the decode forward: its cached
        # prefix is copied into its slots, and the rest of its tokens are computed in the next
        # decode forward beside the decoding rows' tokens (one batch for the weights to stream
        # through, instead of a small prefill forward of its own). Otherwise it is prefilled.
        distinct = list(dict.fromkeys((r.adapter, tuple(r.prompt)) for r in taken))
        prompts, adapters = [list(p) for _, p in distinct], [a for a, _ in distinct]
        found = [self.backend.cache.find(a, p) for p, a in zip(prompts, adapters)]
        if share_new_prefixes(self.backend, prompts, adapters, found):
            found = [self.backend.cache.find(a, p) for p, a in zip(prompts, adapters)]
        budget = JOIN_TOKENS if self.joinable and any(r is not None for r in self.rows) else 0
        joins, fill = [], []
        for i, (p, (n, _)) in enumerate(zip(prompts, found)):
            rest = len(p) - 1 - n  # tokens to compute before the last one (fed like a decoded token)
            if len(p) > 1 and (0 < n and rest == 0 or rest <= budget):
                joins.append(i)
                budget -= rest
            else:
                fill.append(i)
        parts: dict[int, tuple] = {}  # distinct index -> (per-layer KV or None, mask row, logits or None, pending)
        if fill:
            kv, mask, logits = prefill(self.backend, [prompts[i] for i in fill], [adapters[i] for i in fill],
                                                     [found[i] for i in fill])
            for j, i in enumerate(fill):
                parts[i] = ([(k[j], v[j]) for k, v in kv], mask[j], logits[j], [])
        for i in joins:
            n, entry = found[i]
            kv = [(k[:, :n], v[:, :n]) for k, v in entry] if n else None
            parts[i] = (kv, torch.ones(len(prompts[i]) - 1, dtype=torch.long, device=self.device), None, prompts[i][n:-1])
            self.backend.stats.cached_tokens += n
            self.backend.stats.prompt_tokens += len(prompts[i]) - n
            self.backend.stats.joined_tokens += len(prompts[i]) - n
        if not self.layers:
            self._start([(k[None], v[None]) for k, v in next(kv for kv, *_ in parts.values() if kv is not None)])
        width = max(m.shape[0] for _, m, _, _ in parts.values())
        index = {key: i for i, key in enumerate(distinct)}
        rows = [(r, tag, index[r.adapter, tuple(r.prompt)]) for r in taken for tag in r.tags]
        if width > self.n:  # a margin when rows are live, so that the next longer prompt need not copy again
            self._widen(width - self.n + (WIDEN_MARGIN if any(r is not None for r in self.rows) else 0))
        if len(rows) > len(free):
            free += self._add_slots(len(rows) - len(free))
        for i, (kv, mask, _, _) in parts.items():  # each prompt's KV into all of its rows' slots at once
            slots = torch.tensor([slot for slot, (_, _, j) in zip(free, rows) if j == i], device=self.device)
            col = self.n - mask.shape[0]
            for layer, (k, v) in zip(self.layers, kv or []):
                layer.put(slots, k.expand(len(slots), *k.shape), v.expand(len(slots), *v.shape), col)
            self.mask[slots] = 0
            self.mask[slots, col:] = mask
        for slot, (request, tag, i) in zip(free, rows):
            _, mask, logits, pending = parts[i]
            first = self.n - mask.shape[0] + int((mask != 0).int().argmax())
            grammar = request.params.grammar
            self.rows[slot] = _Row(request, tag, Sample([], [], "length", masks=[] if grammar else None), first,
                                   fed=logits is None, pending=pending,
                                   matcher=self.backend.grammars.matcher(grammar) if grammar else None)
            if logits is None:
                self.token[slot], self.pos[slot] = request.prompt[-1], len(request.prompt) - 1
            else:
                self.logits[slot], self.pos[slot] = logits, len(request.prompt)

    def _tidy(self) -> None:
        """Stop computing empty slots once most are empty and nothing waits; drop leading columns
        that no live row uses once they are a quarter of the store."""
        live = [s for s, r in enumerate(self.rows) if r is not None]
        if not live:
            return
        if not self.queue and len(live) <= len(self.rows) // 2 and len(self.rows) >= 8:
            self._keep(live)
        first = min(r.first for r in self.rows if r is not None)
        if first >= max(DROP_COLUMNS_MIN, self.n // 4):
            self._drop_columns(first)

    def _draw_tokens(self) -> list[tuple[object, Sample]]:
        live = [s for s, r in enumerate(self.rows) if r is not None and not r.fed]
        finished: list[tuple[object, Sample]] = []
        masks = self._grammar_masks(live, finished)  # constrained rows whose grammar has ended leave here
        live = [s for s in live if self.rows[s] is not None]
        tokens, logps = [0] * len(live), [0.0] * len(live)
        kinds: dict = {}  # rows of one (temperature, top_p) are sampled together
        for i, s in enumerate(live):
            p = self.rows[s].request.params
            kinds.setdefault((p.temperature, p.top_p), []).append(i)
        for (temperature, top_p), members in kinds.items():
            slots = [live[i] for i in members]
            logits = self.logits[torch.tensor(slots, device=self.device)]
            held = [j for j, s in enumerate(slots) if s in masks]
            if held:  # the masked, renormalised distribution: disallowed tokens get -inf before softmax
                packed = torch.from_numpy(np.stack([masks[slots[j]] for j in held])).to(self.device)
                rows = torch.tensor(held, device=self.device)
                logits[rows] = mask_logits(logits[rows], packed)
            token, logp = sample_tokens(logits, SamplingParams(temperature=temperature, top_p=top_p), self.rng)
            for i, t, lp in zip(members, token.tolist(), logp.tolist()):
                tokens[i], logps[i] = t, lp
        going = []
        for s, t, lp in zip(live, tokens, logps):
            row = self.rows[s]
            params, sample = row.request.params, row.sample
            sample.ids.append(t)
            sample.logprobs.append(lp)
            if row.matcher is not None:
                sample.masks.append(masks[s])
                if not row.matcher.consume_token(t):  # the mask allowed it: a mismatch is a bug, never data
                    raise RuntimeError(f"grammar refused an allowed token {t}: {row.matcher.get_error()}")
                if row.matcher.is_stopped():
                    sample.finish = "stop"
            if t in self.backend.eos_ids or (params.stop and hit_stop(self.backend.tokenizer, sample.ids, params.stop)):
                sample.finish = "stop"
            if sample.finish == "stop" or len(sample.ids) >= params.max_new_tokens:
                self._retire(s, finished)
            else:
                going.append((s, t))
        if going:
            self.token[torch.tensor([s for s, _ in going], device=self.device)] = torch.tensor(
                [t for _, t in going], device=self.device)
        self.backend.stats.generated_tokens += len(live)
        return finished

    def _grammar_masks(self, live: list[int], finished: list) -> dict[int, np.ndarray]:
        """slot -> the packed allowed set of each constrained row's next token. Where the grammar
        forces bytes, only the first of their canonical tokens is allowed (a position with one
        allowed token: log-prob 0, no gradient). A row whose grammar allows nothing but the end
        of the turn is finished here, without sampling one."""
        held = [s for s in live if self.rows[s].matcher is not None]
        if not held:
            return {}
        t0 = time.perf_counter()
        grammars = self.backend.grammars
        out = np.empty((len(held), grammars.width), dtype=np.int32)
        grammars.fill([self.rows[s].matcher for s in held], out)
        masks = {}
        for j, s in enumerate(held):
            matcher = self.rows[s].matcher
            forced = matcher.compute_ff_tokens()
            row = single_token(forced[0], grammars.width) if forced else out[j]
            if not forced and _only(row, grammars.eos | self.backend.eos_ids):
                self.rows[s].sample.finish = "stop"
                self._retire(s, finished)
                continue
            key = row.tobytes()
            masks[s] = self._masks.setdefault(key, row if forced else row.copy())
        self.backend.stats.mask_seconds += time.perf_counter() - t0
        return masks

    def _retire(self, slot: int, finished: list) -> None:
        """A finished row leaves its slot; its prompt + sample (but the last token, whose KV is not
        computed yet) go to the prefix cache."""
        row = self.rows[slot]
        self.backend.cache.remember(row.request.prompt + row.sample.ids[:-1], row.request.adapter,
                                    [(layer.keys, layer.values) for layer in self.layers], self.mask, slot)
        finished.append((row.tag, row.sample))
        self.rows[slot] = None

    def _forward(self) -> None:
        live = [s for s, r in enumerate(self.rows) if r is not None]
        free = [s for s, r in enumerate(self.rows) if r is None]
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.device)], 1)
        if free:  # an empty slot attends to its own newest column only (never to nothing: that is NaN)
            index = torch.tensor(free, device=self.device)
            self.mask[index] = 0
            self.mask[index, -1] = 1
            self.token[index] = self.backend.pad_id
        adapters = [r.request.adapter if r is not None else None for r in self.rows]
        joins = {}  # id(pending) -> (the joining rows' slots, their pending tokens)
        for s in live:
            if self.rows[s].pending:
                joins.setdefault(id(self.rows[s].pending), ([], self.rows[s].pending))[0].append(s)
        if joins:
            self._forward_joined(list(joins.values()), adapters)
        else:
            with route_adapters(self.model, adapters):
                self.logits = self.model(input_ids=self.token.view(-1, 1), attention_mask=self.mask,
                                         position_ids=self.pos.view(-1, 1), cache=self.cache,
                                         use_cache=True).logits[:, -1].float()
        self.n += 1
        self.pos[torch.tensor(live, device=self.device)] += 1
        for s in live:
            self.rows[s].fed = False
            self.rows[s].pending = []

    def _forward_joined(self, joins: list[tuple[list[int], list[int]]], adapters: list[str | None]) -> None:
        """The decode forward, with joining prompts' pending tokens as extra batch rows of one token
        each after the slots' rows. Every extra token's KV is written to its column in each of its
        prompt's slots (`SlotLayer.joining`); it attends, within its prompt's first slot, to the
        columns up to its own (`attention.joined_attention`). Logits are computed for the slots' rows only."""
        tokens, positions, groups, source, slots, columns = [], [], [], [], [], []
        for members, pending in joins:
            lead, count = members[0], len(pending)
            column = self.n - count  # the pending tokens fill the columns just before the decode column
            groups.append((len(tokens), count, lead, self.rows[lead].first, column))
            for slot in members:
                source += range(len(tokens), len(tokens) + count)
                slots += [slot] * count
                columns += range(column, column + count)
            start = int(self.pos[lead]) - count
            positions += range(start, start + count)
            tokens += pending
            adapters = adapters + [adapters[lead]] * count
        device = self.device
        plan = attention.Joins(self.mask.bool()[:, None, None, :], [
            (start, count, lead, first, column,
             (torch.arange(first, column + count, device=device)[None] <= torch.arange(column, column + count, device=device)[:, None])[None, None])
            for start, count, lead, first, column in groups])
        scatter = tuple(torch.tensor(x, device=device) for x in (source, slots, columns))
        ids = torch.cat([self.token, torch.tensor(tokens, device=device)]).view(-1, 1)
        pos = torch.cat([self.pos, torch.tensor(positions, device=device)]).view(-1, 1)
        body, head = attention.body_and_head(self.model)
        for layer in self.layers:
            layer.joining = scatter
        try:
            with route_adapters(self.model, adapters), attention.attention(self.model, attention.JOINED):
                hidden = body(input_ids=ids, position_ids=pos, cache=self.cache, use_cache=True,
                              cahl_joins=plan).last_hidden_state
                self.logits = head(hidden[:len(self.rows), -1]).float()
        finally:
            for layer in self.layers:
                layer.joining = None
        for members, _ in joins:  # the prompt is computed: later requests starting like it reuse it
            row = self.rows[members[0]]
            self.backend.cache.remember(row.request.prompt, row.request.adapter,
                                   [(layer.keys, layer.values) for layer in self.layers], self.mask, members[0])

    # -- the store -----------------------------------------------------------------------------
    def _start(self, kv) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        if any(type(layer) is not DynamicLayer for layer in self.cache.layers):
            raise ValueError(f"HFBackend decodes full-attention models only; {type(self.model.config).__name__} has "
                             f"other cache layers ({sorted({type(x).__name__ for x in self.cache.layers})})")
        self.layers = [SlotLayer(k) for k, _ in kv]
        self.cache.layers = list(self.layers)
        self.logits = torch.zeros((0, self.model.config.vocab_size), device=self.device)

    def _widen(self, extra: int) -> None:
        for layer in self.layers:
            layer.widen(extra)
        self.mask = torch.nn.functional.pad(self.mask, (extra, 0))
        self.n += extra
        for row in self.rows:
            if row is not None:
                row.first += extra

    def _drop_columns(self, count: int) -> None:
        for layer in self.layers:
            layer.drop_columns(count)
        self.mask = self.mask[:, count:].clone()
        self.n -= count
        for row in self.rows:
            if row is not None:
                row.first -= count

    def _add_slots(self, count: int) -> list[int]:
        for layer in self.layers:
            layer.add_slots(count)
        start = len(self.rows)
        self.rows += [None] * count
        self.mask = torch.cat([self.mask, self.mask.new_zeros((count, self.n))])
        self.logits = torch.cat([self.logits, self.logits.new_zeros((count, self.logits.shape[1]))])
        self.pos = torch.cat([self.pos, self.pos.new_zeros(count)])
        self.token = torch.cat([self.token, self.token.new_zeros(count)])
        return list(range(start, start + count))

    def _keep(self, slots: list[int]) -> None:
        index = torch.tensor(slots, device=self.device)
        for layer in self.layers:
            layer.keep(index)
        self.rows = [self.rows[s] for s in slots]
        self.mask, self.logits = self.mask[index], self.logits[index]
        self.pos, self.token = self.pos[index], self.token[index]


def _only(packed: np.ndarray, tokens: set[int]) -> bool:
    """Does the packed mask allow nothing but (some of) `tokens`?"""
    rest = packed.copy()
    for t in tokens:
        if t // 32 < len(rest):
            rest[t // 32] &= ~np.int32(np.uint32(1 << (t % 32)).view(np.int32))
    return not rest.any()


class Sampler:
    """Requests by role, decoded continuously: role -> (Decoder, adapter). Roles that share a Decoder
    share its batch; each step advances every busy Decoder by one token."""

    def __init__(self, lanes: dict[str, tuple[Decoder, str | None]]):
        self.lanes = lanes
        self.decoders = list({id(d): d for d, _ in lanes.values()}.values())

    @property
    def busy(self) -> bool:
        return any(d.busy for d in self.decoders)

    @property
    def seconds(self) -> dict:
        """role -> decode seconds (a shared step's time split over the rows it served)."""
        out: dict = {}
        for d in self.decoders:
            for role, s in d.seconds.items():
                out[role] = out.get(role, 0.0) + s
        return out

    def submit(self, role: str, prompt: list[int], params: SamplingParams, n: int, tags: list, priority: int = 0) -> None:
        decoder, adapter = self.lanes[role]
        decoder.submit(prompt, params, n=n, adapter=adapter, tags=tags, label=role, priority=priority)

    def step(self) -> list[tuple[object, Sample]]:
        return [done for d in self.decoders if d.busy for done in d.step()]
