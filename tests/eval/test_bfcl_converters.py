"""BFCL's Java and JavaScript value converters: the official regex rules' results, without their
catastrophic backtracking, and a time limit around every checker call.

The reference below is the official converters' code (the regexes of gorilla BFCL's
java_type_converter.py / js_type_converter.py as cahl applied them before it computed their matches
directly). Both are run on thousands of random strings made of the pieces those regexes react to;
every result must be the same.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from cahl.eval import bfcl_checker
from cahl.eval.bfcl_checker import TIMEOUT_ERROR, check_calls, java_value, js_value


# -- the reference: the official rules as regexes ---------------------------------------------
def ref_java_literal(text):
    return bfcl_checker._java_literal(text)  # no backtracking: shared


def ref_java_element(text, item_type):
    if item_type in ("char", "String"):
        return text[1:-1]
    return java_value(text, item_type) if item_type else ref_java_literal(text)


def ref_java_array_list(text, item_type=None):
    as_list = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if as_list:
        return [ref_java_element(e.strip(), item_type) for e in as_list.group(1).split(",")]
    with_adds = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if with_adds:
        return [ref_java_element(e.strip(), item_type) for e in re.findall(r"add\((.+?)\)", with_adds.group(1))]
    if re.search(r"new\s+ArrayList<\w*>\(\)", text):
        return []
    return text


def ref_java_array(text, item_type=None):
    match = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if not match:
        return text
    parts = [p.strip() for p in match.group(1).split(",") if p.strip()]
    return [java_value(p, item_type) if item_type else ref_java_literal(p) for p in parts]


def ref_java_hash_map(text):
    match = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if match:
        puts = re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", match.group(1)) if match.group(1).strip() else []
        return {key: ref_java_literal(value.strip()) for key, value in puts}
    if re.search(r"new\s+HashMap<.*?>\s*\(\)", text):
        return {}
    return text


REF_JS_ARRAY_2D = re.compile(r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)")


def ref_js_array(code, item_type=None):
    nested = REF_JS_ARRAY_2D.match(code)
    if nested:
        rows = []
        for index, row in enumerate(re.findall(r"\[(.*?)\]", nested.group(0))):
            row = row.strip()
            if index == 0 and row.startswith("["):
                row = row[1:]
            rows.append([bfcl_checker._js_literal(e) for e in row.split(",")])
        return rows
    flat = re.match(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)", code)
    if not flat:
        return code
    body = (flat.group(1) if flat.group(1) is not None else flat.group(2)).strip()
    elements = [e.strip() for e in body.split(",")] if body else []
    if not item_type:
        return [bfcl_checker._js_literal(e) for e in elements]
    return [js_value(e, item_type, "String" if e[:1] in ("'", '"') else None) for e in elements]


def ref_js_object(code):
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)
    if not match:
        return code
    result = {}
    for key, value in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", match.group(1)):
        key, value = key.strip().strip("'\""), value.strip()
        if value.startswith("[") and value.endswith("]"):
            result[key] = ref_js_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            result[key] = ref_js_object(value)
        else:
            result[key] = bfcl_checker._js_literal(value.strip("'\""))
    return result


# -- random text from the pieces each rule reacts to --------------------------------------------
PIECES = {
    "hash_map": ["new", "new ", " ", "  ", "\n", "\t", "HashMap<", "<", ">", "String, Object", "()", "(", ")", "{", "}",
                 "{{", "}}", 'put("', '",', '", ', "k", "1", "1L", '"v"', ";", "new HashMap<>() {", "new HashMap<>() {{"],
    "array_list": ["new ", "new\n", "ArrayList<", "String", ">", "()", "(Arrays.asList(", ")", "))", "{{", "}}", "{", "}",
                   " ", "  ", "\n", "add(", "add()", '"a"', "1", ",", ";", "new ArrayList<>() {{", "new ArrayList<>(Arrays.asList("],
    "array": ["new ", "int", "String", "[]", "[", "]", "{", "}", " ", "\n", ",", "1", '"a"', "new int[]{"],
    "js_array": ["[", "]", ",", " ", "  ", "\n", "x", "1", "'a'", "new Array(", "new  Array(", ")", "[[", "]]", "[[]", ",[]"],
    "js_object": ["{", "}", "a", "b", ":", ",", ", ", " ", "  ", "'k'", '"v"', "[1, 2]", "[", "]", "\n", "{a: "],
}


def random_texts(kind: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{kind}:{seed}")
    return ["".join(rng.choice(PIECES[kind]) for _ in range(rng.randint(0, 14))) for _ in range(n)]


@pytest.mark.parametrize("kind, ours, reference", [
    ("hash_map", bfcl_checker._java_hash_map, ref_java_hash_map),
    ("array_list", lambda t: java_value(t, "ArrayList", None), ref_java_array_list),
    ("array_list", lambda t: java_value(t, "ArrayList", "String"), lambda t: ref_java_array_list(t, "String")),
    ("array", lambda t: java_value(t, "Array", None), ref_java_array),
    ("array", lambda t: java_value(t, "Array", "integer"), lambda t: ref_java_array(t, "integer")),
    ("js_array", lambda t: js_value(t, "array"), lambda t: ref_js_array(t.strip())),
    ("js_array", lambda t: js_value(t, "array", "integer"), lambda t: ref_js_array(t.strip(), "integer")),
    ("js_object", lambda t: js_value(t, "dict"), lambda t: ref_js_object(t.strip())),
], ids=["HashMap", "ArrayList", "ArrayList-String", "Array", "Array-integer", "js-array", "js-array-integer", "js-dict"])
def test_converters_give_the_official_regexes_results_on_random_text(kind, ours, reference):
    for text in random_texts(kind, 4000, seed=0):
        assert repr(ours(text)) == repr(reference(text)), text  # repr: nan != nan


PATHOLOGICAL = [  # (what the checker converts, the type, what the official rules make of it)
    ("new HashMap<>() {" + " " * 2000, "HashMap", {}),  # the 200 spaces took 8 s; ~N^5
    ("new HashMap<>() {{" + 'put("",' * 2000 + "}}", "HashMap", {}),  # cubic in the put(" count
    ("new ArrayList<>() {{" + " " * 5000, "ArrayList", []),
    ("new ArrayList<>() {{" + "add(" * 3000, "ArrayList", []),
    ("new int[]{" * 2000, "Array", "new int[]{" * 2000),
]
JS_PATHOLOGICAL = [
    ("[[]" + ",[]" * 60 + " x", "array", ["["]),  # 26 rows took 14 s, doubling per row; then the 1-D rule
    ("new Array([]" + ",[]" * 60 + " x", "array", "new Array([]" + ",[]" * 60 + " x"),
    ("{" + "a" * 20_000 + "}", "dict", {}),
    ("{a:," + " " * 5000 + "x}", "dict", {"a": "," + " " * 5000 + "x"}),
]


@pytest.mark.timeout(60)  # generous: the official regexes need hours on these, ours milliseconds
@pytest.mark.parametrize("text, type_name, expected", PATHOLOGICAL, ids=[f"java-{i}" for i in range(len(PATHOLOGICAL))])
def test_java_text_that_made_the_official_regexes_backtrack_converts_at_once(text, type_name, expected):
    assert java_value(text, type_name) == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text, type_name, expected", JS_PATHOLOGICAL, ids=[f"js-{i}" for i in range(len(JS_PATHOLOGICAL))])
def test_javascript_text_that_made_the_official_regexes_backtrack_converts_at_once(text, type_name, expected):
    assert js_value(text, type_name) == expected


# -- the time limit around every checker call ---------------------------------------------------
def _catastrophic(code, item_type=None):
    """The official 2-D array regex on a JavaScript array value: exponential in the rows."""
    return ref_js_array(code, item_type)


def _js_task():
    """BFCL v3 javascript_24: getUniqueSorted(array), its one required parameter a JS array."""
    from cahl.data.bfcl import load_bfcl

    task = next(t for t in load_bfcl("v3", "javascript") if t.id == "javascript_24")
    return task, "getUniqueSorted", "array"


HANGS = "[[]" + ",[]" * 40 + " x"  # the official rule needs days on this


@pytest.mark.timeout(120)
def test_a_checker_call_past_its_time_limit_is_an_invalid_verdict_of_its_own_type(monkeypatch):
    monkeypatch.setattr(bfcl_checker, "_js_array", _catastrophic)
    task, name, param = _js_task()
    valid, error_type, message = check_calls("javascript", task.meta["functions"], task.meta["possible_answer"],
                                             [{name: {param: HANGS}}], "JavaScript", time_limit_s=0.5)
    assert (valid, error_type) == (False, TIMEOUT_ERROR) and "0.5" in message


@pytest.mark.timeout(120)
def test_cahl_score_reports_a_checker_timeout_per_line_and_goes_on(monkeypatch, tmp_path, capsys):
    from cahl.cli import main

    monkeypatch.setattr(bfcl_checker, "_js_array", _catastrophic)
    task, name, param = _js_task()
    lines = [{"id": task.id, "category": "javascript", "calls": [{name: {param: HANGS}}]},
             {"id": "simple_0", "category": "simple", "calls": [{"calculate_triangle_area": {"base": 10, "height": 5}}]}]
    path = tmp_path / "pred.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["score", "bfcl", "--predictions", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"id": task.id, "valid": False, "error_type": TIMEOUT_ERROR},
                    {"id": "simple_0", "valid": True, "error_type": None}]


@pytest.mark.timeout(120)
def test_cahl_eval_scores_a_checker_timeout_as_a_wrong_answer(monkeypatch):
    from cahl.sources import score_bfcl
    from cahl.types import Episode, ToolCall

    monkeypatch.setattr(bfcl_checker, "_js_array", _catastrophic)
    monkeypatch.setattr(bfcl_checker, "CHECK_TIME_LIMIT_S", 0.5)
    task, name, param = _js_task()
    episode = Episode(task, "f0", [ToolCall(name, {param: HANGS})], None, "answered", [])
    verdict = score_bfcl(task, episode)
    assert (verdict.correct, verdict.error_type) == (False, TIMEOUT_ERROR)
