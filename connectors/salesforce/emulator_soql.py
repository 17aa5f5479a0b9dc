"""The SOQL the Salesforce emulator understands: enough of the language to hold clients to it.

`SELECT f, ... FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n]`, where a condition is comparisons (`=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`) of a
field with a literal, combined with AND, OR, NOT and parentheses. Literals: 'strings' with
backslash escapes, numbers, true/false/null, unquoted ISO 8601 datetimes
(`2024-05-01T00:00:00Z`, `...+01:00`, fractions allowed) and dates. Keywords and field
names are case-insensitive, as in Salesforce. Anything else is refused the way Salesforce
refuses it: `MALFORMED_QUERY`, or `INVALID_FIELD` for a field the object does not have,
so a client that builds a query by string concatenation finds out here, not in production.

Datetimes compare as instants: the emulator keeps them in Salesforce's one spelling
(`2024-05-04T12:00:01.000+0000`, UTC), which sorts as time does, and turns literals into it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from connectors.salesforce.synthetic import DATETIME_FIELDS, spell


class SoqlError(Exception):
    """A query Salesforce would refuse: `code` is its errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_TOKEN: Final = re.compile(
    r"\s*(?:(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![\w:])"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![\w])"
    r"|(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'",
                   "\\": "\\"}  # fmt: skip
Token = tuple[str, str]
Predicate = Callable[[dict[str, Any]], bool]


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    at = 0
    text = text.rstrip()
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None or found.end() == at:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at position {at}")
        kind = found.lastgroup or ""
        out.append((kind, found.group(kind)))
        at = found.end()
    return out


def _unquote(literal: str) -> str:
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise SoqlError("MALFORMED_QUERY", "invalid escape sequence in a string")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Predicate
    order: list[tuple[str, bool, bool]]  # field, descending, nulls last
    limit: int | None


class _Parser:
    def __init__(self, text: str, schema: dict[str, str], sobject: str) -> None:
        self.items = tokens(text)
        self.at = 0
        #: lower-case name -> the field's API name
        self.schema = schema
        self.sobject = sobject

    def peek(self) -> Token | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def keyword(self, *words: str) -> bool:
        item = self.peek()
        if item and item[0] == "word" and item[1].upper() in words:
            self.at += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.keyword(word):
            raise SoqlError("MALFORMED_QUERY", f"expecting '{word}'")

    def take(self) -> Token:
        item = self.peek()
        if item is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.at += 1
        return item

    def field(self) -> str:
        kind, text = self.take()
        if kind != "word":
            raise SoqlError("MALFORMED_QUERY", "expecting a field name")
        name = self.schema.get(text.lower())
        if name is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{text}' on entity '{self.sobject}'.")
        return name

    def parse(self) -> Query:
        self.expect("SELECT")
        fields = [self.field()]
        while self.peek() == ("punct", ","):
            self.at += 1
            fields.append(self.field())
        self.expect("FROM")
        kind, sobject = self.take()
        if kind != "word" or sobject.lower() != self.sobject.lower():
            raise SoqlError("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        where: Predicate = lambda r: True  # noqa: E731
        if self.keyword("WHERE"):
            where = self.disjunction()
        order: list[tuple[str, bool, bool]] = []
        if self.keyword("ORDER"):
            self.expect("BY")
            while True:
                name = self.field()
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                nulls_last = descending
                if self.keyword("NULLS"):
                    nulls_last = self.keyword("LAST")
                    if not nulls_last:
                        self.expect("FIRST")
                order.append((name, descending, nulls_last))
                if self.peek() != ("punct", ","):
                    break
                self.at += 1
        limit = None
        if self.keyword("LIMIT"):
            kind, text = self.take()
            if kind != "number" or not text.isdigit():
                raise SoqlError("MALFORMED_QUERY", "LIMIT needs a whole number")
            limit = int(text)
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.take()[1]}'")
        return Query(fields, self.sobject, where, order, limit)

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.factor()]
        while self.keyword("AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def factor(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.factor()
            return lambda r: not inner(r)
        if self.peek() == ("punct", "("):
            self.at += 1
            inner = self.disjunction()
            if self.take() != ("punct", ")"):
                raise SoqlError("MALFORMED_QUERY", "expecting ')'")
            return inner
        name = self.field()
        kind, op = self.take()
        if kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{op}'")
        value = self.literal(name)
        return _compare(name, op, value)

    def literal(self, name: str) -> Any:
        kind, text = self.take()
        is_time = name in DATETIME_FIELDS
        if kind == "datetime" and is_time:
            return spell(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC))
        if kind == "string" and not is_time:
            return _unquote(text)
        if kind == "word" and text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        if kind in ("number", "date") and not is_time:
            return text
        raise SoqlError("MALFORMED_QUERY", f"value of filter criterion for field '{name}' "
                                           "must be of the field's type")  # fmt: skip


def _compare(name: str, op: str, value: Any) -> Predicate:
    if value is None or isinstance(value, bool):
        if op in ("=", "!="):
            same = op == "="
            return lambda r: (r.get(name) == value) == same
        if op == "<>":
            return lambda r: r.get(name) != value
        raise SoqlError("MALFORMED_QUERY", "only = and != compare with null or a boolean")
    checks: dict[str, Callable[[Any], bool]] = {
        "=": lambda v: v == value,
        "!=": lambda v: v != value,
        "<>": lambda v: v != value,
        "<": lambda v: v < value,
        "<=": lambda v: v <= value,
        ">": lambda v: v > value,
        ">=": lambda v: v >= value,
    }
    check = checks[op]
    if op in ("!=", "<>"):
        return lambda r: (v := r.get(name)) is None or check(v)
    return lambda r: (v := r.get(name)) is not None and check(v)


def parse(text: str, fields: Iterable[str], sobject: str) -> Query:
    """Parse `text` against an object's fields; raises `SoqlError` as Salesforce would."""
    schema = {f.lower(): f for f in fields}
    return _Parser(text, schema, sobject).parse()


def ordered(records: list[dict[str, Any]], order: list[tuple[str, bool, bool]]) -> None:
    """Sort in place by `order`: stable sorts from the last key to the first."""
    for name, descending, nulls_last in reversed(order):
        present = [r for r in records if r.get(name) is not None]
        missing = [r for r in records if r.get(name) is None]
        present.sort(key=lambda r, n=name: r[n], reverse=descending)  # type: ignore[misc]
        records[:] = present + missing if nulls_last else missing + present
