"""Arithmetic for API-Bank's Calculator: a hand-written recursive-descent parser, never eval.

The grammar is exactly what the API's description allows: numbers, + - * /, parentheses and
unary signs. Work is bounded by the formula's length and nesting, and arithmetic is in floats
(the API returns a float), so no input can make it slow or exhaust memory.
"""

from __future__ import annotations

import math
import re

MAX_FORMULA_CHARS = 1_000
MAX_DEPTH = 100  # nested parentheses / unary signs

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")


class FormulaError(ValueError):
    """The formula is not arithmetic this calculator accepts; the message says where."""


def _tokenize(formula: str) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(formula):
        number, symbol = match.groups()
        if number is not None:
            tokens.append(number)
        elif symbol is not None:
            if symbol not in "+-*/()":
                raise FormulaError(f"unexpected character {symbol!r} at position {match.start(2)}")
            tokens.append(symbol)
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := ('+'|'-') factor | number | '(' expr ')'"""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FormulaError("formula ends too early")
        self.pos += 1
        return token

    def expr(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            op, right = self.take(), self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> float:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op, right = self.take(), self.factor()
            if op == "*":
                value = value * right
            elif right == 0:
                raise FormulaError("division by zero")
            else:
                value = value / right
        return value

    def factor(self) -> float:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"nested deeper than {MAX_DEPTH} levels")
        token = self.take()
        if token in ("+", "-"):
            value = self.factor() if token == "+" else -self.factor()
        elif token == "(":
            value = self.expr()
            if self.take() != ")":
                raise FormulaError(f"expected ')' at token {self.pos}")
        elif token in ("*", "/", ")"):
            raise FormulaError(f"unexpected {token!r} at token {self.pos}")
        else:
            value = float(token)
        self.depth -= 1
        return value


def calculate(formula: str) -> float:
    """The value of an arithmetic formula such as '(5+6)*3' (-> 33.0)."""
    if len(formula) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula is {len(formula)} characters long; the limit is {MAX_FORMULA_CHARS}")
    tokens = _tokenize(formula.strip())
    if not tokens:
        raise FormulaError("formula is empty")
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.pos != len(tokens):
        raise FormulaError(f"unexpected {tokens[parser.pos]!r} at token {parser.pos}")
    if not math.isfinite(value):
        raise FormulaError("result is too large")
    return value
