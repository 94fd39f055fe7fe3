"""Which environment runs a task: chosen by the task's source (plain dict registry)."""

from __future__ import annotations

from typing import Callable

from cahl.envs.base import Env, FunctionCallEnv
from cahl.types import CahlInputError, Task


def _synth(task: Task) -> Env:
    from cahl.envs.synth import SynthEnv

    return SynthEnv()


def _apibank_exec(task: Task) -> Env:
    from cahl.eval.benchmarks import _apibank_env

    return _apibank_env(task)


def _search(task: Task) -> Env:
    from cahl.eval.benchmarks import _search_env

    return _search_env(task)


ENVS: dict[str, Callable[[Task], Env]] = {
    "toolrl": lambda task: FunctionCallEnv(),
    "bfcl_v3": lambda task: FunctionCallEnv(),
    "bfcl_v4": lambda task: FunctionCallEnv(),
    "apibank_toolrl": lambda task: FunctionCallEnv(),
    "apibank_original": _apibank_exec,
    "synth": _synth,
    "bamboogle": _search,
}


def make_env(task: Task) -> Env:
    try:
        factory = ENVS[task.source]
    except KeyError:
        raise CahlInputError(f"task {task.id}: no environment for source {task.source!r}; known: {sorted(ENVS)}") from None
    return factory(task)
