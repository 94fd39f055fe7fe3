"""Decode speed with the frozen base in bfloat16 (`model.sample_dtype`) vs float32, in one run.

1. Identical work: the same PolicySet (embedded model, two LoRA adapters; `--adapters DIR` for
   trained ones, e.g. runs/quickstart/final) decodes a fixed workload in each precision: `--rows`
   rows (default 8, the quickstart's mean decode batch) of synth-task planner prompts, 64 new
   tokens each at temperature 0.7, end-of-sequence ignored so both decode exactly the same number
   of tokens. Alternated float32, bfloat16 `--rounds` times (drift on a noisy machine hits both).
2. Hierarchical rollouts (G_H=4 plans, G_L=2 attempts, 64 tokens per turn) of the same tasks in
   each precision, for tokens/s and ms per decode forward. Sampled tokens differ between the two,
   so these are per token, not equal work.
3. For the bfloat16 rollout's sampled tokens, how far the sampler's log-probs are from the float32
   policy's (what the update sees): mean |gap| and mean (sampler - policy), a one-sample estimate
   of KL(sampler || policy) per token.

Prints `ratio: X` = bfloat16 tokens/s / float32 tokens/s on the identical workload (1).

Run: python3 benchmarks/sample_dtype.py [--adapters DIR] [--rows 8] [--tasks 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from cahl.agents.chat import ChatFormat
from cahl.agents.sampling import SamplingParams
from cahl.agents.policy import PolicySet
from cahl.agents.prompts import initial_messages
from cahl.agents.rollout import Rollout, RolloutConfig
from cahl.config import ModelConfig
from cahl.sources import make_env
from cahl.envs.synth import generate_tasks
from cahl.train.batching import sequence_logprobs


def rollout(policies, chat, tasks, seed: int) -> tuple[list, float, dict]:
    cfg = RolloutConfig(agent="hierarchical", plans_per_task=4, attempts_per_subtask=2, max_planner_turns=3,
                        max_executor_rounds=2, max_new_tokens=64, max_context=2048, temperature=0.7, seed=seed)
    hf = next(iter(policies._hf.values()))
    hf.stats.__init__()
    t0 = time.perf_counter()
    episodes = Rollout(policies, chat, cfg).run(tasks, make_env)
    return episodes, time.perf_counter() - t0, vars(hf.stats).copy()


def fixed_decode(policies, chat, tasks, rows: int, seed: int) -> tuple[int, float]:
    """(tokens, seconds): `rows` planner prompts, 64 tokens each, end-of-sequence ignored."""
    hf = next(iter(policies._hf.values()))
    prompts = [chat.prompt_ids(initial_messages("planner", t.tools, t.messages)) for t in tasks]
    eos, hf.eos_ids = hf.eos_ids, set()
    try:
        with policies.sampling():
            decoder = hf.decoder(seed)
            for i in range(rows):
                decoder.submit(prompts[i % len(prompts)], SamplingParams(64, 0.7, 1.0, ()), n=1,
                               adapter=policies.adapter_of["planner" if i % 2 else "executor"], tags=[i])
            t0, tokens = time.perf_counter(), 0
            while decoder.busy:
                tokens += sum(len(s.ids) for _, s in decoder.step())
            return tokens, time.perf_counter() - t0
    finally:
        hf.eos_ids = eos


def gap(policies, episodes, pad_id: int) -> tuple[float, float, int]:
    """(mean |sampler - policy|, mean sampler - policy, tokens) over the sampled tokens, policy in float32."""
    total_abs, total, n = 0.0, 0.0, 0
    for ep in episodes:
        for tr in ep.trajectories:
            if not any(tr.loss_mask):
                continue
            with policies.use_role(tr.role) as model, torch.no_grad():
                logp, mask, start = sequence_logprobs(model, [tr.ids], [tr.loss_mask], pad_id, temperature=0.7)
            sampled = torch.tensor(tr.logprobs[start:])[None]
            diff = (sampled - logp)[mask]
            total_abs += float(diff.abs().sum())
            total += float(diff.sum())
            n += int(mask.sum())
    return total_abs / max(n, 1), total / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters")
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    mcfg = ModelConfig(name="embedded", sample_dtype="bfloat16")
    policies = PolicySet.from_checkpoint(mcfg, args.adapters) if args.adapters else PolicySet.create(mcfg)
    chat = ChatFormat(policies.tokenizer)
    tasks = generate_tasks(args.tasks, seed=123, min_steps=2, max_steps=2, n_distractors=1)
    low = policies.sample_dtype
    fixed = {"float32": [0, 0.0], "bfloat16": [0, 0.0]}
    rolled = {"float32": [0, 0.0], "bfloat16": [0, 0.0]}
    last_bf16 = None
    for r in range(args.rounds):
        for name in ("float32", "bfloat16"):
            policies.sample_dtype = low if name == "bfloat16" else None  # None: sample in the training dtype
            tokens, seconds = fixed_decode(policies, chat, tasks, args.rows, seed=r)
            fixed[name][0] += tokens
            fixed[name][1] += seconds
            print(f"round {r} {name:8s} fixed decode: {tokens} tokens ({args.rows} rows x 64) in {seconds:.1f} s "
                  f"= {tokens / seconds:.1f} tok/s")
            episodes, seconds, stats = rollout(policies, chat, tasks, seed=r)
            tokens, steps = stats["generated_tokens"], max(stats["steps"], 1)
            rolled[name][0] += tokens
            rolled[name][1] += seconds
            print(f"round {r} {name:8s} rollout: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s; "
                  f"{stats['steps']} decode forwards, {stats['seconds'] / steps * 1000:.0f} ms each, "
                  f"mean batch {stats['rows'] / steps:.1f} rows")
            if name == "bfloat16":
                last_bf16 = episodes
    policies.sample_dtype = low
    speed = {k: t / s for k, (t, s) in fixed.items()}
    roll = {k: t / s for k, (t, s) in rolled.items()}
    print(f"fixed decode: float32 {speed['float32']:.1f} tok/s, bfloat16 {speed['bfloat16']:.1f} tok/s")
    print(f"rollouts (unequal work): float32 {roll['float32']:.1f} tok/s, bfloat16 {roll['bfloat16']:.1f} tok/s")
    mean_abs, mean, n = gap(policies, last_bf16, policies.tokenizer.pad_token_id or 0)
    print(f"bfloat16 sampler vs float32 policy over {n} sampled tokens: mean |log-prob gap| {mean_abs:.4f}, "
          f"mean (sampler - policy) {mean:+.4f}")
    print(f"ratio: {speed['bfloat16'] / speed['float32']:.2f}")


if __name__ == "__main__":
    main()
