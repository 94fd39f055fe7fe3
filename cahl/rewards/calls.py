"""Call correctness: predicted tool calls against gold calls, as pure functions (DESIGN §3).

Two rules, chosen by `mode` (config `rewards.correctness`):

"toolrl" — ToolRL's fine-grained score (qiancheng0/ToolRL, verl/utils/reward_score/rlla.py,
`compute_tool_call_reward` + `match_score`), re-implemented:
    names  = |N_gold ∩ N_pred| / (|N_gold| + |N_pred| − |N_gold ∩ N_pred|)   (multiset Jaccard of
             tool names; 1.0 when both lists are empty, 0.0 when exactly one is)
    for each gold call g, in gold order: among the unused predicted calls with g's exact name, take
             the one with the highest  Jaccard(keys_g, keys_p) + #{k in g : p[k] equals g[k]}
             (first one on ties, only if > 0) and mark it used; add its score
    max    = 1 + Σ_g (1 + |args_g|)
    score  = 2 · (names + Σ matched) / max − 1          ∈ [−1, 1]  (ToolRL's CORRECTMAX1 scaling)
  So a missing call, an extra call and a duplicated call all lower `names`; a duplicate can never
  be matched twice; a name that merely contains the gold name gets nothing.

"exact" — Tool-N1's binary rule (NVlabs/Tool-N1, verl/utils/reward_score/toolcall.py,
`validate_result`): 1.0 iff the predicted calls equal the gold calls as a multiset of
(name, arguments), order ignored; else 0.0. Tool-N1 also gates on format; here format is its own
reward term.

Where we differ from both, on purpose:
- Empty gold (the request needs no tool: irrelevance) is scored, not skipped (ToolRL gives 0):
  no predicted call = full marks (1.0), any predicted call = the minimum (−1.0 / 0.0).
- One value equality everywhere (`same_value`): Python `==` as ToolRL, except that a boolean
  equals only a boolean (ToolRL's `True == 1` would reward a wrong type); 1 == 1.0 (JSON does not
  tell them apart; Tool-N1's `json.dumps` comparison does); "1" != 1; tuples equal lists.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from cahl.types import CahlInputError, ToolCall


def same_value(a: Any, b: Any) -> bool:
    """Equality of two argument values (module docstring): `==`, but booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def same_call(a: ToolCall, b: ToolCall) -> bool:
    """Same tool name and the same arguments (keys and values)."""
    return a.name == b.name and same_value(a.arguments, b.arguments)


def multiset_overlap(a: list, b: list) -> float:
    """ToolRL's `match_score`: |a ∩ b| / (|a| + |b| − |a ∩ b|) over multisets; 1.0 if both empty."""
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    common = sum((Counter(a) & Counter(b)).values())
    return common / (len(a) + len(b) - common)


def pair_score(pred: ToolCall, gold: ToolCall) -> float:
    """ToolRL's score of one predicted call as a match for one gold call of the same name.

    Parameter-name overlap (in [0, 1]) plus the number of gold parameters whose value the
    prediction gives exactly; at most 1 + len(gold.arguments).
    """
    keys = multiset_overlap(list(gold.arguments), list(pred.arguments))
    values = sum(1 for k, v in gold.arguments.items() if k in pred.arguments and same_value(pred.arguments[k], v))
    return keys + values


def toolrl_correctness(pred: list[ToolCall], gold: list[ToolCall]) -> tuple[float, dict[str, float]]:
    """ToolRL's fine-grained call correctness in [-1, 1], and its parts (module docstring)."""
    if not gold:
        score = 1.0 if not pred else -1.0
        return score, {"names": float(not pred), "matched": 0.0, "max": 1.0}
    names = multiset_overlap([c.name for c in gold], [c.name for c in pred])
    matched, max_score, used = 0.0, 1.0, set()
    for g in gold:
        max_score += 1 + len(g.arguments)
        best, best_i = 0.0, -1
        for i, p in enumerate(pred):
            if i in used or p.name != g.name:
                continue
            s = pair_score(p, g)
            if s > best:
                best, best_i = s, i
        if best_i >= 0:
            used.add(best_i)
            matched += best
    score = 2 * (names + matched) / max_score - 1
    return score, {"names": names, "matched": matched, "max": max_score}


def exact_multiset(pred: list[ToolCall], gold: list[ToolCall]) -> float:
    """Tool-N1's verdict: 1.0 iff pred and gold are the same multiset of calls, order ignored.

    Greedy pairing is exact here because `same_call` is an equivalence relation.
    """
    if len(pred) != len(gold):
        return 0.0
    left = list(gold)
    for p in pred:
        i = next((i for i, g in enumerate(left) if same_call(p, g)), -1)
        if i < 0:
            return 0.0
        left.pop(i)
    return 1.0


def exact_correctness(pred: list[ToolCall], gold: list[ToolCall]) -> tuple[float, dict[str, float]]:
    """`exact_multiset` with the same (score, parts) shape as `toolrl_correctness`."""
    score = exact_multiset(pred, gold)
    return score, {"exact": score}


CorrectnessFn = Callable[[list[ToolCall], list[ToolCall]], tuple[float, dict[str, float]]]

REWARDS: dict[str, CorrectnessFn] = {"toolrl": toolrl_correctness, "exact": exact_correctness}

# The lowest score each rule gives: what a call-less attempt gets where any call was required.
LOWEST: dict[str, float] = {"toolrl": -1.0, "exact": 0.0}


def call_correctness(pred: list[ToolCall], gold: list[ToolCall],
                     mode: str = "toolrl") -> tuple[float, dict[str, float]]:
    """Correctness of `pred` against `gold` under rule `mode` ("toolrl" | "exact")."""
    if mode not in REWARDS:
        raise CahlInputError(f"rewards.correctness: expected one of {sorted(REWARDS)}, got {mode!r}")
    return REWARDS[mode](pred, gold)
