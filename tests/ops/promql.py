"""What a PromQL expression reads: metric names and the labels it matches or groups on.

A small tokenizer for the expressions our dashboard and alert rules hold, not a PromQL
parser: strings, range and subquery brackets and Grafana's `$__variables` go first; then
`by`/`without`/`on`/`ignoring`/`group_left`/`group_right` lists give label names, `{...}`
give matchers, and what remains is identifiers: a function or aggregation is one followed by
`(`, a few words are operators, everything else is a metric name. (`promtool check rules`
parses the same expressions for real, see test_alert_rules.py.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan", "atan2"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*(\"(?:[^\"\\]|\\.)*\")\s*")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_NUMBER_LIKE = re.compile(r"^(?:0x[0-9a-f]+|[0-9].*)$", re.IGNORECASE)


@dataclass
class Reads:
    """What one expression reads."""

    metrics: set[str] = field(default_factory=set)
    #: Label names in grouping clauses and matchers.
    labels: set[str] = field(default_factory=set)
    #: (metric, label, value) of each equality matcher.
    equals: set[tuple[str, str, str]] = field(default_factory=set)


def reads(expr: str) -> Reads:
    found = Reads()
    # Matchers first (their values are strings), each tied to the metric before it.
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", expr):
        metric, body = match.group(1), match.group(2)
        for part in _split_matchers(body):
            m = _MATCHER.fullmatch(part)
            if m is None:
                raise ValueError(f"cannot read the matcher {part!r} in {expr!r}")
            name, op, value = m.group(1), m.group(2), m.group(3)[1:-1]
            found.labels.add(name)
            if name == "__name__" and op == "=":
                found.metrics.add(value)
            elif op == "=" and metric:
                found.equals.add((metric, name, value))
    text = _MATCHERS.sub(" ", expr)
    text = _STRING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for grouping in _GROUPING.finditer(text):
        found.labels.update(n.strip() for n in grouping.group(2).split(",") if n.strip())
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\w+|\$\{[^}]*\}", " ", text)
    for ident in _IDENT.finditer(text):
        name, call = ident.group(1), ident.group(2)
        if call or name.lower() in KEYWORDS or _NUMBER_LIKE.match(name):
            continue
        found.metrics.add(name)
    return found


def _split_matchers(body: str) -> list[str]:
    parts, current, quoted = [], "", False
    for i, ch in enumerate(body):
        if ch == '"' and (i == 0 or body[i - 1] != "\\"):
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p for p in parts if p.strip()]
