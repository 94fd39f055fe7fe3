"""BFCL v3 and v4 tasks, read from the questions and possible answers shipped in the PyPI wheels.

v3 is in `nvidia-bfcl` (bfcl/data/BFCL_v3_<category>.json), v4 in `bfcl-eval`
(bfcl_eval/data/BFCL_v4_<category>.json); possible answers sit under data/possible_answer/ with
the same file name. Every file is JSON Lines despite its .json suffix.

Categories keep BFCL's own names per version (v4 renamed simple/java/javascript to
simple_python/simple_java/simple_javascript; the old names are accepted as aliases). v3's
`multi_turn_composite` is left out, as BFCL's own "all" collection leaves it out: 16 of its
ground-truth call strings are not valid Python. v4's memory, web_search and format_sensitivity
need BFCL's agentic back-ends and are not loaded. Ids are BFCL's, as shipped: v3 live_relevance
has two different items with id live_relevance_3-3-0.

What a Task holds (DESIGN §6):
- messages: the first turn of `question` (live items may start with a system message);
- tools: the function docs as JSON schema. BFCL writes "dict", "float", "tuple", "any" and Java/JS
  type names; these map to JSON-schema types. Java and JavaScript arguments are judged as source
  text, so their parameters become strings whose description names the Java/JS type;
- meta["functions"]: the docs as BFCL wrote them (the checker needs BFCL's own types),
  meta["possible_answer"]: the raw ground truth `[{fn: {arg: [allowed values]}}]` (None for
  irrelevance and live_relevance), meta["language"]: "Python" | "Java" | "JavaScript";
- gold_calls: one canonical answer, the first allowed value of each argument (an optional one,
  whose first allowed value is "", is omitted; see _canonical_args). Java/JS values stay
  decoded (the checker wants them as source text). Irrelevance: []; live_relevance: None (any
  call counts);
- multi-turn: messages and gold_calls are the first turn's; meta["turns"] and meta["turn_calls"]
  hold every turn, meta["initial_config"], meta["involved_classes"] the back-end state, and
  meta["missed_function"] the docs withheld until a given turn (not in tools).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Collection
from typing import Any

from cahl.paths import parse_jsonl, require_keys
from cahl.types import CahlInputError, Message, Task, ToolCall, ToolSpec
from cahl.wheels import read_member

# version -> (wheel package, data folder inside the wheel, file-name prefix)
_WHEELS = {
    "v3": ("nvidia-bfcl", "bfcl/data/", "BFCL_v3_"),
    "v4": ("bfcl-eval", "bfcl_eval/data/", "BFCL_v4_"),
}
_SHARED_AST = [
    "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
    "live_irrelevance", "live_relevance",
]
AST_CATEGORIES: dict[str, list[str]] = {
    "v3": ["simple", "java", "javascript", *_SHARED_AST],
    "v4": ["simple_python", "simple_java", "simple_javascript", *_SHARED_AST],
}
MULTI_TURN_CATEGORIES = ["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"]
CATEGORIES: dict[str, list[str]] = {v: [*AST_CATEGORIES[v], *MULTI_TURN_CATEGORIES] for v in _WHEELS}
_ALIASES = {"v3": {}, "v4": {"simple": "simple_python", "java": "simple_java", "javascript": "simple_javascript"}}
_NO_ANSWER = ("irrelevance", "live_irrelevance", "live_relevance")

# Multi-turn back-end class -> its function-doc file under data/multi_turn_func_doc/.
_CLASS_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}

# BFCL type names (Python, Java, JavaScript) -> JSON-schema types.
_JSON_TYPES = {
    "string": "string", "String": "string", "char": "string", "any": "string",
    "integer": "integer", "long": "integer", "byte": "integer", "short": "integer", "Bigint": "integer",
    "float": "number", "double": "number",
    "boolean": "boolean", "Boolean": "boolean",
    "array": "array", "tuple": "array", "Array": "array", "ArrayList": "array",
    "Set": "array", "Queue": "array", "Stack": "array",
    "dict": "object", "HashMap": "object", "Hashtable": "object",
}


def check_version(version: str) -> None:
    if version not in _WHEELS:
        raise CahlInputError(f"unknown BFCL version {version!r}; expected one of {list(_WHEELS)}")


def canonical_category(version: str, category: str) -> str:
    """BFCL's name for `category` in `version` (v4 also accepts simple/java/javascript)."""
    check_version(version)
    category = _ALIASES[version].get(category, category)
    if category not in CATEGORIES[version]:
        raise CahlInputError(f"unknown BFCL {version} category {category!r}; expected one of {CATEGORIES[version]}")
    return category


def language_of(category: str) -> str:
    """The checker's language for a category, by BFCL's rule on the category name."""
    if "javascript" in category:
        return "JavaScript"
    if "java" in category:
        return "Java"
    return "Python"


def load_bfcl(version: str, category: str, limit: int | None = None) -> list[Task]:
    """Tasks of one BFCL category, in file order; `limit` keeps the first `limit` items."""
    category = canonical_category(version, category)
    if limit is not None and limit < 0:
        raise CahlInputError(f"limit must be >= 0 or None, got {limit}")
    package, folder, prefix = _WHEELS[version]
    question_member = f"{folder}{prefix}{category}.json"
    records = _read_jsonl(package, question_member)[:limit]
    if category in _NO_ANSWER:
        answers = {}
    else:
        answer_member = f"{folder}possible_answer/{prefix}{category}.json"
        answers = _answers_by_index(package, answer_member)
    tasks = []
    class_docs: dict[str, list[dict]] = {}  # multi-turn function docs, read once per call
    for lineno, record in records:
        where = f"{package} wheel {question_member}:{lineno}"
        require_keys(record, ["id", "question"], where)
        if category in MULTI_TURN_CATEGORIES:
            tasks.append(_multi_turn_task(version, category, record, answers, where, package, folder, class_docs))
        else:
            tasks.append(_ast_task(version, category, record, answers, where))
    return tasks


# ---------------------------------------------------------------------------------------------
# Reading the wheel


def _read_jsonl(package: str, member: str) -> list[tuple[int, dict]]:
    text = read_member(package, member).decode("utf-8")
    return list(parse_jsonl(text.splitlines(), f"{package} wheel {member}"))


def _index_key(item_id: str) -> str:
    """BFCL's universal index: the id up to the first "-" (`live_simple_19-3-15` -> `live_simple_19`).

    The official runner pairs questions with answers by this index, not by the full id, and one
    v3 answer (live_multiple_1052) differs from its question after the "-".
    """
    return item_id.split("-")[0]


def _answers_by_index(package: str, member: str) -> dict[str, tuple[str, Any]]:
    """universal index -> (where, ground_truth)."""
    answers = {}
    for lineno, obj in _read_jsonl(package, member):
        where = f"{package} wheel {member}:{lineno}"
        require_keys(obj, ["id", "ground_truth"], where)
        key = _index_key(obj["id"])
        if key in answers:
            raise CahlInputError(f"{where}: second possible answer for item {key!r} (first at {answers[key][0]})")
        answers[key] = (where, obj["ground_truth"])
    return answers


def _answer_for(answers: dict, task_id: str, where: str) -> tuple[str, Any]:
    if _index_key(task_id) not in answers:
        raise CahlInputError(f"{where}: item {task_id!r} has no entry in the possible-answer file")
    return answers[_index_key(task_id)]


def _first_turn(record: dict, where: str) -> list[Message]:
    question = record.get("question")
    if not isinstance(question, list) or not question or not isinstance(question[0], list):
        raise CahlInputError(f"{where}: 'question' must be a non-empty list of turns (lists of messages)")
    for turn in question:
        if not isinstance(turn, list) or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in turn):
            raise CahlInputError(f"{where}: each turn of 'question' must be a list of {{role, content}} messages")
    return [dict(m) for m in question[0]]


# ---------------------------------------------------------------------------------------------
# Single-turn (AST) items


def _ast_task(version: str, category: str, record: dict, answers: dict, where: str) -> Task:
    functions = record.get("function")
    # Some live_irrelevance items offer no function at all; every other item offers some.
    if not isinstance(functions, list) or not (functions or category in _NO_ANSWER):
        raise CahlInputError(f"{where}: 'function' must be a non-empty list of function docs")
    language = language_of(category)
    tools = [to_tool_spec(f, language, where) for f in functions]
    if category in _NO_ANSWER:
        possible_answer, gold = None, ([] if "irrelevance" in category else None)
    else:
        answer_where, possible_answer = _answer_for(answers, record["id"], where)
        gold = _canonical_calls(possible_answer, functions, answer_where)
    return Task(
        id=record["id"],
        source=f"bfcl_{version}",
        messages=_first_turn(record, where),
        tools=tools,
        gold_calls=gold,
        category=category,
        meta={"functions": functions, "possible_answer": possible_answer, "language": language},
    )


def _canonical_calls(possible_answer: Any, functions: list[dict], where: str) -> list[ToolCall]:
    if not isinstance(possible_answer, list) or not all(
        isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in possible_answer
    ):
        raise CahlInputError(f"{where}: ground_truth must be a list of {{function_name: {{arg: [allowed values]}}}}")
    required = {f["name"]: f["parameters"].get("required", []) for f in functions}
    calls = []
    for call in possible_answer:
        (name, params), = call.items()
        calls.append(ToolCall(name, _canonical_args(params, required.get(name, []))))
    return calls


def _canonical_args(params: dict, required: Collection[str] = ()) -> dict:
    """{arg: [allowed]} -> {arg: first allowed value}.

    "" is BFCL's mark of an optional argument: an argument whose first allowed value is "" is
    omitted, unless the doc requires it (a few answers mark required arguments optional), when its
    first other value is taken. With this rule the canonical call passes the official checker on
    every item where some answer can.
    """
    args = {}
    for key, allowed in params.items():
        # A few answers give a bare value instead of a list of allowed values.
        choices = allowed if isinstance(allowed, list) else [allowed]
        values = [c for c in choices if c != ""]
        if values and (choices[0] != "" or key in required):
            args[key] = _canonical_value(values[0])
    return args


def _canonical_value(value: Any) -> Any:
    """Dicts inside possible answers map keys to allowed-value lists, at any depth."""
    if isinstance(value, dict):
        return _canonical_args(value)
    if isinstance(value, list):
        return [_canonical_value(v) for v in value]
    return value


def to_tool_spec(doc: dict, language: str, where: str) -> ToolSpec:
    """A BFCL function doc as an OpenAI-style tool with JSON-schema types."""
    if not {"name", "description", "parameters"} <= doc.keys() or "properties" not in doc["parameters"]:
        raise CahlInputError(f"{where}: function doc needs name, description and parameters.properties")
    parameters = doc["parameters"]
    if language == "Python":
        properties = {k: _json_schema(v, f"{where}: {doc['name']}.{k}") for k, v in parameters["properties"].items()}
    else:
        properties = {k: _source_text_schema(v, language) for k, v in parameters["properties"].items()}
    schema = {"type": "object", "properties": properties, "required": list(parameters.get("required", []))}
    return {"name": doc["name"], "description": doc["description"], "parameters": schema}


def _json_schema(schema: dict, where: str) -> dict:
    out = dict(schema)
    type_name = schema.get("type")
    if type_name == "":
        del out["type"]  # a few nested JS docs leave the type empty: any value
    elif type_name is not None:
        if type_name not in _JSON_TYPES:
            raise CahlInputError(f"{where}: unknown BFCL type {type_name!r}; expected one of {sorted(_JSON_TYPES)}")
        out["type"] = _JSON_TYPES[type_name]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _json_schema(v, f"{where}.{k}") for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = _json_schema(schema["items"], f"{where}[]")
    return out


def _source_text_schema(schema: dict, language: str) -> dict:
    """Java/JS arguments are written as source text: a string, with the real type described."""
    type_name = schema.get("type", "any")
    hint = f" Write it as {language} source text for a value of type {type_name}"
    if isinstance(schema.get("items"), dict):
        hint += f" with elements of type {schema['items'].get('type')}"
    if isinstance(schema.get("properties"), dict):
        hint += f" with entries {json.dumps(schema['properties'])}"
    return {"type": "string", "description": schema.get("description", "") + hint + "."}


# ---------------------------------------------------------------------------------------------
# Multi-turn items


def _multi_turn_task(version, category, record, answers, where, package, folder, class_docs) -> Task:
    require_keys(record, ["involved_classes", "initial_config"], where)
    docs = []
    for cls in record["involved_classes"]:
        if cls not in _CLASS_DOCS:
            raise CahlInputError(f"{where}: unknown involved class {cls!r}; expected one of {sorted(_CLASS_DOCS)}")
        if cls not in class_docs:
            member = f"{folder}multi_turn_func_doc/{_CLASS_DOCS[cls]}"
            class_docs[cls] = [doc for _, doc in _read_jsonl(package, member)]
        docs += class_docs[cls]
    missed_names = record.get("missed_function", {})
    withheld = {name for names in missed_names.values() for name in names}
    missed = {turn: [d for d in docs if d["name"] in names] for turn, names in missed_names.items()}
    functions = [d for d in docs if d["name"] not in withheld]

    answer_where, ground_truth = _answer_for(answers, record["id"], where)
    if not isinstance(ground_truth, list) or not all(
        isinstance(t, list) and all(isinstance(c, str) for c in t) for t in ground_truth
    ):
        raise CahlInputError(f"{answer_where}: ground_truth must be a list of turns, each a list of call strings")
    by_name = {d["name"]: d for d in docs}
    turn_calls = [[parse_call(c, by_name, answer_where) for c in turn] for turn in ground_truth]
    turns = record["question"]
    meta = {
        "functions": functions,
        "possible_answer": ground_truth,
        "language": "Python",
        "turns": turns,
        "turn_calls": turn_calls,
        "initial_config": record["initial_config"],
        "involved_classes": record["involved_classes"],
        "missed_function": missed,
    }
    if "excluded_function" in record:
        meta["excluded_function"] = record["excluded_function"]
    return Task(
        id=record["id"],
        source=f"bfcl_{version}",
        messages=_first_turn(record, where),
        tools=[to_tool_spec(d, "Python", where) for d in functions],
        gold_calls=turn_calls[0] if turn_calls else [],
        category=category,
        meta=meta,
    )


def parse_call(text: str, docs: dict[str, dict], where: str) -> ToolCall:
    """A Python call string such as `cd(folder='docs')` -> ToolCall, without evaluating it.

    Positional arguments take the names of the function doc's parameters, in doc order.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise CahlInputError(f"{where}: ground-truth call {text[:120]!r} is not valid Python ({e.msg})") from e
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise CahlInputError(f"{where}: expected a call like name(arg=value), got {text[:120]!r}")
    name = node.func.id
    args: dict[str, Any] = {}
    try:
        if node.args:
            if name not in docs:
                raise CahlInputError(f"{where}: {text[:120]!r} passes positional arguments to {name!r}, which has no doc")
            names = list(docs[name]["parameters"]["properties"])
            if len(node.args) > len(names):
                raise CahlInputError(f"{where}: {text[:120]!r} passes more positional arguments than {name!r} has")
            args.update({names[i]: ast.literal_eval(a) for i, a in enumerate(node.args)})
        for keyword in node.keywords:
            if keyword.arg is None:
                raise CahlInputError(f"{where}: {text[:120]!r} uses **kwargs; expected name=value arguments")
            args[keyword.arg] = ast.literal_eval(keyword.value)
    except ValueError as e:
        raise CahlInputError(f"{where}: {text[:120]!r} has an argument that is not a literal ({e})") from e
    return ToolCall(name, args)
