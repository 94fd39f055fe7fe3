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
  official (regex-based) rules before the checks above.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

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
) -> tuple[bool, str | None, str]:
    """Official BFCL verdict for one decoded answer: (valid, error_type or None, message).

    `underscore_to_dot` is BFCL's flag for models whose API cannot carry "." in a function name
    (OpenAI, Mistral, Gemini FC): the expected name then has "." replaced by "_", so only the
    underscored name passes. Off by default: our agents see and emit the original names.
    """
    if language not in LANGUAGES:
        raise CahlInputError(f"language {language!r} is not one of {list(LANGUAGES)}")
    verdict = _check(category, functions, possible_answer, calls, language, underscore_to_dot)
    return verdict.valid, verdict.error_type, " ".join(verdict.errors)


def score_predictions(version: str, path: Path) -> list[dict]:
    """Score a JSONL file of `{"id", "category", "calls"}` lines against BFCL `version`.

    Returns `[{"id", "category", "valid", "error_type"}]` in input order. Only AST categories can
    be scored this way (multi-turn answers are judged by executing them, not by this checker).
    """
    bfcl.check_version(version)
    path = Path(path)
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
        _require_call_list(obj["calls"], where)
        verdict = _check(
            category, task.meta["functions"], task.meta["possible_answer"], obj["calls"],
            task.meta["language"], underscore_to_dot=False,
        )
        results.append({"id": task.id, "category": category, "valid": verdict.valid, "error_type": verdict.error_type})
    return results


def _require_call_list(calls: Any, where: str) -> None:
    if not is_call_list(calls):
        raise CahlInputError(
            f"{where}: 'calls' must be a list of single-key objects {{\"fn_name\": {{\"arg\": value}}}}, "
            f"got {str(calls)[:200]}"
        )


# ---------------------------------------------------------------------------------------------
# Dispatch by category


def is_call_list(calls: Any) -> bool:
    """BFCL's decoded-answer shape: a list of `{name: {arg: value}}` dicts (an empty list is one)."""
    return type(calls) is list and all(
        type(c) is dict and len(c) == 1 and type(next(iter(c.values()))) is dict for c in calls
    )


def _holds_no_call(calls: Any) -> bool:
    """BFCL's 'empty output': not in call shape, [], or [{}]."""
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

_INT = re.compile(r"^-?\d+$")
_JAVA_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG = re.compile(r"^-?\d+[lL]$")
_JS_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")
_JS_BIGINT = re.compile(r"^-?\d+n$")


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


def _java_array_list(text: str, item_type: str | None) -> Any:
    as_list = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if as_list:
        return [_java_element(e.strip(), item_type) for e in as_list.group(1).split(",")]
    with_adds = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if with_adds:
        return [_java_element(e.strip(), item_type) for e in re.findall(r"add\((.+?)\)", with_adds.group(1))]
    if re.search(r"new\s+ArrayList<\w*>\(\)", text):
        return []
    return text


def _java_array(text: str, item_type: str | None) -> Any:
    """`new T[]{a, b}`; unlike ArrayList, String elements keep their quotes."""
    match = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if not match:
        return text
    parts = [p.strip() for p in match.group(1).split(",") if p.strip()]
    return [java_value(p, item_type) if item_type else _java_literal(p) for p in parts]


def _java_hash_map(text: str) -> Any:
    match = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if match:
        puts = re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", match.group(1)) if match.group(1).strip() else []
        return {key: _java_literal(value.strip()) for key, value in puts}
    if re.search(r"new\s+HashMap<.*?>\s*\(\)", text):
        return {}
    return text


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


_JS_ARRAY_2D = re.compile(
    r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)"
)
_JS_ARRAY = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _js_array(code: str, item_type: str | None) -> Any:
    nested = _JS_ARRAY_2D.match(code)
    if nested:
        rows = []
        for index, row in enumerate(re.findall(r"\[(.*?)\]", nested.group(0))):
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


def _js_object(code: str) -> Any:
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)
    if not match:
        return code
    result = {}
    for key, value in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", match.group(1)):
        key, value = key.strip().strip("'\""), value.strip()
        if value.startswith("[") and value.endswith("]"):
            result[key] = _js_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            result[key] = _js_object(value)
        else:
            result[key] = _js_literal(value.strip("'\""))
    return result


def _js_literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'")):
        return text[1:-1]
    return _number_or_text(text)
