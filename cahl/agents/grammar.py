"""The grammar of each role's turn (DESIGN §9), written as llguidance Lark text.

    planner:   <think>T</think>\\n then <subtask>B</subtask> or <response>B</response>
               (under tools with rollout.subtask=calls, B of a <subtask> is STEP(; STEP)*, each
               `Call NAME with key=VALUE, ...`: the oracle's sub-task form, values typed by the schema)
    executor:  <think>T</think>\\n then <tool_call>\\nCALL(\\nCALL)*\\n</tool_call> or <result>B</result>
               (its first turn on a sub-task: the <tool_call> block only, rollout.executor_calls_first)
    flat:      <think>T</think>\\n then <tool_call>...</tool_call> or <response>B</response>

T and B are free text with no `<` that starts with a visible character (B at most
rollout.answer_tokens tokens: a small model copying a tool's error into its <result> repeats
a list until the budget ends, and one such row holds a decode batch for the whole turn) (so every tag is present,
in order, once, and non-empty: the format reward's rule, `rewards/format.py`). Under `tools` each
CALL is the JSON object `format_calls` writes, `{"name": N, "arguments": {...}}` with
json.dumps' spacing, N one of the offered tools and the arguments that tool's JSON schema:
its properties in schema order, required ones present, optional ones skippable, no other keys,
values of the declared type (enums and consts as listed). Under `protocol` a CALL is free text.

Budgets: a turn that reaches max_new_tokens must still have closed its tags. Every unbounded
piece is a lexeme whose body is always complete (free text, a string's characters) with a
`max_tokens` cap, followed by its closing literal; numbers have a bounded number of digits and
arrays a bounded length. The caps are chosen so that the longest turn the grammar admits fits the
budget (`worst_case` tokens, an upper bound: each literal counts its canonical tokens + 1, each
capped lexeme its cap). Several calls per block share the budget: one alternative per number of
calls, each with the caps at which that many fit, all decoded together (`_lines`). A tool whose shortest call cannot fit the budget is left out of the grammar
(`dropped`; the rollout counts them): raise max_new_tokens if that happens.

Why our own JSON grammar instead of llguidance's `%json`: string values must be capped in tokens
(a small model loops inside a free string until the budget ends: a call cut in half), and the
spacing must be exactly the one the SFT data is written in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from cahl.types import CahlInputError, ToolSpec

MODES = ("off", "protocol", "tools")
TEXT = r"/[^<\s][^<]*/"  # free text: no tag inside, starts with a visible character
STRING_CHARS = r'/[^"\\\x00-\x1f]*/'  # a JSON string's characters, no escapes: always a complete string body
INTEGER = r"/-?(0|[1-9][0-9]{0,9})/"  # <= 11 characters
NUMBER = r"/-?(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?([eE][-+]?[0-9]{1,2})?/"  # <= 22 characters
INTEGER_COST, NUMBER_COST = 11, 22  # tokens, at one per character (SmolLM2 and Qwen split digits)
KEY_TOKENS = 8  # cap on a key of a free-form object
# (string tokens, array items) per value, tried largest first until a call fits its share of the budget
LADDER = ((32, 8), (24, 6), (16, 4), (12, 3), (8, 2), (4, 1), (1, 1))
MANY_CALLS_LEVEL = 4  # index in LADDER: a count of calls is offered only with strings of >= 8 tokens and 2 array
#   items (SmolLM2 and Qwen split digits, so an ID or a date-time is 8-19 tokens: fewer calls keep longer caps)


@dataclass(frozen=True)
class Grammar:
    text: str  # llguidance Lark
    worst_case: int  # most tokens a turn under it can take (an upper bound, <= the budget it was built for)
    dropped: tuple[str, ...] = ()  # tools left out: even their shortest call does not fit the budget


class _Lark:
    """Rules under construction; each expression comes with its worst-case token count."""

    def __init__(self, count: Callable[[str], int]):
        self.count = count
        self.rules: dict[str, str] = {}
        self._attrs: dict[str, str] = {}  # rule -> its lexeme options, e.g. "max_tokens=16"
        self._by_body: dict[str, str] = {}

    def rule(self, body: str, stem: str, attrs: str = "") -> str:
        """The name of a rule with this body (and options): one rule per distinct body."""
        key = attrs + "|" + body
        if key not in self._by_body:
            name = f"{stem}{len(self.rules)}"
            self.rules[name] = body
            if attrs:
                self._attrs[name] = attrs
            self._by_body[key] = name
        return self._by_body[key]

    def lit(self, text: str) -> tuple[str, int]:
        return json.dumps(text), self.count(text) + 1

    def capped(self, regex: str, tokens: int, stem: str) -> tuple[str, int]:
        """A lexeme of at most `tokens` tokens (its body must match every prefix of itself)."""
        return self.rule(regex, stem, f"max_tokens={tokens}"), tokens

    def text(self) -> str:
        lines = []
        for name, body in self.rules.items():
            attrs = self._attrs.get(name)
            lines.append(f"{name}[{attrs}]: {body}" if attrs else f"{name}: {body}")
        return "\n".join(lines)


def _alternatives(parts: list[tuple[str, int]]) -> tuple[str, int]:
    if len(parts) == 1:
        return parts[0]
    return "(" + " | ".join(e for e, _ in parts) + ")", max(c for _, c in parts)


def _seq(*parts: tuple[str, int]) -> tuple[str, int]:
    return " ".join(e for e, _ in parts), sum(c for _, c in parts)


class _Values:
    """JSON values of a schema under string and array caps."""

    def __init__(self, lark: _Lark, string_tokens: int, items: int):
        self.g, self.s, self.m = lark, string_tokens, items

    def value(self, schema, depth: int = 0) -> tuple[str, int]:
        g = self.g
        if depth > 8:
            raise CahlInputError("tool schema nests more than 8 levels deep")
        if not isinstance(schema, dict) or not schema:
            return self.any(2)
        if "const" in schema:
            return g.lit(json.dumps(schema["const"], ensure_ascii=False))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return _alternatives([g.lit(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return _alternatives([self.value(s, depth + 1) for s in schema[key]])
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)] or [None]
            return _alternatives([self.value({**schema, "type": k}, depth + 1) for k in kinds])
        if kind == "string":
            return self.string()
        if kind == "integer":
            return g.rule(INTEGER, "int"), INTEGER_COST
        if kind == "number":
            return g.rule(NUMBER, "num"), NUMBER_COST
        if kind == "boolean":
            return '("true" | "false")', 2
        if kind == "null":
            return '"null"', 2
        if kind == "array":
            return self.array(schema.get("items"), schema, depth)
        if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
            return self.obj(schema, depth)
        if kind == "object":
            return self.free_object(2)
        return self.any(2)

    def string(self) -> tuple[str, int]:
        body, cost = self.g.capped(STRING_CHARS, self.s, "chars")
        return f'"\\"" {body} "\\""', cost + 2

    def array(self, items, schema: dict, depth: int) -> tuple[str, int]:
        most = self.m
        if isinstance(schema.get("maxItems"), int) and schema["maxItems"] >= 0:
            most = min(most, schema["maxItems"])
        least = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
        least = max(0, min(least, most))
        if most == 0:
            return '"[]"', 2
        item, c = self.value(items, depth + 1) if isinstance(items, dict) else self.any(1)
        more = f' ("," " " {item}){{{max(least - 1, 0)},{most - 1}}}' if most > 1 else ""
        body = f'"[" {item}{more} "]"'
        if least == 0:
            body = f'("[]" | {body})'
        return self.g.rule(body, "arr"), 2 + most * (c + 2)

    def obj(self, schema: dict, depth: int, prose: bool = False) -> tuple[str, int]:
        """Properties in schema order; required ones present, optional ones skippable; no others.
        `prose`: the pairs of a call-shaped sub-task, `key=VALUE, key=VALUE` with no braces."""
        props = list(schema["properties"].items())
        required = set(schema.get("required") or []) & {k for k, _ in props}
        g = self.g
        pairs = []
        for key, sub in props:
            k, kc = g.lit(f"{key}=" if prose else json.dumps(key, ensure_ascii=False) + ": ")
            v, vc = self.value(sub, depth + 1)
            pairs.append((f"{k} {v}", kc + vc))
        # rest[i][first]: the properties from i on; `first` = no property written yet (no comma before)
        names: dict[tuple[int, bool], str] = {}

        def rest(i: int, first: bool) -> str:
            if i == len(pairs):
                return '""'
            if (i, first) in names:
                return names[(i, first)]
            lead = ('" with " ' if prose else "") if first else '", " '
            take = f"{lead}{pairs[i][0]} {rest(i + 1, False)}"
            body = take if props[i][0] in required else f"({take} | {rest(i + 1, first)})"
            names[(i, first)] = g.rule(body, "props")
            return names[(i, first)]

        cost = sum(c + 2 for _, c in pairs)
        if prose:  # " with " before the first pair, none when no pair is written ("Call NAME")
            return rest(0, True), cost + 2
        return f'"{{" {rest(0, True)} "}}"', cost + 2

    def free_object(self, depth: int) -> tuple[str, int]:
        key, kc = self.g.capped(STRING_CHARS, KEY_TOKENS, "key")
        value, vc = self.any(depth - 1)
        pair = f'"\\"" {key} "\\": " {value}'
        more = f' ("," " " {pair}){{0,{self.m - 1}}}' if self.m > 1 else ""
        body = f'("{{}}" | "{{" {pair}{more} "}}")'
        return self.g.rule(body, "obj"), 2 + self.m * (kc + 4 + vc + 2)

    def any(self, depth: int) -> tuple[str, int]:
        scalars = [self.string(), (self.g.rule(NUMBER, "num"), NUMBER_COST), ('("true" | "false")', 2), ('"null"', 2)]
        if depth <= 0:
            return _alternatives(scalars)
        inner, c = self.any(depth - 1)
        more = f' ("," " " {inner}){{0,{self.m - 1}}}' if self.m > 1 else ""
        array = self.g.rule(f'("[]" | "[" {inner}{more} "]")', "arr")
        return _alternatives(scalars + [(array, 2 + self.m * (c + 2)), self.free_object(depth)])


def _name_and_args(lark: _Lark, tool: ToolSpec, string_tokens: int, items: int,
                   prose: bool) -> tuple[str, tuple[str, int] | None]:
    """A tool's name and the expression of its arguments (None: it takes none), shared by the JSON
    call and the call-shaped sub-task."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise CahlInputError(f"tool schema: expected a non-empty string 'name', got {name!r}")
    params = tool.get("parameters") or {}
    if isinstance(params, dict) and isinstance(params.get("properties"), dict) and params["properties"]:
        return name, _Values(lark, string_tokens, items).obj(params, 0, prose=prose)
    return name, None


def _call(lark: _Lark, tool: ToolSpec, string_tokens: int, items: int) -> tuple[str, int]:
    name, args = _name_and_args(lark, tool, string_tokens, items, prose=False)
    head = lark.lit('{"name": ' + json.dumps(name, ensure_ascii=False) + ', "arguments": ')
    return _seq(head, args or lark.lit("{}"), lark.lit("}"))


def _subtask_call(lark: _Lark, tool: ToolSpec, string_tokens: int, items: int) -> tuple[str, int]:
    """One step as the oracle writes it (train/oracle.py `_describe`): `Call NAME with key=VALUE, ...`,
    each VALUE the JSON of the tool's schema (so its type shows), required keys present; steps are
    joined by `; `."""
    name, args = _name_and_args(lark, tool, string_tokens, items, prose=True)
    head = lark.lit(f"Call {name}")
    return _seq(head, args) if args else head


def turn_grammar(role: str, tools: list[ToolSpec], mode: str, max_new_tokens: int, think_tokens: int,
                 max_calls: int, count: Callable[[str], int], calls_only: bool = False,
                 answer_tokens: int = 0, subtask_calls: bool = False) -> Grammar | None:
    """The grammar of one `role` turn over `tools` (None when mode is off). `count(text)`: tokens of
    `text` in the policy's tokenizer (for the budget). `calls_only` (executor): the turn must be a
    <tool_call> block, no <result>, wherever a call of some tool fits (rollout.executor_calls_first).
    `answer_tokens`: most tokens inside a <subtask>, <response> or <result> (0: the rest of the turn).
    `subtask_calls` (planner, under tools): a <subtask> is one or more call-shaped steps, `Call NAME with
    key=VALUE, ...` over the offered tools with schema-typed values (rollout.subtask)."""
    if mode not in MODES:
        raise CahlInputError(f"rollout.constrain: expected one of {list(MODES)}, got {mode!r}")
    if role not in ("planner", "executor", "flat"):
        raise CahlInputError(f"turn_grammar: unknown role {role!r}")
    if mode == "off":
        return None
    base = _Lark(count)
    think, think_cost = base.capped(TEXT, think_tokens, "think")
    head = _seq(base.lit("<think>"), (think, think_cost), base.lit("</think>\n"))
    room = max_new_tokens - head[1]
    answer_tag = {"planner": "subtask", "executor": "result", "flat": "response"}[role]
    tags = [answer_tag, "response"] if role == "planner" else [answer_tag]
    text_parts = []
    for tag in tags:
        open_, close = base.lit(f"<{tag}>"), base.lit(f"</{tag}>")
        cap = room - open_[1] - close[1]
        if answer_tokens > 0:
            cap = min(cap, answer_tokens)
        if cap < 1:
            raise CahlInputError(f"rollout.max_new_tokens={max_new_tokens} leaves no room for a <{tag}> after a "
                                 f"<think> of up to {think_tokens} tokens; raise max_new_tokens or lower think_tokens")
        text_parts.append(_seq(open_, base.capped(TEXT, cap, "text"), close))
    if role == "planner":
        dropped = ()
        if mode == "tools" and subtask_calls and tools:
            open_, close = base.lit("<subtask>"), base.lit("</subtask>")
            cap = room - open_[1] - close[1]  # not answer_tokens: the steps' strings and arrays are capped
            steps, dropped = _lines(base, tools, cap, max_calls, base.lit("; "), _subtask_call)
            if steps is not None:
                text_parts[0] = _seq(open_, steps, close)
        return _finish(base, head, _alternatives(text_parts), max_new_tokens, dropped)
    open_, close, newline = base.lit("<tool_call>\n"), base.lit("\n</tool_call>"), base.lit("\n")
    calls_room = room - open_[1] - close[1]
    if mode == "protocol":
        cap = max(calls_room, 1)
        calls = _seq(open_, base.capped(TEXT, cap, "text"), close)
        return _finish(base, head, calls if calls_only else _alternatives([calls] + text_parts), max_new_tokens)
    if not tools:
        return _finish(base, head, _alternatives(text_parts), max_new_tokens)
    lines, dropped = _lines(base, tools, calls_room, max_calls, newline, _call)
    if lines is None:  # not even one call fits the budget: only the text answer is left
        return _finish(base, head, _alternatives(text_parts), max_new_tokens, dropped)
    calls = _seq(open_, lines, close)
    return _finish(base, head, calls if calls_only else _alternatives([calls] + text_parts), max_new_tokens, dropped)


def _lines(lark: _Lark, tools: list[ToolSpec], room: int, max_calls: int, sep: tuple[str, int],
           build) -> tuple[tuple[str, int] | None, tuple[str, ...]]:
    """1..max_calls calls of the offered tools joined by `sep` within `room` tokens (`build`: one
    call's expression, `_call` or `_subtask_call`), and the tools left out (not even one call fits).

    One alternative per number of calls j, each call of it with the longest strings and arrays
    (LADDER) at which j of them fit the room; several calls need strings of at least
    LADDER[MANY_CALLS_LEVEL]. The alternatives are decoded together (llguidance keeps every one
    alive whose caps the text so far meets), so a turn can make one call whose string is an ID of
    30 tokens, or four calls that each name a city: what a string's length rules out is only the
    counts under which it could not have fitted."""
    dropped: tuple[str, ...] = ()
    options = []
    for j in range(1, max(1, max_calls) + 1):
        share = (room - (j - 1) * sep[1]) // j
        levels = {i: _fit(lark.count, t, share, build) for i, t in enumerate(tools)}
        if j == 1:
            dropped = tuple(str(tools[i].get("name")) for i, level in levels.items() if level is None)
        else:
            levels = {i: level for i, level in levels.items() if level is not None and level <= MANY_CALLS_LEVEL}
        fitting = [i for i, level in levels.items() if level is not None]
        if not fitting:
            break
        line = _alternatives([build(lark, tools[i], *LADDER[levels[i]]) for i in fitting])
        body = " ".join([line[0]] + [f"{sep[0]} {line[0]}"] * (j - 1))
        options.append((lark.rule(body, "calls"), j * line[1] + (j - 1) * sep[1]))
    if not options:
        return None, dropped
    return _alternatives(options), dropped


def _fit(count, tool: ToolSpec, share: int, build=_call) -> int | None:
    """The first LADDER level at which a call of `tool` costs <= share tokens, or None."""
    for level, (s, m) in enumerate(LADDER):
        if build(_Lark(count), tool, s, m)[1] <= share:
            return level
    return None


def _finish(lark: _Lark, head: tuple[str, int], body: tuple[str, int], budget: int,
            dropped: tuple[str, ...] = ()) -> Grammar:
    start = _seq(head, body)
    text = f"start: {start[0]}\n{lark.text()}\n"
    return Grammar(text, start[1], dropped)
