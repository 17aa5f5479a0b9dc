"""A local AFAS Profit REST emulator: one GetConnector of employees, served as AFAS does.

It reproduces the behaviours an AFAS client gets wrong in production (research notes,
`connector_apis.md` section 1), so the client is tested against them rather than against
a polite fake:

* `skip`/`take` are always applied (default 0/100; `-1`/`-1` means everything);
* without `orderbyfieldids` the rows come back in a different order on every call, as a
  database without an ORDER BY may return them, so a client that forgets to sort loses and
  duplicates rows between pages;
* `filterfieldids`/`filtervalues`/`operatortypes` are parallel lists (comma = AND,
  semicolon = OR) with operators 1-14; an unknown field or operator is an HTTP 500 with an
  AFAS error body, as are an unknown GetConnector and a blocked one;
* the text operators are SQL `LIKE`s and take AFAS's `%` wildcard (any run of
  characters), as AFAS documents them (`6` with `%NL%`): 6 contains, 10 starts with,
  13 ends with, and their negations 11, 12 and 14; a value without `%` gets the wildcards
  its operator implies (`NL` under 10 is `NL%`); 7 with a `%` is "does not contain"
  (AFAS's second reading of 7). An empty field matches none of them, as NULL in SQL;
* filters and `orderbyfieldids` compare a field the same way, by its data type (numbers
  and dates by value, text case-insensitively by code point, standing in for a
  case-insensitive SQL collation), and an empty value sorts first and passes no comparison,
  as NULL does in SQL; so keyset paging (sort on a key, filter `key > last key read`)
  resumes exactly where the sort left off, whatever was inserted or deleted behind it;
* a query string over 2049 characters is a 404;
* date-times are Amsterdam local time written with a bogus `Z` ("2026-11-22T14:05:00Z" is
  14:05 in Amsterdam), and filter values on dates are read as local time too.

Invented where AFAS documents nothing (and marked so in the tests): the texts and error
numbers of the error bodies, the 401 status for a bad token, the `info` block of
`/metainfo`, and `page_cap`, which caps `take` and echoes the applied value. AFAS has no
429; `too_many` answers one anyway (with an AFAS-style "blocked" body and `Retry-After`)
so the shared rate-limit knobs of `emulator_kit` work here too.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hmac
import itertools
import math
import operator
import random
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from connectors.afas.synthetic import JOB_TITLES, employee, employees
from connectors.emulator_kit import CONTROL, add_control_routes, emulator_middleware, new_control

AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")
#: The data part of the emulator's default token (`<token><version>1</version><data>…`).
EMULATOR_TOKEN: Final = "0123456789abcdef" * 4
DEFAULT_CONNECTOR_ID: Final = "Sluis_Medewerkers"
MAX_QUERY_LENGTH: Final = 2049
DEFAULT_TAKE: Final = 100
#: The generic errorNumber AFAS puts on business errors (from AFAS's documentation).
GENERIC_ERROR: Final = -2147180996
#: Invented: AFAS documents no numbers for these.
AUTH_ERROR: Final = -2147024891
BLOCKED_ERROR: Final = -2147180995

#: Data types of the GetConnector's fields (metainfo `dataType`); the rest are strings.
#: `object` is an emulator liberty: real GetConnectors are flat, nested JSON tests walkers.
DATA_TYPES: Final[dict[str, str]] = {
    "Salaris_bruto": "decimal",
    "Verzuim_dagen": "int",
    "Uren_per_week": "int",
    "Vakbondslid": "boolean",
    "Geboortedatum": "date",
    "Datum_in_dienst": "date",
    "Datum_uit_dienst": "date",
    "Gewijzigd_op": "date",
    "Noodcontact": "object",
}
FIELD_IDS: Final = tuple(employee(0, random.Random(0)))

_TOKEN_XML = re.compile(r"\s*<token>\s*<version>1</version>\s*<data>(\w+)</data>\s*</token>\s*")
_COMPARE: Final[dict[int, Callable[[Any, Any], bool]]] = {
    1: operator.eq,
    2: operator.ge,
    3: operator.le,
    4: operator.gt,
    5: operator.lt,
    7: operator.ne,
}
_TRUE: Final = frozenset({"true", "1", "ja", "yes"})


def local_stamp(moment: datetime) -> str:
    """How AFAS writes a date-time: Amsterdam local time, then a `Z` that does not mean UTC."""
    return moment.astimezone(AMSTERDAM).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amsterdam_now() -> datetime:
    return datetime.now(AMSTERDAM)


@dataclass
class AfasEnvironment:
    """One Profit environment: its GetConnector, the valid token and the employees.

    Tests change `people` directly or through `touch`, `retire` and `break_email`, which
    change records the way an HR administrator would (and stamp `Gewijzigd_op`).
    """

    connector_id: str
    token: str
    people: list[dict[str, Any]]
    page_cap: int | None = None
    #: AFAS's fair-use block: every call to the GetConnector fails until an admin lifts it.
    blocked: bool = False
    environment_id: str = "12345"
    clock: Callable[[], datetime] = _amsterdam_now
    rng: random.Random = field(default_factory=random.Random)
    shuffler: random.Random = field(default_factory=random.Random)
    #: Bumped whenever people change in place; part of the sort cache's key.
    version: int = 0
    order_cache: dict[str, tuple[tuple[int, int, int], list[dict[str, Any]], list[Any]]] = field(
        default_factory=dict
    )

    def now_stamp(self) -> str:
        return local_stamp(self.clock())

    def _active(self, person: dict[str, Any]) -> bool:
        left = person.get("Datum_uit_dienst")
        return not left or str(left)[:10] >= self.clock().date().isoformat()

    def _pick(self, count: int, want: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        candidates = [p for p in self.people if want(p)]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} people qualify, {count} asked")
        return self.rng.sample(candidates, count)

    def touch(self, count: int) -> list[str]:
        """Give `count` active people a new job title now; returns their employee numbers."""
        chosen = self._pick(count, lambda p: self._active(p) and bool(p.get("Email_werk")))
        for person in chosen:
            current = person.get("Functie")
            at = JOB_TITLES.index(current) if current in JOB_TITLES else -1
            person["Functie"] = JOB_TITLES[(at + 1) % len(JOB_TITLES)]
            person["Gewijzigd_op"] = self.now_stamp()
        self.version += 1
        return [p["Medewerker"] for p in chosen]

    def retire(self, count: int, *, on: date | None = None) -> list[str]:
        """End the employment of `count` active people (a week ago unless `on` is given)."""
        end = on or self.clock().date() - timedelta(days=7)
        chosen = self._pick(count, self._active)
        for person in chosen:
            person["Datum_uit_dienst"] = end.isoformat()
            person["Gewijzigd_op"] = self.now_stamp()
        self.version += 1
        return [p["Medewerker"] for p in chosen]

    def size(self) -> int:
        return len(self.people)

    def break_email(self, count: int) -> list[str]:
        """Clear the work email of `count` people (an admin emptied the field)."""
        chosen = self._pick(count, lambda p: bool(p.get("Email_werk")))
        for person in chosen:
            person["Email_werk"] = None
            person["Gewijzigd_op"] = self.now_stamp()
        self.version += 1
        return [p["Medewerker"] for p in chosen]


ENVIRONMENT: Final = web.AppKey("afas_environment", AfasEnvironment)


class AfasError(Exception):
    """An AFAS error answer: HTTP status plus the `externalMessage` of the body."""

    def __init__(self, status: int, message: str, number: int = GENERIC_ERROR) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.number = number

    def response(self) -> web.Response:
        if self.status == 404:
            # IIS answers before Profit does: an HTML page, not an AFAS error body.
            return web.Response(status=404, text=self.message, content_type="text/html")
        return error_response(self.status, self.message, self.number)


def error_response(
    status: int, message: str, number: int = GENERIC_ERROR, headers: dict[str, str] | None = None
) -> web.Response:
    """An AFAS error body; `profitLogReference` points into the (here imaginary) log."""
    body = {
        "externalMessage": message,
        "errorNumber": number,
        "profitLogReference": secrets.token_hex(16),
    }
    return _json(body, status, headers)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def too_many(wait: float) -> web.Response:
    """What the emulator answers over its (test-only) rate limit."""
    return error_response(
        429,
        "De GetConnector is tijdelijk geblokkeerd: te veel aanroepen (fair use).",
        BLOCKED_ERROR,
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )


# --------------------------------------------------------------------------- handlers


def _authorised(request: web.Request, token: str) -> bool:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "afastoken":
        return False
    try:
        xml = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    found = _TOKEN_XML.fullmatch(xml)
    return found is not None and hmac.compare_digest(found.group(1).encode(), token.encode())


def _gate(request: web.Request, connector_id: str | None) -> AfasEnvironment:
    """The checks every call passes before AFAS looks at the data."""
    env = request.app[ENVIRONMENT]
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise AfasError(404, "<html><body>404 - File or directory not found.</body></html>")
    if not _authorised(request, env.token):
        raise AfasError(401, "Het token is ongeldig of verlopen.", AUTH_ERROR)
    if connector_id is not None and connector_id != env.connector_id:
        raise AfasError(
            500,
            "Deze GetConnector wordt niet ondersteund of de gebruiker is niet geautoriseerd.",
        )
    if connector_id is not None and env.blocked:
        raise AfasError(
            500,
            f"GetConnector '{connector_id}' is geblokkeerd wegens overmatig gebruik.",
            BLOCKED_ERROR,
        )
    return env


def _comparable(kind: str, value: Any) -> Any:
    """A field value in the form the filter and sort compare (None stays None).

    Filters (`_condition`) and sorts (`_sort_key`) both go through here, so `>` on a field
    agrees with `orderbyfieldids` on it: text keys such as "99" and "100042" compare as
    text in both, and keyset paging never skips or repeats a row.
    """
    if value is None or value == "":
        return None
    if kind == "date":
        return parse_local(str(value))
    if kind in ("int", "decimal"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in _TRUE
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode().casefold()
    return str(value).casefold()


def parse_local(text: str) -> datetime:
    """An AFAS date or date-time as naive local time: the trailing `Z` is ignored."""
    return datetime.fromisoformat(text.strip().removesuffix("Z")).replace(tzinfo=None)


def _kind(field_id: str) -> str:
    if field_id not in FIELD_IDS:
        raise AfasError(500, f"Het veld '{field_id}' bestaat niet in deze GetConnector.")
    return DATA_TYPES.get(field_id, "string")


Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def _condition(field_id: str, op_text: str, raw: str) -> Predicate:
    kind = _kind(field_id)
    try:
        op = int(op_text)
    except ValueError:
        op = 0
    if op == 8:
        return lambda row: row.get(field_id) in (None, "")
    if op == 9:
        return lambda row: row.get(field_id) not in (None, "")
    if op in _LIKE or (op == 7 and "%" in raw):
        return _like(field_id, raw, *_LIKE.get(op, ("%{}%", True)))
    compare = _COMPARE.get(op)
    if compare is None:
        raise AfasError(500, f"Operatortype '{op_text}' wordt niet ondersteund.")
    try:
        want = _comparable(kind, raw)
    except ValueError:
        raise AfasError(500, f"Filterwaarde voor veld '{field_id}' is ongeldig.") from None

    def test(row: Row) -> bool:
        value = _comparable(kind, row.get(field_id))
        return value is not None and want is not None and compare(value, want)

    return _Seekable(test, field_id, op, want) if op in (2, 4) and want is not None else test


#: Text operators: (pattern a value without `%` is read as, negated).
_LIKE: Final[dict[int, tuple[str, bool]]] = {
    6: ("%{}%", False),
    10: ("{}%", False),
    11: ("%{}%", True),
    12: ("{}%", True),
    13: ("%{}", False),
    14: ("%{}", True),
}


def _like(field_id: str, raw: str, implied: str, negated: bool) -> Predicate:
    """A SQL `LIKE` on the field's text, case-insensitive, with `%` as the wildcard."""
    pattern = raw if "%" in raw else implied.format(raw)
    compiled = re.compile(
        ".*".join(re.escape(part) for part in pattern.casefold().split("%")), re.DOTALL
    )

    def test(row: Row) -> bool:
        value = _comparable("string", row.get(field_id))
        return value is not None and (compiled.fullmatch(value) is None) == negated

    return test


@dataclass(frozen=True)
class _Seekable:
    """A `>=`/`>` condition: when it is on the sort field, a page can start by bisection."""

    test: Predicate
    field_id: str
    op: int
    want: Any

    def __call__(self, row: Row) -> bool:
        return self.test(row)


def _filter(query: Mapping[str, str]) -> Predicate | None:
    """Parallel lists: `;` separates OR-groups, `,` separates AND-ed conditions."""
    fields = query.get("filterfieldids")
    if not fields:
        return None
    values, ops = query.get("filtervalues"), query.get("operatortypes")
    if values is None or ops is None:
        raise AfasError(500, "filtervalues en operatortypes zijn verplicht bij filterfieldids.")
    groups = []
    for f_group, v_group, o_group in _zip_lists(fields, values, ops, ";"):
        conditions = [_condition(f, o, v) for f, v, o in _zip_lists(f_group, v_group, o_group, ",")]
        groups.append(conditions)
    if len(groups) == 1:
        return _All(tuple(groups[0]))
    return lambda row: any(all(c(row) for c in group) for group in groups)


@dataclass(frozen=True)
class _All:
    """One AND-group (the common case, and the only one a seek can use)."""

    conditions: tuple[Predicate, ...]

    def __call__(self, row: Row) -> bool:
        return all(c(row) for c in self.conditions)


def _zip_lists(a: str, b: str, c: str, sep: str) -> list[tuple[str, str, str]]:
    parts = a.split(sep), b.split(sep), c.split(sep)
    if not len(parts[0]) == len(parts[1]) == len(parts[2]):
        raise AfasError(500, "filterfieldids, filtervalues en operatortypes verschillen in lengte.")
    return list(zip(*parts, strict=True))


def _order(rows: list[Row], spec: str | None, shuffler: random.Random) -> list[Row]:
    if not spec:
        rows = list(rows)
        shuffler.shuffle(rows)
        return rows
    keys = []
    for item in spec.split(","):
        name = item.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-")
        keys.append((name, _kind(name), descending))
    ordered = list(rows)
    for name, kind, descending in reversed(keys):
        ordered.sort(key=lambda r: _sort_key(kind, r.get(name)), reverse=descending)
    return ordered


def _sort_key(kind: str, value: Any) -> tuple[int, Any]:
    found = _comparable(kind, value)
    return (0, 0) if found is None else (1, found)


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise AfasError(500, f"De waarde van '{name}' is geen geheel getal.") from None
    if value < -1:
        raise AfasError(500, f"De waarde van '{name}' is ongeldig.")
    return value


async def get_connector(request: web.Request) -> web.Response:
    try:
        env = _gate(request, request.match_info["connector_id"])
        query = request.query
        skip = max(0, _int_param(query, "skip", 0))
        take = _int_param(query, "take", DEFAULT_TAKE)
        match = _filter(query)
        spec = query.get("orderbyfieldids")
        if spec:
            ordered, start = _seek(env, spec, match)
        else:
            ordered, start = _order(env.people, spec, env.shuffler), 0
    except AfasError as exc:
        return exc.response()
    if env.page_cap is not None and (take < 0 or take > env.page_cap):
        take = env.page_cap
    wanted = None if take < 0 else skip + take
    rows: list[Row] = []
    for row in itertools.islice(ordered, start, None):
        if match is None or match(row):
            rows.append(row)
            if wanted is not None and len(rows) >= wanted:
                break
    return _json({"skip": skip, "take": take, "rows": rows[skip:]})


def _seek(env: AfasEnvironment, spec: str, match: Predicate | None) -> tuple[list[Row], int]:
    """The rows in `spec` order (cached) and where a page may start scanning.

    A real AFAS answers a keyset page (`key > last`, sorted by key) from an index; the
    emulator keeps the sorted order per sort spec and bisects to the first candidate, so
    paging through 100,000 people stays linear instead of quadratic. The cache is keyed
    by the people list's identity, length and `env.version` (bumped by touch/retire/
    break_email); code that edits sort fields in place must bump `version` itself.
    """
    generation = (id(env.people), len(env.people), env.version)
    cached = env.order_cache.get(spec)
    if cached is None or cached[0] != generation:
        ordered = _order(env.people, spec, env.shuffler)
        first = spec.split(",", maxsplit=1)[0].strip()
        kind = _kind(first.removeprefix("-"))
        keys = [_sort_key(kind, r.get(first.removeprefix("-"))) for r in ordered]
        cached = (generation, ordered, keys)
        env.order_cache[spec] = cached
    _, ordered, keys = cached
    first = spec.split(",", maxsplit=1)[0].strip()
    if first.startswith("-") or not isinstance(match, _All):
        return ordered, 0
    start = 0
    for condition in match.conditions:
        if isinstance(condition, _Seekable) and condition.field_id == first:
            probe = (1, condition.want)
            cut = bisect.bisect_right if condition.op == 4 else bisect.bisect_left
            start = max(start, cut(keys, probe))
    return ordered, start


async def metainfo(request: web.Request) -> web.Response:
    try:
        env = _gate(request, None)
    except AfasError as exc:
        return exc.response()
    return _json(
        {
            "getConnectors": [{"id": env.connector_id, "description": "Sluis: medewerkers"}],
            "updateConnectors": [],
            "info": {"environmentID": env.environment_id, "environmentType": "emulator"},
        }
    )


async def metainfo_get(request: web.Request) -> web.Response:
    try:
        env = _gate(request, request.match_info["connector_id"])
    except AfasError as exc:
        return exc.response()
    fields = []
    for number, field_id in enumerate(FIELD_IDS, start=1):
        kind = DATA_TYPES.get(field_id, "string")
        fields.append(
            {
                "id": field_id,
                "fieldId": f"U{number:03d}",
                "dataType": kind,
                "label": field_id.replace("_", " "),
                "length": 255 if kind == "string" else 0,
                "controlType": 1,
                "decimals": 2 if kind == "decimal" else 0,
                "decimalsFieldId": "",
            }
        )
    return _json({"name": env.connector_id, "description": "Sluis: medewerkers", "fields": fields})


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    connector_id: str = DEFAULT_CONNECTOR_ID,
    token: str = EMULATOR_TOKEN,
    page_cap: int | None = None,
) -> web.Application:
    """An AFAS environment with `people` synthetic employees behind one GetConnector.

    `token` is the data part of the valid token; `page_cap` (an emulator knob, not AFAS
    behaviour) caps `take` and echoes the applied value, to test clients' last-page logic.
    """
    app = web.Application(middlewares=[emulator_middleware])
    control = new_control(too_many)
    app[CONTROL] = control
    app[ENVIRONMENT] = control.people = AfasEnvironment(
        connector_id=connector_id,
        token=token,
        people=list(employees(people, seed=seed)),
        page_cap=page_cap,
        rng=random.Random(seed + 1),
        shuffler=random.Random(seed + 2),
    )
    root = r"/{root:(?i:profitrestservices)}"
    app.router.add_get(root + r"/{c:(?i:connectors)}/{connector_id}", get_connector)
    app.router.add_get(root + r"/{m:(?i:metainfo)}", metainfo)
    app.router.add_get(root + r"/{m:(?i:metainfo)}/{g:(?i:get)}/{connector_id}", metainfo_get)
    control.vendor = "afas"
    add_control_routes(app)
    return app


def token_header(token: str = EMULATOR_TOKEN) -> str:
    """The `Authorization` value for a token's data part (for tests and the demo)."""
    xml = f"<token><version>1</version><data>{token}</data></token>"
    return "AfasToken " + base64.b64encode(xml.encode()).decode()
