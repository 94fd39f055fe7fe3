"""Bamboogle: 125 two-hop questions (Press et al. 2022) answered with a `search` tool (DESIGN §6).

Scored by normalised exact match and token F1 of the final answer (cahl/eval/scoring.py).
"""

from __future__ import annotations

from pathlib import Path

from cahl import paths
from cahl.envs.search import SEARCH_TOOL
from cahl.paths import iter_jsonl, require_file, require_keys
from cahl.types import CahlInputError, Task

SOURCE = "bamboogle"
FILE = "bamboogle/bamboogle_125.jsonl"
_ORIGIN = ("github.com/qiancheng0/ToolRL (benchmarks/Bamboogle/data.json), one JSON object per line; "
           "run `cahl data fetch bamboogle`")


def load_bamboogle(data_dir: str | Path | None = None) -> list[Task]:
    """The 125 questions (split "test"), each with the one `search(query)` tool and its gold answer."""
    path = require_file(paths.data_dir(data_dir) / FILE, _ORIGIN)
    tasks = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        require_keys(obj, ["id", "question", "answer"], where)
        if not all(isinstance(obj[k], str) and obj[k].strip() for k in ("id", "question", "answer")):
            raise CahlInputError(f"{where}: 'id', 'question' and 'answer' must be non-empty strings")
        tasks.append(Task(
            id=obj["id"],
            source=SOURCE,
            messages=[{"role": "user", "content": obj["question"]}],
            tools=[SEARCH_TOOL],
            gold_answer=obj["answer"],
            split="test",
        ))
    return tasks
