"""Parsing model turns: tags, and tool calls inside <tool_call>.

Small models write almost-JSON: code fences, single quotes, Python literals, trailing commas,
`parameters` instead of `arguments`, several objects on one line, a list of calls, arguments as a
JSON string. All of that is accepted. Nothing here raises on model text and nothing is evaluated:
JSON goes through `json`, and Python-literal syntax through `ast.literal_eval`, which builds only
literals; of those only JSON values are kept (tuples become lists; bytes, sets, complex numbers
and non-string keys make the fragment invalid), so every parsed call can be written back as JSON.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
import warnings

from cahl.types import ParsedOutput, ToolCall

TAGS = ("think", "tool_call", "response", "subtask", "result")
ONCE_TAGS = TAGS  # each tag may appear at most once per turn (format rewards rely on it)
MAX_LITERAL_CHARS = 20_000  # literal_eval on bigger text risks deep recursion / slow parsing
MAX_CALLS = 64
# Containers nested in one call's arguments (the arguments object is level 1). JSON parses ~990
# levels, but forking an env (deepcopy), dumping a trajectory (asdict) and comparing values recurse
# once per level each, from inside other frames: past this cap the arguments are not a call.
MAX_ARGUMENT_DEPTH = 64

_TAG_RE = re.compile(r"<(/?)(" + "|".join(TAGS) + r")>")
_FENCE_RE = re.compile(r"```[a-zA-Z]*")
_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines/tabs inside strings are kept
_TRAILING_COMMA = re.compile(r",\s*(?=[}\]])")


def parse_output(text: str) -> ParsedOutput:
    """Split one model turn into its tags; parse calls. Status names the first problem found."""
    out = ParsedOutput(status="ok")
    if not isinstance(text, str):
        out.status, out.errors = "no_tags", [f"expected text, got {type(text).__name__}"]
        return out
    blocks: dict[str, str] = {}
    matches = list(_TAG_RE.finditer(text))
    closes: dict[str, list[int]] = {name: [] for name in TAGS}
    for m in matches:
        if m.group(1):
            closes[m.group(2)].append(m.start())
    open_tag, open_at, close_at = None, 0, -1
    for m in matches:
        closing, name = m.group(1) == "/", m.group(2)
        if not closing and open_tag is None:
            open_tag, open_at = name, m.end()
            close_at = _first_after(closes[name], m.end())
            out.tags.append(name)
        elif closing and name == open_tag:
            if name in blocks:
                _flag(out, "repeated_tag", f"<{name}> appears more than once")
            else:
                blocks[name] = text[open_at:m.start()].strip()
            open_tag = None
        elif not closing and _is_mention(name, open_tag, m.end(), close_at, closes):
            continue  # e.g. "<think>I will use <tool_call> next</think>": text of the open block
        elif not closing:  # a block nested in another one, or an outer block never closed
            _flag(out, "truncated", f"<{name}> opened inside <{open_tag}>")
    if open_tag is not None:
        _flag(out, "truncated", f"<{open_tag}> is never closed")
        if open_tag not in blocks:
            blocks[open_tag] = text[open_at:].strip()
    if not out.tags:
        out.status = "no_tags"
        return out
    out.think = blocks.get("think")
    out.response = blocks.get("response")
    out.subtask = blocks.get("subtask")
    out.result = blocks.get("result")
    if "tool_call" in blocks:
        out.calls, errors = parse_calls(blocks["tool_call"])
        if errors or not out.calls:
            _flag(out, "invalid_call", "; ".join(errors) or "<tool_call> holds no call")
    return out


def _first_after(positions: list[int], pos: int) -> int:
    """The first of the sorted `positions` at or after `pos`, or -1."""
    k = bisect.bisect_left(positions, pos)
    return positions[k] if k < len(positions) else -1


def _is_mention(name: str, open_tag: str, pos: int, close_at: int, closes: dict[str, list[int]]) -> bool:
    """Is <name> at `pos`, inside the open block <open_tag>, just a word of that block's text?

    Yes when the open block closes later and <name> is not closed before that: a model that writes
    "<tool_call>" inside its <think> is talking about the tag. A complete <name>...</name> block
    inside another block, or any tag inside a block that never closes, is a structural error.
    """
    if name == open_tag or close_at < 0:
        return False
    inner_close = _first_after(closes[name], pos)
    return inner_close < 0 or inner_close > close_at


def _flag(out: ParsedOutput, status: str, error: str) -> None:
    out.errors.append(error)
    if out.status == "ok":
        out.status = status


def parse_calls(block: str) -> tuple[list[ToolCall], list[str]]:
    """All calls found in a <tool_call> block, and one error string per unparseable fragment.

    Code fences (```json ... ```) are ignored between call objects, never inside them, so a
    string value holding ``` is kept. At most MAX_CALLS objects (calls or not) are read; more is an
    error.
    """
    calls: list[ToolCall] = []
    errors: list[str] = []
    i = examined = 0
    while i < len(block):
        start = _next_open(block, i)
        junk = _outside_text(block[i:start] if start >= 0 else block[i:])
        if junk:
            errors.append(f"text outside a call object: {junk[:80]!r}")
        if start < 0:
            break
        value, end = _decode_lenient(block, start)
        if end <= start:
            if _bracket_depth(block, start) > MAX_ARGUMENT_DEPTH:  # json gives up near Python's recursion limit
                errors.append(f"brackets nested more than {MAX_ARGUMENT_DEPTH} levels deep (not a call): "
                              f"{block[start:start + 40]!r}")
            else:
                errors.append(f"not valid JSON: {block[start:start + 80]!r}")
            break
        items = value if isinstance(value, list) else [value]
        for item in items or [None]:  # an empty list counts as one object read
            if examined == MAX_CALLS:  # also bounds the work on a block of many non-call objects
                errors.append(f"more than {MAX_CALLS} calls: only the first {MAX_CALLS} objects are read")
                return calls, errors
            examined += 1
            if not items:
                errors.append("an empty list (not a call)")
                continue
            call = to_call(item)
            if call is None:
                errors.append(f"not a call object (need name and arguments): {str(item)[:80]!r}")
            elif nesting_depth(call.arguments, MAX_ARGUMENT_DEPTH) > MAX_ARGUMENT_DEPTH:
                errors.append(f"arguments of {call.name[:80]!r} nested more than {MAX_ARGUMENT_DEPTH} levels deep "
                              "(not a call)")
            else:
                calls.append(call)
        i = end
    return calls, errors


def nesting_depth(value, limit: int) -> int:
    """Levels of lists and dicts in `value` (a scalar is 0, {} is 1), counted without recursion and
    only up to limit + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _outside_text(text: str) -> str:
    """What is left between call objects once fences, separators and whitespace are removed."""
    return _FENCE_RE.sub(" ", text).strip().strip(",;").strip()


def _next_open(text: str, i: int) -> int:
    a, b = text.find("{", i), text.find("[", i)
    return min(x for x in (a, b) if x >= 0) if a >= 0 or b >= 0 else -1


def _decode_lenient(text: str, start: int):
    """(value, end) of the JSON-ish value starting at `start`; end == start when none parses.

    ValueError covers json's errors and integers over Python's digit limit; the literal_eval
    result must be a JSON value (`_as_json`).
    """
    try:
        return _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        pass
    end = _matching_bracket(text, start)
    if end < 0:
        return None, start
    candidate = text[start:end]
    try:
        return json.loads(_drop_trailing_commas(candidate), strict=False), end
    except (ValueError, RecursionError):
        pass
    if len(candidate) <= MAX_LITERAL_CHARS:
        try:
            with warnings.catch_warnings():  # invalid escapes etc. in model text are data, not our bug
                warnings.simplefilter("ignore")
                return _as_json(ast.literal_eval(_json_words_to_python(candidate))), end
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None, start


def _as_json(value):
    """`value` as a JSON value (tuples become lists); ValueError for bytes, sets, complex numbers,
    non-string keys and anything else json cannot write."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("object keys must be strings")
        return {k: _as_json(v) for k, v in value.items()}
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _scan(text: str, start: int = 0):
    """Yield (index, char, quoted) from `start`: quoted is True inside a '...' or "..." string
    (its closing quote included), so callers can act on structure outside strings only."""
    quote, escaped = None, False
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            yield j, ch, True
        else:
            if ch in "\"'":
                quote = ch
            yield j, ch, False


def _bracket_depth(text: str, start: int) -> int:
    """The deepest bracket nesting from `start` to where its first bracket closes, outside quoted strings."""
    depth = deepest = 0
    for _, ch, quoted in _scan(text, start):
        if quoted:
            continue
        if ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                break
    return deepest


def _drop_trailing_commas(text: str) -> str:
    """Remove commas right before a closing bracket (`[1, 2,]`), outside quoted strings only."""
    return "".join(ch for j, ch, quoted in _scan(text)
                   if quoted or not (ch == "," and _TRAILING_COMMA.match(text, j)))


def _matching_bracket(text: str, start: int) -> int:
    """Index after the bracket closing text[start], respecting quoted strings; -1 if none."""
    depth = 0
    for j, ch, quoted in _scan(text, start):
        if quoted:
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _json_words_to_python(text: str) -> str:
    """true/false/null -> True/False/None outside quoted strings, so literal_eval accepts them."""
    mapping = {"true": "True", "false": "False", "null": "None"}
    out, word = [], []
    for _, ch, quoted in _scan(text):
        if not quoted and ch.isalpha():
            word.append(ch)
            continue
        if word:
            w = "".join(word)
            out.append(mapping.get(w, w))
            word.clear()
        out.append(ch)
    if word:
        w = "".join(word)
        out.append(mapping.get(w, w))
    return "".join(out)


def to_call(item) -> ToolCall | None:
    """A call from {"name", "arguments"|"parameters"} (arguments may be a JSON string) or {"fn": {...}}.

    None when arguments are neither an object nor a string holding exactly one object: turning
    them into {} would drop what the model passed without a word.
    """
    if not isinstance(item, dict):
        return None
    if "name" in item and isinstance(item["name"], str):
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            args = _arguments_from_string(args)
            if args is None:
                return None
        if args is None:
            args = {}
        return ToolCall(item["name"], args) if isinstance(args, dict) and item["name"] else None
    if len(item) == 1:  # BFCL style {"fn_name": {"arg": value}}
        (name, args), = item.items()
        if isinstance(name, str) and name and isinstance(args, dict):
            return ToolCall(name, args)
    return None


def _arguments_from_string(text: str) -> dict | None:
    """Arguments written as a string: the whole string must be one JSON-ish object ("" = none)."""
    text = text.strip()
    if not text:
        return {}
    value, end = _decode_lenient(text, 0)
    return value if end == len(text) and isinstance(value, dict) else None


def format_calls(calls: list[ToolCall]) -> str:
    """The canonical text of calls inside <tool_call>: one JSON object per line."""
    return "\n".join(json.dumps(c.to_json(), ensure_ascii=False) for c in calls)
