"""FSDP2 sharding of the policies: each process holds 1/world of every weight, adapter gradient and
Adam moment outside the moments it needs them whole.

Chosen by the accelerate config, as with any accelerate program: `distributed_type: FSDP` with
`fsdp_version: 2` (configs/accelerate/fsdp_gpu.yaml). accelerate launch then sets
ACCELERATE_USE_FSDP=true and FSDP_VERSION=2 in each process. The units are every decoder layer and
the transformer body around them (embeddings, final norm, and the lm_head tied to the embeddings);
other fsdp_config keys (wrap policy, prefetch, state-dict type) are not read, and offloading is
refused.

Three things differ from data parallelism (dist.py):
1. Rollout and evaluation run as many decode forwards as each process's own turns need, but a
   sharded unit gathers its weights in a collective that every process must join. `full_weights`
   gathers every unit once and keeps it whole for the block, so decoding runs no collective.
2. In the update every forward gathers and every backward reduce-scatters: `Dist.lockstep` pads a
   process's list of forward passes to the most any process has, with empty passes (loss 0).
3. FSDP sums gradients across processes (divide factor 1): the loss is already divided by the
   global batch's token count, as in dist.py, so N processes compute the one-process gradient.

Checkpoints gather the adapters (PolicySet.adapter_states) and the optimizer state as full tensors
keyed by parameter name (`optimizer_state`), so a sharded run's checkpoint loads at any number of
processes, sharded or not.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed

from cahl.types import CahlInputError


def requested() -> bool:
    """Whether the launch asked for FSDP (accelerate config `distributed_type: FSDP`). A DeepSpeed
    launch is refused: its engine owns the optimizer and the backward, and cahl steps one optimizer
    per role on gradients it reduces itself, so it would run unsharded while the config says ZeRO."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise CahlInputError("accelerate config key distributed_type: DEEPSPEED is not supported; for sharded "
                             "weights, gradients and Adam moments use FSDP2 (configs/accelerate/fsdp_gpu.yaml), "
                             "for replicas DDP (configs/accelerate/ddp_gpu.yaml)")
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise CahlInputError(f"accelerate config key fsdp_config.fsdp_version: cahl shards with FSDP2 "
                             f"(torch.distributed.fsdp.fully_shard); expected 2, got {version}")
    if os.environ.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true":
        raise CahlInputError("accelerate config key fsdp_config.fsdp_offload_params: offloading is not supported; "
                             "expected false")
    return True


def units(model) -> list:
    """The modules sharded as units, innermost first: every decoder layer, then the body."""
    from cahl.agents.attention import body_and_head

    body, _ = body_and_head(model)
    layers = getattr(body, "layers", None)
    if layers is None:
        raise CahlInputError(f"FSDP: {type(body).__name__} has no `layers`; cahl shards decoder-only models "
                             f"whose body keeps its decoder layers in `.layers`")
    return [*layers, body]


def shard(policies, world: int) -> None:
    """fully_shard every unit of every model of `policies` over `world` processes (one mesh)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if policies.sample_dtype is not None:  # sampling() swaps whole tensors; sharded ones are DTensors
        raise CahlInputError(f"config key 'model.sample_dtype': sampling in {policies.sample_dtype} while training "
                             f"sharded (FSDP) is not supported; leave it empty or set it to model.dtype")
    device = policies.device.type
    if not torch.distributed.is_initialized():  # one process launched without a process group
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo", store=torch.distributed.HashStore(),
                                             rank=0, world_size=1)
    mesh = init_device_mesh(device, (world,))
    for model in policies.models():
        for unit in units(model):
            fully_shard(unit, mesh=mesh)
            # a plain sum (gloo has no pre-multiplied or averaging reduce): the loss is already
            # normalised by the global batch's token count
            unit.set_gradient_divide_factor(1.0)
            if hasattr(unit, "set_force_sum_reduction_for_comms"):  # older torch lacks it; NCCL does without
                unit.set_force_sum_reduction_for_comms(True)
    policies.sharded = True
    policies.refresh_parameters()
    if torch.distributed.get_rank() == 0:
        print(f"cahl: FSDP2 sharding over {world} process(es): {len(units(policies.models()[0]))} units per model")


@contextmanager
def full_weights(policies) -> Iterator[None]:
    """Every unit gathered once and kept whole for the block (rollout); a no-op for unsharded
    policies. Collective: every process must enter the block."""
    if not policies.sharded:
        yield
        return
    per_model = [units(m) for m in policies.models()]
    all_units = [u for us in per_model for u in us]
    layers = [u for us in per_model for u in us[:-1]]
    for unit in all_units:
        unit.unshard()
    for layer in layers:  # the body (FSDP's root) already stays whole after its forward
        layer.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for layer in layers:
            layer.set_reshard_after_forward(True, recurse=False)
        for unit in all_units:
            unit.reshard()


def optimizer_state(policies, role: str, optimizer: torch.optim.Optimizer) -> dict:
    """What a checkpoint stores for `optimizer`: its state_dict, or for sharded policies the full
    state keyed by parameter name (collective; only the main process receives it)."""
    if not policies.sharded or not optimizer.state:
        # never stepped: nothing to gather. torch's get_optimizer_state_dict would first initialise the
        # state by a step on zero gradients, so the role's first real step (Adam's step 2 then) came out
        # different from the replicated run's (seen when a role had no signal at the first GRPO step)
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(policies.model_of(role), optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(policies, role: str, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of optimizer_state; a name-keyed state (from a sharded run) loads sharded or not."""
    if not state.get("state"):
        # never stepped (e.g. a role whose groups all lacked reward variance so far): a fresh optimizer is
        # that state. torch's set_optimizer_state_dict would instead initialise a state of its own for every
        # parameter, which the next step then treats differently from a fresh one (a resumed sharded run
        # then drifted from the uninterrupted one)
        return
    named = any(isinstance(p, str) for group in state.get("param_groups", []) for p in group["params"])
    if not named and not policies.sharded:
        optimizer.load_state_dict(state)
        return
    if not named:
        raise CahlInputError("resume: this checkpoint's optimizer state was saved unsharded (keyed by position); "
                             "a sharded (FSDP) run needs one saved by a sharded run")
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(policies.model_of(role), optimizer, state, options=StateDictOptions(full_state_dict=True))
