"""Build the policies a command needs from the model config."""

from __future__ import annotations

import torch

from cahl.agents.chat import ChatFormat
from cahl.agents.generation import HFBackend
from cahl.agents.model import load_model
from cahl.agents.rollout import SharedBackend

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AVX512-BF16 or AMX; other CPUs are
    assumed not to: their bf16 matmuls are emulated and slower than float32)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def sample_dtype(model_cfg) -> torch.dtype:
    """The dtype rollouts and evaluation decode in: `model.sample_dtype`, with "" and "auto" resolved.

    auto = bfloat16 on a CPU with native bf16, where float32 decoding is slow at small batches;
    elsewhere model.dtype. On a GPU the 135M model's decode is launch-bound, and bf16 sampling
    with float32 adapters (their casts are extra kernels) measured slower: 14.7 s vs 6.4 s for a
    GRPO step's rollout on an H100 (benchmarks/cuda_check.py --only sample_dtype)."""
    name = model_cfg.sample_dtype or model_cfg.dtype
    if name == "auto":
        cpu = not str(model_cfg.device).startswith("cuda")
        name = "bfloat16" if cpu and native_bf16_cpu() else model_cfg.dtype
    return DTYPES[name]


def apply_runtime(model_cfg) -> None:
    """The process-wide settings of `model_cfg`: torch's CPU threads and the C allocator's policy."""
    if model_cfg.threads:
        torch.set_num_threads(model_cfg.threads)
    if model_cfg.keep_freed_memory:
        keep_freed_memory()


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS: no
    mmap for large blocks (each of which is returned on free) and no trimming of the heap below
    2 GiB of free space. Every fresh page the OS hands out costs a page fault that zeroes it,
    and a training step allocates gigabytes of activations (autograd keeps them until the backward,
    so each forward's outputs land on fresh pages): measured on 2 cores, a [1501, 1536] float32
    product whose output is kept took 11 ms on fresh pages against 0.8 ms on reused ones, and a
    flat GRPO update page-faults ~550k times without this, 3 times with it once the heap has grown
    (benchmarks/keep_freed_memory.py). The price: the process's resident memory stays at its peak.
    False (nothing changed) off glibc."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def build_policies(model_cfg, adapters: str | None = None):
    """(policies, chat) for evaluation: the raw model, or trained adapters from a checkpoint."""
    apply_runtime(model_cfg)
    if adapters:
        from cahl.agents.policy import PolicySet

        policies = PolicySet.from_checkpoint(model_cfg, adapters)
        return policies, ChatFormat(policies.tokenizer)
    model, tokenizer = load_model(model_cfg.name, sample_dtype(model_cfg), model_cfg.device)  # it only samples
    return SharedBackend(HFBackend(model, tokenizer, max_batch=model_cfg.max_batch)), ChatFormat(tokenizer)
