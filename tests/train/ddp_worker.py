"""Worker for test_distributed.py: one GRPO gradient on a fixed global batch, split unevenly
between processes (4 + 2 trajectories, one group each), KL on.

Run alone (1 process) or under `accelerate launch --multi_gpu --num_processes 2` (with
ACCELERATE_USE_FSDP=true FSDP_VERSION=2: sharded); rank 0 saves the summed adapter gradients
(gathered whole when sharded) to OUT.
"""

import sys
from pathlib import Path

import torch

from cahl.agents.policy import PolicySet
from cahl.config import ModelConfig
from cahl.train import sharding
from cahl.train.dist import dist
from cahl.train.update import grpo_step
from cahl.types import Trajectory


def batch(vocab: int) -> tuple[list[Trajectory], list[float]]:
    g = torch.Generator().manual_seed(0)
    trajs, adv = [], []
    for i in range(6):
        n, p = 20 + 7 * i, 9 + i
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        mask = [0] * p + [1] * (n - p)
        logprobs = [0.0] * p + (-torch.rand(n - p, generator=g) * 3).tolist()
        trajs.append(Trajectory("executor", f"t{i}", f"n{i}", None, (f"t{i}", "executor", "x"), ids, mask, logprobs, p))
        adv.append(float(torch.randn(1, generator=g)))
    return trajs, adv


def main(model_path: str, out: str) -> None:
    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=model_path, lora_r=4, lora_alpha=8), roles=("planner", "executor"))
    with torch.no_grad():  # make LoRA B non-zero so gradients reach A as well
        for p in policies.parameters("executor"):
            p.add_(torch.randn_like(p) * 0.02)
    trajs, adv = batch(len(policies.tokenizer))
    d = dist()
    if d.fsdp:
        sharding.shard(policies, d.world)
    mine = {1: [0, 1, 2, 3, 4, 5], 2: [[0, 1, 2, 3], [4, 5]][d.rank]}[d.world]  # uneven: lockstep pads
    opt = torch.optim.SGD(policies.parameters("executor"), lr=0.0)
    grpo_step(policies, "executor", opt, [trajs[i] for i in mine], [adv[i] for i in mine], eps_low=0.2, eps_high=0.28,
              kl_beta=0.05, max_tokens=64, grad_clip=1e9, pad_id=0, apply=False)
    grads = [p.grad.full_tensor() if d.fsdp else p.grad.clone() for p in policies.parameters("executor")]
    if d.is_main:
        Path(out).with_name("world.txt").write_text(f"{d.world} {'fsdp' if policies.sharded else 'ddp'}")
        torch.save(grads, out)
    d.finish()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
