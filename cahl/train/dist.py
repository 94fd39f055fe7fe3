"""Data parallelism through accelerate: shard tasks, sum gradients and counts across processes.

Launch with `accelerate launch --multi_gpu --num_processes N -m cahl.cli train ...` (on CPU this
runs gloo processes; on GPUs NCCL; configs in configs/accelerate/). An accelerate config with
`distributed_type: FSDP` shards the weights instead of replicating them (sharding.py); what
follows holds for both. Every process holds the same policies, rolls out
its shard of the step's tasks (whole GRPO groups stay on one process, so advantages are local),
and the per-token loss is divided by the token count of the *global* batch; summing gradients
across processes then gives exactly the single-process gradient of the same global batch (a test
checks this). Identical gradients -> identical optimizer steps -> parameters stay in sync.
"""

from __future__ import annotations

import atexit

import torch

from cahl.train import sharding


class Dist:
    def __init__(self):
        from accelerate import PartialState

        # cpu=True when there is no GPU: accelerate then sets up gloo for a torchrun/`accelerate
        # launch --multi_gpu` launch instead of silently running each process alone.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process
        self.fsdp = sharding.requested()  # FSDP reduce-scatters gradients itself, in every backward
        if self.world > 1:  # gloo's threads abort the interpreter's exit ("terminate called ...") otherwise
            atexit.register(self.state.destroy_process_group)

    def finish(self) -> None:
        """End of a successful run: wait until every process is done with its collectives. A process
        that ended the group while another still ran one aborted that one (seen under FSDP); after
        an exception nobody waits here, so the launcher ends the others."""
        if self.world > 1:
            import torch.distributed

            torch.distributed.barrier()

    def barrier(self) -> None:
        """Wait for every process (e.g. until the main one has written a file the others read)."""
        if self.world > 1:
            import torch.distributed

            torch.distributed.barrier()

    def shard(self, items: list) -> list:
        return items[self.rank :: self.world]

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        from accelerate.utils import reduce

        return float(reduce(torch.tensor([float(value)], device=self.state.device), reduction="sum")[0])

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum each parameter's gradient over processes (missing gradients count as zero)."""
        if self.world == 1 or self.fsdp:
            return
        from accelerate.utils import reduce

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(reduce(p.grad, reduction="sum"))

    def lockstep(self, passes: list) -> list:
        """`passes` padded with None up to the most any process has, when weights are sharded: every
        forward and backward then runs collectives that all processes must join (run None as an
        empty pass). Unchanged when not sharded."""
        if not self.fsdp or self.world == 1:
            return passes
        import torch.distributed

        most = torch.tensor([len(passes)], device=self.state.device)
        torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
        return passes + [None] * (int(most[0]) - len(passes))

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
