"""Format reward: each role's grammar, and the ways a policy could try to game it."""

import pytest

from cahl.agents.parser import parse_output
from cahl.rewards.format import format_score, trajectory_format
from cahl.types import CahlInputError, Trajectory, Turn

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def score(text, role):
    return format_score(parse_output(text), role, text)


@pytest.mark.parametrize("role,text", [
    ("flat", "<think>add them</think>\n" + CALL),
    ("flat", "<think>done</think>\n<response>3</response>"),
    ("flat", "<think>add</think>\n" + CALL + "\n<response>calling add</response>"),
    ("executor", "<think>add</think>" + CALL),
    ("executor", "<think>done</think><result>the sum is 3</result>"),
    ("planner", "<think>one step</think><subtask>add 1 and 2</subtask>"),
    ("planner", "  <think>known</think>\n<response>3</response>\n"),
])
def test_valid_turns_score_one(role, text):
    assert score(text, role) == 1.0


@pytest.mark.parametrize("role,text", [
    ("executor", "<think>done</think><response>3</response>"),  # the flat/planner answer tag
    ("planner", "<think>x</think>" + CALL),  # the planner does not call tools
    ("flat", "<think>x</think><subtask>add</subtask>"),
    ("executor", "<think>x</think>" + CALL + "<result>3</result>"),  # a result comes after the observation
    ("planner", "<think>x</think><subtask>a</subtask><response>b</response>"),
])
def test_a_tag_of_another_role_or_combination_scores_zero(role, text):
    assert score(text, role) == 0.0


@pytest.mark.parametrize("text", [
    CALL + "<think>after the fact</think>",  # out of order
    "<response>3</response>",  # no think
    "<think>a</think><think>b</think><response>3</response>",  # repeated tag
    "<think>a</think><response>3</response><response>3</response>",
    "<think>a</think>" + CALL + CALL,
    "<think></think><response>3</response>",  # empty tags
    "<think>a</think><response>   </response>",
    "<think>a</think><tool_call>\n</tool_call>",
    "<think>a</think><tool_call>add(1, 2)</tool_call>",  # invalid call
    "<think>a</think><response>3",  # truncated
    "<think>a</think>The answer is 3. <response>3</response>",  # text outside the tags
    "<think>a</think><response>3</response> Paris, London",
    "just text",
])
def test_malformed_turns_score_zero(text):
    assert score(text, "flat") == 0.0


def test_without_raw_text_only_the_parsed_structure_is_checked():
    text = "<think>a</think>junk<response>3</response>"
    assert format_score(parse_output(text), "flat") == 1.0
    assert format_score(parse_output(text), "flat", text) == 0.0


def test_unknown_role_is_an_error():
    with pytest.raises(CahlInputError, match="role"):
        format_score(parse_output("<think>a</think>"), "critic")


def traj(role, texts):
    turns = [Turn(0, 0, t, parse_output(t), "stop") for t in texts]
    return Trajectory(role, "t", "f0", None, ("t", role, "root"), [], [], [], 0, turns=turns)


def test_trajectory_format_is_the_mean_over_turns_and_zero_without_turns():
    good = "<think>a</think>" + CALL
    bad = "<think>a</think>" + CALL + CALL
    assert trajectory_format(traj("flat", [])) == 0.0
    assert trajectory_format(traj("flat", [good, "<think>b</think><response>3</response>"])) == 1.0
    assert trajectory_format(traj("flat", [good, bad])) == 0.5


def test_repeating_valid_turns_or_tags_never_beats_one_correct_turn():
    one = traj("executor", ["<think>a</think><result>3</result>"])
    many_turns = traj("executor", ["<think>a</think>" + CALL] * 5 + ["<think>a</think><result>3</result>"])
    many_tags = traj("executor", ["<think>a</think>" * 3 + "<result>3</result>" * 3])
    assert trajectory_format(many_turns) <= trajectory_format(one) == 1.0
    assert trajectory_format(many_tags) == 0.0
