"""Parsing model turns: tags, and tool calls inside <tool_call>.

Small models write almost-JSON: code fences, single quotes, Python literals, trailing commas,
`parameters` instead of `arguments`, several objects on one line, a list of calls, arguments as a
JSON string. All of that is accepted. Nothing here raises on model text and nothing is evaluated:
JSON goes through `json`, and Python-literal syntax through `ast.literal_eval`, which builds only
literals (strings, numbers, tuples, lists, dicts, booleans, None).
"""

from __future__ import annotations

import ast
import json
import re

from cahl.types import ParsedOutput, ToolCall

TAGS = ("think", "tool_call", "response", "subtask", "result")
ONCE_TAGS = TAGS  # each tag may appear at most once per turn (format rewards rely on it)
MAX_LITERAL_CHARS = 20_000  # literal_eval on bigger text risks deep recursion / slow parsing
MAX_CALLS = 64

_TAG_RE = re.compile(r"<(/?)(" + "|".join(TAGS) + r")>")
_FENCE_RE = re.compile(r"```[a-zA-Z]*\n?|```")
_DECODER = json.JSONDecoder()


def parse_output(text: str) -> ParsedOutput:
    """Split one model turn into its tags; parse calls. Status names the first problem found."""
    out = ParsedOutput(status="ok")
    if not isinstance(text, str):
        out.status, out.errors = "no_tags", [f"expected text, got {type(text).__name__}"]
        return out
    blocks: dict[str, str] = {}
    pos, open_tag, open_at = 0, None, 0
    for m in _TAG_RE.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing and open_tag is None:
            open_tag, open_at = name, m.end()
            out.tags.append(name)
        elif closing and name == open_tag:
            if name in blocks:
                _flag(out, "repeated_tag", f"<{name}> appears more than once")
            else:
                blocks[name] = text[open_at:m.start()].strip()
            open_tag = None
        elif not closing:  # a tag opened inside another one: the outer is never closed properly
            _flag(out, "truncated", f"<{name}> opened inside <{open_tag}>")
        pos = m.end()
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


def _flag(out: ParsedOutput, status: str, error: str) -> None:
    out.errors.append(error)
    if out.status == "ok":
        out.status = status


def parse_calls(block: str) -> tuple[list[ToolCall], list[str]]:
    """All calls found in a <tool_call> block, and one error string per unparseable fragment."""
    text = _FENCE_RE.sub("\n", block)
    calls: list[ToolCall] = []
    errors: list[str] = []
    i = 0
    while i < len(text) and len(calls) < MAX_CALLS:
        start = _next_open(text, i)
        if start < 0:
            rest = text[i:].strip().strip(",;")
            if rest:
                errors.append(f"text outside a call object: {rest[:80]!r}")
            break
        junk = text[i:start].strip().strip(",;")
        if junk:
            errors.append(f"text outside a call object: {junk[:80]!r}")
        value, end = _decode_lenient(text, start)
        if end <= start:
            errors.append(f"not valid JSON: {text[start:start + 80]!r}")
            break
        for item in value if isinstance(value, list) else [value]:
            call = to_call(item)
            if call is None:
                errors.append(f"not a call object (need name and arguments): {str(item)[:80]!r}")
            else:
                calls.append(call)
        i = end
    return calls, errors


def _next_open(text: str, i: int) -> int:
    a, b = text.find("{", i), text.find("[", i)
    return min(x for x in (a, b) if x >= 0) if a >= 0 or b >= 0 else -1


def _decode_lenient(text: str, start: int):
    """(value, end) of the JSON-ish value starting at `start`; end == start when none parses."""
    try:
        return _DECODER.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError):
        pass
    end = _matching_bracket(text, start)
    if end < 0:
        return None, start
    candidate = text[start:end]
    repaired = _TRAILING_COMMA.sub(r"\1", candidate)
    try:
        return json.loads(repaired), end
    except (json.JSONDecodeError, RecursionError):
        pass
    if len(candidate) <= MAX_LITERAL_CHARS:
        try:
            return ast.literal_eval(_json_words_to_python(candidate)), end
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None, start


_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _matching_bracket(text: str, start: int) -> int:
    """Index after the bracket closing text[start], respecting quoted strings; -1 if none."""
    depth, quote, escaped = 0, None, False
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _json_words_to_python(text: str) -> str:
    """true/false/null -> True/False/None outside quoted strings, so literal_eval accepts them."""
    out, quote, escaped, word = [], None, False, []
    mapping = {"true": "True", "false": "False", "null": "None"}

    def flush():
        if word:
            w = "".join(word)
            out.append(mapping.get(w, w))
            word.clear()

    for ch in text:
        if quote:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch.isalpha():
            word.append(ch)
        else:
            flush()
            if ch in "\"'":
                quote = ch
            out.append(ch)
    flush()
    return "".join(out)


def to_call(item) -> ToolCall | None:
    """A call from {"name", "arguments"|"parameters"} (arguments may be a JSON string) or {"fn": {...}}."""
    if not isinstance(item, dict):
        return None
    if "name" in item and isinstance(item["name"], str):
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            value, end = _decode_lenient(args, 0) if args.strip().startswith("{") else (None, 0)
            args = value if end > 0 else None
        if args is None:
            args = {}
        return ToolCall(item["name"], args) if isinstance(args, dict) and item["name"] else None
    if len(item) == 1:  # BFCL style {"fn_name": {"arg": value}}
        (name, args), = item.items()
        if isinstance(name, str) and name and isinstance(args, dict):
            return ToolCall(name, args)
    return None


def format_calls(calls: list[ToolCall]) -> str:
    """The canonical text of calls inside <tool_call>: one JSON object per line."""
    return "\n".join(json.dumps(c.to_json(), ensure_ascii=False) for c in calls)
