"""The call parser on adversarial model text: it accepts almost-JSON, never raises, never evaluates."""

import json
import random
import time
from pathlib import Path

import pytest

from cahl.agents.parser import MAX_ARGUMENT_DEPTH, MAX_CALLS, TAGS, format_calls, parse_calls, parse_output, to_call
from cahl.types import ParsedOutput, ToolCall

STATUSES = {"ok", "no_tags", "invalid_call", "truncated", "repeated_tag"}


def check(out: ParsedOutput) -> ParsedOutput:
    """The invariants every parse result keeps, whatever the input."""
    assert isinstance(out, ParsedOutput)
    assert out.status in STATUSES
    assert all(isinstance(e, str) for e in out.errors)
    assert (out.status == "ok") == (not out.errors) or out.status == "no_tags"
    assert set(out.tags) <= set(TAGS)
    for c in out.calls:
        assert isinstance(c, ToolCall)
        assert isinstance(c.name, str) and c.name
        assert isinstance(c.arguments, dict)
    for field in ("think", "response", "subtask", "result"):
        assert getattr(out, field) is None or isinstance(getattr(out, field), str)
    return out


def parse(text) -> ParsedOutput:
    return check(parse_output(text))


def call_block(inner: str) -> str:
    return f"<think>t</think><tool_call>{inner}</tool_call>"


F = ToolCall("f", {"a": 1})


# -- lenient call syntax ---------------------------------------------------------------------------

@pytest.mark.parametrize("inner, calls", [
    ('{"name": "f", "arguments": {"a": 1}}', [F]),
    ('\n```json\n{"name": "f", "arguments": {"a": 1}}\n```\n', [F]),
    ('```\n{"name": "f", "arguments": {"a": 1}}\n```', [F]),
    ("{'name': 'f', 'arguments': {'a': 1}}", [F]),
    ('{"name": "f", "arguments": {"t": True, "n": None, "x": False}}', [ToolCall("f", {"t": True, "n": None, "x": False})]),
    ("{'name': 'f', 'arguments': {'t': true, 'n': null}}", [ToolCall("f", {"t": True, "n": None})]),
    ('{"name": "f", "arguments": {"a": 1,},}', [F]),
    ('{"name": "f", "arguments": {"a": [1, 2,],}}', [ToolCall("f", {"a": [1, 2]})]),
    ('{"name": "f", "arguments": {"q": "don\'t",}}', [ToolCall("f", {"q": "don't"})]),
    ('{"name": "f", "arguments": {"q": "it\'s", "b": True}}', [ToolCall("f", {"q": "it's", "b": True})]),
    ('{"name": "f", "parameters": {"a": 1}}', [F]),
    ('{"name": "f", "arguments": "{\\"a\\": 1}"}', [F]),
    ('{"name": "f", "arguments": "{\'a\': 1}"}', [F]),
    ('{"name": "f"}', [ToolCall("f", {})]),
    ('{"name": "f", "arguments": null}', [ToolCall("f", {})]),
    ('{"name": "f", "arguments": {"a": 1}} {"name": "g", "arguments": {}}', [F, ToolCall("g", {})]),
    ('{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}};', [F, ToolCall("g", {})]),
    ('{"name": "f", "arguments": {"a": 1}}\n{"name": "g", "arguments": {}}', [F, ToolCall("g", {})]),
    ('[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]', [F, ToolCall("g", {})]),
    ('{"f": {"a": 1}}', [F]),
    ('[{"f": {"a": 1}}, {"g": {}}]', [F, ToolCall("g", {})]),
    ('{"name": "f", "arguments": {"code": "if x { y } else { [z] }"}}', [ToolCall("f", {"code": "if x { y } else { [z] }"})]),
    ("{'name': 'f', 'arguments': {'code': 'a } b ] {', 'k': True}}", [ToolCall("f", {"code": "a } b ] {", "k": True})]),
    ('{"name": "f", "arguments": {"s": "say \\"}\\" now"}}', [ToolCall("f", {"s": 'say "}" now'})]),
    ('{"name": "f", "arguments": {"nested": {"deep": [{"x": {"y": 1}}]}}}', [ToolCall("f", {"nested": {"deep": [{"x": {"y": 1}}]}})]),
    ('{"name": "f", "arguments": {"u": "caf\\u00e9 \\ud83d\\ude00"}}', [ToolCall("f", {"u": "café 😀"})]),
])
def test_lenient_call_syntax_is_accepted(inner, calls):
    out = parse(call_block(inner))
    assert out.calls == calls
    assert out.status == "ok", out.errors


@pytest.mark.parametrize("inner", [
    "",
    "   ",
    "no json here",
    '{"name": "", "arguments": {}}',
    '{"name": 5, "arguments": {}}',
    '{"name": "f", "arguments": [1, 2]}',
    '{"name": "f", "arguments": {"a": "x}}',  # unbalanced quote
    '{"name": "f", "arguments": {"a": 1}',  # unbalanced brace
    '{"a": 1, "b": 2}',
    "[1, 2, 3]",
    "{1, 2}",
    "[]",
])
def test_blocks_without_a_usable_call_are_invalid(inner):
    out = parse(call_block(inner))
    assert out.calls == []
    assert out.status == "invalid_call"


def test_text_around_a_call_is_reported_but_the_call_is_kept():
    out = parse(call_block('I will call it: {"name": "f", "arguments": {"a": 1}} done'))
    assert out.calls == [F]
    assert out.status == "invalid_call"
    assert any("outside a call" in e for e in out.errors)


def test_to_call_shapes():
    assert to_call({"name": "f", "arguments": {"a": 1}}) == F
    assert to_call({"name": "f", "parameters": {"a": 1}}) == F
    assert to_call({"f": {"a": 1}}) == F
    assert to_call({"name": "f", "arguments": "{\"a\": 1}"}) == F
    for bad in (None, 1, "f", [], {"f": 1}, {"f": {}, "g": {}}, {"name": None}, {"": {}}):
        assert to_call(bad) is None


@pytest.mark.parametrize("calls", [
    [F],
    [ToolCall("f", {}), ToolCall("g", {"s": "x\ny\t\"z\" {}", "l": [1, 2.5, None, True], "d": {"k": "ü"}})],
    [ToolCall("weird name", {"a": "</tool_call>"})],
])
def test_format_calls_round_trips(calls):
    assert parse_calls(format_calls(calls)) == (calls, [])


# -- tags ------------------------------------------------------------------------------------------

def test_all_tags_are_split():
    out = parse("<think>a</think>\n<subtask>b</subtask>\n<result>c</result>\n<response>d</response>")
    assert (out.status, out.think, out.subtask, out.result, out.response) == ("ok", "a", "b", "c", "d")
    assert out.tags == ["think", "subtask", "result", "response"]


def test_text_without_tags():
    out = parse("Just an answer with <b>html</b> and <tool call>.")
    assert out.status == "no_tags"
    assert out.calls == [] and out.response is None


@pytest.mark.parametrize("text, field", [
    ("<think>a</think><think>b</think>", "think"),
    ("<response>a</response><response>b</response>", "response"),
    (call_block('{"name": "f", "arguments": {"a": 1}}') + '<tool_call>{"name": "g", "arguments": {}}</tool_call>', "calls"),
])
def test_repeated_tags_are_flagged_and_the_first_kept(text, field):
    out = parse(text)
    assert out.status == "repeated_tag"
    assert getattr(out, field) in ("a", [F])


@pytest.mark.parametrize("text", [
    "<think>a<response>b</response></think>",
    "<think><think>x</think></think>",
    "<response>a<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call></response>",
])
def test_nested_tags_never_raise_and_are_not_ok(text):
    out = parse(text)
    assert out.status != "ok"


@pytest.mark.parametrize("text, status", [
    ("<think>reasoning that stops", "truncated"),
    ('<think>t</think><tool_call>{"name": "f", "arguments": {"a": ', "truncated"),
    ('<think>t</think><tool_call>{"name": "f", "arguments": {"a": 1}}</tool_', "truncated"),
    ("<response>partial", "truncated"),
    ("<think></think><response></response>", "ok"),
    ("<tool_call></tool_call>", "invalid_call"),
    ("</response>", "no_tags"),
])
def test_truncated_and_empty_tags(text, status):
    out = parse(text)
    assert out.status == status


def test_truncated_response_keeps_its_text():
    assert parse("<think>a</think><response>the answer is").response == "the answer is"


# -- hostile input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, 12, b"<response>x</response>", ["<response>x</response>"], {"a": 1}])
def test_non_str_input(value):
    out = parse(value)
    assert out.status == "no_tags" and out.errors


@pytest.mark.parametrize("text", [
    "<response>\ud800</response>",
    "<think>\udcff\udcfe</think><tool_call>{\"name\": \"f\\ud800\", \"arguments\": {\"\\udfff\": \"\\ud800\"}}</tool_call>",
    call_block('{"name": "f", "arguments": {"a": "\udc80"}}'),
    "<think>\x00\x01\x1b[31m\ufffd\ufeff</think><response>\u202e</response>",
    call_block("{'name': 'f\udc80', 'arguments': {}}"),
])
def test_invalid_unicode_never_raises(text):
    parse(text)


def test_code_inside_a_call_is_never_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    payloads = [
        f"{{'name': 'f', 'arguments': __import__('pathlib').Path({str(marker)!r}).touch()}}",
        f"{{'name': 'f', 'arguments': {{'a': __import__('pathlib').Path({str(marker)!r}).touch()}}}}",
        f"{{'name': __import__('pathlib').Path({str(marker)!r}).touch(), 'arguments': {{}}}}",
        f"[__import__('pathlib').Path({str(marker)!r}).touch()]",
        "{'name': 'f', 'arguments': {'a': __import__('os').system('x')}}",
        "{'name': 'f', 'arguments': {'a': (lambda: 1)()}}",
    ]
    for inner in payloads:
        out = parse(call_block(inner))
        for c in out.calls:  # either no call, or a call whose data is plain text
            assert all(isinstance(v, str) for v in c.arguments.values())
    text = call_block(json.dumps({"name": "f", "arguments": {"a": "__import__('os').system('x')"}}))
    assert parse(text).calls == [ToolCall("f", {"a": "__import__('os').system('x')"})]
    assert not marker.exists()


@pytest.mark.parametrize("inner", [
    "[" * 100_000,
    "[" * 100_000 + "]" * 100_000,
    "{" * 100_000,
    '{"a":' * 50_000,
    "[" * 5_000 + "]" * 5_000,  # small enough for the literal_eval fallback
    "{'a': " * 3_000,
    '{"name": "f", "arguments": ' + "[" * 50_000 + "]" * 50_000 + "}",
], ids=["open_lists", "balanced_lists", "open_dicts", "open_keyed_dicts", "literal_eval_depth",
        "python_dicts", "deep_arguments"])
def test_deep_nesting_never_raises(inner):
    out = parse(call_block(inner))
    assert out.calls == []


@pytest.mark.parametrize("body", [
    "x" * 100_000,
    "{}" * 50_000,
    "[]" * 50_000,
    "{'a': 1} " * 11_000,
    '{"name": "f", "arguments": {"a": 1}}' * 3_000,
    '{"name": "f", "arguments": {"s": "' + "a" * 100_000 + '"}}',
    "{'name': 'f', 'arguments': {'s': '" + "a" * 19_000 + "', 'b': True}}",
    "{" + '"' * 100_000,
    "'" * 100_000,
    ",}" * 50_000,
    "```" * 33_000,
], ids=["plain", "empty_dicts", "empty_lists", "python_dicts", "many_calls", "long_string",
        "literal_eval_limit", "open_quote", "quotes", "trailing_commas", "fences"])
def test_100k_character_outputs_are_fast(body):
    for text in (call_block(body), "<think>" + body, "<response>" + body + "</response>" * 3):
        t0 = time.perf_counter()
        parse(text)
        assert time.perf_counter() - t0 < 1.0


def test_100k_tags_are_fast():
    for text in ("<think>" * 50_000, "<think>a</think>" * 10_000, "<tool_call>{}</tool_call>" * 4_000):
        t0 = time.perf_counter()
        parse(text)
        assert time.perf_counter() - t0 < 1.0


# -- seeded fuzz -----------------------------------------------------------------------------------

SEEDS = [
    call_block('{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "units": null}}'),
    call_block("```json\n[{'name': 'a', 'parameters': {'x': True}}, {\"b\": {\"y\": [1, 2,]}}]\n```"),
    "<think>plan</think><subtask>Find the {weather} in 'Paris'</subtask>",
    "<think>done</think><result>It is 21C</result>",
    "<think>x</think><response>The answer is \"42\".</response>",
    call_block('{"name": "f", "arguments": "{\\"a\\": [1, {\\"b\\": 2}]}"}\n{"name": "g", "arguments": {}}'),
]
ALPHABET = list('{}[]"\',:\\ \n`<>/') + ["<think>", "</think>", "<tool_call>", "</tool_call>", "<response>",
                                         "</response>", "true", "None", "\ud800", "é", "name", "arguments"]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 6)):
        i = rng.randint(0, len(text))
        j = min(len(text), i + rng.randint(0, 12))
        op = rng.randrange(5)
        if op == 0:
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + rng.choice(ALPHABET) + text[i:]
        elif op == 2:
            text = text[:i] + text[i:j] * rng.randint(2, 4) + text[j:]
        elif op == 3:
            text = text[:i]
        else:
            text = text[:i] + rng.choice(SEEDS) + text[j:]
    return text


def test_seeded_fuzz_keeps_the_invariants():
    rng = random.Random(1234)
    statuses = set()
    t0 = time.perf_counter()
    for _ in range(2000):
        text = mutate(rng.choice(SEEDS), rng)
        statuses.add(parse(text).status)
    assert time.perf_counter() - t0 < 10.0
    assert statuses == STATUSES  # the fuzz reaches every outcome, so the invariants were exercised


# -- fixed bugs (each was pinned as a strict xfail first) -------------------------------------------

def test_huge_integer_does_not_raise():
    out = parse(call_block('{"name": "f", "arguments": {"a": ' + "1" * 5000 + "}}"))
    assert out.status == "invalid_call" and out.calls == []  # over Python's 4300-digit int limit


def test_trailing_comma_repair_leaves_string_values_alone():
    out = parse(call_block('{"name": "f", "arguments": {"s": "a, }"},}'))
    assert out.calls == [ToolCall("f", {"s": "a, }"})]
    out = parse(call_block("{'name': 'f', 'arguments': {'s': 'b, ]', 'l': [1,],},}"))
    assert out.calls == [ToolCall("f", {"s": "b, ]", "l": [1]})]


def test_code_fences_inside_string_values_are_kept():
    out = parse(call_block('{"name": "run", "arguments": {"code": "```python\\nprint(1)\\n```"}}'))
    assert out.calls == [ToolCall("run", {"code": "```python\nprint(1)\n```"})]
    fenced = '```json\n{"name": "run", "arguments": {"code": "```sh\\nls\\n```"}}\n```'
    out = parse(call_block(fenced + "\n" + fenced))
    assert out.status == "ok" and out.calls == [ToolCall("run", {"code": "```sh\nls\n```"})] * 2


@pytest.mark.parametrize("args", ["{'a': b'x'}", "{'a': {1, 2}}", "{'a': 1j}", "{(1, 2): 'a'}", "{1: 'a'}",
                                  "{'a': [1, {'b': b'y'}]}"])
def test_arguments_that_are_not_json_values_are_invalid(args):
    out = parse(call_block("{'name': 'f', 'arguments': " + args + "}"))
    assert out.status == "invalid_call" and out.calls == []
    format_calls(out.calls)


def test_python_tuples_become_lists():
    out = parse(call_block("{'name': 'f', 'arguments': {'a': (1, (2, 'x')), 'b': ()}}"))
    assert out.calls == [ToolCall("f", {"a": [1, [2, "x"]], "b": []})]
    assert parse_calls(format_calls(out.calls)) == (out.calls, [])


def test_calls_beyond_the_cap_are_reported():
    one = '{"name": "f", "arguments": {"a": 1}}'
    out = parse(call_block((one + "\n") * (MAX_CALLS + 5)))
    assert len(out.calls) == MAX_CALLS and out.status == "invalid_call"
    assert any(f"more than {MAX_CALLS} calls" in e for e in out.errors)
    out = parse(call_block("[" + ", ".join([one] * (MAX_CALLS + 1)) + "]"))  # one list of calls
    assert len(out.calls) == MAX_CALLS and out.status == "invalid_call"
    out = parse(call_block((one + "\n") * MAX_CALLS))  # exactly the cap is fine
    assert len(out.calls) == MAX_CALLS and out.status == "ok"


def test_objects_that_are_not_calls_count_against_the_cap():
    """Thousands of non-call objects (or empty lists) are not each decoded and reported: reading
    stops at MAX_CALLS objects, which keeps a 100k-character block linear (json's error path counts
    newlines from the start of the text on every failure)."""
    one = '{"name": "f", "arguments": {"a": 1}}'
    for junk in ("{'a': 1} ", "[] "):
        calls, errors = parse_calls(junk * 10_000)
        assert calls == [] and len(errors) == MAX_CALLS + 1
        assert f"more than {MAX_CALLS} calls" in errors[-1]
        assert parse(call_block(junk * 10_000)).status == "invalid_call"
    calls, errors = parse_calls(one + " {'a': 1}" * (MAX_CALLS - 1) + " " + one)  # the 65th object is not read
    assert len(calls) == 1 and f"more than {MAX_CALLS} calls" in errors[-1]


@pytest.mark.parametrize("args", ['"weather in Paris"', '"{\\"city\\": \\"Paris"', '"[1, 2]"',
                                  '"{\\"a\\": 1} and more"', '"7"'])
def test_unparseable_string_arguments_are_not_silently_emptied(args):
    out = parse(call_block('{"name": "f", "arguments": ' + args + "}"))
    assert out.status == "invalid_call" and out.calls == []


def test_empty_string_arguments_mean_no_arguments():
    assert parse(call_block('{"name": "f", "arguments": " "}')).calls == [ToolCall("f", {})]


def test_literal_fallback_emits_no_warnings(recwarn):
    out = parse(call_block("{'name': 'f', 'arguments': {'p': 'C:\\d', 'n': 1 if 0 else 2}}"))
    parse(call_block("{'name': 'f', 'arguments': {'p': '\\d'}}"))
    parse(call_block("{'name': 'f', 'arguments': {'x': 1 is 1}}"))
    assert out.calls == []  # a conditional expression is not a literal
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("think", ["I will use <tool_call> next", "no <response> yet, first a <tool_call>",
                                   "a <subtask> is not needed, </result> neither"])
def test_a_tag_named_inside_a_block_is_text(think):
    out = parse(f'<think>{think}</think><tool_call>{{"name": "f", "arguments": {{"a": 1}}}}</tool_call>')
    assert out.status == "ok", out.errors
    assert (out.think, out.calls, out.tags) == (think, [F], ["think", "tool_call"])


def test_a_tag_named_inside_a_block_that_never_closes_is_truncated():
    out = parse("<think>I will use <tool_call> next")
    assert out.status == "truncated" and out.think == "I will use <tool_call> next"


def test_raw_newlines_inside_json_strings_are_kept():
    out = parse(call_block('{"name": "write", "arguments": {"text": "line 1\nline 2\tend"}}'))
    assert out.status == "ok" and out.calls == [ToolCall("write", {"text": "line 1\nline 2\tend"})]
    out = parse(call_block('{"name": "write", "arguments": {"text": "a\nb",}}'))  # with a repair too
    assert out.calls == [ToolCall("write", {"text": "a\nb"})]


@pytest.mark.parametrize("depth", [65, 490, 990])
def test_arguments_nested_past_the_depth_cap_are_not_a_call(depth):
    deep = '{"a": ' * depth + "1" + "}" * depth  # `depth` levels, the arguments object the first
    out = parse_output(f'<tool_call>{{"name": "f", "arguments": {deep}}}</tool_call>')
    assert out.status == "invalid_call" and out.calls == []
    assert len(out.errors) == 1 and f"nested more than {MAX_ARGUMENT_DEPTH} levels deep (not a call)" in out.errors[0]


def test_arguments_at_the_depth_cap_are_a_call():
    deep = "[" * (MAX_ARGUMENT_DEPTH - 1) + "]" * (MAX_ARGUMENT_DEPTH - 1)
    out = parse_output(f'<tool_call>{{"name": "f", "arguments": {{"x": {deep}}}}}</tool_call>')
    assert out.status == "ok" and out.calls[0].name == "f"
