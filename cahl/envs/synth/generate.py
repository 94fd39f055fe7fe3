"""Seeded generator of multi-step tasks over the synthetic tools (DESIGN §6, last bullet).

A task is an expression over the tools, sampled so that the answer needs every call:
    core  lookups feeding each other (the country containing Lyon -> its capital -> ...), possibly
          joined by a two-input tool: the distance between two cities, the days between two start
          dates, the sum or difference of two quantities, a price converted to a looked-up currency;
    tail  instructions applied to the core's value with constants from the question (multiply by
          3, convert to miles, add 90 days, count the characters).
The core reads as a nested noun phrase, the tail as instructions. Gold calls, intermediate values
and the answer come from running the tools on the sampled inputs; nothing is written by hand.
Templates (meta["template"]): "lookup", "lookup+compute", "combine", "combine+compute".

Splits: a task's problem is its chain of canonical calls; a hash of that chain puts it in train
(80%) or test (20%), so no seed of one split ever yields a problem of the other, however it is
phrased or named. A call never repeats a chain. Task ids hash the task's content.

meta: "steps" (calls in the chain), "chain" (each call's result, in order), "sources" (for each
call, {parameter: index of the earlier call whose result it takes}; the chain's data flow, e.g.
for deriving oracle sub-tasks), "step_texts" (each call in the question's words, earlier results
filled in: "the city where Hugo Martin has an office", "the mean annual temperature (°C) of Paris",
"Divide it by 2."; the oracle planner's thinks), "template", "names" ("canonical" or "alias"). SynthEnv needs
nothing from meta: the offered tool names say which vocabulary a task uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from cahl.envs.base import render_result
from cahl.envs.synth.tables import (
    CITIES, COUNTRIES, EMPLOYEES, KILOGRAMS_PER, MANAGERS, METRES_PER, PRODUCTS, RATES_PER_USD,
    TEMPERATURE_SCALES, UNIT_WORDS,
)
from cahl.envs.synth.tools import TOOL_LIST, TOOLS
from cahl.types import CahlInputError, Task, ToolCall

MAX_STEPS = 6
MAX_DISTRACTORS = len(TOOL_LIST) - MAX_STEPS  # tools a task can offer beyond the ones it needs
MAX_TAIL = 3  # instructions after the core; the rest of a task's steps are lookups
TRAIN_PERCENT = 80
SPLITS = ("train", "test")

# ---------------------------------------------------------------------------- value types
# Entities are table keys; quantities carry their unit so that only like is added to like and a
# conversion knows its source unit. "money:local" is money in a currency known only at run time.
LEAVES: dict[str, list[str]] = {
    "city": sorted(CITIES), "country": sorted(COUNTRIES), "product": sorted(PRODUCTS),
    "employee": sorted(EMPLOYEES), "department": sorted(MANAGERS),
}
NAMED = {"city", "country", "product", "employee", "department"}
NUMERIC = {"population", "days", "count", "money", "length", "mass", "temp"}
ADDABLE = ("population", "money:USD", "mass:kg", "length:km", "days")
SUBTRACTABLE = ADDABLE + ("temp:C",)


def _leaf_phrase(kind: str, value: str) -> str:
    if kind == "product" or value == "United Kingdom":
        return f"the {value}"
    return f"the {value} department" if kind == "department" else value


# ---------------------------------------------------------------------------- expressions

@dataclass(frozen=True)
class CoreOp:
    """A tool used inside the noun phrase: typed inputs, a typed output, phrasings."""

    tool: str
    inputs: tuple[tuple[str, str], ...]  # (parameter, type) of each expression input
    output: str
    phrases: tuple[str, ...]  # the first nests best and is used when an input is not a leaf
    fixed: tuple[tuple[str, Any], ...] = ()  # constant arguments
    undoes: str | None = None  # never applied to this tool's output (it would map straight back)


def _unary(tool: str, src: str, dst: str, *phrases: str, undoes: str | None = None) -> CoreOp:
    return CoreOp(tool, ((next(iter(TOOLS[tool].params)), src),), dst, phrases, undoes=undoes)


CORE_OPS: list[CoreOp] = [
    _unary("country_of_city", "city", "country", "the country containing {city}",
           "the country that {city} is in", undoes="capital_of"),
    _unary("capital_of", "country", "city", "the capital of {country}", "the capital city of {country}"),
    _unary("population_of", "country", "population", "the population (in millions) of {country}",
           "the number of inhabitants, in millions, of {country}"),
    _unary("currency_of", "country", "currency", "the currency code of {country}",
           "the currency used in {country}"),
    _unary("average_temperature", "city", "temp:C", "the mean annual temperature (°C) of {city}",
           "the average temperature in {city}, in degrees Celsius"),
    _unary("price_of", "product", "money:USD", "the price (USD) of {product}",
           "the price in US dollars of {product}"),
    _unary("weight_of", "product", "mass:kg", "the weight (kg) of {product}",
           "the weight in kilograms of {product}"),
    _unary("origin_of", "product", "country", "the country of manufacture of {product}",
           "the country where {product} is made"),
    _unary("department_of", "employee", "department", "the department of {employee}",
           "the department that {employee} works in", undoes="manager_of"),
    _unary("manager_of", "department", "employee", "the manager of {department}", "the head of {department}"),
    _unary("salary_of", "employee", "money:USD", "the annual salary (USD) of {employee}",
           "the yearly pay in US dollars of {employee}"),
    _unary("start_date_of", "employee", "date", "the start date of {employee}",
           "the date on which {employee} started"),
    _unary("office_city_of", "employee", "city", "the office city of {employee}",
           "the city where {employee} has an office"),
    CoreOp("distance_km", (("city_a", "city"), ("city_b", "city")), "length:km",
           ("the distance in kilometres between {city_a} and {city_b}",)),
    CoreOp("days_between", (("start_date", "date"), ("end_date", "date")), "days",
           ("the number of days from {start_date} to {end_date}",)),
    CoreOp("convert_currency", (("amount", "money:USD"), ("to_currency", "currency")), "money:local",
           ("{amount} converted to {to_currency}",), fixed=(("from_currency", "USD"),)),
    *[CoreOp("add", (("a", t), ("b", t)), t, ("the sum of {a} and {b}",)) for t in ADDABLE],
    *[CoreOp("subtract", (("a", t), ("b", t)), t, ("the result of subtracting {b} from {a}",))
      for t in SUBTRACTABLE],
]


@dataclass(frozen=True)
class Leaf:
    """A table key taken from the question, e.g. value "Engineering", phrase "the Engineering department"."""

    value: str
    phrase: str


@dataclass(frozen=True)
class Node:
    """One core call: arguments are expressions or constants, keyed by canonical parameter."""

    tool: str
    args: dict[str, Leaf | Node | Any]
    phrase: str
    template: str = ""  # the phrasing chosen for this call, its inputs as {parameter} slots


@dataclass(frozen=True)
class Instruction:
    """One tail call: the previous value goes into `input`, constants fill the rest."""

    tool: str
    input: str
    constants: dict[str, Any]
    sentence: str


@functools.lru_cache(maxsize=None)
def _splits(op: CoreOp, steps: int) -> tuple[tuple[int, ...], ...]:
    """The ways to give `op`'s inputs `steps - 1` calls between them so every input can be built."""
    if len(op.inputs) == 1:
        return ((steps - 1,),) if _can(op.inputs[0][1], steps - 1, op.undoes) else ()
    (_, left), (_, right) = op.inputs
    return tuple((a, steps - 1 - a) for a in range(steps)
                 if _can(left, a, None) and _can(right, steps - 1 - a, None))


@functools.lru_cache(maxsize=None)
def _can(kind: str, steps: int, banned: str | None) -> bool:
    """Whether a value of type `kind` can be built with exactly `steps` calls, top call not `banned`."""
    if steps == 0:
        return kind in LEAVES
    return any(op.output == kind and op.tool != banned and _splits(op, steps) for op in CORE_OPS)


def _grow(rng: random.Random, kind: str, steps: int, banned: str | None) -> Leaf | Node:
    """A random core expression of type `kind` with exactly `steps` calls (`_can` must hold)."""
    if steps == 0:
        value = rng.choice(LEAVES[kind])
        return Leaf(value, _leaf_phrase(kind, value))
    op = rng.choice([o for o in CORE_OPS if o.output == kind and o.tool != banned and _splits(o, steps)])
    split = rng.choice(_splits(op, steps))
    children = {p: _grow(rng, t, n, op.undoes) for (p, t), n in zip(op.inputs, split)}
    nested = any(isinstance(c, Node) for c in children.values())
    template = op.phrases[0] if nested else rng.choice(op.phrases)
    phrase = template.format(**{p: c.phrase for p, c in children.items()})
    return Node(op.tool, _in_order(op.tool, {**children, **dict(op.fixed)}), phrase, template)


def _in_order(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {p: args[p] for p in TOOLS[tool].params}


Option = tuple[Instruction, str]  # an instruction and the type of value it yields
# quantity -> (tool, value parameter, source/target parameters, units)
_CONVERSIONS: dict[str, tuple[str, str, tuple[str, str], tuple[str, ...]]] = {
    "length": ("convert_length", "value", ("from_unit", "to_unit"), tuple(METRES_PER)),
    "mass": ("convert_mass", "value", ("from_unit", "to_unit"), tuple(KILOGRAMS_PER)),
    "temp": ("convert_temperature", "value", ("from_unit", "to_unit"), TEMPERATURE_SCALES),
    "money": ("convert_currency", "amount", ("from_currency", "to_currency"), tuple(RATES_PER_USD)),
}


def _numeric_options(rng: random.Random, kind: str) -> list[list[Option]]:
    m = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 1.5, 2.5])
    k = rng.randint(2, 500)
    d = rng.choice([2, 3, 4, 5, 8, 10])
    groups = [[(Instruction("multiply", "a", {"b": m}, f"Multiply it by {m}."), kind),
               (Instruction("add", "a", {"b": k}, f"Add {k} to it."), kind),
               (Instruction("subtract", "a", {"b": k}, f"Subtract {k} from it."), kind),
               (Instruction("divide", "a", {"b": d}, f"Divide it by {d}."), kind)]]
    base, _, unit = kind.partition(":")
    if base in _CONVERSIONS and unit != "local":
        tool, param, (source, target), units = _CONVERSIONS[base]
        to = rng.choice([u for u in units if u != unit])
        groups.append([(Instruction(tool, param, {source: unit, target: to},
                                    f"Convert it to {UNIT_WORDS.get(to, to)}."), f"{base}:{to}")])
    return groups


def _date_options(rng: random.Random) -> list[list[Option]]:
    shift = rng.choice([7, 10, 14, 21, 30, 45, 60, 90, 100, 180, 365, 500, 1000])
    end = rng.choice(["2025-01-01", "2025-06-30", "2026-01-01", "2027-12-31", "2030-01-01"])
    return [[(Instruction("add_days", "date", {"days": shift}, f"Add {shift} days to it."), "date")],
            [(Instruction("weekday_of", "date", {}, "Find the weekday it falls on."), "weekday")],
            [(Instruction("days_between", "start_date", {"end_date": end},
                          f"Count the days from it to {end}."), "days")]]


def _text_options(base: str, last: bool) -> list[list[Option]]:
    subject = "that name" if base in NAMED else "it"
    groups = [[(Instruction("char_count", "text", {}, f"Count the characters in {subject}, spaces included."),
                "count"),
               (Instruction("word_count", "text", {}, f"Count the words in {subject}."), "count")]]
    if last:  # upper-case text is only ever the answer
        groups.append([(Instruction("to_uppercase", "text", {}, f"Write {subject} in upper case."), "upper")])
    return groups


def _tail_step(rng: random.Random, kind: str, last: bool) -> Option:
    """A random instruction applicable to a value of type `kind`, and the type it yields.

    Options come in groups (arithmetic, a conversion, ...) and a group is drawn first, so that
    the rarer tools are not drowned by the four arithmetic ones.
    """
    base = kind.partition(":")[0]
    if base in NUMERIC:
        groups = _numeric_options(rng, kind)
    elif base == "date":
        groups = _date_options(rng)
    else:  # text: an entity's name, a currency code, a weekday
        groups = _text_options(base, last)
    return rng.choice(rng.choice(groups))


# ---------------------------------------------------------------------------- running the tools

class _Degenerate(Exception):
    """A sampled problem with a step that changes nothing (a city's distance to itself, USD to
    USD, subtracting a quantity from itself); it is resampled."""


@dataclass
class _Run:
    """The gold chain so far: calls (canonical), their results, and for each call which of its
    parameters take an earlier call's result (parameter -> index of that call)."""

    calls: list[ToolCall] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    sources: list[dict[str, int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # each call in words, earlier results filled in


def _execute(expr: Leaf | Node, run: _Run) -> tuple[Any, int | None]:
    """Run a core expression bottom-up; returns its value and the index of the call that made it."""
    if isinstance(expr, Leaf):
        return expr.value, None
    inputs = {p: _execute(a, run) for p, a in expr.args.items() if isinstance(a, (Leaf, Node))}
    constants = {p: a for p, a in expr.args.items() if p not in inputs}
    text = expr.template.format(**{p: render_result(inputs[p][0]) if isinstance(a, Node) else a.phrase
                                   for p, a in expr.args.items() if p in inputs})
    return _call(run, expr.tool, constants, inputs, text)


def _call(run: _Run, tool: str, constants: dict[str, Any],
          inputs: dict[str, tuple[Any, int | None]], text: str) -> tuple[Any, int]:
    """Run one tool on constants and expression inputs (value, source call), recording it and
    `text`, the call in words."""
    args = _in_order(tool, {**constants, **{p: v for p, (v, _) in inputs.items()}})
    value = TOOLS[tool].fn(**args)
    given = [v for v, _ in inputs.values()]
    if value in given or len({json.dumps(v) for v in given}) < len(given):
        raise _Degenerate(tool)
    run.calls.append(ToolCall(tool, args))
    run.values.append(value)
    run.sources.append({p: i for p, (_, i) in inputs.items() if i is not None})
    run.texts.append(text)
    return value, len(run.calls) - 1


def _joins(expr: Leaf | Node | Any) -> bool:
    """Whether a core expression has a call with two expression inputs (the "combine" templates)."""
    if not isinstance(expr, Node):
        return False
    inputs = [a for a in expr.args.values() if isinstance(a, (Leaf, Node))]
    return len(inputs) > 1 or any(_joins(a) for a in inputs)


def _question(rng: random.Random, core: Node, tail: list[Instruction]) -> str:
    """The request: the core as one noun phrase (the decomposition is left to the planner), then
    the tail's instructions in order."""
    if not tail:
        return rng.choice(["What is {}?", "Find {}.", "Tell me {}.", "Look up {}.",
                           "I need to know {}."]).format(core.phrase)
    steps = [tail[0].sentence] + [f"Then {i.sentence[0].lower()}{i.sentence[1:]}" for i in tail[1:]]
    opener = rng.choice(["Start from {}.", "Take {}.", "Look up {}."]).format(core.phrase)
    closer = rng.choice(["What is the result?", "What do you get?", "Report the final value."])
    return " ".join([opener, *steps, closer])


# ---------------------------------------------------------------------------- tasks

@dataclass
class _Problem:
    question: str
    run: _Run
    template: str


def _sample_problem(rng: random.Random, steps: int) -> _Problem | None:
    """One problem with exactly `steps` calls, or None when the sample was degenerate."""
    n_tail = rng.randint(0, min(steps - 1, MAX_TAIL))
    n_core = steps - n_tail
    kind = rng.choice(sorted(k for k in {op.output for op in CORE_OPS} if _can(k, n_core, None)))
    core = _grow(rng, kind, n_core, None)  # a Node, since n_core >= 1
    tail = []
    for i in range(n_tail):
        instruction, kind = _tail_step(rng, kind, last=i == n_tail - 1)
        tail.append(instruction)
    run = _Run()
    try:
        last = _execute(core, run)
        for ins in tail:
            last = _call(run, ins.tool, ins.constants, {ins.input: last}, ins.sentence)
    except _Degenerate:
        return None
    template = ("combine" if _joins(core) else "lookup") + ("+compute" if tail else "")
    return _Problem(_question(rng, core, tail), run, template)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def chain_key(calls: list[ToolCall]) -> str:
    """What identifies a problem: its canonical calls, whatever the phrasing or tool names."""
    return _digest([c.to_json() for c in calls])


def split_of(key: str) -> str:
    """The split a problem belongs to, from its chain key alone (80% train, 20% test)."""
    return "train" if int(key[:8], 16) % 100 < TRAIN_PERCENT else "test"


def _shown(tool: str, unseen: bool) -> tuple[str, dict[str, str]]:
    """The name a task shows for a canonical tool, and canonical -> shown parameter names."""
    t = TOOLS[tool]
    return (t.alias if unseen else t.name), {c: s for s, c in t.shown_params(unseen).items()}


_STOP = frozenset("a an and any as at by e.g every from given in is it its of on or the to with".split())
_TAKEN = frozenset(n for t in TOOL_LIST for n in (t.name, t.alias))  # renames never show another tool's names
_GENERIC = ("get", "find", "compute", "value", "lookup", "tool")  # where a description's first clause has < 2 words


def _words(text: str) -> list[str]:
    return list(dict.fromkeys(w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP))


def _name_words(description: str) -> list[str]:
    """Content words of a description's first clause (before any ':', ';', '(' or '.'), padded with
    generic ones to at least 3."""
    words = _words(re.split(r"[:;(.]", description, maxsplit=1)[0])
    return words + [g for g in _GENERIC if g not in words][: max(0, 3 - len(words))]


def renamed(rng: random.Random, tool: str, avoid: set[str]) -> tuple[str, dict[str, str]]:
    """Another name for a canonical tool, made of two or three words of its description in a random
    order, and for each parameter (at random, half of them) a name from words of its own
    description: (name, canonical parameter -> shown). Never a canonical name or an alias of any
    tool (synth_unseen's aliases stay unseen), never a name in `avoid`."""
    t = TOOLS[tool]
    words = _name_words(t.description)
    for _ in range(20):
        name = "_".join(rng.sample(words, min(len(words), rng.choice((2, 3)))))
        if name not in _TAKEN and name not in avoid:
            break
    else:
        name = f"{tool}_{rng.randrange(100, 1000)}"
    params: dict[str, str] = {}
    for p, param in t.params.items():  # a shown name is never another parameter's name, shown or canonical
        options = [w for w in _words(param.description) if w not in params.values() and (w == p or w not in t.params)]
        params[p] = rng.choice(options) if options and rng.random() < 0.5 else p
    return name, params


def _task(rng: random.Random, problem: _Problem, n_distractors: int, unseen: bool, split: str,
          rename: random.Random | None = None) -> Task:
    run = problem.run
    used = list(dict.fromkeys(c.name for c in run.calls))
    distractors = rng.sample([t.name for t in TOOL_LIST if t.name not in used], n_distractors)
    names = used + distractors
    rng.shuffle(names)
    shown: dict[str, tuple[str, dict[str, str]]] = {}  # canonical -> (shown name, canonical param -> shown)
    offered: dict[str, list] = {}  # shown name -> [canonical, shown param -> canonical]: meta["shown"], for the env
    if rename is not None:
        for n in names:
            shown[n] = renamed(rename, n, set(offered))
            offered[shown[n][0]] = [n, {v: k for k, v in shown[n][1].items()}]
        tools = [TOOLS[c].spec(shown=(s, p)) for s, (c, p) in offered.items()]
    else:
        tools = [TOOLS[n].spec(unseen) for n in names]
    gold, sources = [], []
    for call, source in zip(run.calls, run.sources):
        name, params = shown[call.name] if rename is not None else _shown(call.name, unseen)
        gold.append(ToolCall(name, {params[k]: v for k, v in call.arguments.items()}))
        sources.append({params[k]: i for k, i in source.items()})
    answer = render_result(run.values[-1])
    content = {"question": problem.question, "tools": [t["name"] for t in tools],
               "gold": [c.to_json() for c in gold]}
    steps = len(run.calls)
    return Task(id=f"synth-{_digest(content)[:16]}", source="synth",
                messages=[{"role": "user", "content": problem.question}], tools=tools,
                gold_calls=gold, gold_answer=answer, split=split, category=f"steps-{steps}",
                meta={"steps": steps, "chain": run.values, "sources": sources, "step_texts": run.texts,
                      "template": problem.template,
                      "names": "renamed" if rename is not None else "alias" if unseen else "canonical",
                      **({"shown": offered} if rename is not None else {})})


def _check_knobs(n: int, min_steps: int, max_steps: int, n_distractors: int, split: str) -> None:
    if n < 0:
        raise CahlInputError(f"generate_tasks: n must be >= 0, got {n}")
    if not 1 <= min_steps <= max_steps <= MAX_STEPS:
        raise CahlInputError(f"generate_tasks: need 1 <= min_steps <= max_steps <= {MAX_STEPS}, "
                             f"got min_steps={min_steps}, max_steps={max_steps}")
    if not 0 <= n_distractors <= MAX_DISTRACTORS:
        raise CahlInputError(f"generate_tasks: n_distractors must be in 0..{MAX_DISTRACTORS}, got {n_distractors}")
    if split not in SPLITS:
        raise CahlInputError(f"generate_tasks: split must be one of {SPLITS}, got {split!r}")


def generate_tasks(n: int, seed: int, *, min_steps: int = 2, max_steps: int = 4, n_distractors: int = 2,
                   unseen_names: bool = False, split: str = "train", rename: float = 0.0) -> list[Task]:
    """`n` distinct tasks of `split`, each needing min_steps..max_steps chained tool calls.

    Same arguments, same tasks; a longer `n` extends a shorter one's list. `n_distractors`
    unneeded tools are offered besides the needed ones (shuffled); `unseen_names` offers every tool
    under its alias, and the gold calls use the alias names and parameters. `rename`: the share of
    tasks (drawn per task from a generator of its own, so the problems do not change) whose tools
    are offered under names made from their descriptions (`renamed`), recorded in meta["shown"]
    for the environment: a policy trained on them has to pick tools by what they do.
    """
    if not 0.0 <= rename <= 1.0:
        raise CahlInputError(f"generate_tasks: rename must be a share in 0..1, got {rename}")
    _check_knobs(n, min_steps, max_steps, n_distractors, split)
    rng = random.Random(f"cahl-synth/{split}/{seed}")
    tasks: list[Task] = []
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise CahlInputError(
                f"generate_tasks: found only {len(tasks)} distinct {split} problems with "
                f"{min_steps}..{max_steps} steps after {attempts - 1} samples; "
                "ask for fewer or allow more steps")
        problem = _sample_problem(rng, rng.randint(min_steps, max_steps))
        if problem is None:
            continue
        key = chain_key(problem.run.calls)
        if split_of(key) != split or key in seen:
            continue
        seen.add(key)
        draw = random.Random(f"cahl-synth-rename/{split}/{seed}/{len(tasks)}")
        tasks.append(_task(rng, problem, n_distractors, unseen_names, split,
                           draw if rename and draw.random() < rename else None))
    return tasks
