"""BFCL loader: counts match the wheel files, tasks carry what the checker and the agent need."""

import json
import zipfile

import pytest

from cahl.data.bfcl import AST_CATEGORIES, CATEGORIES, MULTI_TURN_CATEGORIES, load_bfcl, parse_call
from cahl.eval.bfcl_checker import check_calls
from cahl.types import CahlInputError, ToolCall
from cahl.wheels import wheel_path

WHEEL_DATA = {"v3": ("nvidia-bfcl", "bfcl/data/BFCL_v3_"), "v4": ("bfcl-eval", "bfcl_eval/data/BFCL_v4_")}

V3_COUNTS = {
    "simple": 400, "java": 100, "javascript": 50, "multiple": 200, "parallel": 200, "parallel_multiple": 200,
    "irrelevance": 240, "live_simple": 258, "live_multiple": 1053, "live_parallel": 16,
    "live_parallel_multiple": 24, "live_irrelevance": 882, "live_relevance": 18,
    "multi_turn_base": 200, "multi_turn_miss_func": 200, "multi_turn_miss_param": 200, "multi_turn_long_context": 200,
}
V4_COUNTS = {**V3_COUNTS, "live_irrelevance": 884, "live_relevance": 16}
for old, new in [("simple", "simple_python"), ("java", "simple_java"), ("javascript", "simple_javascript")]:
    V4_COUNTS[new] = V4_COUNTS.pop(old)

# Items where no answer can pass the official checker (an answer argument the docs lack, a
# required argument the answer omits, or allows nothing), and v3 simple_363 whose answer names
# the function without its "restaurant_search." prefix. Every other canonical call must pass.
IMPOSSIBLE = {"parallel_multiple_26", "live_simple_106-63-0", "live_simple_112-68-0", "live_multiple_507-149-4",
              "live_multiple_862-181-3", "live_multiple_964-207-0"}
V3_ONLY_DEFECT = {"simple_363"}


def _wheel_line_count(version: str, category: str) -> int:
    package, prefix = WHEEL_DATA[version]
    with zipfile.ZipFile(wheel_path(package)) as zf:
        text = zf.read(f"{prefix}{category}.json").decode("utf-8")
    return sum(1 for line in text.splitlines() if line.strip())


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_every_category_loads_one_task_per_wheel_line(version):
    pinned = V3_COUNTS if version == "v3" else V4_COUNTS
    assert set(CATEGORIES[version]) == set(pinned)
    for category in CATEGORIES[version]:
        tasks = load_bfcl(version, category)
        assert len(tasks) == _wheel_line_count(version, category) == pinned[category], category
        duplicated = len(tasks) - len({t.id for t in tasks})
        # v3 live_relevance has two different items with id live_relevance_3-3-0 (as shipped).
        assert duplicated == (1 if (version, category) == ("v3", "live_relevance") else 0), category
        assert all(t.source == f"bfcl_{version}" and t.category == category for t in tasks)


def test_unknown_version_or_category_lists_the_valid_ones():
    with pytest.raises(CahlInputError, match="v3"):
        load_bfcl("v5", "simple")
    with pytest.raises(CahlInputError, match="live_simple"):
        load_bfcl("v3", "simple_python")
    with pytest.raises(CahlInputError, match="multi_turn_base"):
        load_bfcl("v3", "multi_turn_composite")  # left out: its ground truth is not valid Python


def test_v4_accepts_the_v3_names_of_the_renamed_categories():
    tasks = load_bfcl("v4", "java", limit=3)
    assert [t.category for t in tasks] == ["simple_java"] * 3
    assert tasks[0].id == "simple_java_0"


def test_simple_task_fields():
    task = load_bfcl("v3", "simple", limit=1)[0]
    assert task.id == "simple_0"
    assert task.messages == [{"role": "user", "content": task.messages[0]["content"]}]
    assert "triangle" in task.messages[0]["content"]
    params = task.tools[0]["parameters"]
    assert params["type"] == "object" and params["properties"]["base"]["type"] == "integer"
    assert task.meta["functions"][0]["parameters"]["type"] == "dict"  # BFCL's own types kept for the checker
    assert task.meta["possible_answer"] == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    assert task.gold_calls == [ToolCall("calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"})]
    assert task.meta["language"] == "Python"


def _types_in(schema: dict) -> set:
    found = {schema["type"]} if "type" in schema else set()
    for sub in schema.get("properties", {}).values():
        found |= _types_in(sub)
    if isinstance(schema.get("items"), dict):
        found |= _types_in(schema["items"])
    return found


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_tools_use_only_json_schema_types(version):
    json_types = {"string", "integer", "number", "boolean", "array", "object"}
    for category in CATEGORIES[version]:
        for task in load_bfcl(version, category):
            for tool in task.tools:
                assert _types_in(tool["parameters"]) <= json_types, (task.id, tool["name"])


def test_java_and_javascript_parameters_are_source_text_strings():
    task = load_bfcl("v3", "java", limit=2)[1]
    props = task.tools[0]["parameters"]["properties"]
    assert {p["type"] for p in props.values()} == {"string"}
    assert "HashMap" in props["params"]["description"]
    assert task.meta["language"] == "Java"
    assert load_bfcl("v4", "simple_javascript", limit=1)[0].meta["language"] == "JavaScript"


def test_irrelevance_has_no_gold_call_and_relevance_no_answer():
    irrelevant = load_bfcl("v3", "irrelevance", limit=5)
    assert all(t.gold_calls == [] and t.meta["possible_answer"] is None for t in irrelevant)
    relevant = load_bfcl("v4", "live_relevance", limit=5)
    assert all(t.gold_calls is None and t.meta["possible_answer"] is None for t in relevant)


def test_optional_marker_is_omitted_from_gold_calls():
    # live_multiple_1051: {"alarm_time": [...], "purpose": ["wake up", ""]}; find an item whose
    # first allowed value is "" and check the argument is absent.
    for task in load_bfcl("v3", "simple"):
        answer = next(iter(task.meta["possible_answer"][0].values()))
        optional_first = [k for k, v in answer.items() if v and v[0] == ""]
        if optional_first:
            assert not set(optional_first) & set(task.gold_calls[0].arguments)
            return
    pytest.fail("no simple item with an optional-first argument")


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_canonical_gold_calls_pass_the_checker(version):
    known = IMPOSSIBLE | (V3_ONLY_DEFECT if version == "v3" else set())
    failing = set()
    for category in AST_CATEGORIES[version]:
        if "java" in category:
            continue  # gold values are decoded; the checker wants Java/JS source text
        for task in load_bfcl(version, category):
            if task.meta["possible_answer"] is None:
                continue
            calls = [{c.name: c.arguments} for c in task.gold_calls]
            valid, _, _ = check_calls(category, task.meta["functions"], task.meta["possible_answer"], calls, "Python")
            if not valid:
                failing.add(task.id)
    assert failing == known


def test_multi_turn_keeps_every_turn_and_withholds_missed_functions():
    task = load_bfcl("v3", "multi_turn_miss_func", limit=1)[0]
    assert task.messages == task.meta["turns"][0]
    assert len(task.meta["turn_calls"]) == len(task.meta["possible_answer"]) == len(task.meta["turns"])
    assert task.gold_calls == task.meta["turn_calls"][0]
    assert task.gold_calls[0] == ToolCall("cd", {"folder": "document"})
    # 'sort' is withheld until turn 3; its ground truth "sort('final_report.pdf')" is positional
    assert [d["name"] for d in task.meta["missed_function"]["3"]] == ["sort"]
    assert "sort" not in {t["name"] for t in task.tools}
    assert ToolCall("sort", {"file_name": "final_report.pdf"}) in task.meta["turn_calls"][3]
    assert {"GorillaFileSystem"} <= set(task.meta["initial_config"])


def test_every_multi_turn_ground_truth_parses():
    for version in ("v3", "v4"):
        for category in MULTI_TURN_CATEGORIES:
            for task in load_bfcl(version, category):
                flat = [c for turn in task.meta["turn_calls"] for c in turn]
                assert all(isinstance(c, ToolCall) for c in flat)


DOCS = {"mv": {"parameters": {"properties": {"source": {}, "destination": {}}}}}


def test_parse_call_reads_literals_and_positional_arguments():
    call = parse_call("mv('a.txt', destination='b/')", DOCS, "here")
    assert call == ToolCall("mv", {"source": "a.txt", "destination": "b/"})
    assert parse_call("f(x=[1, -2.5], y={'k': None}, z=True)", {}, "here").arguments == {
        "x": [1, -2.5], "y": {"k": None}, "z": True}


@pytest.mark.parametrize("text, message", [
    ("rm(path=__import__('os').getcwd())", "not a literal"),
    ("cd(folder='docs)", "not valid Python"),
    ("os.remove('x')", "expected a call"),
    ("mv('a', 'b', 'c')", "more positional"),
    ("f(**opts)", "kwargs"),
])
def test_parse_call_rejects_what_is_not_a_literal_call(text, message):
    with pytest.raises(CahlInputError, match=message):
        parse_call(text, DOCS, "answers.json:7")


def _fake_wheel(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """A stand-in nvidia-bfcl wheel in a fresh cache dir (what wheel_path() looks for)."""
    monkeypatch.setenv("CAHL_CACHE_DIR", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "nvidia_bfcl-26.3-py3-none-any.whl", "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)


SIMPLE_ITEM = {"id": "simple_0", "question": [[{"role": "user", "content": "hi"}]],
               "function": [{"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {}, "required": []}}]}


def test_malformed_record_names_wheel_member_and_line(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, {
        "bfcl/data/BFCL_v3_simple.json": json.dumps(SIMPLE_ITEM) + "\n{not json\n",
        "bfcl/data/possible_answer/BFCL_v3_simple.json": json.dumps({"id": "simple_0", "ground_truth": [{"f": {}}]}),
    })
    with pytest.raises(CahlInputError, match=r"bfcl/data/BFCL_v3_simple\.json:2: invalid JSON"):
        load_bfcl("v3", "simple")


def test_item_without_possible_answer_is_an_error(tmp_path, monkeypatch):
    second = {**SIMPLE_ITEM, "id": "simple_1"}
    _fake_wheel(tmp_path, monkeypatch, {
        "bfcl/data/BFCL_v3_simple.json": json.dumps(SIMPLE_ITEM) + "\n" + json.dumps(second) + "\n",
        "bfcl/data/possible_answer/BFCL_v3_simple.json": json.dumps({"id": "simple_0", "ground_truth": [{"f": {}}]}),
    })
    with pytest.raises(CahlInputError, match=r"BFCL_v3_simple\.json:2: item 'simple_1' has no entry"):
        load_bfcl("v3", "simple")


def test_bad_ground_truth_shape_names_the_answer_line(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, {
        "bfcl/data/BFCL_v3_simple.json": json.dumps(SIMPLE_ITEM) + "\n",
        "bfcl/data/possible_answer/BFCL_v3_simple.json": json.dumps({"id": "simple_0", "ground_truth": {"f": {}}}),
    })
    with pytest.raises(CahlInputError, match=r"possible_answer/BFCL_v3_simple\.json:1: ground_truth must be"):
        load_bfcl("v3", "simple")
