"""Rules the request validators enforce that pydantic's JSON Schemas cannot state by
themselves, written into the OpenAPI document so that a client generated from it (or a
fuzzer such as schemathesis) sends what the gateway accepts:

- a connector's credential keys and its bundled mapping depend on its `type`;
- an instruction's `valid_until` lies in the future;
- a feed cursor is exactly what the feed hands out.

Each is a small JSON Schema fragment built from the same source as the validator (the
connector registry, the cursor encoding, today's date), so they cannot drift apart.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Final

from connectors.registry import connector_type, known_types
from mappings import bundled_names

# --------------------------------------------------------------------------- feed cursor

# A cursor is `v2.<seq>.<8 hex digits>` (seq a decimal without leading zeros of at most 18
# digits), or one the first gateways handed out and the feed still reads: base64url
# (unpadded) of `v1:<seq>`. "v1:" is exactly "djE6"; three digits make four characters and
# the characters a digit can give are few, so the set of those is a regular language too:
_LEAD_NZ: Final = "(?:M[Tjz]|N[DTjz]|O[DT])"  # the first 6+2 bits of a digit 1-9
_LEAD: Final = "(?:[MN][DTjz]|O[DT])"  # of any digit followed by another
_MID: Final = "[AEIMQUYcgk]"  # low bits of the 2nd digit, high bits of the 3rd
_LAST: Final = "[w-z0-5]"  # low six bits of the 3rd digit
_GROUP: Final = _LEAD + _MID + _LAST
_TAIL1: Final = "(?:[MN][AQgw]|O[AQ])"
_TAIL2: Final = _LEAD + _MID
CURSOR_PATTERN: Final = (
    r"^(?:v2\.(?:0|[1-9][0-9]{0,17})\.[0-9a-f]{8}|"
    "djE6(?:MA"  # seq 0
    "|(?:M[Qgw]|N[AQgw]|O[AQ])"  # 1-9
    f"|{_LEAD_NZ}{_MID}"  # 10-99
    f"|{_LEAD_NZ}{_MID}{_LAST}(?:(?:{_GROUP}){{0,4}}(?:{_TAIL1}|{_TAIL2})?|(?:{_GROUP}){{5}})"
    "))$"
)

# --------------------------------------------------------------------------- valid_until

_MONTH_DAY: Final = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_TIME: Final = "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?Z"


def _greater_number(n: int, width: int) -> str:
    """A regex for the `width`-digit decimals greater than `n`."""
    digits = f"{n:0{width}d}"
    options = []
    for i, d in enumerate(digits):
        if d != "9":
            rest = width - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            options.append(f"{digits[:i]}[{int(d) + 1}-9]{tail}")
    return "(?:" + "|".join(options) + ")" if options else "(?!)"


def _month_days(year: int, month: int, first_day: int = 1) -> str:
    """`MM-DD` of the days of one month from `first_day` on."""
    length = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    last = min(length, 28)
    days = [f"{d:02d}" for d in range(first_day, last + 1)]
    tens: dict[str, list[str]] = {}
    for d in days:
        tens.setdefault(d[0], []).append(d[1])
    parts = [f"{t}[{''.join(u)}]" if len(u) > 1 else f"{t}{u[0]}" for t, u in tens.items()]
    extra = [f"{d:02d}" for d in range(max(first_day, 29), length + 1)]
    return f"{month:02d}-(?:{'|'.join(parts + extra)})" if parts or extra else ""


def _days_from(first: date) -> str:
    """`YYYY-MM-DD` of every valid date from `first` on (29 February left out). No
    look-arounds: fuzzers generate strings from this pattern."""
    y, m = first.year, first.month
    this_year = [_month_days(y, m, first.day)] + [_month_days(y, mm) for mm in range(m + 1, 13)]
    same_year = f"{y:04d}-(?:{'|'.join(p for p in this_year if p)})"
    return f"(?:{_greater_number(y, 4)}-{_MONTH_DAY}|{same_year})"


def future_pattern(today: date) -> str:
    """UTC date-times from tomorrow on: every value it admits lies in the future."""
    return f"^{_days_from(today + timedelta(days=1))}{_TIME}$"


# --------------------------------------------------------------------------- schema edits


def connector_rules() -> list[dict[str, Any]]:
    """Per connector type: its credential keys, and its bundled mapping (or one inline)."""
    rules = []
    bundled = set(bundled_names())
    for name in known_types():
        kind = connector_type(name)
        mapping: dict[str, Any] = {"$ref": "#/components/schemas/MappingText"}
        if name in bundled:
            mapping = {"anyOf": [{"const": name}, mapping]}
        rules.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {
                    "properties": {
                        "credentials": {"required": list(kind.credential_keys)},
                        "mapping": mapping,
                    }
                },
            }
        )
    return rules


def _closed_maps(node: Any) -> None:
    """A dict with constrained keys refuses any other key: say so (`patternProperties`
    alone would let every other name through)."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed_maps(value)
    elif isinstance(node, list):
        for value in node:
            _closed_maps(value)


def apply(schemas: dict[str, Any], today: date) -> None:
    """Write the rules into the generated `components.schemas` (in place)."""
    _closed_maps(schemas)
    connector = schemas["ConnectorCreate"]
    connector["allOf"] = connector_rules()
    connector["description"] = (
        "A connector. Its `credentials` must hold the keys its `type` needs, and a bundled "
        "`mapping` must be the one written for that type. An inline mapping must be a valid "
        "mapping file for the type (checked on creation; a 422 names line and field). "
        "`base_url` must reach a public address unless the gateway allows private sources."
    )
    until = schemas["InstructionCreate"]["properties"]["valid_until"]
    until["anyOf"] = [
        {"type": "string", "format": "date-time", "pattern": future_pattern(today)},
        {"type": "null"},
    ]
    until["description"] = (
        "When the instruction ends; must lie in the future (a past time is a 422). Any "
        "offset is accepted; the pattern describes UTC times from tomorrow on, which are "
        "always in the future, and is renewed daily."
    )
