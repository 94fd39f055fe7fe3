"""The final-answer verdict for generated tasks: exact, after normalising how values are written.

Numeric gold ("204.6", "-3", "1428"): the answer must contain exactly one number, and it must
equal the gold value exactly as a decimal. So "204.60", "204.6 million" and "$1,234.5" are read as
numbers (thousands separators ",", "_", and narrow/no-break spaces are dropped; the Unicode minus
counts as "-"), while an answer listing several numbers is wrong, so a policy cannot hedge.
Text gold (a name, a date, a weekday): the answer, stripped of surrounding spaces, quotes,
asterisks and a final period, with runs of spaces collapsed, must equal the gold. Case is ignored
unless the gold is upper case (the result of `to_uppercase`, or a currency code).
"""

from __future__ import annotations

import re
from decimal import Decimal

from cahl.types import CahlInputError, Task

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)[,_\u00a0\u202f](?=\d{3}(?!\d))")


def _numbers(text: str) -> list[Decimal]:
    text = _THOUSANDS.sub("", text.replace("\u2212", "-"))
    return [Decimal(m) for m in _NUMBER.findall(text)]


def _plain(text: str) -> str:
    text = " ".join(text.split()).strip("\"'`*").strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def check_answer(task: Task, answer_text: str) -> bool:
    """Whether `answer_text` states the task's gold answer (rules in the module docstring)."""
    gold = task.gold_answer
    if gold is None:
        raise CahlInputError(f"task {task.id}: check_answer needs a gold_answer, the task has none")
    if _NUMBER.fullmatch(gold):
        found = _numbers(answer_text)
        return len(found) == 1 and found[0] == Decimal(gold)
    answer = _plain(answer_text)
    return answer == gold if gold.isupper() else answer.casefold() == gold.casefold()
