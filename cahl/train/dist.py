"""Data parallelism through accelerate: shard tasks, sum gradients and counts across processes.

Launch with `accelerate launch --multi_gpu --num_processes N -m cahl.cli train ...` (on CPU this
runs gloo processes; on GPUs NCCL; configs in configs/accelerate/). No FSDP/DeepSpeed sharding
yet: see the README. Every process holds the same policies, rolls out
its shard of the step's tasks (whole GRPO groups stay on one process, so advantages are local),
and the per-token loss is divided by the token count of the *global* batch; summing gradients
across processes then gives exactly the single-process gradient of the same global batch (a test
checks this). Identical gradients -> identical optimizer steps -> parameters stay in sync.
"""

from __future__ import annotations

import atexit

import torch


class Dist:
    def __init__(self):
        from accelerate import PartialState

        # cpu=True when there is no GPU: accelerate then sets up gloo for a torchrun/`accelerate
        # launch --multi_gpu` launch instead of silently running each process alone.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process
        if self.world > 1:  # gloo's threads abort the interpreter's exit ("terminate called ...") otherwise
            atexit.register(self.state.destroy_process_group)

    def shard(self, items: list) -> list:
        return items[self.rank :: self.world]

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        from accelerate.utils import reduce

        return float(reduce(torch.tensor([float(value)], device=self.state.device), reduction="sum")[0])

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum each parameter's gradient over processes (missing gradients count as zero)."""
        if self.world == 1:
            return
        from accelerate.utils import reduce

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(reduce(p.grad, reduction="sum"))

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])


_DIST: Dist | None = None


def dist() -> Dist:
    global _DIST
    if _DIST is None:
        _DIST = Dist()
    return _DIST
