"""One flat GRPO step of identical work in cahl and in TRL's GRPOTrainer, in one run.

Same model (the embedded SmolLM2-135M-Instruct), LoRA r=16 on the same modules, 4 prompts x 4
generations, at most 64 new tokens, temperature 1, beta = 0 (no reference model), one optimizer
step, same prompts (ToolRL items rendered with cahl's flat prompt) and the same reward function.
Each trainer does one warm-up step, then one timed step. Prints both times, both token counts,
`ratio: X` (TRL seconds / cahl seconds) and cahl's training MFU:

    MFU = (4 N FLOPs per non-padding token in the update: 2N forward + 2N backward to the inputs,
           the frozen base needs no weight gradients) x tokens/s of the update
          / fp32 matmul FLOP/s measured here (2048^3 matmuls).
Tokens are counted as computed (each start the prompts share once: a group's prompt, the
instructions of every prompt); the "effective" figure counts every
sample's prompt, as a trainer without prefix sharing must compute it. 4N leaves out attention,
which on this workload's long prompts (up to ~1,300 tokens on a 576-wide model) is a fifth of
the work: a second figure adds 12 x layers x heads x head_dim FLOPs per causal query-key pair
the update attends (forward QK^T and AV, backward twice that), as PaLM's model FLOPs do.

N = non-embedding parameters. `--dtype bfloat16` runs cahl's frozen base in bfloat16 (adapters stay
float32; TRL keeps float32, so the ratio then compares different precisions); the MFU above still
divides by the fp32 peak, as the target is defined, and a last line divides by the bf16 matmul
peak measured the same way (on this CPU's avx512_bf16 about 2.2x the fp32 one).

Run: python3 benchmarks/grpo_step_vs_trl.py [--no-trl] [--dtype bfloat16] [--profile]   (TRL needs `pip install -e '.[bench]'`: trl==1.16.0 and datasets; checked before any work)
"""

from __future__ import annotations

import time

import torch

from cahl.config import load_config

PROMPTS, GENS, NEW_TOKENS = 4, 4, 64
OVERRIDES = ["model.name=embedded", "model.lora_r=16", "model.lora_alpha=32", "model.threads=2",
             "train.schedule=flat", "train.data=[toolrl]", "train.n_toolrl=40", f"train.tasks_per_step={PROMPTS}",
             f"rollout.plans_per_task={GENS}", f"rollout.max_new_tokens={NEW_TOKENS}", "rollout.max_executor_rounds=1",
             "rollout.invalid_output_limit=1",  # one turn per episode, like TRL's single completion
             "rollout.constrain=off",  # TRL samples freely: the same decoding on both sides
             "rollout.temperature=1.0", "train.kl_beta=0.0", "train.lr_executor=1e-5", "train.tensorboard=false",
             "train.filter_zero_variance=false",  # TRL backpropagates every completion: same work here
             "out=/tmp/cahl-bench-grpo"]


def matmul_flops(n: int = 2048, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def update_breakdown(ctx, step: int) -> dict[str, float]:
    """Seconds of one more step's update by kind of op (profiled, so slower than the timed step):
    matmuls (aten::mm/addmm/bmm), attention (the SDPA kernels, forward and backward), the rest."""
    from torch.profiler import ProfilerActivity, profile

    import cahl.train.loop as loop

    update, events = loop.grpo_step, []

    def profiled(*args, **kwargs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = update(*args, **kwargs)
        events.extend(prof.key_averages())
        return out

    loop.grpo_step = profiled
    try:
        loop.run_grpo_step(ctx, step, ("flat",), "flat")
    finally:
        loop.grpo_step = update
    kinds = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for e in events:
        kind = ("matmul" if e.key in ("aten::mm", "aten::addmm", "aten::bmm")
                else "attention" if "scaled_dot_product" in e.key else "other")
        kinds[kind] += e.self_cpu_time_total / 1e6
    return kinds


def cahl_step(dtype: str):
    from cahl.train.loop import build_state, run_grpo_step

    cfg = load_config(None, OVERRIDES + [f"model.dtype={dtype}"])
    ctx = build_state(cfg)
    run_grpo_step(ctx, 0, ("flat",), "flat")  # warm-up
    t0 = time.perf_counter()
    m = run_grpo_step(ctx, 1, ("flat",), "flat")
    seconds = time.perf_counter() - t0
    trajs = [t for ep in ctx.last_episodes for t in ep.trajectories]
    logical = sum(len(t.ids) for t in trajs)  # every completion is in the update (see OVERRIDES)
    computed, pairs = computed_tokens(trajs, ctx.cfg.train.max_tokens)
    return ctx, seconds, m, sum(len(t.ids) - t.prompt_len for t in trajs), (computed, logical), pairs


def computed_tokens(trajs, max_tokens: int) -> tuple[int, int]:
    """(tokens, causal query-key pairs) the update's forwards compute: per forward, its groups'
    prompt tree (each shared start once: a group's prompt, the instructions all prompts share) and
    every member's own tokens. In the tree a token at position t attends to its t + 1 earlier
    positions, whatever it shares them with."""
    from cahl.train.batching import trained_prompt, tree_spans
    from cahl.train.update import forward_units

    tokens = pairs = 0
    for unit in forward_units(trajs, max_tokens, share_prefix=True):
        cut = {i: trained_prompt(trajs[i].ids, trajs[i].loss_mask) for i in unit}
        spans = tree_spans([trajs[i].ids[:cut[i]] for i in unit])  # the prompt tree's tokens
        spans += [(cut[i], len(trajs[i].ids)) for i in unit]  # every member's own tokens
        for start, end in spans:
            tokens += end - start
            pairs += sum(t + 1 for t in range(start, end))
    return tokens, pairs


def trl_step(ctx):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cahl.agents.model import model_path
    from cahl.agents.parser import parse_output
    from cahl.agents.prompts import initial_messages
    from cahl.rewards.calls import call_correctness

    tasks = ctx.tasks[: PROMPTS * 2]
    tok = ctx.policies.tokenizer
    texts = [tok.apply_chat_template(initial_messages("flat", t.tools, t.messages), tokenize=False,
                                     add_generation_prompt=True) for t in tasks]
    gold = {texts[i]: tasks[i].gold_calls or [] for i in range(len(tasks))}

    def reward(prompts, completions, **_):  # same graded call reward as cahl's flat reward
        return [call_correctness(parse_output(c).calls, gold[p])[0] for p, c in zip(prompts, completions)]

    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            times.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            times[-1] = time.perf_counter() - times[-1]

    args = GRPOConfig(output_dir="/tmp/cahl-bench-trl", per_device_train_batch_size=PROMPTS * GENS,
                      num_generations=GENS, max_completion_length=NEW_TOKENS, beta=0.0, max_steps=2,
                      learning_rate=1e-5, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                      temperature=1.0, save_strategy="no", dataloader_num_workers=0, seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_path("embedded"), dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=list(ctx.cfg.model.lora_targets), task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": texts}), peft_config=lora,
                          callbacks=[Timer()])
    trainer.train()
    return times[-1]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--no-trl", action="store_true", help="cahl's step and MFU only (no ratio)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="cahl's base-model dtype (adapters stay float32); TRL always runs float32")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one more step's update and print its seconds by kind of op")
    args = ap.parse_args()
    if not args.no_trl:  # before any work: cahl's half takes minutes, then TRL's import would fail
        import importlib.util

        missing = [m for m in ("trl", "datasets") if importlib.util.find_spec(m) is None]
        if missing:
            raise SystemExit(f"grpo_step_vs_trl: {', '.join(missing)} not installed; run "
                             f"`.venv/bin/pip install -e '.[bench]'` (or pass --no-trl for cahl's step alone)")
    torch.set_num_threads(2)
    peak = matmul_flops()
    ctx, ours, m, completion_tokens, (computed, logical), pairs = cahl_step(args.dtype)
    n = sum(p.numel() for name, p in ctx.policies.model.named_parameters() if "embed" not in name and "lora" not in name)
    update_s = m["time/update"]
    mfu = 4 * n * computed / update_s / peak if update_s > 0 else 0.0
    effective = 4 * n * logical / update_s / peak if update_s > 0 else 0.0
    config = ctx.policies.model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # attention: QK^T and AV, 2 FLOPs per multiply-add each, per head and layer; backward twice that
    attention_flops = 12 * config.num_hidden_layers * config.num_attention_heads * head_dim * pairs
    with_attention = (4 * n * computed + attention_flops) / update_s / peak if update_s > 0 else 0.0
    print(f"cahl: {ours:.1f} s/step (rollout {m['time/rollout']:.1f} s, update {update_s:.1f} s), "
          f"{completion_tokens} completion tokens; update: {logical} tokens of prompt+completion per sample, "
          f"{computed} computed (each shared start of the prompts once)")
    if args.profile:
        kinds = update_breakdown(ctx, 2)
        total = sum(kinds.values())
        print("update by kind of op (profiled step 2, self CPU seconds): " +
              ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in kinds.items()))
    theirs = None if args.no_trl else trl_step(ctx)
    if theirs is not None:
        print(f"trl:  {theirs:.1f} s/step")
    print(f"fp32 matmul: {peak / 1e9:.0f} GFLOP/s; N = {n / 1e6:.1f}M non-embedding parameters")
    print(f"MFU (update, tokens computed): {mfu:.1%}")
    print(f"MFU counting attention FLOPs too (PaLM's model FLOPs, {pairs / 1e6:.2f}M causal query-key pairs, "
          f"{attention_flops / 1e12:.2f} of {(4 * n * computed + attention_flops) / 1e12:.2f} TFLOP): {with_attention:.1%}")
    print(f"effective MFU (update, per prompt+completion token, as a trainer without prefix sharing counts): {effective:.1%}")
    if args.dtype == "bfloat16":  # the MFU divides by the fp32 peak; against the bf16 peak:
        bf16 = matmul_flops(dtype=torch.bfloat16)
        print(f"bf16 matmul: {bf16 / 1e9:.0f} GFLOP/s; MFU against it: {mfu * peak / bf16:.1%} "
              f"({with_attention * peak / bf16:.1%} counting attention)")
    if theirs is not None:
        print(f"ratio: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
