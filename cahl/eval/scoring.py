"""Benchmark verdicts as pure functions: API-Bank call match (ToolRL's rule) and answer EM / F1.

These are the benchmarks' own rules; rewards that use a benchmark's verdict (DESIGN §3, outcome)
call these same functions, so training and evaluation share one checker.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping

from cahl.types import CahlInputError, ToolCall

POOLED = "all"
_PUNCTUATION = set(string.punctuation)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (it stays inside [0, 1] and is not degenerate
    at 0 or n successes, unlike the normal approximation): (low, high); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def apibank_match(pred: list[ToolCall], gold: list[ToolCall]) -> bool:
    """ToolRL's API-Bank verdict (benchmarks/API-Bank evaluation, its "soft match").

    Correct iff ANY predicted call has the gold name and exactly the gold parameters: Python `==`
    on the parameter dicts, so key order is irrelevant but values are compared as they are
    ("5" != 5, no case or whitespace normalisation; 1 == 1.0 == True as in Python). Extra
    predicted calls are not penalised and their order does not matter. Only the first gold call
    counts (every item of the 597 has exactly one).

    Not reproduced: ToolRL's evaluation also accepted a predicted JSON object lacking "name" or
    "parameters" as the parameters of the gold tool; here a call must name its tool.
    """
    if not gold:
        raise CahlInputError("apibank_match: the gold call list is empty")
    target = gold[0]
    return any(p.name == target.name and p.arguments == target.arguments for p in pred)


def summarize_by(items: Iterable[Mapping[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """Accuracy per value of `key` and pooled over all items (under "all").

    Each item needs `key` (e.g. "category": "level-1") and "correct" (bool). Pooled accuracy is
    over items, not the mean of the groups (ToolRL's "overall"). Returns
    {group: {"n": count, "correct": count, "accuracy": fraction in [0, 1]}}.
    """
    counts: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if key not in item or "correct" not in item:
            raise CahlInputError(f"summarize_by: item {i} lacks {key!r} or 'correct': {dict(item)!r:.120}")
        for group in (str(item[key]), POOLED):
            n_correct = counts.setdefault(group, [0, 0])
            n_correct[0] += 1
            n_correct[1] += bool(item["correct"])
    return {group: {"n": n, "correct": c, "accuracy": c / n} for group, (n, c) in sorted(counts.items())}


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and the articles a/an/the, squeeze spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> float:
    """1.0 if the normalised answers are equal, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 between the normalised answers (bag of words overlap)."""
    pred_tokens = normalize_answer(pred).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def contains_answer(text: str, gold: str) -> bool:
    """Whether the normalised gold answer occurs in the normalised text as whole words.

    Used for "the observations contain the answer" (DESIGN §3) and for corpus coverage.
    """
    needle = normalize_answer(gold)
    return bool(needle) and f" {needle} " in f" {normalize_answer(text)} "
