"""BFCL AST checker: one hand-made case (or pair) per official rule, and prediction-file scoring."""

import json

import pytest

from cahl.eval.bfcl_checker import check_calls, java_value, js_value, score_predictions, standardize
from cahl.types import CahlInputError


def fn(name, properties, required=()):
    return {"name": name, "description": "", "parameters": {"type": "dict", "properties": properties, "required": list(required)}}


WEATHER = fn("weather.get", {
    "city": {"type": "string"},
    "days": {"type": "integer"},
    "scale": {"type": "float"},
    "metric": {"type": "boolean"},
    "hours": {"type": "array", "items": {"type": "integer"}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "point": {"type": "tuple", "items": {"type": "float"}},
    "opts": {"type": "dict", "properties": {}},
    "legs": {"type": "array", "items": {"type": "dict"}},
    "extra": {"type": "string"},
}, required=["city"])
ANSWER = [{"weather.get": {
    "city": ["New York, NY", "NYC"],
    "days": [3],
    "scale": [1.0, ""],
    "metric": [True, ""],
    "hours": [[6, 12], ""],
    "tags": [["Rain", "Snow"], ""],
    "point": [[1.5, 2.0], ""],
    "opts": [{"units": ["C"], "lang": ["en", ""]}, ""],
    "legs": [[{"from": ["A"]}, {"from": ["B"]}], ""],
}}]


def simple(args, *, name="weather.get", category="simple", **flags):
    return check_calls(category, [WEATHER], ANSWER, [{name: args}], "Python", **flags)[:2]


BASE = {"city": "NYC", "days": 3}


def test_correct_call_and_allowed_alternatives_pass():
    assert simple(BASE) == (True, None)
    assert simple({**BASE, "city": "New York, NY"}) == (True, None)


def test_call_count_and_name():
    assert check_calls("simple", [WEATHER], ANSWER, [], "Python")[1] == "simple_function_checker:wrong_count"
    assert check_calls("simple", [WEATHER], ANSWER, [{"weather.get": BASE}] * 2, "Python")[1] == "simple_function_checker:wrong_count"
    assert simple(BASE, name="weather.fetch")[1] == "simple_function_checker:wrong_func_name"


def test_dotted_names_follow_the_underscore_flag():
    assert simple(BASE, name="weather_get") == (False, "simple_function_checker:wrong_func_name")
    assert simple(BASE, name="weather_get", underscore_to_dot=True) == (True, None)
    assert simple(BASE, underscore_to_dot=True)[1] == "simple_function_checker:wrong_func_name"


def test_required_unexpected_and_optional_parameters():
    assert simple({"days": 3})[1] == "simple_function_checker:missing_required"
    assert simple({**BASE, "nope": 1})[1] == "simple_function_checker:unexpected_param"
    assert simple({**BASE, "extra": "x"})[1] == "simple_function_checker:unexpected_param"  # documented, not in answer
    assert simple({"city": "NYC"})[1] == "simple_function_checker:missing_optional"  # 'days' has no "" marker
    assert simple({**BASE, "scale": 1.0, "metric": True}) == (True, None)  # optional args may be given too


def test_python_types():
    assert simple({**BASE, "scale": 1}) == (True, None)  # int accepted for float
    assert simple({**BASE, "days": 3.0})[1] == "type_error:simple"  # not float for int
    assert simple({**BASE, "days": True})[1] == "type_error:simple"  # bool is not int
    assert simple({**BASE, "days": "3"})[1] == "type_error:simple"
    assert simple({**BASE, "days": 4})[1] == "value_error:others"
    assert simple({**BASE, "metric": False})[1] == "value_error:others"


def test_nested_list_types_are_checked_one_level_deep():
    funcs = [fn("f", {"hours": {"type": "array", "items": {"type": "integer"}}})]
    check = lambda hours: check_calls("simple", funcs, [{"f": {"hours": [[6, 12]]}}], [{"f": {"hours": hours}}], "Python")[:2]
    assert check([6, 12]) == (True, None)
    assert check([6, "12"])[1] == "type_error:nested"
    assert check([[6], 12])[1] == "type_error:nested"
    # Quirk: an optional ("") allowed value is not a list, so the item check passes at once and
    # only the value comparison fails.
    assert simple({**BASE, "hours": [6, "12"]})[1] == "value_error:list/tuple"


def test_strings_compare_after_normalisation():
    for variant in ["nyc", "N Y C", "N.Y.C.", "n,y/c-_*^"]:
        assert simple({**BASE, "city": variant}) == (True, None), variant
    assert simple({**BASE, "city": "new york ny"}) == (True, None)
    assert simple({**BASE, "city": "NYC!"})[1] == "value_error:string"
    assert standardize("It's  A-b") == 'it"sab'


def test_lists_compare_in_order_with_normalised_strings():
    assert simple({**BASE, "tags": ["rain", "SNOW"]}) == (True, None)
    assert simple({**BASE, "tags": ["Snow", "Rain"]})[1] == "value_error:list/tuple"
    assert simple({**BASE, "point": (1.5, 2.0)}) == (True, None)  # tuple accepted for tuple
    assert simple({**BASE, "point": [1.5, 2.0]}) == (True, None)


def test_dicts_compare_key_by_key():
    assert simple({**BASE, "opts": {"units": "c"}}) == (True, None)  # 'lang' optional, value normalised
    assert simple({**BASE, "opts": {"units": "F"}})[1] == "value_error:dict_value"
    assert simple({**BASE, "opts": {"lang": "en"}})[1] == "value_error:dict_key"  # 'units' missing
    assert simple({**BASE, "opts": {"units": "C", "zz": 1}})[1] == "value_error:dict_key"


def test_lists_of_dicts_compare_position_by_position():
    assert simple({**BASE, "legs": [{"from": "a"}, {"from": "b"}]}) == (True, None)
    assert simple({**BASE, "legs": [{"from": "A"}]})[1] == "value_error:list_dict_count"
    funcs = [fn("f", {"legs": {"type": "array", "items": {"type": "dict"}}})]
    answer = [{"f": {"legs": [[{"from": ["A"]}, {"from": ["B"]}]]}}]
    swapped = [{"f": {"legs": [{"from": "B"}, {"from": "A"}]}}]
    assert check_calls("simple", funcs, answer, swapped, "Python")[1] == "value_error:dict_value"
    # The error reported is that of the last allowed value tried: here the optional "" (length 0).
    assert simple({**BASE, "legs": [{"from": "B"}, {"from": "A"}]})[1] == "value_error:list_dict_count"


def test_a_value_of_the_answers_type_is_a_variable_compared_verbatim():
    funcs = [fn("f", {"config": {"type": "dict"}})]
    answer = [{"f": {"config": ["myConfig"]}}]
    assert check_calls("simple", funcs, answer, [{"f": {"config": "myConfig"}}], "Python")[:2] == (True, None)
    # no normalisation for variables
    assert check_calls("simple", funcs, answer, [{"f": {"config": "myconfig"}}], "Python")[1] == "value_error:others"


TWO = [fn("a", {"x": {"type": "integer"}}, ["x"]), fn("b", {"y": {"type": "string"}}, ["y"])]


def test_multiple_checks_the_function_the_answer_names():
    answer = [{"b": {"y": ["hi"]}}]
    assert check_calls("multiple", TWO, answer, [{"b": {"y": "Hi"}}], "Python")[:2] == (True, None)
    assert check_calls("multiple", TWO, answer, [{"a": {"x": 1}}], "Python")[1] == "simple_function_checker:wrong_func_name"
    two_calls = [{"b": {"y": "hi"}}, {"a": {"x": 1}}]
    assert check_calls("live_multiple", TWO, answer, two_calls, "Python")[1] == "multiple_function_checker:wrong_count"


def test_parallel_matches_in_any_order_greedily():
    answer = [{"a": {"x": [1]}}, {"b": {"y": ["hi"]}}, {"a": {"x": [2]}}]
    calls = [{"a": {"x": 2}}, {"b": {"y": "hi"}}, {"a": {"x": 1}}]
    assert check_calls("parallel_multiple", TWO, answer, calls, "Python")[:2] == (True, None)
    assert check_calls("parallel", TWO, answer, calls[:2], "Python")[1] == "parallel_function_checker_no_order:wrong_count"
    duplicated = [calls[0], calls[0], calls[1]]
    assert check_calls("live_parallel", TWO, answer, duplicated, "Python")[1] == "parallel_function_checker_no_order:cannot_find_match"
    # Greedy, as in the official checker: answer 0 takes the first call that fits (x=1), leaving
    # x=2 for answer 1, which only allows 1 -- although the other pairing would have matched.
    loose = [{"a": {"x": [1, 2]}}, {"a": {"x": [1]}}]
    assert check_calls("parallel", TWO, loose, [{"a": {"x": 1}}, {"a": {"x": 2}}], "Python")[1] == \
        "parallel_function_checker_no_order:cannot_find_match"


def test_irrelevance_passes_only_without_a_call():
    for no_call in ([], [{}], "Sorry, I cannot do that.", [{"a": "not a dict"}]):
        assert check_calls("irrelevance", TWO, None, no_call, "Python")[:2] == (True, None)
    assert check_calls("live_irrelevance", TWO, None, [{"a": {"x": 1}}], "Python")[1] == "irrelevance_error:decoder_success"


def test_live_relevance_passes_with_any_call():
    assert check_calls("live_relevance", TWO, None, [{"a": {"x": 99}}], "Python")[:2] == (True, None)
    assert check_calls("live_relevance", TWO, None, [], "Python")[1] == "relevance_error:decoder_failed"


def test_answers_not_in_call_shape_are_rejected():
    for bad in ("text", [{"a": 1}], [{"a": {}, "b": {}}], {"a": {}}):
        assert check_calls("simple", TWO, [{"a": {"x": [1]}}], bad, "Python")[1] == "ast_decoder:decoder_wrong_output_format"


def test_unknown_language_or_type_is_an_input_error():
    with pytest.raises(CahlInputError, match="Python"):
        check_calls("simple", TWO, [{"a": {"x": [1]}}], [{"a": {"x": 1}}], "python")
    odd = [fn("a", {"x": {"type": "number"}})]
    with pytest.raises(CahlInputError, match="'number'"):
        check_calls("simple", odd, [{"a": {"x": [1]}}], [{"a": {"x": 1}}], "Python")


JAVA = fn("Util.run", {
    "n": {"type": "integer"}, "big": {"type": "long"}, "flag": {"type": "boolean"}, "name": {"type": "String"},
    "list": {"type": "ArrayList", "items": {"type": "String"}}, "arr": {"type": "Array", "items": {"type": "integer"}},
    "map": {"type": "HashMap"},
})
JAVA_ANSWER = [{"Util.run": {"n": [5], "big": [7, ""], "flag": [True, ""], "name": ["abc", ""],
                             "list": [["a", "b"], ""], "arr": [[1, 2], ""], "map": [{"k": ["v"]}, ""]}}]


def java(args):
    return check_calls("java", [JAVA], JAVA_ANSWER, [{"Util.run": args}], "Java")[:2]


def test_java_values_are_source_text_converted_by_the_official_rules():
    assert java({"n": "5", "big": "7L", "flag": "true", "name": "abc"}) == (True, None)
    assert java({"n": 5})[1] == "type_error:java"
    assert java({"n": "5", "big": "7"})[1] == "type_error:simple"  # a long needs its L
    assert java({"n": "5", "list": 'new ArrayList<>(Arrays.asList("a", "b"))'}) == (True, None)
    assert java({"n": "5", "arr": "new int[]{1, 2}"}) == (True, None)
    assert java({"n": "5", "map": 'new HashMap<String, String>() {{ put("k", "v"); }}'}) == (True, None)


def test_java_converter_quirks():
    assert java_value("new String[]{\"a\"}", "Array", "String") == ['"a"']  # Array keeps quotes, ArrayList strips them
    assert java_value("3.5f", "float") == 3.5 and java_value("3.5", "float") == "3.5"
    assert java_value("new ArrayList<String>() {{ add(\"x\"); add(\"y\"); }}", "ArrayList", "String") == ["x", "y"]
    assert java_value('new HashMap<>() {{ put("a", 1L); put("b", true); }}', "HashMap") == {"a": 1, "b": True}


JS = fn("draw", {"label": {"type": "String"}, "size": {"type": "float"}, "ids": {"type": "array", "items": {"type": "integer"}},
                 "style": {"type": "dict"}, "count": {"type": "Bigint"}})
JS_ANSWER = [{"draw": {"label": ["Chart"], "size": [2.0, ""], "ids": [[1, 2], ""], "style": [{"color": ["red"]}, ""],
                       "count": [10, ""]}}]


def js(args):
    return check_calls("javascript", [JS], JS_ANSWER, [{"draw": args}], "JavaScript")[:2]


def test_javascript_values_are_source_text_converted_by_the_official_rules():
    assert js({"label": '"Chart"', "size": "2", "ids": "[1, 2]", "style": "{color: 'red'}", "count": "10n"}) == (True, None)
    assert js({"label": "'chart'"}) == (True, None)
    assert js({"label": ["Chart"]})[1] == "type_error:js"
    assert js({"label": "Chart", "count": "10"})[1] == "type_error:simple"  # a Bigint needs its n
    assert js_value("new Array(1, 2)", "array", "integer") == [1, 2]
    assert js_value("[[1, 2], [3]]", "array") == [[1, 2], [3]]


# --- score_predictions ---------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_score_predictions_in_input_order(tmp_path):
    path = write_lines(tmp_path / "pred.jsonl", [
        {"id": "simple_0", "category": "simple", "calls": [{"calculate_triangle_area": {"base": 10, "height": 5}}]},
        {"id": "simple_0", "category": "simple", "calls": [{"calculate_triangle_area": {"base": 10, "height": 6}}]},
        {"id": "irrelevance_0", "category": "irrelevance", "calls": []},
        {"id": "java_0", "category": "java", "calls": [{"GeometryPresentation.createPresentation": {
            "controller": "mapController", "parent": "mapArea"}}]},
    ])
    results = score_predictions("v3", path)
    assert [(r["id"], r["valid"], r["error_type"]) for r in results] == [
        ("simple_0", True, None), ("simple_0", False, "value_error:others"), ("irrelevance_0", True, None),
        ("java_0", True, None)]


def test_score_predictions_accepts_v4_aliases(tmp_path):
    path = write_lines(tmp_path / "pred.jsonl", [{"id": "simple_python_0", "category": "simple", "calls": []}])
    assert score_predictions("v4", path) == [
        {"id": "simple_python_0", "category": "simple_python", "valid": False, "error_type": "simple_function_checker:wrong_count"}]


def test_every_decoded_answer_gets_the_official_runners_verdict(tmp_path):
    """Before: `[{}]` (what BFCL's runner counts as no call, `is_empty_output`) and other answers not
    in call form stopped the whole file with an input error; the official runner scores each one."""
    path = write_lines(tmp_path / "pred.jsonl", [
        {"id": "irrelevance_0", "category": "irrelevance", "calls": [{}]},
        {"id": "irrelevance_1", "category": "irrelevance", "calls": "I cannot help with that."},
        {"id": "irrelevance_2", "category": "irrelevance", "calls": [{"f": {}, "g": {}}]},
        {"id": "live_relevance_0-0-0", "category": "live_relevance", "calls": [{}]},
        {"id": "simple_0", "category": "simple", "calls": [{}]},
        {"id": "simple_0", "category": "simple", "calls": {"calculate_triangle_area": {"base": 10, "height": 5}}},
        {"id": "simple_0", "category": "simple", "calls": [{"calculate_triangle_area": {"base": 10, "height": 5}}]},
    ])
    assert [(r["valid"], r["error_type"]) for r in score_predictions("v3", path)] == [
        (True, None), (True, None), (True, None), (False, "relevance_error:decoder_failed"),
        (False, "ast_decoder:decoder_wrong_output_format"), (False, "ast_decoder:decoder_wrong_output_format"),
        (True, None)]


@pytest.mark.parametrize("line, message", [
    ("{oops", r"pred\.jsonl:2: invalid JSON"),
    ({"id": "simple_0", "calls": []}, r"pred\.jsonl:2: missing key\(s\) \['category'\]"),
    ({"id": "simple_9999", "category": "simple", "calls": []}, r"pred\.jsonl:2: id 'simple_9999' is not in BFCL v3 category 'simple'"),
    ({"id": "x", "category": "sql", "calls": []}, r"pred\.jsonl:2: unknown BFCL v3 category 'sql'; expected one of"),
    ({"id": "multi_turn_base_0", "category": "multi_turn_base", "calls": []}, r"pred\.jsonl:2: .*multi-turn"),
])
def test_malformed_prediction_lines_name_file_and_line(tmp_path, line, message):
    good = {"id": "simple_1", "category": "simple", "calls": []}
    path = write_lines(tmp_path / "pred.jsonl", [good, line])
    with pytest.raises(CahlInputError, match=message):
        score_predictions("v3", path)


def test_unknown_version_is_an_input_error(tmp_path):
    with pytest.raises(CahlInputError, match="v3"):
        score_predictions("v9", write_lines(tmp_path / "p.jsonl", []))
