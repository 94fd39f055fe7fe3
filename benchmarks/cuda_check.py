"""CUDA check and GPU timings of the decode engine and of one joint GRPO step (needs a GPU; CI never runs it).

1. Continuous batching on CUDA: requests that join a running batch (through freed slots, new
   slots and a widened store) give exactly the greedy ids of transformers' `generate`, fp32.
2. Routed adapters on CUDA: rows of the planner and executor adapters in one batch give the
   logits of PEFT's mixed-batch forward.
3. Decode speed against transformers' `generate` on the same batch, float32 and bfloat16.
4. GRPO steps (a hierarchical step with both roles' updates, and an executor step on oracle
   sub-tasks) with model.device=cuda, float32 and bfloat16: seconds per phase, tokens, peak memory.
5. The packed update on CUDA (a group's prompt once, `attention.tree_attention`) gives the
   gradients of separate padded forwards, float32 and bfloat16 (largest difference printed).
6. FSDP2 on CUDA (NCCL, one process: configs/accelerate/fsdp_gpu.yaml with --num_processes 1): the
   tiny training run (SFT + joint GRPO) sharded gives the metrics and adapters of the same run
   unsharded in float32, and completes in bfloat16. More than one GPU is needed to shard across
   processes; 2 CPU processes do that in tests/train/test_distributed.py.
7. model.sample_dtype=bfloat16 on CUDA: a joint GRPO step that samples with the base in bf16 and
   updates in float32 (first-epoch ratio 1, the sampler's log-prob gap), timed against fp32 sampling.

The model is random, with the architecture of `--config` (a config.json, default: SmolLM2-135M's
from the embedded model) and the tokenizer in `--tokenizer` (a folder), so nothing is downloaded.
Random weights rarely write a stop tag: turns run to max_new_tokens, a fixed decode workload.

Run: python3 benchmarks/cuda_check.py --tokenizer DIR [--config config.json] [--layers N] [--only fsdp|sample_dtype]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def random_model(config_path: str, tokenizer_dir: str, out: Path, layers: int | None) -> str:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(config_path)
    if layers:
        config.num_hidden_layers = layers
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return str(out)


def check_decoder(path: str) -> None:
    from cahl.agents.generation import HFBackend
from cahl.agents.sampling import SamplingParams
    from cahl.agents.model import load_model

    model, tok = load_model(path, torch.float32, "cuda")
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(100, 20000, (n,), generator=g).tolist() for n in (7, 40, 13, 90, 25)]
    lengths = [5, 12, 3, 9, 7]
    want = []
    for p, k in zip(prompts, lengths):
        ids = torch.tensor([p], device="cuda")
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=k, min_new_tokens=k, do_sample=False)
        want.append(out[0, len(p):].tolist())
    decoder = HFBackend(model, tok, max_batch=3).decoder(seed=0)
    done, step = {}, 0
    while step == 0 or decoder.busy:
        if step < len(prompts):  # one request joins per step
            decoder.submit(prompts[step], SamplingParams(max_new_tokens=lengths[step], temperature=0.0), tags=[step])
        done.update(decoder.step())
        step += 1
    bad = [i for i in range(len(prompts)) if done[i].ids != want[i]]
    print(f"decoder on cuda: {len(prompts)} requests joining a running batch of 3 slots; "
          f"greedy ids equal to generate: {len(prompts) - len(bad)}/{len(prompts)}")


def check_routing(path: str) -> None:
    from peft import LoraConfig, get_peft_model

    from cahl.agents.lora_fast import install_fused_lora, route_adapters
    from cahl.agents.model import load_model

    model, _ = load_model(path, torch.float32, "cuda")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets), adapter_name="planner")
    peft.add_adapter("executor", LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    peft.eval()
    ids = torch.randint(100, 20000, (4, 33), device="cuda")
    names = ["planner", "executor", "executor", "planner"]
    with torch.no_grad():
        want = peft(input_ids=ids, adapter_names=names).logits
        install_fused_lora(peft)
        with route_adapters(peft, names):
            got = peft(input_ids=ids).logits
    print(f"routed adapters on cuda: max |logit difference| vs PEFT mixed batch = {(want - got).abs().max().item():.2e}")


def decode_speed(path: str, dtype: str, rows: int = 32, new: int = 128) -> None:
    """Our decoder vs transformers' generate on the same batch (one prompt x `rows`, `new` tokens each)."""
    from cahl.agents.generation import HFBackend
from cahl.agents.sampling import SamplingParams
    from cahl.agents.model import load_model

    model, tok = load_model(path, getattr(torch, dtype), "cuda")
    prompt = torch.randint(100, 20000, (600,), generator=torch.Generator().manual_seed(2)).tolist()
    backend = HFBackend(model, tok, max_batch=rows)
    params = SamplingParams(max_new_tokens=new, temperature=1.0, stop=("</never>",))
    ids = torch.tensor([prompt] * rows, device="cuda")
    times = {}
    for name, fn in (("cahl", lambda: backend.generate([prompt], params, n=rows, seed=0)),
                     ("generate", lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                                         min_new_tokens=new, do_sample=True, top_k=0))):
        fn()  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times[name] = time.perf_counter() - t0
    print(f"decode {dtype}, {rows} rows x {new} tokens after a 600-token prompt: cahl {rows * new / times['cahl']:.0f} tok/s, "
          f"transformers generate {rows * new / times['generate']:.0f} tok/s, ratio {times['generate'] / times['cahl']:.2f}")


def grpo_step(path: str, dtype: str) -> None:
    from cahl.config import load_config
    from cahl.train.loop import build_state, run_grpo_step

    out = tempfile.mkdtemp(prefix="cahl-cuda-")
    cfg = load_config(None, [f"model.name={path}", "model.device=cuda", f"model.dtype={dtype}", "model.max_batch=64",
                             "train.schedule=joint", "train.data=[synth]", "train.n_synth=32", "train.tasks_per_step=8",
                             "rollout.plans_per_task=4", "rollout.attempts_per_subtask=4", "rollout.max_new_tokens=64",
                             "rollout.max_planner_turns=2", "rollout.max_executor_rounds=2", "train.tensorboard=false",
                             "train.filter_zero_variance=false", "reward.custom=cahl.testing:parity_reward", f"out={out}"])
    ctx = build_state(cfg)
    # a random planner rarely writes a sub-task, so the executor also gets a step of its own (oracle sub-tasks)
    for roles, agent in ((("planner", "executor"), "hierarchical"), (("executor",), "executor")):
        run_grpo_step(ctx, 0, roles, agent)  # warm-up (kernels, allocator)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        m = run_grpo_step(ctx, 1, roles, agent)
        seconds = time.perf_counter() - t0
        tokens = sum(len(t.ids) - t.prompt_len for ep in ctx.last_episodes for t in ep.trajectories)
        print(f"GRPO step ({agent}) on cuda, {dtype}: {seconds:.1f} s (rollout {m['time/rollout']:.1f} s, update "
              f"{m['time/update']:.1f} s), {len(ctx.last_episodes)} episodes, {tokens} sampled+feedback tokens, "
              f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        print("  " + json.dumps({k: round(v, 3) for k, v in m.items() if k.startswith("time/")}))


def sample_dtype_step(path: str) -> None:
    """model.sample_dtype=bfloat16 on CUDA: the frozen base swaps to bf16 for the rollout and back for
    the update (float32); the first epoch's ratio is 1 (old log-probs from the update's forward) and
    the sampler's log-prob gap is logged. Timed against float32 sampling of the same step."""
    from cahl.config import load_config
    from cahl.train.loop import build_state, run_grpo_step

    for sample in ("", "bfloat16"):
        cfg = load_config(None, [f"model.name={path}", "model.device=cuda", f"model.sample_dtype={sample}",
                                 "model.max_batch=64", "train.schedule=joint", "train.data=[synth]", "train.n_synth=32",
                                 "train.tasks_per_step=8", "rollout.plans_per_task=4", "rollout.attempts_per_subtask=4",
                                 "rollout.max_new_tokens=64", "rollout.max_planner_turns=2", "rollout.max_executor_rounds=2",
                                 "train.tensorboard=false", "train.filter_zero_variance=false",
                                 "reward.custom=cahl.testing:parity_reward", f"out={tempfile.mkdtemp(prefix='cahl-cuda-')}"])
        ctx = build_state(cfg)
        run_grpo_step(ctx, 0, ("planner", "executor"), "hierarchical")  # warm-up
        m = run_grpo_step(ctx, 1, ("planner", "executor"), "hierarchical")
        dtypes = {str(p.dtype) for p in ctx.policies.model.parameters()}
        print(f"GRPO step on cuda, sampling in {sample or 'float32'}: rollout {m['time/rollout']:.1f} s, update "
              f"{m['time/update']:.1f} s, planner ratio_max {m.get('train/planner/ratio_max', float('nan')):.6f}, "
              f"sampler_gap {m.get('train/planner/sampler_gap', 0.0):.4f}; parameter dtypes after: {sorted(dtypes)}")


def packed_update(path: str, dtype: str) -> None:
    """Gradients of one GRPO update, a group packed (prompt once) vs every member padded separately."""
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig
    from cahl.train.update import grpo_step
    from cahl.types import Trajectory

    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=path, device="cuda", dtype=dtype, lora_r=16), roles=("executor",))
    with torch.no_grad():  # B non-zero, so gradients reach A as well
        for p in policies.parameters("executor"):
            p.add_(torch.randn_like(p) * 0.02)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(100, 20000, (700,), generator=g).tolist()
    trajs = []
    for j, n in enumerate((40, 64, 23, 57)):
        ids = prompt + torch.randint(100, 20000, (n,), generator=g).tolist()
        logprobs = [0.0] * len(prompt) + (-torch.rand(n, generator=g) * 3).tolist()
        trajs.append(Trajectory("executor", "t", f"a{j}", None, ("t", "executor", "s"), ids,
                                [0] * len(prompt) + [1] * n, logprobs, len(prompt)))
    grads = []
    for share in (True, False):
        opt = torch.optim.SGD(policies.parameters("executor"), lr=0.0)
        grpo_step(policies, "executor", opt, trajs, [1.0, -0.5, 0.25, -0.75], eps_low=0.2, eps_high=0.28, kl_beta=0.1,
                  max_tokens=100_000, grad_clip=1e9, pad_id=0, apply=False, share_prefix=share)
        grads.append(torch.cat([p.grad.flatten().float() for p in policies.parameters("executor")]))
    worst = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
    print(f"packed update on cuda, {dtype}: largest gradient difference to separate forwards = {worst:.2e} "
          f"of the largest gradient")


def fsdp_equals_unsharded(path: str, dtype: str) -> None:
    """The tiny training run on cuda, unsharded and under FSDP2 (one process): same metrics and
    adapters in float32. In bfloat16 kernels on differently laid-out weights round differently and
    sampled tokens soon differ, so there it only shows that the sharded run completes."""
    import os
    import subprocess
    import sys

    from cahl.testing import adapter_tensors, metric_lines, train_args

    root = Path(__file__).resolve().parents[1]
    runs = {mode: Path(tempfile.mkdtemp(prefix=f"cahl-{mode}-")) for mode in ("plain", "fsdp")}
    extra = ["model.device=cuda", f"model.dtype={dtype}"]
    for mode, run in runs.items():
        args = train_args(path, run, steps=2) + extra
        if mode == "fsdp":
            args = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(root / "configs/accelerate/fsdp_gpu.yaml"), "--num_processes", "1", "-m", *args[2:]]
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        sharded = "cahl: FSDP2" in done.stdout
        print(f"tiny training on cuda, {dtype} ({mode}): exit {done.returncode}, {time.perf_counter() - t0:.0f} s, sharded: {sharded}")
        if done.returncode or sharded != (mode == "fsdp"):
            print(done.stdout[-1500:], done.stderr[-3000:])
            return
    a, b = (metric_lines(run) for run in runs.values())
    def close(u, v) -> bool:
        return u == v or (isinstance(u, (int, float)) and isinstance(v, (int, float))
                          and abs(u - v) <= 1e-3 * max(1.0, abs(u)))

    differ = sorted({k for x, y in zip(a, b) for k in x if not close(x[k], y.get(k))})
    sharded = adapter_tensors(runs["fsdp"] / "final")
    worst = max(float((sharded[name][key].float() - value.float()).abs().max())
                for name, tensors in adapter_tensors(runs["plain"] / "final").items() for key, value in tensors.items())
    print(f"FSDP vs unsharded, {dtype}: {len(a)} metric lines each, keys differing by > 1e-3: {differ[:8]}; "
          f"largest adapter weight difference {worst:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--config", help="config.json of the architecture (default: the tokenizer folder's)")
    ap.add_argument("--layers", type=int, help="override num_hidden_layers")
    ap.add_argument("--only", choices=["fsdp", "sample_dtype"], help="run only this check")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    path = random_model(args.config or str(Path(args.tokenizer) / "config.json"), args.tokenizer,
                        Path(tempfile.mkdtemp(prefix="cahl-model-")), args.layers)
    if args.only == "fsdp":
        for dtype in ("float32", "bfloat16"):
            fsdp_equals_unsharded(path, dtype)
        return
    if args.only == "sample_dtype":
        sample_dtype_step(path)
        return
    check_decoder(path)
    check_routing(path)
    for dtype in ("float32", "bfloat16"):
        packed_update(path, dtype)
    for dtype in ("float32", "bfloat16"):
        fsdp_equals_unsharded(path, dtype)
    for dtype in ("float32", "bfloat16"):
        decode_speed(path, dtype)
        grpo_step(path, dtype)
    sample_dtype_step(path)


if __name__ == "__main__":
    main()
