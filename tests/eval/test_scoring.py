"""Benchmark verdicts: ToolRL's API-Bank match, SQuAD-style EM / F1, answer containment."""

import pytest

from cahl.eval.scoring import (apibank_match, contains_answer, exact_match, normalize_answer, summarize_by,
                               token_f1)
from cahl.types import CahlInputError, ToolCall

GOLD = [ToolCall("ModifyRegistration", {"appointment_id": "34567890", "new_appointment_date": "2023-03-26"})]


def test_apibank_exact_call_matches_regardless_of_key_order_and_extra_calls():
    same = ToolCall("ModifyRegistration", {"new_appointment_date": "2023-03-26", "appointment_id": "34567890"})
    assert apibank_match([same], GOLD)
    assert apibank_match([ToolCall("GetUserToken", {"username": "u"}), same], GOLD)
    # Values compare with Python ==, as in ToolRL's evaluation: 1 and 1.0 are equal, "1" is not.
    assert apibank_match([ToolCall("Add", {"n": 1.0})], [ToolCall("Add", {"n": 1})])


@pytest.mark.parametrize("pred", [
    [],
    [ToolCall("CancelRegistration", {"appointment_id": "34567890", "new_appointment_date": "2023-03-26"})],
    [ToolCall("ModifyRegistration", {"appointment_id": 34567890, "new_appointment_date": "2023-03-26"})],
    [ToolCall("ModifyRegistration", {"appointment_id": "34567890", "new_appointment_date": "2023-03-26 "})],
    [ToolCall("ModifyRegistration", {"appointment_id": "34567890"})],
    [ToolCall("ModifyRegistration", {"appointment_id": "34567890", "new_appointment_date": "2023-03-26", "x": "1"})],
    [ToolCall("modifyregistration", {"appointment_id": "34567890", "new_appointment_date": "2023-03-26"})],
])
def test_apibank_any_difference_in_name_or_values_fails(pred):
    assert not apibank_match(pred, GOLD)


def test_apibank_only_the_first_gold_call_counts_and_empty_gold_is_an_error():
    assert apibank_match(GOLD, GOLD + [ToolCall("Other", {})])
    with pytest.raises(CahlInputError):
        apibank_match(GOLD, [])


def test_summarize_by_gives_per_group_and_pooled_accuracy():
    items = [{"category": "level-1", "correct": True}, {"category": "level-1", "correct": False},
             {"category": "level-2", "correct": True}]
    summary = summarize_by(items, "category")
    assert summary["level-1"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert summary["level-2"]["accuracy"] == 1.0
    assert summary["all"] == {"n": 3, "correct": 2, "accuracy": 2 / 3}  # pooled over items, not groups
    with pytest.raises(CahlInputError, match="item 0 lacks 'category'"):
        summarize_by([{"correct": True}], "category")


def test_normalize_answer_is_squad_style():
    assert normalize_answer("  The  Titan IIIE! ") == "titan iiie"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Theodore") == "theodore"  # articles only as whole words


def test_exact_match():
    assert exact_match("James Madison.", "james madison") == 1.0
    assert exact_match("President James Madison", "james madison") == 0.0


def test_token_f1():
    assert token_f1("the Titan IIIE rocket", "Titan IIIE") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert token_f1("Saturn V", "Titan IIIE") == 0.0
    assert token_f1("Titan Titan", "Titan") == pytest.approx(2 / 3)  # repeated tokens count once each
    assert token_f1("", "") == 1.0 and token_f1("the", "Titan") == 0.0


def test_contains_answer_needs_whole_words():
    assert contains_answer("Citibank was founded in 1812, under James Madison.", "James Madison")
    assert not contains_answer("In 18470 ...", "1847")
    assert not contains_answer("anything", "the")  # normalises to nothing
