"""Call correctness: ToolRL's graded rule by hand, Tool-N1's exact multiset, and gaming attempts."""

import itertools

import pytest

from cahl.rewards.calls import REWARDS, call_correctness, exact_multiset, same_value, toolrl_correctness
from cahl.types import CahlInputError, ToolCall as C

A = C("get_weather", {"city": "Paris", "days": 2})
B = C("convert", {"amount": 10, "to": "EUR"})


def toolrl(pred, gold):
    return toolrl_correctness(pred, gold)[0]


def test_toolrl_hand_computed_cases():
    # max = 1 (names) + (1 + 2) per gold call of two arguments
    assert toolrl([A], [A]) == 1.0
    # names 1, keys 1, one of two values: 3/4 -> 2*0.75 - 1
    assert toolrl([C("get_weather", {"city": "Paris", "days": 3})], [A]) == pytest.approx(0.5)
    # a missing key: keys 1/2, values 1: 2.5/4
    assert toolrl([C("get_weather", {"city": "Paris"})], [A]) == pytest.approx(0.25)
    # an extra key: keys 2/3, values 2: (1 + 2/3 + 2)/4
    assert toolrl([C("get_weather", {"city": "Paris", "days": 2, "x": 1})], [A]) == pytest.approx(2 * (11 / 3) / 4 - 1)
    # one of two gold calls: names 1/2, A matched 3, max 1 + 3 + 3 = 7
    assert toolrl([A], [A, B]) == pytest.approx(2 * 3.5 / 7 - 1)
    # wrong tool: nothing
    assert toolrl([B], [A]) == -1.0
    score, parts = toolrl_correctness([A], [A, B])
    assert parts == {"names": 0.5, "matched": 3.0, "max": 7.0}


def test_order_of_calls_and_of_arguments_does_not_matter():
    swapped = C("get_weather", {"days": 2, "city": "Paris"})
    assert toolrl([B, swapped], [A, B]) == 1.0
    assert exact_multiset([B, swapped], [A, B]) == 1.0


def test_a_name_that_contains_the_gold_name_gets_nothing():
    for name in ("get_weather_forecast", "weather", "get_weather ", "Get_Weather"):
        pred = [C(name, dict(A.arguments))]
        assert toolrl(pred, [A]) == -1.0
        assert exact_multiset(pred, [A]) == 0.0


def test_duplicating_a_correct_call_lowers_the_score():
    assert toolrl([A, A], [A]) < toolrl([A], [A])
    assert toolrl([A, A, A], [A]) < toolrl([A, A], [A])
    assert toolrl([A, A, B], [A, B]) < 1.0
    assert exact_multiset([A, A], [A]) == 0.0


def test_calling_every_tool_scores_below_the_right_call_alone():
    spray = [A, B, C("search", {"q": "Paris"}), C("add", {"a": 1})]
    # ToolRL charges extra calls only through the name overlap: 1/4 instead of 1, out of max 4.
    assert toolrl(spray, [A]) == pytest.approx(2 * (0.25 + 3) / 4 - 1)
    assert toolrl(spray, [A]) < toolrl([A, B], [A]) < toolrl([A], [A])


def test_irrelevance_no_call_is_full_credit_and_any_call_the_minimum():
    assert toolrl([], []) == 1.0 and exact_multiset([], []) == 1.0
    assert toolrl([A], []) == -1.0 and exact_multiset([A], []) == 0.0
    assert toolrl([], [A]) == -1.0 and exact_multiset([], [A]) == 0.0


def test_values_compare_strictly_except_int_and_float():
    assert same_value(1, 1.0) and same_value([1, {"a": 2}], (1.0, {"a": 2}))
    assert not same_value("1", 1) and not same_value(True, 1) and not same_value(0, False)
    assert not same_value({"a": 1}, {"a": 1, "b": 2}) and not same_value([1, 2], [2, 1])
    gold = [C("set", {"on": True, "n": 5})]
    assert exact_multiset([C("set", {"on": 1, "n": 5})], gold) == 0.0
    assert exact_multiset([C("set", {"on": True, "n": 5.0})], gold) == 1.0
    assert toolrl([C("set", {"on": "true", "n": "5"})], gold) == pytest.approx(2 * 2 / 4 - 1)


def test_scores_stay_in_range_and_full_marks_mean_an_exact_match():
    pool = [A, B, C("get_weather", {"city": "Rome", "days": 2}), C("convert", {"amount": 10}), C("x", {})]
    for gold_n, pred_n in itertools.product(range(3), range(4)):
        for gold in itertools.combinations(pool, gold_n):
            for pred in itertools.product(pool, repeat=pred_n):
                s = toolrl(list(pred), list(gold))
                assert -1.0 <= s <= 1.0
                assert (s == 1.0) == (exact_multiset(list(pred), list(gold)) == 1.0)


def test_mode_switch_and_registry():
    assert call_correctness([A], [A, B], "exact") == (0.0, {"exact": 0.0})
    assert call_correctness([A], [A, B], "toolrl") == toolrl_correctness([A], [A, B])
    assert set(REWARDS) == {"toolrl", "exact"}
    with pytest.raises(CahlInputError, match="toolrl"):
        call_correctness([A], [A], "fuzzy")
