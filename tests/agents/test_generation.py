"""HFBackend on a tiny random Llama: exact greedy outputs under left padding, exact log-probs,
sample counts and order, seeding, stop strings and eos, and rows leaving the batch."""

import pytest
import torch

from cahl.agents.generation import HFBackend
from cahl.agents.sampling import SamplingParams

TEXTS = ["hi", "The quick brown fox jumps over the lazy dog.", "1 2 3",
         "<|im_start|>user\nA much longer prompt, so that the other rows of the batch are left-padded by "
         "quite a few positions before the decode starts.<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module")
def prompts(tokenizer):
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert len({len(p) for p in ids}) == len(ids)
    return ids


@pytest.fixture(scope="module")
def backend(tiny_model, tokenizer):
    return HFBackend(tiny_model, tokenizer)


def greedy(n_tokens: int = 10, **kw) -> SamplingParams:
    return SamplingParams(max_new_tokens=n_tokens, temperature=0.0, **kw)


@torch.no_grad()
def reference_greedy(model, prompt, n_tokens):
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=n_tokens, do_sample=False)
    return out[0, len(prompt):].tolist()


@torch.no_grad()
def teacher_forced_logits(model, prompt, ids):
    """logits [len(ids), V] that predicted each of `ids` after `prompt`, without cache or padding."""
    full = torch.tensor([prompt + ids])
    return model(input_ids=full).logits[0, len(prompt) - 1:-1].float()


def test_greedy_batch_equals_model_generate(backend, tiny_model, prompts):
    samples = backend.generate(prompts, greedy(12))
    assert [s.prompt_index for s in samples] == [0, 1, 2, 3]
    for p, s in zip(prompts, samples):
        assert s.ids == reference_greedy(tiny_model, p, 12)
        assert s.finish == "length" and len(s.logprobs) == 12


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
def test_logprobs_equal_teacher_forced_log_softmax(backend, tiny_model, prompts, temperature):
    samples = backend.generate(prompts, SamplingParams(max_new_tokens=8, temperature=temperature), n=2, seed=3)
    for s in samples:
        logits = teacher_forced_logits(tiny_model, prompts[s.prompt_index], s.ids)
        scale = temperature if temperature > 0 else 1.0
        expected = torch.log_softmax(logits / scale, -1).gather(-1, torch.tensor(s.ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(s.logprobs), expected, atol=1e-4, rtol=0)


def test_top_p_samples_inside_the_nucleus_with_renormalised_logprobs(backend, tiny_model, prompts):
    top_p = 0.3
    samples = backend.generate(prompts, SamplingParams(max_new_tokens=6, temperature=1.0, top_p=top_p), n=2, seed=5)
    for s in samples:
        logits = teacher_forced_logits(tiny_model, prompts[s.prompt_index], s.ids)
        for row, token, lp in zip(torch.softmax(logits, -1), s.ids, s.logprobs):
            probs, order = row.sort(descending=True)
            size = int((probs.cumsum(0) - probs < top_p).sum())  # smallest prefix reaching top_p
            assert token in order[:size].tolist()
            assert lp == pytest.approx(float(torch.log(row[token] / probs[:size].sum())), abs=1e-4)


@pytest.mark.parametrize("max_batch", [32, 2])
def test_counts_give_prompt_major_samples(tiny_model, tokenizer, prompts, max_batch):
    backend = HFBackend(tiny_model, tokenizer, max_batch=max_batch)
    alone = [backend.generate([p], greedy(6))[0].ids for p in prompts]
    samples = backend.generate(prompts, greedy(6), n=[2, 1, 3, 1])
    assert [s.prompt_index for s in samples] == [0, 0, 1, 2, 2, 2, 3]
    assert [s.ids for s in samples] == [alone[s.prompt_index] for s in samples]
    samples = backend.generate(prompts[:2], greedy(6), n=3)
    assert [s.prompt_index for s in samples] == [0, 0, 0, 1, 1, 1]
    assert [s.ids for s in samples] == [alone[s.prompt_index] for s in samples]


def test_seed_fixes_the_samples(backend, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    a = backend.generate(prompts, params, n=2, seed=11)
    b = backend.generate(prompts, params, n=2, seed=11)
    c = backend.generate(prompts, params, n=2, seed=12)
    assert [s.ids for s in a] == [s.ids for s in b]
    assert [s.logprobs for s in a] == [s.logprobs for s in b]
    assert [s.ids for s in a] != [s.ids for s in c]
    assert len({tuple(s.ids) for s in a}) > 1  # the samples of one prompt are not copies of each other


def test_stop_string_ends_the_row_and_is_included(backend, tokenizer, prompts):
    full = backend.generate(prompts[:1], greedy(10))[0].ids
    stop = tokenizer.decode(full[:4])
    (s,) = backend.generate(prompts[:1], greedy(10, stop=("never appears \x00", stop)))
    assert s.ids == full[:4] and s.finish == "stop"
    assert tokenizer.decode(s.ids).endswith(stop)
    assert len(s.logprobs) == 4


def test_eos_ends_the_row_and_is_included(tiny_model, tokenizer, prompts):
    full = HFBackend(tiny_model, tokenizer).generate(prompts[:1], greedy(10))[0].ids
    config = tiny_model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = [tokenizer.eos_token_id, full[3]]  # the 4th greedy token now ends the turn
    try:
        backend = HFBackend(tiny_model, tokenizer)
    finally:
        config.eos_token_id = saved
    (s,) = backend.generate(prompts[:1], greedy(10))
    assert s.ids == full[: full.index(full[3]) + 1] and s.finish == "stop"


def test_rows_leaving_the_batch_do_not_change_the_others(backend, tokenizer, prompts):
    full = [backend.generate([p], greedy(12))[0].ids for p in prompts]
    # prompt 0 stops after 2 tokens, prompt 2 after 5; the others run to the limit
    stops = (tokenizer.decode(full[0][:2]), tokenizer.decode(full[2][:5]))
    for i in (1, 3):
        assert not any(tokenizer.decode(full[i][:k]).endswith(s) for k in range(1, 13) for s in stops)
    params = greedy(12, stop=stops)
    alone = [backend.generate([p], params)[0] for p in prompts]
    batch = backend.generate(prompts, params, n=[1, 2, 1, 2])
    assert [len(s.ids) for s in alone] == [2, 12, 5, 12]
    for s in batch:
        a = alone[s.prompt_index]
        assert (s.ids, s.finish) == (a.ids, a.finish)
        torch.testing.assert_close(torch.tensor(s.logprobs), torch.tensor(a.logprobs), atol=1e-4, rtol=0)


def test_next_turn_prompt_matches_a_fresh_backend(tiny_model, tokenizer, prompts):
    """An episode's next prompt extends the previous prompt + sample: whatever the backend keeps
    between calls, the result must equal a fresh backend's."""
    used = HFBackend(tiny_model, tokenizer)
    used.cache.min_reuse = 1
    first = used.generate(prompts, greedy(6), n=[1, 2, 1, 1])
    feedback = tokenizer("<|im_end|>\n<|im_start|>user\nobs<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    nxt = [prompts[s.prompt_index] + s.ids + feedback for s in first]
    nxt[1] = nxt[1][:-3] + nxt[0][-3:]  # same prefix as another row, different end
    again = used.generate(nxt, greedy(6))
    fresh = HFBackend(tiny_model, tokenizer).generate(nxt, greedy(6))
    assert [s.ids for s in again] == [s.ids for s in fresh]
    for a, f in zip(again, fresh):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(f.logprobs), atol=1e-4, rtol=0)


def test_empty_prompt_list(backend):
    assert backend.generate([], greedy(4)) == []


# -- fixed bugs (each was pinned as a strict xfail first) -------------------------------------------

def test_stop_string_completed_inside_a_token_ends_the_row(backend, tokenizer, prompts):
    """E.g. "</response>." tokenises as "</", "response", ">.": the stop ends inside the last token."""
    full = backend.generate(prompts[:1], greedy(10))[0].ids
    k = next(k for k in range(2, 10) if len(tokenizer.decode(full[k - 1:k])) >= 2)
    stop = tokenizer.decode(full[:k])[:-1]  # completed by token k-1, which has one more character
    (s,) = backend.generate(prompts[:1], greedy(10, stop=(stop,)))
    assert s.finish == "stop" and s.ids == full[:k]


def test_stop_string_longer_than_a_few_tokens_ends_the_row(backend, tokenizer, prompts):
    full = backend.generate(prompts[:1], greedy(20))[0].ids
    stop = tokenizer.decode(full[:14])
    assert all(stop not in tokenizer.decode(full[:k]) for k in range(14))
    (s,) = backend.generate(prompts[:1], greedy(20, stop=(stop,)))
    assert s.finish == "stop" and s.ids == full[:14]


def test_zero_count_for_a_prompt(backend, prompts):
    alone = [backend.generate([p], greedy(6))[0].ids for p in prompts[:3]]
    samples = backend.generate(prompts[:3], greedy(6), n=[2, 0, 1])
    assert [(s.prompt_index, s.ids) for s in samples] == [(0, alone[0]), (0, alone[0]), (2, alone[2])]
    samples = backend.generate(prompts[:3], greedy(6), n=[0, 1, 0])
    assert [(s.prompt_index, s.ids) for s in samples] == [(1, alone[1])]


def test_all_zero_counts_give_no_samples(backend, prompts):
    assert backend.generate(prompts, greedy(4), n=0) == []
    assert backend.generate(prompts, greedy(4), n=[0] * len(prompts)) == []


def test_counts_that_do_not_fit_the_prompts_are_rejected(backend, prompts):
    for n in ([1, 1], [1, -1, 1, 1], -1):
        with pytest.raises(ValueError, match="one count per prompt"):
            backend.generate(prompts, greedy(4), n=n)


def test_unseeded_sampling_follows_torch_manual_seed(backend, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    torch.manual_seed(0)
    a = [s.ids for s in backend.generate(prompts, params)], torch.rand(1)
    torch.manual_seed(0)
    b = [s.ids for s in backend.generate(prompts, params)], torch.rand(1)
    c = [s.ids for s in backend.generate(prompts, params)]
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert c != a[0]  # without a reseed, the next unseeded call samples afresh


def test_prune_keeps_what_live_sequences_still_start_with(backend, prompts):
    backend.clear_cache()
    backend.cache.min_reuse = 1
    samples = backend.generate([prompts[1], prompts[1][:2] + prompts[2]], greedy(5), seed=0)
    kept = [len(prompts[1]) + 4, 2 + len(prompts[2]) + 4]  # prompt + sample but its last token
    assert sorted(len(t) for _, t, _ in backend.cache.entries.values()) == sorted(kept)
    live = [prompts[1] + samples[0].ids + [7, 8, 9]]  # episode 0 goes on, episode 1 ended
    backend.prune_cache(live)
    # episode 0's entry whole; episode 1's would keep the 2 tokens it shares, which entry 0 holds
    assert [len(t) for _, t, _ in backend.cache.entries.values()] == [kept[0]]
    backend.prune_cache([prompts[1][:2] + [7, 8, 9]])  # shares 2 tokens with the entry: cut to them
    ((_, tokens, kv),) = backend.cache.entries.values()
    assert tokens.tolist() == prompts[1][:2] and kv[0][0].shape[1] == 2 and backend.cache.tokens == 2
    backend.prune_cache([])
    assert not backend.cache.entries and backend.cache.tokens == 0
    backend.cache.min_reuse = 32


def test_prompts_sharing_a_prefix_compute_it_once_with_unchanged_samples(tiny_model, tokenizer, prompts):
    """Three prompts that start with the same 30 tokens (a role's instructions): the shared part
    is prefilled once, and the samples equal those of a backend that caches nothing."""
    head = (prompts[3] * 3)[:30]
    batch = [head + p for p in prompts[:3]]
    cold = HFBackend(tiny_model, tokenizer, cache_tokens=0)
    warm = HFBackend(tiny_model, tokenizer)
    warm.cache.min_reuse = 8
    a, b = cold.generate(batch, greedy(6)), warm.generate(batch, greedy(6))
    assert [s.ids for s in a] == [s.ids for s in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-4, rtol=0)
    assert cold.stats.prompt_tokens == sum(map(len, batch))
    assert warm.stats.prompt_tokens == sum(map(len, batch)) - 2 * len(head)
    # a later prompt starting the same way reuses a cached entry too
    more = head + prompts[3]
    assert warm.generate([more], greedy(6))[0].ids == cold.generate([more], greedy(6))[0].ids
    assert warm.stats.prompt_tokens == sum(map(len, batch)) - 2 * len(head) + len(prompts[3])


def test_prompt_cached_to_its_last_token_joins_through_the_decode_forward(tiny_model, tokenizer, prompts):
    """A prompt seen before needs no prefill: its last token is fed to the next decode forward
    (also next to a row that does prefill); the samples equal a backend that caches nothing."""
    cold = HFBackend(tiny_model, tokenizer, cache_tokens=0)
    warm = HFBackend(tiny_model, tokenizer)
    warm.cache.min_reuse = 4
    warm.generate([prompts[1]], greedy(3))
    before = warm.stats.prompt_tokens
    a = warm.generate([prompts[1], prompts[3]], greedy(8), n=[2, 1])
    b = cold.generate([prompts[1], prompts[3]], greedy(8), n=[2, 1])
    assert warm.stats.prompt_tokens - before == 1 + len(prompts[3])  # the cached prompt's last token only
    assert [s.ids for s in a] == [s.ids for s in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-4, rtol=0)


def test_prompt_with_a_cached_prefix_joins_a_running_batch_and_computes_only_its_rest(tiny_model, tokenizer, prompts):
    """A running row, then two samples of a prompt whose first tokens are cached: the cached KV is
    copied into both slots, the rest is computed once inside a decode forward, and the samples
    equal a backend that caches nothing and decodes the prompt alone."""
    long = prompts[3] + prompts[1]
    cold = HFBackend(tiny_model, tokenizer, cache_tokens=0)
    alone = cold.generate([long], greedy(7))[0]
    warm = HFBackend(tiny_model, tokenizer)
    warm.cache.min_reuse = 4
    warm.generate([prompts[3]], greedy(2))  # caches prompts[3] and its first sampled token
    cached = warm.cache.find(None, long)[0]
    assert 0 < cached < len(long) - 1
    before = warm.stats.prompt_tokens
    decoder = warm.decoder(seed=0)
    decoder.submit(prompts[2], greedy(12), tags=["running"])
    done = dict(decoder.step())
    decoder.submit(long, greedy(7), n=2, tags=["a", "b"])
    while decoder.busy:
        done.update(decoder.step())
    assert warm.stats.joined_tokens == len(long) - cached
    assert warm.stats.prompt_tokens - before == len(prompts[2]) + len(long) - cached
    for tag in "ab":
        assert done[tag].ids == alone.ids
        torch.testing.assert_close(torch.tensor(done[tag].logprobs), torch.tensor(alone.logprobs), atol=1e-4, rtol=0)
    # the joined prompt is cached whole for the requests that follow
    assert warm.cache.find(None, long + [5])[0] == len(long)


def test_higher_priority_requests_join_first(tiny_model, tokenizer, prompts):
    decoder = HFBackend(tiny_model, tokenizer, max_batch=2).decoder(seed=0)
    for tag, priority in (("low0", 0), ("low1", 0), ("high", 1)):
        decoder.submit(prompts[1], greedy(3), tags=[tag], priority=priority)
    decoder.step()
    assert [r.tag for r in decoder.rows] == ["high", "low0"] and [r.tags for r in decoder.queue] == [["low1"]]


def test_requests_of_one_prompt_admitted_together_prefill_it_once(tiny_model, tokenizer, prompts):
    backend = HFBackend(tiny_model, tokenizer, cache_tokens=0)
    decoder = backend.decoder(seed=0)
    decoder.submit(prompts[3], greedy(2), tags=["chosen"], priority=1)
    decoder.submit(prompts[3], greedy(2), n=2, tags=["other0", "other1"])
    done = {}
    while decoder.busy:
        done.update(decoder.step())
    assert backend.stats.prompt_tokens == len(prompts[3])
    assert done["chosen"].ids == done["other0"].ids == done["other1"].ids


def test_slot_layer_equals_explicit_tensor_edits_through_every_store_operation():
    """Each SlotLayer operation against the same edit written out on a plain tensor, including
    writes past the reserved capacity."""
    from cahl.agents.kv_store import SlotLayer

    g = torch.Generator().manual_seed(0)
    kv = lambda rows, cols: torch.randn(rows, 2, cols, 4, generator=g)  # noqa: E731
    layer, ref = SlotLayer(kv(1, 1)), torch.zeros(0, 2, 0, 4)

    def check():
        assert torch.equal(layer.keys, ref) and layer.get_seq_length() == ref.shape[2]

    layer.add_slots(3)
    ref = torch.zeros(3, 2, 0, 4)
    layer.widen(5)
    ref = torch.zeros(3, 2, 5, 4)
    check()
    k = kv(2, 5)
    layer.put(torch.tensor([2, 0]), k, k.clone(), 0)
    ref[[2, 0]] = k
    check()
    for _ in range(40):  # grows the capacity several times
        k = kv(3, 1)
        layer.update(k, k.clone())
        ref = torch.cat([ref, k], 2)
    check()
    layer.add_slots(2)
    ref = torch.cat([ref, torch.zeros(2, 2, ref.shape[2], 4)])
    k = kv(1, 7)
    layer.put(torch.tensor([4]), k, k.clone(), ref.shape[2] - 7)
    ref[4, :, -7:] = k[0]
    check()
    layer.widen(3)
    ref = torch.nn.functional.pad(ref, (0, 0, 3, 0))
    check()
    layer.drop_columns(10)
    ref = ref[:, :, 10:]
    check()
    layer.keep(torch.tensor([4, 1]))
    ref = ref[[4, 1]]
    check()
    assert torch.equal(layer.values, ref)  # values took the same path


@pytest.mark.parametrize("max_batch,drop_min,every", [(2, 256, 2), (8, 1, 2), (8, 256, 1)])
def test_requests_joining_a_running_batch_decode_as_if_alone(tiny_model, tokenizer, prompts, monkeypatch,
                                                              max_batch, drop_min, every):
    """Rows join while others decode (into freed slots, new slots, a widened store: the long prompt
    comes last; each prompt computed inside a decode forward), finish at different lengths, and the store drops columns and shrinks on the way:
    every sample equals the same request decoded alone. (every=1: all join at once, then the store
    shrinks as they finish.)"""
    import cahl.agents.decoder as decoder_module

    monkeypatch.setattr(decoder_module, "DROP_COLUMNS_MIN", drop_min)
    lengths = [3, 12, 7, 9]
    alone = [HFBackend(tiny_model, tokenizer).generate([p], greedy(k))[0] for p, k in zip(prompts, lengths)]
    backend = HFBackend(tiny_model, tokenizer, max_batch=max_batch)
    decoder = backend.decoder(seed=0)
    done, order = {}, [2, 0, 1, 3]
    for step in range(200):
        due = list(order) if every == 1 else order[:1] if step % every == 0 else []
        for i in due:
            order.remove(i)
            decoder.submit(prompts[i], greedy(lengths[i]), n=2, tags=[(i, 0), (i, 1)])
        if not decoder.busy and not order:
            break
        assert len(decoder.rows) <= max_batch
        done.update(decoder.step())
    assert sorted(done) == [(i, j) for i in range(4) for j in range(2)]
    # prompts that came while rows decoded were computed inside the decode forwards
    # prompts that came while rows decoded and slots were free were computed inside the decode
    # forwards (all but the one-token prompt 0, which has nothing to compute before its last token)
    joined = len(prompts[1]) + len(prompts[3]) if max_batch == 8 and every == 2 else 0
    assert backend.stats.joined_tokens == joined
    for (i, _), s in done.items():
        assert (s.ids, s.finish) == (alone[i].ids, alone[i].finish)
        torch.testing.assert_close(torch.tensor(s.logprobs), torch.tensor(alone[i].logprobs), atol=1e-4, rtol=0)


def test_inverse_cdf_draw_follows_the_distribution_and_never_draws_zero_probability():
    from cahl.agents.sampling import draw as _draw

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    rng = torch.Generator().manual_seed(0)
    draws = torch.cat([_draw(probs.expand(1000, -1), rng) for _ in range(20)])  # 20,000 draws
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    assert freq[[0, 2, 5]].sum() == 0
    # binomial std at n=20,000 is <= 0.0036: 4 std
    assert torch.allclose(freq, probs.double(), atol=0.015), freq
    one_hot = torch.zeros(3, 5)
    one_hot[torch.arange(3), torch.tensor([4, 0, 2])] = 1.0
    assert _draw(one_hot, rng).tolist() == [4, 0, 2]  # edges: first and last index
