"""Bamboogle loader."""

import pytest

from cahl.data.bamboogle import load_bamboogle
from cahl.envs.search import SEARCH_TOOL
from cahl.types import CahlInputError


def test_125_questions_with_the_search_tool_and_an_answer():
    tasks = load_bamboogle()
    assert len(tasks) == 125 and len({t.id for t in tasks}) == 125
    assert all(t.tools == [SEARCH_TOOL] and t.gold_answer and t.gold_calls is None for t in tasks)
    first = tasks[0]
    assert first.messages == [{"role": "user", "content":
                               "Who was president of the United States in the year that Citibank was founded?"}]
    assert first.gold_answer == "james madison" and first.source == "bamboogle"


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "bamboogle").mkdir()
    (tmp_path / "bamboogle" / "bamboogle_125.jsonl").write_text(
        '{"id": "b0", "question": "q?", "answer": "a"}\n{"id": "b1", "question": "q?"}\n')
    with pytest.raises(CahlInputError, match=r"bamboogle_125.jsonl:2: missing key\(s\) \['answer'\]"):
        load_bamboogle(tmp_path)


def test_empty_answer_is_rejected(tmp_path):
    (tmp_path / "bamboogle").mkdir()
    (tmp_path / "bamboogle" / "bamboogle_125.jsonl").write_text('{"id": "b0", "question": "q?", "answer": " "}\n')
    with pytest.raises(CahlInputError, match=r"bamboogle_125.jsonl:1: .*non-empty strings"):
        load_bamboogle(tmp_path)
