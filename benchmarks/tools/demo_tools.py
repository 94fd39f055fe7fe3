"""Three small real tools for `cahl run` (benchmarks/run_agent.py): unit conversion, arithmetic and
a date helper. Their schemas are in demo_tools.json; each function has its tool's name."""

from __future__ import annotations

import datetime

# unit -> (dimension, factor to the dimension's base unit); temperatures are converted apart
_UNITS = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "mile": ("length", 1609.344), "ft": ("length", 0.3048),
    "g": ("mass", 1.0), "kg": ("mass", 1000.0), "lb": ("mass", 453.59237),
    "l": ("volume", 1.0), "gallon": ("volume", 3.785411784),
}
_TEMPERATURES = ("celsius", "fahrenheit", "kelvin")


def convert_units(value: float, from_unit: str, to_unit: str) -> float:
    """`value` in `from_unit` expressed in `to_unit`, rounded to 4 decimals."""
    if from_unit in _TEMPERATURES and to_unit in _TEMPERATURES:
        celsius = {"celsius": value, "fahrenheit": (value - 32) * 5 / 9, "kelvin": value - 273.15}[from_unit]
        out = {"celsius": celsius, "fahrenheit": celsius * 9 / 5 + 32, "kelvin": celsius + 273.15}[to_unit]
        return round(out, 4)
    if from_unit not in _UNITS or to_unit not in _UNITS:
        unknown = from_unit if from_unit not in _UNITS else to_unit
        raise ValueError(f"unknown unit {unknown!r}; known: {', '.join([*_UNITS, *_TEMPERATURES])}")
    (dim_a, fa), (dim_b, fb) = _UNITS[from_unit], _UNITS[to_unit]
    if dim_a != dim_b:
        raise ValueError(f"cannot convert {dim_a} ({from_unit}) to {dim_b} ({to_unit})")
    return round(value * fa / fb, 4)


def calculate(a: float, op: str, b: float) -> float:
    """a OP b for OP in add, subtract, multiply, divide."""
    if op == "add":
        return a + b
    if op == "subtract":
        return a - b
    if op == "multiply":
        return a * b
    if op == "divide":
        if b == 0:
            raise ValueError("division by zero")
        return a / b
    raise ValueError(f"unknown op {op!r}; expected add, subtract, multiply or divide")


def days_between(start: str, end: str) -> int:
    """Days from ISO date `start` to ISO date `end` (negative when end is earlier)."""
    return (datetime.date.fromisoformat(end) - datetime.date.fromisoformat(start)).days
