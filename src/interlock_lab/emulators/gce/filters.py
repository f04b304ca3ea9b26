"""List filters as Compute Engine reads them: `name = "web-1"`, `labels.team != "x"`,
`status eq RUNNING` (a regular expression), joined with AND / OR and parentheses
(expressions side by side mean AND)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from interlock_lab.emulators.gce.resources import invalid

Match = Callable[[dict[str, Any]], bool]
TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<op>AND|OR)\b"
    r"|(?P<field>[A-Za-z][\w.-]*)\s*(?P<cmp>!=|=|:|\beq\b|\bne\b)\s*"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s()]+))"
)


def parse(text: str) -> Match:
    """A test for one resource (its REST form), or a 400 invalid for a filter it cannot read."""
    tokens: list[tuple[str, Any]] = []
    at = 0
    text = text.strip()
    while at < len(text):
        m = TOKEN.match(text, at)
        if m is None or m.end() == at:
            raise invalid(f"Invalid value for field 'filter': '{text}'. Invalid list filter.")
        at = m.end()
        if m["open"]:
            tokens.append(("(", None))
        elif m["close"]:
            tokens.append((")", None))
        elif m["op"]:
            tokens.append((m["op"], None))
        else:
            tokens.append(("cmp", _comparison(m["field"], m["cmp"], m["value"])))
    if not tokens:
        return lambda _: True
    parser = _Parser(tokens, text)
    match = parser.expression()
    if parser.at != len(tokens):
        raise invalid(f"Invalid value for field 'filter': '{text}'. Invalid list filter.")
    return match


def _comparison(path: str, cmp: str, raw: str) -> Match:
    value = raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] else raw
    value = value.replace('\\"', '"')

    def field_of(resource: dict[str, Any]) -> str | None:
        here: Any = resource
        for part in path.split("."):
            if not isinstance(here, dict) or part not in here:
                return None
            here = here[part]
        return str(here).lower() if isinstance(here, bool) else str(here)

    if cmp in ("eq", "ne"):  # the older syntax: a regular expression on the whole value
        try:
            pattern = re.compile(value)
        except re.error:
            raise invalid(f"Invalid value for field 'filter': '{value}'. Bad pattern.") from None

        def found(r: dict[str, Any]) -> bool:
            v = field_of(r)
            return v is not None and bool(pattern.fullmatch(v))

        return found if cmp == "eq" else (lambda r: not found(r))
    if cmp == ":":  # "has": a field that is there (value *), or equal
        return lambda r: (v := field_of(r)) is not None and (value == "*" or v == value)
    if cmp == "=":
        return lambda r: field_of(r) == value
    return lambda r: field_of(r) != value


class _Parser:
    """expression := term (OR term)* ; term := factor ((AND)? factor)* ; factor := cmp | ( e )"""

    def __init__(self, tokens: list[tuple[str, Any]], text: str) -> None:
        self.tokens, self.text, self.at = tokens, text, 0

    def _peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def expression(self) -> Match:
        terms = [self.term()]
        while self._peek() == "OR":
            self.at += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda r: any(t(r) for t in terms))

    def term(self) -> Match:
        factors = [self.factor()]
        while self._peek() in ("AND", "cmp", "("):
            if self._peek() == "AND":
                self.at += 1
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else (lambda r: all(f(r) for f in factors))

    def factor(self) -> Match:
        kind = self._peek()
        if kind == "cmp":
            match: Match = self.tokens[self.at][1]
            self.at += 1
            return match
        if kind == "(":
            self.at += 1
            inner = self.expression()
            if self._peek() != ")":
                raise invalid(f"Invalid value for field 'filter': '{self.text}'. Unbalanced.")
            self.at += 1
            return inner
        raise invalid(f"Invalid value for field 'filter': '{self.text}'. Invalid list filter.")
