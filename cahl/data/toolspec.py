"""Tool lists rendered as text (ToolRL, API-Bank) -> OpenAI-style JSON-schema tool dicts.

ToolRL and ToolRL's API-Bank split render each tool in the system prompt as
    1. Name: X                      (or, in API-Bank level 3:  1. X: description)
    Description: ...
    Parameters: {"arg": {"type": "str", "description": ..., "default": ...}, ...}
where Parameters is JSON (ToolRL) or a Python-literal dict (API-Bank). The type names are the
source datasets' own ("str", "List[int]", "str, optional", "float", ...); `json_type` maps them
to JSON-schema types so every loader hands the agent the same schema format (cahl/types.py).

Which parameters are required is not rendered; we infer it: a parameter is required unless its
type says "optional" or it carries a non-empty default.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from cahl.types import CahlInputError, ToolSpec

_SECTION_START = "**Available Tools**"
_SECTION_END = "**Steps for Each Turn**"
_NAME_LINE = re.compile(r"^\d+\.\s+Name:\s*(.*)$")
_INLINE_LINE = re.compile(r"^\d+\.\s+([^\s:]+):\s*(.*)$")  # API-Bank level 3: "1. QueryMeeting: desc"

_BASE_TYPES = {
    "str": "string", "string": "string", "char": "string",
    "int": "integer", "integer": "integer", "long": "integer",
    "float": "number", "double": "number", "number": "number",
    "bool": "boolean", "boolean": "boolean",
    "list": "array", "array": "array", "tuple": "array", "set": "array",
    "dict": "object", "object": "object", "mapping": "object",
    "null": "null", "none": "null", "nonetype": "null",
    # A function argument can only travel in a JSON call as its source text.
    "callable": "string",
}


def parse_tool_list(text: str, where: str) -> list[ToolSpec]:
    """Tools rendered in a ToolRL/API-Bank prompt, in order. `text` may be the whole system prompt.

    Raises CahlInputError naming `where` (file and item index) on any line it cannot read.
    """
    lines = _tools_section(text).split("\n")
    tools: list[dict[str, Any]] = []
    last = ""  # which field the previous line filled: continuation lines extend descriptions
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if m := _NAME_LINE.match(line):
            tools.append({"name": m.group(1).strip(), "description": "", "params": None})
            last = "name"
        elif m := _INLINE_LINE.match(line):
            tools.append({"name": m.group(1), "description": m.group(2).strip(), "params": None})
            last = "description"
        elif not tools:
            raise CahlInputError(f"{where}: tool list line {lineno}: expected '1. Name: ...', got {line[:80]!r}")
        elif line.startswith("Description:"):
            tools[-1]["description"] = line[len("Description:"):].strip()
            last = "description"
        elif line.startswith("Parameters:"):
            tools[-1]["params"] = _literal(line[len("Parameters:"):].strip(), f"{where}: tool {tools[-1]['name']!r}")
            last = "params"
        elif last == "description":
            tools[-1]["description"] += "\n" + line.strip()
        else:
            raise CahlInputError(f"{where}: tool list line {lineno}: unexpected line {line[:80]!r}")
    if not tools:
        raise CahlInputError(f"{where}: no tools found in the tool list")
    return [tool_spec(t["name"], t["description"], t["params"] or {}, f"{where}: tool {t['name']!r}")
            for t in tools]


def tool_spec(name: str, description: str, params: dict, where: str) -> ToolSpec:
    """One tool dict from a name, a description and flat `{arg: {"type", "description", ...}}` params.

    Params that are already a JSON schema ({"type": "object", "properties": ...}) pass through.
    """
    if not isinstance(params, dict):
        raise CahlInputError(f"{where}: parameters must be a dict, got {type(params).__name__}")
    if params.get("type") == "object" and isinstance(params.get("properties"), dict):
        schema = {"type": "object", "properties": params["properties"], "required": list(params.get("required", []))}
        return {"name": name, "description": description, "parameters": schema}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, info in params.items():
        if not isinstance(info, dict) or "type" not in info:
            raise CahlInputError(f"{where}: parameter {arg!r} must be a dict with a 'type', got {info!r:.80}")
        prop, optional = json_type(str(info["type"]), f"{where}: parameter {arg!r}")
        prop["description"] = str(info.get("description", ""))
        default = info.get("default")
        if default not in (None, ""):
            prop["default"] = default
        properties[arg] = prop
        if not optional and default in (None, ""):
            required.append(arg)
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required}}


def json_type(type_text: str, where: str) -> tuple[dict[str, Any], bool]:
    """JSON-schema fragment for a dataset type name, and whether the name said "optional".

    'str' -> {"type": "string"}; 'List[int]' -> {"type": "array", "items": {"type": "integer"}};
    'Union[int, float]' -> {"type": "number"}; "['string', 'null']" -> {"type": ["string", "null"]}.
    """
    text = type_text.strip()
    optional = False
    if m := re.fullmatch(r"(.*?),\s*optional", text, flags=re.IGNORECASE):
        text, optional = m.group(1).strip(), True
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise CahlInputError(f"{where}: cannot read type {type_text!r}") from None
    return _schema_of(node, type_text, where), optional


def _schema_of(node: ast.AST, type_text: str, where: str) -> dict[str, Any]:
    """Walk a parsed type expression (Name, Name[args], list(str), ['a', 'b'])."""
    if isinstance(node, ast.Name) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        name = node.id if isinstance(node, ast.Name) else node.value
        base = _BASE_TYPES.get(name.lower())
        if base is None:
            raise CahlInputError(f"{where}: unknown type {type_text!r} (expected one of {sorted(set(_BASE_TYPES))})")
        return {"type": base}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.Attribute):  # typing.List
        return _schema_of(ast.Name(node.attr), type_text, where)
    if isinstance(node, ast.List):  # ['string', 'null']: a JSON-schema type list
        types = [_schema_of(e, type_text, where)["type"] for e in node.elts]
        return {"type": types}
    if isinstance(node, ast.Call) and len(node.args) == 1:  # list(str)
        outer = _schema_of(node.func, type_text, where)
        return _with_args(outer, [node.args[0]], type_text, where)
    if isinstance(node, ast.Subscript):
        head = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head in ("Union", "Optional"):
            return _union([_schema_of(a, type_text, where) for a in args])
        return _with_args(_schema_of(node.value, type_text, where), args, type_text, where)
    raise CahlInputError(f"{where}: cannot read type {type_text!r}")


def _with_args(outer: dict[str, Any], args: list[ast.AST], type_text: str, where: str) -> dict[str, Any]:
    """Element types: List[int] -> items; Tuple[float, float] -> items of their union; Dict[K, V] -> values."""
    if outer["type"] == "array":
        items = [a for a in args if not (isinstance(a, ast.Constant) and a.value is Ellipsis)]
        if items and not isinstance(items[0], ast.List):  # Callable[[float], float] is not an element list
            return {"type": "array", "items": _union([_schema_of(a, type_text, where) for a in items])}
        return outer
    if outer["type"] == "object" and len(args) == 2:
        return {"type": "object", "additionalProperties": _schema_of(args[1], type_text, where)}
    return outer  # Callable[...] and the like: the base type says all a JSON call can carry


def _union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """Union of JSON types; integer+number collapse to number, identical members to one."""
    if len(schemas) == 1:
        return dict(schemas[0])
    types: list = []
    for s in schemas:
        for t in s["type"] if isinstance(s["type"], list) else [s["type"]]:
            if t not in types:
                types.append(t)
    if set(types) == {"integer", "number"}:
        types = ["number"]
    return {"type": types[0] if len(types) == 1 else types}


def _tools_section(text: str) -> str:
    """The tool list inside a ToolRL-style system prompt, or `text` itself when it is only the list."""
    if _SECTION_START not in text:
        return text
    body = text.split(_SECTION_START, 1)[1].split(_SECTION_END, 1)[0]
    lines = body.split("\n")
    # Drop the "In your response, you can use the following tools:" lead-in.
    return "\n".join(ln for ln in lines if not ln.rstrip().endswith("following tools:"))


def _literal(text: str, where: str) -> Any:
    """A parameters dict written as JSON or as a Python literal (data, so literal_eval is safe)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError) as e:
        raise CahlInputError(f"{where}: Parameters is neither JSON nor a Python literal ({e}): {text[:80]!r}") from None
