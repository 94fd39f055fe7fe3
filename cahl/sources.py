"""One entry per task source: the environment its tasks run in and the verdict on an episode.

`SOURCES[task.source]` is read by training (the rollout's environment, and the reward's outcome
in rewards/hierarchy.py) and by evaluation (eval/harness.py), so a benchmark is scored by the
same checker in both. A verdict takes (task, episode) and returns a Verdict; the outcome a reward
uses is `float(verdict.correct)`. Loaders stay with their data (cahl/data/, envs/synth/, task
files): a benchmark (eval/benchmarks.py) is categories and a loader over one source, and the
training pool (train/loop.py: training_tasks) reads the training sources. A new source is one
entry here plus its loader.

A task whose source has no entry gets the generic verdict: its calls as an exact multiset when it
has gold calls, else the EM of its answer (it has no environment: `make_env` raises).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from cahl.data.apibank import ORIGINAL_SOURCE as APIBANK_ORIGINAL, TOOLRL_SOURCE as APIBANK_TOOLRL
from cahl.data.bamboogle import SOURCE as BAMBOOGLE
from cahl.data.taskfile import SOURCE as TASK_FILE
from cahl.data.toolrl import SOURCE as TOOLRL
from cahl.envs.base import Env, FunctionCallEnv
from cahl.types import CahlInputError, Episode, Task, ToolCall


@dataclass
class Verdict:
    correct: bool
    error_type: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # extra per-item figures (EM, F1)


@dataclass(frozen=True)
class Source:
    make_env: Callable[[Task], Env]
    verdict: Callable[[Task, Episode], Verdict]


# -- verdicts -----------------------------------------------------------------------------------
def _bfcl_language(category: str) -> str:
    return {"java": "Java", "javascript": "JavaScript"}.get(category, "Python")


def score_bfcl(task: Task, episode: Episode) -> Verdict:
    """BFCL's own AST checker against the item's possible answers (eval/bfcl_checker.py)."""
    from cahl.eval.bfcl_checker import check_calls

    calls = [{c.name: c.arguments} for c in episode.calls]
    valid, error_type, _ = check_calls(task.category, task.meta["functions"], task.meta.get("possible_answer"),
                                       calls, _bfcl_language(task.category))
    return Verdict(valid, error_type)


def score_apibank(task: Task, episode: Episode) -> Verdict:
    """API-Bank under ToolRL's 597-item protocol: some call has the gold name and exact parameters."""
    from cahl.eval.scoring import apibank_match

    ok = apibank_match(episode.calls, task.gold_calls or [])
    return Verdict(ok, None if ok else ("no_call" if not episode.calls else "mismatch"))


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
        env = apibank_env(task)
        env.reset(task)
        env.step([c])
        results.append(env.results[-1])
    ok = results_agree(results[0], results[1])
    return Verdict(ok, None if ok else "wrong_result")


def score_answer(task: Task, episode: Episode) -> Verdict:
    """Normalised exact match of the final answer (EM and token F1 reported): Bamboogle's rule."""
    from cahl.eval.scoring import exact_match, token_f1

    pred = episode.response or ""
    em, f1 = exact_match(pred, task.gold_answer or ""), token_f1(pred, task.gold_answer or "")
    return Verdict(em == 1.0, None if em == 1.0 else ("no_answer" if not pred.strip() else "wrong_answer"),
                   {"em": em, "f1": f1})


def score_exact_calls(task: Task, episode: Episode) -> Verdict:
    """The calls as a multiset, exactly, order ignored (Tool-N1's rule): ToolRL's prompts."""
    from cahl.rewards.calls import exact_multiset

    ok = exact_multiset(episode.calls, task.gold_calls or []) == 1.0
    return Verdict(ok, None if ok else ("no_call" if not episode.calls else "mismatch"))


def score_synth(task: Task, episode: Episode) -> Verdict:
    """Generated tasks: the final answer decides (many call paths reach it; the answer is computed);
    a generated task without an answer is scored by its calls."""
    from cahl.envs.synth import check_answer

    if task.gold_answer is None:
        return score_exact_calls(task, episode)
    ok = bool(episode.response) and check_answer(task, episode.response)
    return Verdict(ok, None if ok else ("no_answer" if not episode.response else "wrong_answer"))


def score_task_file(task: Task, episode: Episode) -> Verdict:
    """A task file's item (data/taskfile.py), by the rule the line or `--rule` names."""
    rule = task.meta["rule"]
    if rule == "answer":
        return score_answer(task, episode)
    if rule == "graded":
        from cahl.rewards.calls import toolrl_correctness

        score, _ = toolrl_correctness(episode.calls, task.gold_calls or [])
        return Verdict(score == 1.0, None if score == 1.0 else ("no_call" if not episode.calls else "mismatch"),
                       {"graded": score})
    return score_gold_calls_bfcl(task.gold_calls or [], episode.calls, task.tools)


def score_gold_calls_bfcl(gold: list[ToolCall], calls: list[ToolCall], tools: list[dict]) -> Verdict:
    """BFCL's AST checker on plain gold calls, order-free: each gold value becomes the one allowed
    value, documented with BFCL's type of that value (`_bfcl_param`; an integer for a parameter
    whose schema says "number" is a float, so 2.0 matches 2). No gold call = BFCL's irrelevance
    rule (right iff no call); one = its `multiple` rule (exactly one call, to the gold function);
    more = its parallel rule (same count, matched in any order). Strings compare as BFCL's do:
    case, spaces and `,./-_*^` ignored. A call may leave out no gold argument and add none."""
    from cahl.eval.bfcl_checker import check_calls

    schemas = {t.get("name"): (t.get("parameters") or {}).get("properties") or {} for t in tools}
    functions: dict[str, dict] = {}
    answer = []
    for g in gold:
        doc = functions.setdefault(g.name, {"name": g.name, "parameters": {"type": "dict", "properties": {},
                                                                           "required": []}})
        allowed = {}
        for key, value in g.arguments.items():
            number = (schemas.get(g.name, {}).get(key) or {}).get("type") == "number"
            param, wrapped = _bfcl_param(float(value) if number and type(value) is int else value)
            doc["parameters"]["properties"].setdefault(key, param)
            allowed[key] = [wrapped]
        answer.append({g.name: allowed})
    category = "irrelevance" if not gold else "multiple" if len(gold) == 1 else "parallel"
    valid, error_type, _ = check_calls(category, list(functions.values()), answer,
                                       [{c.name: c.arguments} for c in calls], "Python")
    return Verdict(valid, error_type)


_BFCL_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "float"}


def _bfcl_param(value) -> tuple[dict, object]:
    """(BFCL parameter doc, allowed value) for one gold value. Scalars, dicts and lists of one
    scalar type or of dicts are typed as BFCL documents them (dict values one level deep, as BFCL's
    possible answers); other values (null, nested or mixed lists) are typed "any", which BFCL's
    checker compares verbatim."""
    if type(value) in _BFCL_SCALARS:
        return {"type": _BFCL_SCALARS[type(value)]}, value
    if isinstance(value, dict):
        return {"type": "dict"}, {k: [v] for k, v in value.items()}
    if isinstance(value, list) and value:
        kinds = {type(v) for v in value}
        if kinds == {dict}:
            return {"type": "array", "items": {"type": "dict"}}, [{k: [v] for k, v in d.items()} for d in value]
        if len(kinds) == 1 and next(iter(kinds)) in _BFCL_SCALARS:
            return {"type": "array", "items": {"type": _BFCL_SCALARS[next(iter(kinds))]}}, value
    return {"type": "any"}, value


def score_generic(task: Task, episode: Episode) -> Verdict:
    """A source with no entry: exact calls when it has gold calls, else answer EM."""
    if task.gold_calls is not None:
        return score_exact_calls(task, episode)
    if task.gold_answer is not None:
        from cahl.eval.scoring import exact_match

        ok = exact_match(episode.response or "", task.gold_answer) == 1.0
        return Verdict(ok, None if ok else "wrong_answer")
    raise CahlInputError(f"task {task.id} (source {task.source!r}): no gold calls or answer and no "
                         f"benchmark scorer, so its outcome is undefined")


# -- environments -------------------------------------------------------------------------------
def function_call_env(task: Task) -> Env:
    return FunctionCallEnv()


def apibank_env(task: Task) -> Env:
    from cahl.envs.apibank import ApiBankEnv

    root = task.meta.get("apibank_root")  # the loader's data directory, else CAHL_DATA_DIR
    return ApiBankEnv(Path(root) if root else None)


@lru_cache(maxsize=1)
def _wiki_backend():
    from cahl.envs.search import BM25Backend

    return BM25Backend.from_wiki_offline()


def search_env(task: Task) -> Env:
    from cahl.envs.search import SearchEnv

    return SearchEnv(_wiki_backend())


def synth_env(task: Task) -> Env:
    from cahl.envs.synth import SynthEnv

    return SynthEnv()


SOURCES: dict[str, Source] = {
    "bfcl_v3": Source(function_call_env, score_bfcl),
    "bfcl_v4": Source(function_call_env, score_bfcl),
    APIBANK_TOOLRL: Source(function_call_env, score_apibank),
    APIBANK_ORIGINAL: Source(apibank_env, score_apibank_exec),
    BAMBOOGLE: Source(search_env, score_answer),
    "synth": Source(synth_env, score_synth),
    TOOLRL: Source(function_call_env, score_exact_calls),
    TASK_FILE: Source(function_call_env, score_task_file),
}


def make_env(task: Task) -> Env:
    """The environment of one episode of `task`, by its source."""
    try:
        source = SOURCES[task.source]
    except KeyError:
        raise CahlInputError(f"task {task.id}: no environment for source {task.source!r}; known: {sorted(SOURCES)}") from None
    return source.make_env(task)


def verdict(task: Task, episode: Episode) -> Verdict:
    """The verdict of `task`'s source on `episode` (the generic one for a source with no entry)."""
    source = SOURCES.get(task.source)
    return (source.verdict if source else score_generic)(task, episode)
