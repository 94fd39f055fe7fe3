"""BFCL's AST checker, re-implemented from the official rules so that our scores are BFCL scores.

The official checker (gorilla BFCL: `bfcl/eval_checker/ast_eval/ast_checker.py` in `nvidia-bfcl`
26.3 for v3, `bfcl_eval/eval_checker/ast_eval/...` in `bfcl-eval` 2026.3.23 for v4; the two are
the same rules) decides whether one model answer, already decoded into BFCL's call form
`[{"fn_name": {"arg": value}}]`, matches the possible answers `[{"fn_name": {"arg": [allowed
values]}}]`. We reproduce its verdicts and its error_type strings exactly, quirks included (they
are what the leaderboard measures). `python3 benchmarks/bfcl_checker_agreement.py` runs both
checkers on answers generated to probe every rule: 357,773 answers over the 26 AST categories of
v3 and v4, 0 disagreements on (valid, error_type).

The rules, in the order the official checker applies them:
- irrelevance categories pass iff the answer holds no call; live_relevance iff it holds one;
- the answer must be a list of single-key dicts whose value is a dict of arguments;
- parallel categories: same number of calls, matched to possible answers in any order (greedy:
  each possible answer takes the first still-unmatched call that passes); multiple: one call,
  checked against the function the possible answer names; otherwise exactly one call;
- one call: name equal to the function's (with "." written "_" for models whose API forbids dots),
  required arguments present, no argument outside the docs or the possible answer, each value of
  the documented type (Python int accepted for float; list items checked one level deep; a value
  of the possible answer's own type is a "variable" compared verbatim), strings compared after
  lower-casing and removing spaces and `,./-_*^`, dicts and lists of dicts key by key, and every
  possible-answer argument present unless "" is among its allowed values;
- Java and JavaScript values must be strings holding source text; they are converted with the
  official (regex-based) rules before the checks above. Where those regexes backtrack
  catastrophically, their matches are computed directly (same results, linear time), and every
  check runs under a time limit (CHECK_TIME_LIMIT_S): past it the answer is invalid, TIMEOUT_ERROR.
"""

from __future__ import annotations

import bisect
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from cahl.data import bfcl
from cahl.paths import iter_jsonl, require_keys
from cahl.types import CahlInputError

LANGUAGES = ("Python", "Java", "JavaScript")

# BFCL type name -> the Python type a (converted) value must have, per language.
PYTHON_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "any": str,
}
JAVA_TYPES: dict[str, type] = {
    "byte": int, "short": int, "integer": int, "float": float, "double": float, "long": int,
    "boolean": bool, "char": str, "Array": list, "ArrayList": list, "Set": set, "HashMap": dict,
    "Hashtable": dict, "Queue": list, "Stack": list, "String": str, "any": str,
}
JS_TYPES: dict[str, type] = {
    "String": str, "integer": int, "float": float, "Bigint": int, "Boolean": bool,
    "dict": dict, "array": list, "any": str,
}
_TYPES_BY_LANGUAGE = {"Python": PYTHON_TYPES, "Java": JAVA_TYPES, "JavaScript": JS_TYPES}
_ITEM_TYPED = {"Python": ("array", "tuple"), "Java": ("Array", "ArrayList"), "JavaScript": ("array",)}

# Characters the official string comparison ignores: "April 1, 2024" == "april 1 2024".
_IGNORED_CHARS = re.compile(r"[ ,./\-_*^]")


class Verdict(NamedTuple):
    valid: bool
    error_type: str | None
    errors: list[str]


_OK = Verdict(True, None, [])


def _fail(error_type: str, message: str) -> Verdict:
    return Verdict(False, error_type, [message])


# ---------------------------------------------------------------------------------------------
# Public API


def check_calls(
    category: str,
    functions: list[dict],
    possible_answer: list[dict] | None,
    calls: Any,
    language: str,
    *,
    underscore_to_dot: bool = False,
    time_limit_s: float | None = None,
) -> tuple[bool, str | None, str]:
    """Official BFCL verdict for one decoded answer: (valid, error_type or None, message).

    `underscore_to_dot` is BFCL's flag for models whose API cannot carry "." in a function name
    (OpenAI, Mistral, Gemini FC): the expected name then has "." replaced by "_", so only the
    underscored name passes. Off by default: our agents see and emit the original names.
    A check that runs past `time_limit_s` (default CHECK_TIME_LIMIT_S) is invalid, TIMEOUT_ERROR.
    """
    if language not in LANGUAGES:
        raise CahlInputError(f"language {language!r} is not one of {list(LANGUAGES)}")
    verdict = _check_in_time(category, functions, possible_answer, calls, language, underscore_to_dot, time_limit_s)
    return verdict.valid, verdict.error_type, " ".join(verdict.errors)


def score_predictions(version: str, path: Path) -> list[dict]:
    """Score a JSONL file of `{"id", "category", "calls"}` lines against BFCL `version`.

    Returns `[{"id", "category", "valid", "error_type"}]` in input order. Only AST categories can
    be scored this way (multi-turn answers are judged by executing them, not by this checker).
    Every decoded answer gets a verdict, as in the official runner: one not in call form (`[{}]`,
    a string, a bare object) holds no call, which is right on irrelevance items and wrong on
    live_relevance items, and elsewhere is `ast_decoder:decoder_wrong_output_format`.
    """
    bfcl.check_version(version)
    path = Path(path)
    if not path.is_file():
        raise CahlInputError(f"predictions file {path} does not exist")
    tasks: dict[str, dict[str, Any]] = {}
    results = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        require_keys(obj, ["id", "category", "calls"], where)
        try:
            category = bfcl.canonical_category(version, obj["category"])
        except CahlInputError as e:
            raise CahlInputError(f"{where}: {e}") from e
        if category not in bfcl.AST_CATEGORIES[version]:
            raise CahlInputError(
                f"{where}: category {category!r} is multi-turn; only the AST categories "
                f"{bfcl.AST_CATEGORIES[version]} are scored by the AST checker"
            )
        if category not in tasks:
            tasks[category] = {t.id: t for t in bfcl.load_bfcl(version, category)}
        task = tasks[category].get(obj["id"])
        if task is None:
            example = next(iter(tasks[category]))
            raise CahlInputError(
                f"{where}: id {obj['id']!r} is not in BFCL {version} category {category!r} "
                f"(its ids look like {example!r})"
            )
        verdict = _check_in_time(category, task.meta["functions"], task.meta["possible_answer"], obj["calls"],
                                 task.meta["language"], False, None)
        results.append({"id": task.id, "category": category, "valid": verdict.valid, "error_type": verdict.error_type})
    return results


# ---------------------------------------------------------------------------------------------
# The time limit. The converters below are linear, but they are regex rules over model-written
# text: a rule that one day backtracks must cost one wrong verdict, not a hung evaluation.

CHECK_TIME_LIMIT_S = 2.0  # per checked answer; the slowest of 357,773 agreement answers takes ~1 ms
TIMEOUT_ERROR = "checker_error:timeout"  # not an official BFCL error type: the official checker has no limit


class _CheckTimeout(Exception):
    pass


def _check_in_time(category, functions, possible_answer, calls, language, underscore_to_dot, time_limit_s) -> Verdict:
    limit = CHECK_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    try:
        with _time_limit(limit):
            return _check(category, functions, possible_answer, calls, language, underscore_to_dot)
    except _CheckTimeout:
        return _fail(TIMEOUT_ERROR, f"The check took longer than {limit:g} s and was stopped.")


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _CheckTimeout inside the block after `seconds` (SIGALRM; the regex engine checks for
    signals while it matches). Only the main thread can take signals: elsewhere the block runs
    without a limit. A timer already running (pytest-timeout's) is put back with its time left."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise _CheckTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)
            if outer_delay:
                left = outer_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), outer_interval)


# ---------------------------------------------------------------------------------------------
# Dispatch by category


def is_call_list(calls: Any) -> bool:
    """BFCL's decoded-answer shape: a list of `{name: {arg: value}}` dicts (an empty list is one)."""
    return type(calls) is list and all(
        type(c) is dict and len(c) == 1 and type(next(iter(c.values()))) is dict for c in calls
    )


def _holds_no_call(calls: Any) -> bool:
    """BFCL's `is_empty_output`: not in call shape (which `[{}]` is not: its one dict has no key), or []."""
    return not is_call_list(calls) or len(calls) == 0


def _check(category, functions, possible_answer, calls, language, underscore_to_dot) -> Verdict:
    if "irrelevance" in category:
        if _holds_no_call(calls):
            return _OK
        return _fail("irrelevance_error:decoder_success", "Expected no function call, got one.")
    if "relevance" in category:
        if not _holds_no_call(calls):
            return _OK
        return _fail("relevance_error:decoder_failed", "Expected at least one function call, got none.")
    if not is_call_list(calls):
        return _fail(
            "ast_decoder:decoder_wrong_output_format",
            "Answer is not a list of {function_name: {argument: value}} calls.",
        )
    if possible_answer is None:
        raise CahlInputError(f"category {category!r} needs a possible answer to check against; got None")
    if "parallel" in category:
        return _check_parallel(functions, calls, possible_answer, language, underscore_to_dot)
    if "multiple" in category:
        if len(calls) != len(possible_answer):
            return _fail("multiple_function_checker:wrong_count", "Wrong number of functions.")
        function = _find_function(functions, next(iter(possible_answer[0])))
        return _check_call(function, calls[0], possible_answer[0], language, underscore_to_dot)
    if len(calls) != 1:
        return _fail("simple_function_checker:wrong_count", "Wrong number of functions.")
    return _check_call(functions[0], calls[0], possible_answer[0], language, underscore_to_dot)


def _find_function(functions: list[dict], name: str) -> dict:
    for function in functions:
        if function["name"] == name:
            return function
    raise CahlInputError(f"possible answer names function {name!r}, absent from the function docs")


def _check_parallel(functions, calls, possible_answer, language, underscore_to_dot) -> Verdict:
    """Order-free matching, greedy like the official checker (not a maximum matching)."""
    if len(calls) != len(possible_answer):
        return _fail("parallel_function_checker_no_order:wrong_count", "Wrong number of functions.")
    matched: set[int] = set()
    for i, answer in enumerate(possible_answer):
        function = _find_function(functions, next(iter(answer)))
        errors = []
        for j, call in enumerate(calls):
            if j in matched:
                continue
            verdict = _check_call(function, call, answer, language, underscore_to_dot)
            if verdict.valid:
                matched.add(j)
                break
            errors.append(f"call {j}: {' '.join(verdict.errors)}")
        else:
            unmatched = [j for j in range(len(calls)) if j not in matched]
            return Verdict(
                False,
                "parallel_function_checker_no_order:cannot_find_match",
                [f"No call among {unmatched} matches possible answer {i}."] + errors,
            )
    return _OK


# ---------------------------------------------------------------------------------------------
# One call against one possible answer


def _check_call(function: dict, call: dict, answer: dict, language: str, underscore_to_dot: bool) -> Verdict:
    allowed_by_param = next(iter(answer.values()))
    name = function["name"].replace(".", "_") if underscore_to_dot else function["name"]
    documented = function["parameters"]["properties"]
    if name not in call:
        return _fail("simple_function_checker:wrong_func_name", f"Function name {name!r} not found in model output.")
    arguments = call[name]
    for param in function["parameters"]["required"]:
        if param not in arguments:
            return _fail("simple_function_checker:missing_required", f"Missing required parameter: {param!r}.")

    for param, value in arguments.items():
        if param not in documented or param not in allowed_by_param:
            return _fail("simple_function_checker:unexpected_param", f"Unexpected parameter: {param!r}.")
        verdict = _check_argument(param, value, allowed_by_param[param], documented[param], language, function["name"])
        if not verdict.valid:
            return verdict

    for param, allowed in allowed_by_param.items():
        if param not in arguments and "" not in allowed:
            return _fail(
                "simple_function_checker:missing_optional",
                f"Optional parameter {param!r} not provided and not marked as optional.",
            )
    return _OK


def _check_argument(param: str, value: Any, allowed: list, doc: dict, language: str, function_name: str) -> Verdict:
    """One argument: decode (Java/JS), type-check, then compare with the allowed values."""
    type_name = doc["type"]
    expected = _python_type(type_name, language, function_name, param)
    if language != "Python" and type(value) is not str:
        return _fail(
            "type_error:java" if language == "Java" else "type_error:js",
            f"Incorrect type for parameter {param!r}. Expected type String, got {type(value).__name__}.",
        )
    item_type_name = doc["items"]["type"] if type_name in _ITEM_TYPED[language] else None
    item_type = _python_type(item_type_name, language, function_name, param) if item_type_name else None
    if language == "Java":
        value = java_value(value, type_name, item_type_name)
    elif language == "JavaScript":
        value = js_value(value, type_name, item_type_name)
    if type_name == "tuple" and type(value) is tuple:
        value = list(value)  # possible answers went through JSON, where tuples are lists
    if language == "Python" and type_name == "float" and type(value) is int:
        value = float(value)

    verdict, is_variable = _check_type(param, value, allowed, type_name, expected, item_type)
    if not verdict.valid:
        return verdict
    if not is_variable:  # variables (e.g. a name standing for a dict) are compared verbatim below
        if expected is dict:
            return _check_dict(value, allowed)
        if expected is list and item_type is dict:
            return _check_list_of_dicts(value, allowed)
        if expected is str:
            return _check_string(param, value, allowed)
        if expected is list:
            return _check_list(param, value, allowed)
    if value not in allowed:
        return _fail("value_error:others", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}.")
    return _OK


def _python_type(type_name: str, language: str, function_name: str, param: str) -> type:
    types = _TYPES_BY_LANGUAGE[language]
    if type_name not in types:
        raise CahlInputError(
            f"function {function_name!r}, parameter {param!r}: type {type_name!r} is not a BFCL "
            f"{language} type (expected one of {sorted(types)})"
        )
    return types[type_name]


def _answer_type(allowed: list) -> type | None:
    """Type of the first allowed value that is not the optional marker ""; None if there is none."""
    for candidate in allowed:
        if candidate != "":
            return type(candidate)
    return None


def _check_type(param, value, allowed, type_name, expected, item_type) -> tuple[Verdict, bool]:
    """(verdict, is_variable). A value of the possible answer's type where that type differs from
    the documented one (e.g. a variable name given for a dict) is a "variable": compared verbatim.
    Item types are checked one level deep, and pass as soon as one allowed value is not a list."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type != expected
    verdict = _OK
    if type(value) == expected:
        if item_type is None:
            return _OK, is_variable
        for candidate in allowed:
            if type(candidate) != list or all(
                _check_type(param, item, candidate, str(item_type), item_type, None)[0].valid for item in value
            ):
                return _OK, is_variable
        verdict = _fail(
            "type_error:nested",
            f"Nested type checking failed for parameter {param!r}. Expected outer type {type_name} "
            f"with inner type {item_type}. Parameter value: {value!r}.",
        )
    if answer_type is not None and type(value) == answer_type:
        return verdict, True
    message = f"Incorrect type for parameter {param!r}. Expected type {type_name}, got {type(value).__name__}."
    return Verdict(False, "type_error:simple", verdict.errors + [message]), is_variable


def standardize(text: str) -> str:
    """Official string normalisation: drop spaces and `,./-_*^`, lower-case, ' -> "."""
    return _IGNORED_CHARS.sub("", text).lower().replace("'", '"')


def _standardized(value: Any) -> Any:
    return standardize(value) if type(value) is str else value


def _check_string(param: str, value: str, allowed: list) -> Verdict:
    if standardize(value) in [standardize(a) for a in allowed if type(a) is str]:
        return _OK
    return _fail("value_error:string", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}.")


def _check_list(param: str, value: list, allowed: list) -> Verdict:
    """Lists compare element-wise, in order, with string elements standardised (one level)."""
    value = [_standardized(v) for v in value]
    if value in [[_standardized(a) for a in candidate] for candidate in allowed]:
        return _OK
    return _fail("value_error:list/tuple", f"Invalid value {value!r}. Expected one of {allowed}.")


def _check_dict(value: dict, allowed: list) -> Verdict:
    """Pass if some allowed dict accepts every given key's value and has no missing non-optional key.

    The verdict of the last allowed dict tried is reported; on one dict a missing key is reported
    over a wrong value, as in the official checker.
    """
    verdict = _fail("dict_checker:unclear", "No allowed dictionary to compare with.")
    for candidate in allowed:
        if candidate == "":
            continue
        errors, error_type = [], "dict_checker:unclear"
        for key, item in value.items():
            if key not in candidate:
                errors.append(f"Unexpected dict key parameter: {key!r}.")
                error_type = "value_error:dict_key"
                break
            if _standardized(item) not in [_standardized(c) for c in candidate[key]]:
                errors.append(f"Invalid value for dict key {key!r}: {item!r}. Expected one of {candidate[key]}.")
                error_type = "value_error:dict_value"
                break
        for key, choices in candidate.items():
            if key not in value and "" not in choices:
                errors.append(f"Missing dict key parameter: {key!r}.")
                error_type = "value_error:dict_key"
                break
        if not errors:
            return _OK
        verdict = Verdict(False, error_type, errors)
    return verdict


def _check_list_of_dicts(value: list, allowed: list) -> Verdict:
    """Dicts compare position by position against one allowed list of dicts of the same length."""
    verdict = _fail("list_dict_checker:unclear", "No allowed list of dictionaries to compare with.")
    for candidate in allowed:
        if len(value) != len(candidate):
            verdict = _fail("value_error:list_dict_count", "Wrong number of dictionaries in the list.")
            continue
        for item, expected in zip(value, candidate):
            if type(item) is not dict:
                # The official checker raises on this input (it calls .items() on the item).
                verdict = _fail("type_error:nested", f"List item {item!r} is not a dictionary.")
            else:
                verdict = _check_dict(item, [expected])
            if not verdict.valid:
                break
        else:
            return _OK
    return verdict


# ---------------------------------------------------------------------------------------------
# Java and JavaScript values: source text -> Python value, by the official (regex) rules.
# Text that does not fit the expected form stays a string, which then fails the type check
# unless the possible answer itself is a string (a variable name).
#
# The official rules are regexes that backtrack catastrophically on text a model can write (the
# HashMap rule took 8 s on "new HashMap<>() {" and 200 spaces, the JavaScript 2-D array rule 14 s
# on "[[]" + ",[]" * 26 + " x"). Where a rule's lazy or nested repeats backtrack, the same match is
# computed here directly, in n log n time: each such helper names the official pattern whose first
# match it returns, and tests/eval/test_bfcl_checker.py compares them with those patterns on
# thousands of random strings. "." in those patterns (no DOTALL) is any character but "\n", and
# "\s" is exactly str.isspace().

_INT = re.compile(r"^-?\d+$")
_JAVA_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG = re.compile(r"^-?\d+[lL]$")
_JS_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")
_JS_BIGINT = re.compile(r"^-?\d+n$")
_SPACE = re.compile(r"\s*")


class _Index:
    """Sorted start positions of a literal in `text` (overlapping ones too): "first at or after i"."""

    def __init__(self, text: str, literal: str):
        self.at = [m.start() for m in re.finditer(f"(?={re.escape(literal)})", text)]

    def first(self, i: int) -> int:
        """The first position >= i, or -1."""
        k = bisect.bisect_left(self.at, i)
        return self.at[k] if k < len(self.at) else -1


def _space_end(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()


def _same_line(newlines: _Index, start: int, end: int) -> bool:
    """No "\n" in text[start:end] (what ".*" may span)."""
    nl = newlines.first(start)
    return nl < 0 or nl >= end


def _lazy_findall(text: str, opening: str, closing: str, min_len: int = 0) -> list[str]:
    """re.findall(re.escape(opening) + "(.*?)" + re.escape(closing), text); "(.+?)" if min_len=1."""
    opens, closes, newlines = _Index(text, opening), _Index(text, closing), _Index(text, "\n")
    found, pos = [], 0
    for start in opens.at:
        if start < pos:
            continue
        body = start + len(opening)
        end = closes.first(body + min_len)
        if end >= 0 and _same_line(newlines, body, end):
            found.append(text[body:end])
            pos = end + len(closing)
    return found


def java_value(text: str, type_name: str, item_type: str | None = None) -> Any:
    """Convert Java source text for a parameter of Java type `type_name`."""
    if type_name in ("byte", "short", "integer"):
        return int(text) if _INT.match(text) else text
    if type_name == "float":
        return float(re.sub(r"[fF]$", "", text)) if _JAVA_FLOAT.match(text) else text
    if type_name == "double":
        return float(text) if _JAVA_DOUBLE.match(text) else text
    if type_name == "long":
        return int(re.sub(r"[lL]$", "", text)) if _JAVA_LONG.match(text) else text
    if type_name == "boolean":
        return text == "true" if text in ("true", "false") else text
    if type_name in ("char", "String", "any"):
        return text  # the official char pattern can never match, so chars stay as written
    if type_name == "ArrayList":
        return _java_array_list(text, item_type)
    if type_name == "Array":
        return _java_array(text, item_type)
    if type_name == "HashMap":
        return _java_hash_map(text)
    raise CahlInputError(f"Java type {type_name!r} has no conversion in the official BFCL checker")


def _java_element(text: str, item_type: str | None) -> Any:
    """ArrayList elements: char and String elements lose their first and last character (quotes)."""
    if item_type in ("char", "String"):
        return text[1:-1]
    return java_value(text, item_type) if item_type else _java_literal(text)


_AS_LIST_HEAD = re.compile(r"new\s+ArrayList<\w*>\(Arrays\.asList\(")
_WITH_ADDS_HEAD = re.compile(r"new\s+ArrayList<\w*>\(\)\s*\{\{")


def _java_array_list(text: str, item_type: str | None) -> Any:
    as_list = _as_list_body(text)
    if as_list is not None:
        return [_java_element(e.strip(), item_type) for e in as_list.split(",")]
    with_adds = _with_adds_body(text)
    if with_adds is not None:
        return [_java_element(e.strip(), item_type) for e in _lazy_findall(with_adds, "add(", ")", min_len=1)]
    if re.search(r"new\s+ArrayList<\w*>\(\)", text):
        return []
    return text


def _as_list_body(text: str) -> str | None:
    r"""Group 1 of re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)."""
    ends, newlines = _Index(text, "))"), _Index(text, "\n")
    for head in _AS_LIST_HEAD.finditer(text):
        end = ends.first(head.end() + 1)
        if end >= 0 and _same_line(newlines, head.end(), end):
            return text[head.end():end]
    return None


def _with_adds_body(text: str) -> str | None:
    r"""Group 1 of re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL).

    Only the first head can match: a later one starts after it, where fewer "}}" remain. The body
    starts after the spaces (or one space earlier, if that is the only way it can hold a character)
    and ends before the spaces in front of the first "}}" after its first character.
    """
    head = _WITH_ADDS_HEAD.search(text)
    if head is None:
        return None
    start = _space_end(text, head.end())
    close = text.find("}}", start + 1)
    if close >= 0:
        end = close
        while end > start + 1 and text[end - 1].isspace():
            end -= 1
        return text[start:end]
    if start > head.end() and text.startswith("}}", start):
        return text[start - 1:start]
    return None


_ARRAY_HEAD = re.compile(r"new\s+\w+\[\]\s*\{")


def _java_array(text: str, item_type: str | None) -> Any:
    r"""`new T[]{a, b}`; unlike ArrayList, String elements keep their quotes.

    The official rule is re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)."""
    body = None
    ends, newlines = _Index(text, "}"), _Index(text, "\n")
    for head in _ARRAY_HEAD.finditer(text):
        end = ends.first(head.end())
        if end >= 0 and _same_line(newlines, head.end(), end):
            body = text[head.end():end]
            break
    if body is None:
        return text
    parts = [p.strip() for p in body.split(",") if p.strip()]
    return [java_value(p, item_type) if item_type else _java_literal(p) for p in parts]


_HASH_MAP_HEAD = re.compile(r"new\s+HashMap<")
_HASH_MAP_OPEN = re.compile(r">\s*\(\)\s*\{")
_HASH_MAP_EMPTY = re.compile(r">\s*\(\)")


def _java_hash_map(text: str) -> Any:
    body = _hash_map_body(text)
    if body is not None:
        puts = _java_puts(body) if body.strip() else []
        return {key: _java_literal(value.strip()) for key, value in puts}
    if _has_empty_hash_map(text):
        return {}
    return text


def _hash_map_body(text: str) -> str | None:
    r"""Group 1 of re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL).

    Only the first head can match (a later one finds fewer "}" after it). The body starts after
    the spaces and the optional second "{", and ends before the spaces in front of the next "}".
    """
    head = _HASH_MAP_HEAD.search(text)
    opened = _HASH_MAP_OPEN.search(text, head.end()) if head else None
    if opened is None:
        return None
    start = _space_end(text, opened.end())
    if text.startswith("{", start):
        start = _space_end(text, start + 1)
    close = text.find("}", start)
    if close < 0:
        return None
    end = close
    while end > start and text[end - 1].isspace():
        end -= 1
    return text[start:end]


def _has_empty_hash_map(text: str) -> bool:
    r"""Whether re.search(r"new\s+HashMap<.*?>\s*\(\)", text) matches."""
    closes, newlines = [m.start() for m in _HASH_MAP_EMPTY.finditer(text)], _Index(text, "\n")
    for head in _HASH_MAP_HEAD.finditer(text):
        k = bisect.bisect_left(closes, head.end())
        if k < len(closes) and _same_line(newlines, head.end(), closes[k]):
            return True
    return False


def _java_puts(body: str) -> list[tuple[str, str]]:
    r"""re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", body).

    A key ends at the first '",' after it (on its line) whose value, after the spaces, closes
    with a ")" on the value's line: whether one does depends on the '",' alone, so those that do
    are found once, and each key looks up the first of them after it.
    """
    parens, newlines = _Index(body, ")"), _Index(body, "\n")
    value_of = {}  # position of a '",' that can end a key -> (value start, value end)
    for comma in _Index(body, '",').at:
        start = _space_end(body, comma + 2)
        end = parens.first(start)
        if end >= 0 and _same_line(newlines, start, end):
            value_of[comma] = (start, end)
    commas = sorted(value_of)
    found, pos = [], 0
    for put in _Index(body, 'put("').at:
        if put < pos:
            continue
        key = put + 5
        k = bisect.bisect_left(commas, key)
        if k < len(commas) and _same_line(newlines, key, commas[k]):
            start, end = value_of[commas[k]]
            found.append((body[key:commas[k]], body[start:end]))
            pos = end + 1
    return found


def _java_literal(text: str) -> Any:
    """A Java literal of unknown type: boolean, "string", 12L, 1.5f, number, else the text."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _JAVA_LONG.match(text):
        return int(text[:-1])
    if _JAVA_FLOAT.match(text):
        return float(re.sub(r"[fF]$", "", text))
    return _number_or_text(text)


def _number_or_text(text: str) -> Any:
    """Python's int(), then float(), else the text: the official fallback, leniencies included."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def js_value(text: str, type_name: str, item_type: str | None = None) -> Any:
    """Convert JavaScript source text for a parameter of BFCL JS type `type_name`."""
    if type_name == "String":
        quoted = (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'"))
        return text[1:-1] if quoted else text
    if type_name == "integer":
        return int(text) if _INT.match(text) else text
    if type_name == "float":
        return float(text) if _JS_FLOAT.match(text) else text
    if type_name == "Bigint":
        return int(text[:-1]) if _JS_BIGINT.match(text) else text
    if type_name == "Boolean":
        return text == "true" if text in ("true", "false") else text
    if type_name == "dict":
        return _js_object(text.strip())
    if type_name == "array":
        return _js_array(text.strip(), item_type)
    if type_name == "any":
        return text
    raise CahlInputError(f"JavaScript type {type_name!r} has no conversion in the official BFCL checker")


_JS_ARRAY = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")
_JS_NEW_ARRAY_2D = re.compile(r"new\s+Array\(\s*\[")


def _js_array(code: str, item_type: str | None) -> Any:
    nested = _js_rows(code)
    if nested is not None:
        rows = []
        for index, row in enumerate(_lazy_findall(nested, "[", "]")):
            row = row.strip()
            if index == 0 and row.startswith("["):
                row = row[1:]
            rows.append([_js_literal(e) for e in row.split(",")])
        return rows
    flat = _JS_ARRAY.match(code)
    if not flat:
        return code
    body = (flat.group(1) if flat.group(1) is not None else flat.group(2)).strip()
    elements = [e.strip() for e in body.split(",")] if body else []
    if not item_type:
        return [_js_literal(e) for e in elements]
    # As in the official converter, quoted elements carry "String" as their own item type.
    return [js_value(e, item_type, "String" if e[:1] in ("'", '"') else None) for e in elements]


def _js_rows(code: str) -> str | None:
    r"""Group 0 of the official 2-D array rule, re.match on
    r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)".

    After the opening, a row's text ends at the first "]" (on its line) after which the rest can
    match: spaces, then the closing bracket, or a "," that starts a row which itself can end.
    Whether the rest can match after a "]" depends on that "]" alone, so it is decided once per
    "]" and per ",", from the end of the text backwards: linear where the regex is exponential.
    """
    if code.startswith("["):
        second = _space_end(code, 1)
        if not code.startswith("[", second):
            return None
        first_row, closing = second + 1, "]"
    elif head := _JS_NEW_ARRAY_2D.match(code):
        first_row, closing = head.end(), ")"
    else:
        return None
    newlines = _Index(code, "\n")
    end_after: dict[int, int] = {}  # position of a "," -> end of the match of the rest from there
    good: list[int] = []  # negated positions of the "]" a row may end at, ascending
    match_end: dict[int, int] = {}  # such a "]" -> end of the whole match if a row ends there
    marks = [m.start() for m in re.finditer(r"[\],)]", code) if m.start() >= first_row]
    for i in reversed(marks):
        if code[i] == "]":
            rest = _space_end(code, i + 1)
            end = rest + 1 if code.startswith(closing, rest) else end_after.get(rest) if code.startswith(",", rest) else None
            if end is not None:
                good.append(-i)
                match_end[i] = end
        elif code[i] == ",":
            row = _space_end(code, i + 1)
            if code.startswith("[", row):
                row_end = _first_good(good, row + 1)
                if row_end >= 0 and _same_line(newlines, row + 1, row_end):
                    end_after[i] = match_end[row_end]
    row_end = _first_good(good, first_row)
    if row_end >= 0 and _same_line(newlines, first_row, row_end):
        return code[:match_end[row_end]]
    return None


def _first_good(negated: list[int], i: int) -> int:
    """The smallest position >= i among the negated, ascending positions; -1 if none."""
    k = bisect.bisect_right(negated, -i) - 1
    return -negated[k] if k >= 0 else -1


def _js_object(code: str) -> Any:
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)
    if not match:
        return code
    result = {}
    for key, value in _js_object_items(match.group(1)):
        key, value = key.strip().strip("'\""), value.strip()
        if value.startswith("[") and value.endswith("]"):
            result[key] = _js_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            result[key] = _js_object(value)
        else:
            result[key] = _js_literal(value.strip("'\""))
    return result


def _js_object_items(body: str) -> list[tuple[str, str]]:
    r"""re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", body), for a body without "\n".

    A key runs to the next ":"; its value ends at the end of the body or at the first "," after
    it that a next key follows (a ":" after the spaces, before any further ","). Which "," qualify
    depends on the "," alone: each is decided once.
    """
    colons, commas = _Index(body, ":"), _Index(body, ",")

    def key_follows(i: int) -> bool:  # (?=[^,]+:) at i
        colon, comma = colons.first(i + 1), commas.first(i)
        return i < len(body) and body[i] != "," and colon >= 0 and (comma < 0 or colon < comma)

    next_key: dict[int, int] = {}  # a "," that can end a value -> where the match ends
    for comma in commas.at:
        after = _space_end(body, comma + 1)
        if key_follows(after):
            next_key[comma] = after
        elif after > comma + 1 and key_follows(after - 1):
            next_key[comma] = after - 1
    ends = sorted(next_key)
    found, pos = [], 0
    while pos < len(body):
        colon = colons.first(pos)
        if colon < 0:
            break
        if colon == pos:
            pos += 1
            continue
        start = _space_end(body, colon + 1)
        k = bisect.bisect_left(ends, start)
        if k < len(ends):
            found.append((body[pos:colon], body[start:ends[k]]))
            pos = next_key[ends[k]]
        else:
            found.append((body[pos:colon], body[start:]))
            pos = len(body)
    return found


def _js_literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'")):
        return text[1:-1]
    return _number_or_text(text)
