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


_MEASURED: dict[int, dict[str, float]] = {}


def matmul_seconds(threads: int = 0) -> dict[str, float]:
    """Seconds of one [256, 576] x [576, 1536] product (the 135M model's MLP shape) in float32 and in
    bfloat16 on this CPU, best of 5 (measured once per process; ~0.2 s)."""
    import time

    key = threads or torch.get_num_threads()
    if key not in _MEASURED:
        out = {}
        for name in ("float32", "bfloat16"):
            a = torch.randn(256, 576).to(DTYPES[name])
            b = torch.randn(576, 1536).to(DTYPES[name])
            best = float("inf")
            for _ in range(6):
                t0 = time.perf_counter()
                for _ in range(4):
                    a @ b
                best = min(best, (time.perf_counter() - t0) / 4)
            out[name] = best
        _MEASURED[key] = out
    return _MEASURED[key]


def fastest_cpu_dtype() -> str:
    """bfloat16 where it measures >= 1.25x as fast as float32 on this CPU, else float32. Machines
    differ: on an AMD EPYC without native bf16 it was slower than float32, on one with AVX512-BF16
    2.3x as fast, on a Xeon with AMX ~7x; so it is measured, not read off the CPU's flags."""
    t = matmul_seconds()
    return "bfloat16" if t["bfloat16"] * 1.25 <= t["float32"] else "float32"


def train_dtype(model_cfg) -> str:
    """`model.dtype` with "auto" resolved: the faster of float32 and bfloat16 on a CPU (measured),
    float32 on a GPU."""
    if model_cfg.dtype != "auto":
        return model_cfg.dtype
    return "float32" if str(model_cfg.device).startswith("cuda") else fastest_cpu_dtype()


def sample_dtype(model_cfg) -> torch.dtype:
    """The dtype rollouts and evaluation decode in: `model.sample_dtype`, with "" and "auto" resolved.

    auto = the faster of float32 and bfloat16 on a CPU (measured: `fastest_cpu_dtype`); elsewhere
    model.dtype. On a GPU the 135M model's decode is launch-bound, and bf16 sampling
    with float32 adapters (their casts are extra kernels) measured slower: 14.7 s vs 6.4 s for a
    GRPO step's rollout on an H100 (benchmarks/cuda_check.py --only sample_dtype)."""
    name = model_cfg.sample_dtype or train_dtype(model_cfg)
    if name == "auto":
        cpu = not str(model_cfg.device).startswith("cuda")
        name = fastest_cpu_dtype() if cpu else train_dtype(model_cfg)
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


def build_policies(model_cfg, adapters: str | None = None, merge: bool = False):
    """(policies, chat) for evaluation: the raw model, or trained adapters from a checkpoint
    (`merge`: each role's adapter merged into its own copy of the base, policy.MergedPolicies)."""
    apply_runtime(model_cfg)
    if adapters:
        from cahl.agents.policy import PolicySet

        policies = PolicySet.from_checkpoint(model_cfg, adapters)
        return for_evaluation(policies, merge), ChatFormat(policies.tokenizer)
    model, tokenizer = load_model(model_cfg.name, sample_dtype(model_cfg), model_cfg.device)  # it only samples
    return SharedBackend(HFBackend(model, tokenizer, max_batch=model_cfg.max_batch)), ChatFormat(tokenizer)


def for_evaluation(policies, merge: bool):
    """`policies` as evaluation decodes them: merged per role (eval.merge_adapters) or as they are."""
    if not merge:
        return policies
    from cahl.agents.policy import MergedPolicies

    return MergedPolicies(policies)
