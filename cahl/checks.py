"""Checks of config values at load, shared by every config section (config.py, RolloutConfig,
RewardConfig, ExperimentConfig): each failure is a CahlInputError naming the key and what was
expected, raised before any model loads.

Why at load: a value that cannot run (a NaN learning rate, top_p = 0, eval.limit = -3, a reward
function that does not import) otherwise loads silently and fails after SFT, or never, and a NaN
weight trains on NaN rewards without a word.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from cahl.types import CahlInputError


def require(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise CahlInputError(f"config key {key!r}: expected {expected}, got {got!r}")


def integer(value: Any, key: str, minimum: int) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, key,
            f"an integer >= {minimum}", value)


def number(value: Any, key: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> None:
    """A finite number in the range [low, high] (an end is excluded where `*_open`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if low is None and high is None:
        expected = "a finite number"
    else:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        expected = (f"a finite number in {'(' if low_open or low is None else '['}{left}, {right}"
                    f"{')' if high_open or high is None else ']'}")
    require(ok, key, expected, value)


def one_of(value: Any, choices: Iterable, key: str) -> None:
    choices = list(choices)
    require(value in choices, key, f"one of {choices}", value)


def items(values: list, choices: Iterable | None, key: str) -> None:
    """A non-empty list without repeats, each item among `choices` (when given)."""
    require(isinstance(values, list) and len(values) > 0, key, "a non-empty list", values)
    require(len(set(map(repr, values))) == len(values), key, "a list without repeated items", values)
    if choices is not None:
        choices = list(choices)
        for i, v in enumerate(values):
            require(v in choices, f"{key}[{i}]", f"one of {choices}", v)


# train.report_to: accelerate's tracker name -> (module it imports, pip package that provides it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"),
            "comet_ml": ("comet_ml", "comet-ml"), "aim": ("aim", "aim"), "clearml": ("clearml", "clearml"),
            "dvclive": ("dvclive", "dvclive"), "swanlab": ("swanlab", "swanlab"), "trackio": ("trackio", "trackio")}


def trackers(values: list, key: str) -> None:
    """Experiment trackers accelerate knows, without repeats, each importable here (else the pip line)."""
    import importlib.util

    require(isinstance(values, list), key, f"a list of tracker names from {list(TRACKERS)}", values)
    if values:
        items(values, TRACKERS, key)
    for i, name in enumerate(values):
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise CahlInputError(f"config key '{key}[{i}]': tracker {name!r} needs the Python package {package!r}, "
                                 f"which is not installed: pip install {package}")


def text(value: Any, key: str, what: str = "a non-empty string") -> None:
    require(isinstance(value, str) and value.strip() != "", key, what, value)


def bench_spec(value: str, key: str, allow_empty: bool = False, rule: str = "") -> None:
    """A --bench spec (BENCH[:CAT[+CAT]] or file:PATH, ...) that names known benchmarks and
    categories, or task files whose every line is well formed."""
    from cahl.eval.benchmarks import parse_bench_spec

    if allow_empty and value == "":
        return
    try:
        parse_bench_spec(value, rule)
    except CahlInputError as e:
        raise CahlInputError(f"config key {key!r}: {e}") from None


def training_source(value: str, key: str) -> None:
    """synth, toolrl, or file:PATH naming a well-formed task file (read now, before any model loads)."""
    from cahl.data.taskfile import file_path, load_task_file

    path = file_path(value) if isinstance(value, str) else None
    if path is None:
        require(value in ("synth", "toolrl"), key, "'synth', 'toolrl' or 'file:PATH' (a task file)", value)
        return
    try:
        load_task_file(path, split="train")
    except CahlInputError as e:
        raise CahlInputError(f"config key {key!r}: {e}") from None
