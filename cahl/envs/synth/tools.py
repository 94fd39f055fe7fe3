"""The executable tools: pure functions, their JSON schemas, and an unseen-name alias of each.

Numbers: every numeric result is computed exactly in decimal (floats enter through their shortest
repr, so 0.1 is 0.1) and rounded to 2 decimal places with halves away from zero; a whole result
comes back as an int, so `add(2.5, 2.5)` is `5` and renders as "5". Lookups match keys ignoring
case and runs of spaces and return the table's spelling; their numbers follow the same int/float
rule (a price of 119.0 is 119). A tool given a bad value (unknown
city, malformed date, division by zero) raises ValueError / ZeroDivisionError with a message that
becomes the model's observation; argument names and JSON types are checked before a tool runs
(see `env.check_arguments`), so the functions trust them.

Each tool also has an alias: another name, other parameter names and a rewritten description,
used for "unseen tools" evaluation (a policy trained on the canonical names meets tools it has
never seen).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any, Callable

from cahl.envs.synth.tables import (
    CITIES, COUNTRIES, EMPLOYEES, KILOGRAMS_PER, MANAGERS, METRES_PER, PRODUCTS, RATES_PER_USD,
    TEMPERATURE_SCALES,
)
from cahl.types import ToolSpec

Number = int | float
_CENT = Decimal("0.01")
_DECIMAL = Context(prec=60)  # inputs are capped at 1e15, so 60 digits never round before quantize
MAX_DAYS_SHIFT = 100_000
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# ---------------------------------------------------------------------------- numbers

def _dec(x: Number) -> Decimal:
    return Decimal(x) if isinstance(x, int) else Decimal(repr(float(x)))


def _out(d: Decimal) -> Number:
    """Round to cents, halves away from zero; whole values become ints."""
    q = d.quantize(_CENT, rounding=ROUND_HALF_UP, context=_DECIMAL)
    return int(q) if q == q.to_integral_value() else float(q)


def _exact(op: Callable[[], Decimal]) -> Number:
    with localcontext(_DECIMAL):
        return _out(op())


def add(a: Number, b: Number) -> Number:
    return _exact(lambda: _dec(a) + _dec(b))


def subtract(a: Number, b: Number) -> Number:
    return _exact(lambda: _dec(a) - _dec(b))


def multiply(a: Number, b: Number) -> Number:
    return _exact(lambda: _dec(a) * _dec(b))


def divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise ZeroDivisionError("division by zero (b must not be 0)")
    return _exact(lambda: _dec(a) / _dec(b))


def _convert(value: Number, source: str, target: str, per_base: dict[str, str]) -> Number:
    return _exact(lambda: _dec(value) * Decimal(per_base[source]) / Decimal(per_base[target]))


def convert_length(value: Number, from_unit: str, to_unit: str) -> Number:
    return _convert(value, from_unit, to_unit, METRES_PER)


def convert_mass(value: Number, from_unit: str, to_unit: str) -> Number:
    return _convert(value, from_unit, to_unit, KILOGRAMS_PER)


def convert_temperature(value: Number, from_unit: str, to_unit: str) -> Number:
    def run() -> Decimal:
        v = _dec(value)
        celsius = {"C": v, "F": (v - 32) * 5 / 9, "K": v - Decimal("273.15")}[from_unit]
        return {"C": celsius, "F": celsius * 9 / 5 + 32, "K": celsius + Decimal("273.15")}[to_unit]
    return _exact(run)


def convert_currency(amount: Number, from_currency: str, to_currency: str) -> Number:
    """Through USD with the fixed table: amount / rate[from] * rate[to]."""
    return _exact(lambda: _dec(amount) / Decimal(RATES_PER_USD[from_currency])
                  * Decimal(RATES_PER_USD[to_currency]))


# ---------------------------------------------------------------------------- dates

def _parse_date(text: str) -> date:
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text[:40]!r}")
    return date.fromisoformat(text)


def days_between(start_date: str, end_date: str) -> int:
    return (_parse_date(end_date) - _parse_date(start_date)).days


def add_days(date: str, days: int) -> str:  # noqa: A002 - the schema's parameter name
    if abs(days) > MAX_DAYS_SHIFT:
        raise ValueError(f"days must be between -{MAX_DAYS_SHIFT} and {MAX_DAYS_SHIFT}")
    try:
        return (_parse_date(date) + timedelta(days=days)).isoformat()
    except OverflowError:
        raise ValueError("the resulting date is outside years 1-9999") from None


def weekday_of(date: str) -> str:  # noqa: A002
    return WEEKDAYS[_parse_date(date).weekday()]


# ---------------------------------------------------------------------------- lookups

def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _lookup(table: dict[str, Any], key: str, what: str) -> str:
    """The table's own spelling of `key`, matched ignoring case and spacing."""
    index = {_key(k): k for k in table}
    found = index.get(_key(key))
    if found is None:
        raise ValueError(f"unknown {what} {key[:40]!r}; known: {', '.join(sorted(table))}")
    return found


def country_of_city(city: str) -> str:
    return CITIES[_lookup(CITIES, city, "city")][0]


def capital_of(country: str) -> str:
    return COUNTRIES[_lookup(COUNTRIES, country, "country")][0]


def population_of(country: str) -> Number:
    return _out(_dec(COUNTRIES[_lookup(COUNTRIES, country, "country")][1]))


def currency_of(country: str) -> str:
    return COUNTRIES[_lookup(COUNTRIES, country, "country")][2]


def average_temperature(city: str) -> Number:
    return _out(_dec(CITIES[_lookup(CITIES, city, "city")][3]))


def distance_km(city_a: str, city_b: str) -> int:
    """Great-circle distance on a 6371 km sphere, rounded to whole km (so libm ulps never show)."""
    _, lat1, lon1, _ = CITIES[_lookup(CITIES, city_a, "city")]
    _, lat2, lon2, _ = CITIES[_lookup(CITIES, city_b, "city")]
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lon2 - lon1))
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6371.0 * math.asin(math.sqrt(h)))


def price_of(product: str) -> Number:
    return _out(_dec(PRODUCTS[_lookup(PRODUCTS, product, "product")][0]))


def weight_of(product: str) -> Number:
    return _out(_dec(PRODUCTS[_lookup(PRODUCTS, product, "product")][1]))


def origin_of(product: str) -> str:
    return PRODUCTS[_lookup(PRODUCTS, product, "product")][2]


def department_of(employee: str) -> str:
    return EMPLOYEES[_lookup(EMPLOYEES, employee, "employee")][0]


def salary_of(employee: str) -> int:
    return EMPLOYEES[_lookup(EMPLOYEES, employee, "employee")][1]


def start_date_of(employee: str) -> str:
    return EMPLOYEES[_lookup(EMPLOYEES, employee, "employee")][2]


def office_city_of(employee: str) -> str:
    return EMPLOYEES[_lookup(EMPLOYEES, employee, "employee")][3]


def manager_of(department: str) -> str:
    return MANAGERS[_lookup(MANAGERS, department, "department")]


# ---------------------------------------------------------------------------- text

def to_uppercase(text: str) -> str:
    return text.upper()


def char_count(text: str) -> int:
    return len(text)


def word_count(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Param:
    type: str  # JSON schema type: "number", "integer" or "string"
    description: str
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Tool:
    """One tool under its canonical name and its alias; every parameter is required."""

    name: str
    fn: Callable[..., Any]
    description: str
    params: dict[str, Param]
    alias: str
    alias_description: str
    alias_params: tuple[str, ...]  # the alias's parameter names, in the order of `params`

    def shown_params(self, unseen: bool) -> dict[str, str]:
        """Parameter name as the model sees it -> the function's parameter name."""
        return dict(zip(self.alias_params, self.params)) if unseen else {p: p for p in self.params}

    def spec(self, unseen: bool = False, shown: tuple[str, dict[str, str]] | None = None) -> ToolSpec:
        """The schema the model sees: canonical names, the alias (`unseen`), or `shown` = (a name,
        shown parameter name -> canonical) with the canonical description (generate.py's renames)."""
        if shown is not None:
            (name, params), description = shown, self.description
        else:
            name, params = (self.alias, self.shown_params(True)) if unseen else (self.name, self.shown_params(False))
            description = self.alias_description if unseen else self.description
        properties = {}
        for shown_name, canonical in params.items():
            p = self.params[canonical]
            properties[shown_name] = {"type": p.type, "description": p.description}
            if p.enum:
                properties[shown_name]["enum"] = list(p.enum)
        return {"name": name, "description": description,
                "parameters": {"type": "object", "properties": properties, "required": list(properties)}}


_ROUNDING = ("exact decimal arithmetic, rounded to 2 decimal places (halves away from zero); "
             "a whole result is returned as an integer")
_NUM = Param("number", "a number")
_DATE = Param("string", "a date as YYYY-MM-DD")
_TEXT = Param("string", "any text")
_CITY = Param("string", "a city name, e.g. 'Lyon'")
_COUNTRY = Param("string", "a country name, e.g. 'France'")
_PRODUCT = Param("string", "a product name from the catalogue")
_EMPLOYEE = Param("string", "an employee's full name")
_LENGTH_UNIT = tuple(METRES_PER)
_MASS_UNIT = tuple(KILOGRAMS_PER)
_CURRENCIES = tuple(RATES_PER_USD)


def _unit(kind: str, units: tuple[str, ...]) -> Param:
    return Param("string", f"{kind} unit", units)


TOOL_LIST: list[Tool] = [
    Tool("add", add, f"Add two numbers: a + b ({_ROUNDING}).", {"a": _NUM, "b": _NUM},
         "sum_numbers", f"Sum of x and y, using {_ROUNDING}.", ("x", "y")),
    Tool("subtract", subtract, f"Subtract b from a: a - b ({_ROUNDING}).", {"a": _NUM, "b": _NUM},
         "difference_of", f"Takes subtrahend away from minuend, using {_ROUNDING}.",
         ("minuend", "subtrahend")),
    Tool("multiply", multiply, f"Multiply two numbers: a * b ({_ROUNDING}).", {"a": _NUM, "b": _NUM},
         "scale_number", f"Scales a number by a factor (number times factor), using {_ROUNDING}.",
         ("number", "factor")),
    Tool("divide", divide, f"Divide a by b: a / b; b must not be 0 ({_ROUNDING}).",
         {"a": _NUM, "b": _NUM},
         "quotient", f"Dividend over divisor (divisor nonzero), using {_ROUNDING}.",
         ("dividend", "divisor")),
    Tool("convert_length", convert_length, f"Convert a length between units ({_ROUNDING}).",
         {"value": _NUM, "from_unit": _unit("source length", _LENGTH_UNIT),
          "to_unit": _unit("target length", _LENGTH_UNIT)},
         "length_in_unit", f"Expresses a distance in another unit ({_ROUNDING}).",
         ("amount", "source_unit", "target_unit")),
    Tool("convert_mass", convert_mass, f"Convert a mass between units ({_ROUNDING}).",
         {"value": _NUM, "from_unit": _unit("source mass", _MASS_UNIT),
          "to_unit": _unit("target mass", _MASS_UNIT)},
         "mass_in_unit", f"Expresses a weight in another unit ({_ROUNDING}).",
         ("amount", "source_unit", "target_unit")),
    Tool("convert_temperature", convert_temperature,
         f"Convert a temperature between Celsius (C), Fahrenheit (F) and kelvin (K) ({_ROUNDING}).",
         {"value": _NUM, "from_unit": _unit("source temperature", TEMPERATURE_SCALES),
          "to_unit": _unit("target temperature", TEMPERATURE_SCALES)},
         "temperature_in_scale", f"Re-expresses a temperature on another scale, C, F or K ({_ROUNDING}).",
         ("degrees", "source_scale", "target_scale")),
    Tool("convert_currency", convert_currency,
         f"Convert money between currencies with a fixed rate table, going through USD ({_ROUNDING}).",
         {"amount": _NUM, "from_currency": _unit("source currency", _CURRENCIES),
          "to_currency": _unit("target currency", _CURRENCIES)},
         "exchange_money", f"Exchanges a sum of money into another currency at fixed rates ({_ROUNDING}).",
         ("money", "source_currency", "target_currency")),
    Tool("days_between", days_between,
         "Number of days from start_date to end_date (negative if end_date is earlier).",
         {"start_date": _DATE, "end_date": _DATE},
         "count_days", "How many days pass from first_day until last_day; negative when last_day comes first.",
         ("first_day", "last_day")),
    Tool("add_days", add_days, "The date that is `days` days after `date` (before it if negative).",
         {"date": _DATE, "days": Param("integer", "number of days to add")},
         "shift_date", "Moves a calendar day forward by offset days (backward when offset is negative).",
         ("day", "offset")),
    Tool("weekday_of", weekday_of, "The weekday of a date, e.g. 'Monday'.", {"date": _DATE},
         "day_name", "Name of the day of the week on which a calendar day falls.", ("day",)),
    Tool("country_of_city", country_of_city, "The country a city is in.", {"city": _CITY},
         "nation_for_city", "Returns the nation that contains the given town.", ("town",)),
    Tool("capital_of", capital_of, "The capital city of a country.", {"country": _COUNTRY},
         "seat_of_government", "Returns the city where the nation's government sits.", ("nation",)),
    Tool("population_of", population_of, "Population of a country in millions.", {"country": _COUNTRY},
         "inhabitants_millions", "How many millions of people live in the nation.", ("nation",)),
    Tool("currency_of", currency_of, "The ISO currency code of a country, e.g. 'EUR'.",
         {"country": _COUNTRY},
         "money_code_of", "Three-letter code of the money used in the nation.", ("nation",)),
    Tool("average_temperature", average_temperature,
         "Mean annual temperature of a city in degrees Celsius.", {"city": _CITY},
         "mean_climate_celsius", "Yearly mean temperature of the town, in °C.", ("town",)),
    Tool("distance_km", distance_km,
         "Great-circle distance between two cities in kilometres, rounded to a whole number.",
         {"city_a": _CITY, "city_b": _CITY},
         "km_apart", "How many whole kilometres separate two towns as the crow flies.",
         ("from_town", "to_town")),
    Tool("price_of", price_of, "Catalogue price of a product in USD.", {"product": _PRODUCT},
         "catalogue_price", "What the item costs, in US dollars.", ("item",)),
    Tool("weight_of", weight_of, "Weight of a product in kilograms.", {"product": _PRODUCT},
         "shipping_weight", "How heavy the item is, in kg.", ("item",)),
    Tool("origin_of", origin_of, "The country where a product is made.", {"product": _PRODUCT},
         "made_in", "The nation that manufactures the item.", ("item",)),
    Tool("department_of", department_of, "The department an employee works in.",
         {"employee": _EMPLOYEE},
         "team_of", "Which team the person belongs to.", ("person",)),
    Tool("manager_of", manager_of, "The employee who manages a department.",
         {"department": Param("string", "a department name, e.g. 'Finance'")},
         "team_lead", "Full name of the person leading the team.", ("team",)),
    Tool("salary_of", salary_of, "Annual salary of an employee in USD.", {"employee": _EMPLOYEE},
         "yearly_pay", "What the person earns per year, in US dollars.", ("person",)),
    Tool("start_date_of", start_date_of, "The date an employee started, as YYYY-MM-DD.",
         {"employee": _EMPLOYEE},
         "hire_date", "The day the person was hired (YYYY-MM-DD).", ("person",)),
    Tool("office_city_of", office_city_of, "The city of an employee's office.", {"employee": _EMPLOYEE},
         "workplace_city", "The town where the person works.", ("person",)),
    Tool("to_uppercase", to_uppercase, "The text in upper case.", {"text": _TEXT},
         "capitalise_all", "Returns the content with every letter capitalised.", ("content",)),
    Tool("char_count", char_count, "Number of characters in a text, spaces included.", {"text": _TEXT},
         "length_of_text", "How many characters the content has, counting spaces.", ("content",)),
    Tool("word_count", word_count, "Number of whitespace-separated words in a text.", {"text": _TEXT},
         "count_words", "How many words the content has (split on whitespace).", ("content",)),
]
TOOLS: dict[str, Tool] = {t.name: t for t in TOOL_LIST}
# Every name a task may offer -> (tool, whether it is the alias). Canonical and alias names are
# disjoint, so one index serves both vocabularies.
BY_SHOWN_NAME: dict[str, tuple[Tool, bool]] = {
    **{t.name: (t, False) for t in TOOL_LIST}, **{t.alias: (t, True) for t in TOOL_LIST}}
