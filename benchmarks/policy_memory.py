"""Peak memory of two LoRA policies on one base vs one policy (DESIGN §2: "one copy of the base").

Each configuration runs in a fresh subprocess (a process's peak RSS never goes down) and does, for
each of its roles: sample `--samples` continuations of a `--prompt-tokens` prompt through
`backend(role)`, then a GRPO-shaped update: forward with the role's adapter, reference forward
with adapters disabled, backward, AdamW step (one optimizer per role).

  one        base + one LoRA adapter (the flat policy), one role
  one_twice  the same doing the workload twice: as much work as `two`, so the difference to `two`
             is what the second adapter costs, not allocator growth from a second round
  two        base + planner and executor adapters (the default layout), both roles
  separate   two base copies, one adapter each (for comparison; not part of the ratio)

Peak RSS is the kernel's high-water mark (VmHWM in /proc/self/status, else ru_maxrss): torch's
allocations bypass tracemalloc, and psutil reports current RSS, not the peak, on Linux.
Prints each figure, the increment over the process after imports, and `memory ratio: X` =
peak(two) / peak(one); the target is <= 1.15.

    python3 benchmarks/policy_memory.py [--model embedded] [--prompt-tokens 128] [--new-tokens 16] [--samples 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# name -> (layout, roles, rounds of the workload per role)
CONFIGS = {"one": ("adapters", ("flat",), 1), "one_twice": ("adapters", ("flat",), 2),
           "two": ("adapters", ("planner", "executor"), 1), "separate": ("separate_models", ("planner", "executor"), 1)}


def peak_rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def update(ps, role: str, optimizer, prompt: list[int], samples) -> float:
    """One GRPO-shaped step on the sampled sequences: policy + reference forward, backward, step."""
    import torch

    seqs = [prompt + s.ids for s in samples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), ps.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    target, loss_mask = ids[:, 1:], mask[:, 1:].clone()
    loss_mask[:, : len(prompt) - 1] = 0  # only the sampled tokens are trained on
    optimizer.zero_grad(set_to_none=True)
    with ps.use_role(role) as model:
        logp = model(input_ids=ids, attention_mask=mask).logits[:, :-1].log_softmax(-1)
        logp = logp.gather(-1, target[..., None])[..., 0]
        with ps.reference() as ref_model, torch.no_grad():
            ref = ref_model(input_ids=ids, attention_mask=mask).logits[:, :-1].log_softmax(-1)
            ref = ref.gather(-1, target[..., None])[..., 0]
        kl = (ref - logp).exp() - (ref - logp) - 1  # k3
        loss = ((-logp + 0.01 * kl) * loss_mask).sum() / loss_mask.sum()
        loss.backward()
    optimizer.step()
    return float(loss.detach())


def child(config: str, args) -> dict:
    import torch

    from cahl.agents.sampling import SamplingParams
    from cahl.agents.policy import PolicySet
    from cahl.config import ModelConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    after_imports = peak_rss_mib()
    mode, roles, rounds = CONFIGS[config]
    t0 = time.perf_counter()
    ps = PolicySet.create(ModelConfig(name=args.model, policies=mode), roles=roles)
    optimizers = {r: torch.optim.AdamW(ps.parameters(r), lr=1e-5) for r in roles}
    text = "Book a table for two at an Italian restaurant near the station tomorrow at seven. " * 40
    prompt = ps.tokenizer(text)["input_ids"][: args.prompt_tokens]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0)
    after_load = peak_rss_mib()
    for _ in range(rounds):
        for role in roles:
            samples = ps.backend(role).generate([prompt], params, n=args.samples, seed=0)
            update(ps, role, optimizers[role], prompt, samples)
    return {"config": config, "peak_rss_mib": peak_rss_mib(), "after_imports_mib": after_imports,
            "after_load_mib": after_load,
            "seconds": time.perf_counter() - t0,
            "adapter_params": sum({id(p): p.numel() for r in roles for p in ps.parameters(r)}.values())}


def _growth(result: dict) -> float:
    return result["peak_rss_mib"] - result["after_imports_mib"]


def run_child(config: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", config, *argv], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=list(CONFIGS))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    argv = sys.argv[1:]
    results = {c: run_child(c, argv) for c in CONFIGS}
    for r in results.values():
        print(f"{r['config']:>9}: peak RSS {r['peak_rss_mib']:7.1f} MiB  (+{_growth(r):6.1f} over imports; "
              f"{r['after_load_mib']:.1f} after loading)  adapter params {r['adapter_params']:,}  {r['seconds']:.1f} s")
    one, twice, two, sep = (results[c] for c in CONFIGS)
    print(f"increment ratio (two / one, over imports): {_growth(two) / _growth(one):.3f}")
    print(f"two / one_twice (same work): {two['peak_rss_mib'] / twice['peak_rss_mib']:.3f}")
    print(f"separate_models / one: {sep['peak_rss_mib'] / one['peak_rss_mib']:.3f}")
    print(f"memory ratio: {two['peak_rss_mib'] / one['peak_rss_mib']:.3f}  (two adapters {two['peak_rss_mib']:.1f} MiB "
          f"vs one {one['peak_rss_mib']:.1f} MiB; target <= 1.15)")


if __name__ == "__main__":
    main()
