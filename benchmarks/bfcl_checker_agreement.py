"""Agreement of cahl's BFCL AST checker with the official one, on many generated answers.

    python3 benchmarks/bfcl_checker_agreement.py                 # every AST category, v3 and v4
    python3 benchmarks/bfcl_checker_agreement.py --version v4 --per-task 5 --seed 1

The official checker is taken from the cached wheels and imported in a throwaway way: its modules
(ast_checker.py, the Java/JS type converters and the constants they import) are unpacked into a
temp folder and imported from there. Nothing is installed. One import is stubbed: v4's
`bfcl_eval.constants.model_config` imports every model handler (and their SDKs) only to say, per
model, whether "." in function names becomes "_"; the stub maps two made-up model names to
underscore_to_dot False/True. The runner's three-line dispatch around the checker (relevance
categories: is there a call; otherwise: call-shape check, then ast_checker) is mirrored here,
calling the official is_empty_output / is_function_calling_format_output.

For every task of every AST category we generate answers that probe each rule: the canonical
answer, each allowed alternative, omitted optional / required arguments, extra arguments, wrong
and dotted/underscored names, type swaps (int for float, float for int, str, list, bool, None),
string case / space / punctuation variants, list and dict edits, permuted / dropped / duplicated
calls, calls for irrelevance, malformed answers, and Java/JavaScript values written as source text
in several styles (and as raw non-string values). Both checkers judge each answer; a verdict is
(valid, error_type). Prints `agreement: A/N` per category and overall, then every disagreement.
Answers on which the official checker raises are counted apart (it has no verdict there).
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cahl.data.bfcl import AST_CATEGORIES, load_bfcl
from cahl.eval.bfcl_checker import check_calls
from cahl.types import Task
from cahl.wheels import read_member

# ---------------------------------------------------------------------------------------------
# The official checker, unpacked from the wheel

_OFFICIAL_FILES = {
    "v3": ("nvidia-bfcl", [
        "bfcl/constant.py",
        "bfcl/utils.py",
        "bfcl/model_handler/constant.py",
        "bfcl/eval_checker/ast_eval/ast_checker.py",
        "bfcl/eval_checker/ast_eval/type_convertor/java_type_converter.py",
        "bfcl/eval_checker/ast_eval/type_convertor/js_type_converter.py",
    ]),
    "v4": ("bfcl-eval", [
        "bfcl_eval/constants/enums.py",
        "bfcl_eval/constants/type_mappings.py",
        "bfcl_eval/eval_checker/ast_eval/ast_checker.py",
        "bfcl_eval/eval_checker/ast_eval/type_convertor/java_type_converter.py",
        "bfcl_eval/eval_checker/ast_eval/type_convertor/js_type_converter.py",
    ]),
}
_V4_MODEL_CONFIG_STUB = '''"""Stub (cahl agreement benchmark): the real module imports every model handler's SDK."""
from types import SimpleNamespace

MODEL_CONFIG_MAPPING = {
    "cahl-dots": SimpleNamespace(underscore_to_dot=False),
    "cahl-underscores": SimpleNamespace(underscore_to_dot=True),
}
'''
# v3 decides by model name too: the first is in its UNDERSCORE_TO_DOT list, the second is not.
_MODEL_NAMES = {"v3": {True: "gpt-4o-2024-11-20-FC", False: "gorilla-openfunctions-v2"},
                "v4": {True: "cahl-underscores", False: "cahl-dots"}}


def _unpack(version: str) -> Path:
    """Write the official modules under a temp folder; return the folder to put on sys.path."""
    package, members = _OFFICIAL_FILES[version]
    root = Path(tempfile.gettempdir()) / "cahl-bfcl-official" / version
    for member in members:
        target = root / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_member(package, member))
    if version == "v4":
        (root / "bfcl_eval/constants/model_config.py").write_text(_V4_MODEL_CONFIG_STUB)
        # is_empty_output / is_function_calling_format_output live in bfcl_eval/utils.py, which
        # imports half the package; copy just those two functions' source into a module.
        source = read_member(package, "bfcl_eval/utils.py").decode("utf-8")
        wanted = {"is_function_calling_format_output", "is_empty_output"}
        parts = [ast.get_source_segment(source, node) for node in ast.parse(source).body
                 if isinstance(node, ast.FunctionDef) and node.name in wanted]
        (root / "bfcl_eval/answer_shape.py").write_text("\n\n\n".join(parts) + "\n")
    for folder in [p for p in root.rglob("*") if p.is_dir()]:
        (folder / "__init__.py").touch()
    return root


@dataclass
class OfficialChecker:
    """The official verdict for one answer: (valid, error_type or None)."""

    version: str
    ast_checker: Callable
    is_call_list: Callable
    is_empty_output: Callable
    language: Callable[[str], Any]

    def __call__(self, category: str, task: Task, calls: Any, underscore_to_dot: bool) -> tuple[bool, str | None]:
        if "relevance" in category:  # the official relevance_file_runner; covers irrelevance
            has_call = not self.is_empty_output(calls)
            if "irrelevance" in category:
                return (True, None) if not has_call else (False, "irrelevance_error:decoder_success")
            return (True, None) if has_call else (False, "relevance_error:decoder_failed")
        if not self.is_call_list(calls):
            return False, "ast_decoder:decoder_wrong_output_format"
        result = self.ast_checker(
            copy.deepcopy(task.meta["functions"]), copy.deepcopy(calls), copy.deepcopy(task.meta["possible_answer"]),
            self.language(task.meta["language"]), category, _MODEL_NAMES[self.version][underscore_to_dot],
        )
        return (True, None) if result["valid"] else (False, result["error_type"])


def load_official(version: str) -> OfficialChecker:
    """Import the official checker of `version` from its wheel (raises if that is impossible)."""
    root = str(_unpack(version))
    if root not in sys.path:
        sys.path.insert(0, root)
    if version == "v3":
        checker = importlib.import_module("bfcl.eval_checker.ast_eval.ast_checker")
        utils = importlib.import_module("bfcl.utils")
        return OfficialChecker(version, checker.ast_checker, utils.is_function_calling_format_output,
                               utils.is_empty_output, lambda language: language)
    checker = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    shape = importlib.import_module("bfcl_eval.answer_shape")
    enums = importlib.import_module("bfcl_eval.constants.enums")
    return OfficialChecker(version, checker.ast_checker, shape.is_function_calling_format_output,
                           shape.is_empty_output, lambda language: enums.Language[language.upper()])


# ---------------------------------------------------------------------------------------------
# Candidate answers


@dataclass
class Candidate:
    task: Task
    kind: str
    calls: Any
    underscore_to_dot: bool = False


def _first(allowed: Any) -> tuple[bool, Any]:
    choices = [c for c in (allowed if isinstance(allowed, list) else [allowed]) if c != ""]
    return (True, _decode(choices[0])) if choices else (False, None)


def _decode(value: Any) -> Any:
    """A possible-answer value -> a plain value (dicts map keys to allowed lists)."""
    if isinstance(value, dict):
        out = {}
        for key, allowed in value.items():
            present, v = _first(allowed)
            if present:
                out[key] = v
        return out
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _interleave(text: str) -> str:
    """Every character the official comparison ignores, spread through the text."""
    ignored = " ,./-_*^"
    return "".join(ch + ignored[i % len(ignored)] for i, ch in enumerate(text))


def _string_variants(text: str) -> list[tuple[str, str]]:
    out = [("upper", text.upper()), ("title", text.title()), ("spaced", " ".join(text)),
           ("punct", text.replace(" ", ", ") + "."), ("dash", text.replace(" ", "-")),
           ("star", "*" + text + "^"), ("bang", text + "!"), ("empty", ""),
           ("quote", text.replace("'", '"') + "'"), ("trailing_space", text + " "),
           ("underscored", text.replace(" ", "_")), ("interleaved", _interleave(text))]
    return out


def _value_variants(value: Any, rng: random.Random) -> list[tuple[str, Any]]:
    """Wrong-ish and right-ish replacements for one decoded value."""
    out: list[tuple[str, Any]] = [("none", None), ("wrapped", [value]), ("as_str", str(value))]
    if type(value) is bool:
        out += [("flip", not value), ("as_int", int(value))]
    elif type(value) is int:
        out += [("plus1", value + 1), ("as_float", float(value)), ("as_bool", bool(value)), ("neg", -value)]
    elif type(value) is float:
        out += [("as_int", int(value)), ("times2", value * 2 + 0.5), ("rounded", round(value))]
    elif type(value) is str:
        out += _string_variants(value) + [("as_int", 1)]
    elif type(value) is list:
        out += [("reversed", value[::-1]), ("empty", []), ("as_tuple", tuple(value))]
        if value:
            out += [("drop_last", value[:-1]), ("dup_last", value + [value[-1]])]
            for label, item in _value_variants(value[0], rng)[:6]:
                out.append((f"item0_{label}", [item] + value[1:]))
            if all(type(v) is int for v in value):
                out.append(("items_as_float", [float(v) for v in value]))
    elif type(value) is dict:
        out += [("empty", {}), ("extra_key", {**value, "zz_extra": 1})]
        if value:
            key = rng.choice(sorted(value))
            out.append(("drop_key", {k: v for k, v in value.items() if k != key}))
            for label, item in _value_variants(value[key], rng)[:5]:
                out.append((f"key_{label}", {**value, key: item}))
    return out


# --- Java / JavaScript source text ------------------------------------------------------------

def _java_scalar(value: Any, type_name: str | None, quote: bool) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return f"{value}L" if type_name == "long" else str(value)
    if type(value) is float:
        return f"{value}f" if type_name == "float" else repr(value)
    if type(value) is str:
        return f'"{value}"' if quote else value
    return str(value)


def java_source(value: Any, doc: dict, style: int) -> str:
    type_name = doc.get("type")
    item = (doc.get("items") or {}).get("type")
    if type(value) is str and type_name in ("String", "any", "char", "Array", "ArrayList", "HashMap"):
        return f'"{value}"' if style == 2 and type_name == "String" else value
    if type(value) is list:
        elements = [_java_scalar(v, item, quote=style != 1) for v in value]
        if type_name == "ArrayList":
            if style == 1:
                return "new ArrayList<>() {{ " + " ".join(f"add({e});" for e in elements) + " }}" if value else "new ArrayList<>()"
            return f"new ArrayList<>(Arrays.asList({', '.join(elements)}))" if value else "new ArrayList<>()"
        java_item = {"String": "String", "integer": "int", "long": "long", "char": "char"}.get(item, "Object")
        return f"new {java_item}[]{{{', '.join(elements)}}}"
    if type(value) is dict:
        puts = " ".join(f'put("{k}", {_java_scalar(v, None, quote=True)});' for k, v in value.items())
        return f"new HashMap<String, Object>() {{{{ {puts} }}}}" if style != 1 else f"new HashMap<>() {{{{{puts}}}}}"
    if style == 1 and type_name in ("long", "float"):
        return str(value)  # missing L / f suffix
    return _java_scalar(value, type_name, quote=False)


def _js_literal(value: Any, style: int) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return f"'{value}'" if style == 1 else f'"{value}"'
    if type(value) is list:
        return "[" + ", ".join(_js_literal(v, style) for v in value) + "]"
    if type(value) is dict:
        return "{" + ", ".join(f"{k}: {_js_literal(v, style)}" for k, v in value.items()) + "}"
    return str(value)


def js_source(value: Any, doc: dict, style: int) -> str:
    type_name = doc.get("type")
    if type(value) is str:
        if type_name == "String":
            return [f'"{value}"', f"'{value}'", value][style]
        return value
    if type(value) is list:
        body = ", ".join(_js_literal(v, style) for v in value)
        return f"new Array({body})" if style == 2 else f"[{body}]"
    if type(value) is dict:
        if style == 2:
            return "{" + ", ".join(f'"{k}": {_js_literal(v, 0)}' for k, v in value.items()) + "}"
        return _js_literal(value, style)
    if type_name == "Bigint" and type(value) is int:
        return f"{value}n" if style != 1 else str(value)
    if type_name == "float" and type(value) is float and style == 1 and value.is_integer():
        return str(int(value))
    return _js_literal(value, style)


def _render(task: Task, calls: list[tuple[str, dict]], style: int) -> list[dict]:
    """Plain (name, args) calls -> BFCL answer form; Java/JS values become source text."""
    language = task.meta["language"]
    docs = {f["name"]: f["parameters"]["properties"] for f in task.meta["functions"]}
    out = []
    for name, args in calls:
        if language != "Python":
            props = docs.get(name, {})
            write = java_source if language == "Java" else js_source
            args = {k: write(v, props.get(k, {}), style) if k in props else v for k, v in args.items()}
        out.append({name: args})
    return out


def _synthetic_args(doc: dict) -> dict:
    """Arguments of the documented types, for calls that should not be made (irrelevance)."""
    samples = {"string": "x", "integer": 1, "float": 1.5, "boolean": True, "array": ["x"], "tuple": ["x"], "dict": {"k": "v"}}
    props = doc["parameters"]["properties"]
    return {k: samples.get(props[k].get("type"), "x") for k in doc["parameters"].get("required", []) if k in props}


def _no_answer_candidates(task: Task) -> list[Candidate]:
    out = [Candidate(task, "empty", []), Candidate(task, "empty_call", [{}]), Candidate(task, "text", "I cannot help."),
           Candidate(task, "bad_shape", [{"f": 1}]), Candidate(task, "two_keys", [{"a": {}, "b": {}}])]
    for doc in task.meta["functions"][:3]:
        out.append(Candidate(task, f"call:{doc['name']}", [{doc["name"]: _synthetic_args(doc)}]))
        out.append(Candidate(task, f"call_no_args:{doc['name']}", [{doc["name"]: {}}]))
    if len(task.meta["functions"]) >= 2:
        out.append(Candidate(task, "two_calls", [{d["name"]: _synthetic_args(d)} for d in task.meta["functions"][:2]]))
    return out


def generate(task: Task, rng: random.Random) -> list[Candidate]:
    """Every probe for one task (see the module docstring)."""
    if task.meta["possible_answer"] is None:
        return _no_answer_candidates(task)
    answer = task.meta["possible_answer"]
    docs = {f["name"]: f for f in task.meta["functions"]}
    base = [(name, _decode(params)) for call in answer for name, params in call.items()]
    java_js = task.meta["language"] != "Python"
    out: list[Candidate] = []

    def add(kind: str, calls: list[tuple[str, dict]], style: int = 0, flag: bool = False) -> None:
        out.append(Candidate(task, kind, _render(task, calls, style), flag))

    def with_args(i: int, args: dict) -> list[tuple[str, dict]]:
        return [(n, args if j == i else a) for j, (n, a) in enumerate(base)]

    add("correct", base)
    for style in (1, 2):
        add(f"correct_style{style}", base, style)
    out += [Candidate(task, "not_a_list", {"f": {}}), Candidate(task, "bad_shape", [{"f": 1}]),
            Candidate(task, "empty", [])]
    if java_js:
        out.append(Candidate(task, "raw_values", [{n: a} for n, a in base]))

    for i, (name, args) in enumerate(base):
        allowed_by_param = answer[i][name]
        props = docs[name]["parameters"]["properties"] if name in docs else {}
        required = docs[name]["parameters"].get("required", []) if name in docs else []
        for param, allowed in allowed_by_param.items():
            choices = [c for c in (allowed if isinstance(allowed, list) else [allowed]) if c != ""]
            for k, alternative in enumerate(choices[1:4], 1):
                add(f"alt{k}:{param}", with_args(i, {**args, param: _decode(alternative)}))
            if param in args:
                dropped = {p: v for p, v in args.items() if p != param}
                label = "omit_optional" if "" in allowed else ("missing_required" if param in required else "missing_answer_param")
                add(f"{label}:{param}", with_args(i, dropped))
                for label, value in _value_variants(args[param], rng):
                    add(f"value_{label}:{param}", with_args(i, {**args, param: value}))
                if java_js:
                    raw = _render(task, with_args(i, args), 0)
                    raw[i][name][param] = args[param]
                    out.append(Candidate(task, f"raw_value:{param}", raw))
                    raw = _render(task, with_args(i, args), 0)
                    raw[i][name][param] = rng.choice(["null", "undefined", "true", "1.5", "abc", "[1, 2]", "{}"])
                    out.append(Candidate(task, f"odd_source:{param}", raw))
        add("omit_all_optional", with_args(i, {p: v for p, v in args.items() if "" not in allowed_by_param.get(p, [])}))
        add("extra_unknown", with_args(i, {**args, "zz_unknown": 1}))
        extra = [p for p in props if p not in allowed_by_param]
        if extra:
            add(f"extra_doc_param:{extra[0]}", with_args(i, {**args, extra[0]: "x"}))
        renamed = [(n + "_v2" if j == i else n, a) for j, (n, a) in enumerate(base)]
        add("wrong_name", renamed)
        if "." in name:
            underscored = [(n.replace(".", "_") if j == i else n, a) for j, (n, a) in enumerate(base)]
            add("underscored_name", underscored)
            add("underscored_name+flag", underscored, flag=True)
            add("dotted_name+flag", base, flag=True)
        other = [d for d in docs if d != name]
        if other:
            add("other_function", [(other[0], a) if j == i else (n, a) for j, (n, a) in enumerate(base)])

    add("duplicated_first", [base[0]] + base)
    if len(base) > 1:
        add("reversed", base[::-1])
        shuffled = base[:]
        rng.shuffle(shuffled)
        add("shuffled", shuffled)
        add("dropped_last", base[:-1])
        if len(base) > 2:
            add("dropped_middle", base[:1] + base[2:])
        add("swapped_args", [(base[0][0], base[1][1]), (base[1][0], base[0][1])] + base[2:])
    return out


# ---------------------------------------------------------------------------------------------
# Comparison


@dataclass
class Report:
    per_category: dict[str, list[int]]  # "v3/simple" -> [agreed, total]
    disagreements: list[str]
    official_raised: list[str]
    verdicts: Counter = field(default_factory=Counter)  # official error_type (or "valid") -> count

    def totals(self) -> tuple[int, int]:
        return sum(a for a, _ in self.per_category.values()), sum(n for _, n in self.per_category.values())


def compare(versions: list[str], categories: list[str] | None = None, limit: int | None = None,
            per_task: int | None = None, seed: int = 0) -> Report:
    """Judge generated answers with both checkers. `limit`: tasks per category; `per_task`:
    candidates sampled per task (all if None)."""
    rng = random.Random(seed)
    report = Report({}, [], [])
    for version in versions:
        official = load_official(version)
        for category in categories or AST_CATEGORIES[version]:
            if category not in AST_CATEGORIES[version]:
                continue
            tally = report.per_category.setdefault(f"{version}/{category}", [0, 0])
            for task in load_bfcl(version, category, limit=limit):
                candidates = generate(task, rng)
                if per_task is not None and len(candidates) > per_task:
                    candidates = [candidates[0]] + rng.sample(candidates[1:], per_task - 1)
                for c in candidates:
                    where = f"{version} {task.id} [{c.kind}] calls={str(c.calls)[:300]}"
                    try:
                        theirs = official(category, task, c.calls, c.underscore_to_dot)
                    except Exception as e:  # the official checker crashing is a finding, not a bug here
                        ours = check_calls(category, task.meta["functions"], task.meta["possible_answer"],
                                           c.calls, task.meta["language"], underscore_to_dot=c.underscore_to_dot)
                        report.official_raised.append(f"{where}: official raised {type(e).__name__}: {e}; ours: {ours[:2]}")
                        continue
                    valid, error_type, _ = check_calls(category, task.meta["functions"], task.meta["possible_answer"],
                                                       c.calls, task.meta["language"], underscore_to_dot=c.underscore_to_dot)
                    tally[1] += 1
                    report.verdicts[theirs[1] or "valid"] += 1
                    if (valid, error_type) == theirs:
                        tally[0] += 1
                    else:
                        report.disagreements.append(f"{where}: official {theirs}, ours {(valid, error_type)}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", choices=["v3", "v4"], action="append", help="default: both")
    parser.add_argument("--category", action="append", help="default: every AST category")
    parser.add_argument("--limit", type=int, help="tasks per category (default: all)")
    parser.add_argument("--per-task", type=int, help="candidates sampled per task (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = compare(args.version or ["v3", "v4"], args.category, args.limit, args.per_task, args.seed)
    for name, (agreed, total) in report.per_category.items():
        print(f"{name:32s} agreement: {agreed}/{total}")
    agreed, total = report.totals()
    print(f"{'overall':32s} agreement: {agreed}/{total}")
    print("official verdicts:", ", ".join(f"{k} {n}" for k, n in report.verdicts.most_common()))
    print(f"official checker raised on {len(report.official_raised)} candidates (not counted)")
    for line in report.official_raised[:20]:
        print("  raised:", line)
    print(f"disagreements: {len(report.disagreements)}")
    for line in report.disagreements:
        print("  ", line)
    sys.exit(1 if report.disagreements else 0)


if __name__ == "__main__":
    main()
