"""A local HubSpot CRM v3 contacts API, faithful where the connector's correctness depends on it.

* `GET /crm/v3/objects/contacts`: cursor paging on `after` (the next object id), `limit`
  (default 10, silently capped at 100), `properties=a,b` (only those come back, plus the
  `hs_object_id` / `createdate` / `lastmodifieddate` HubSpot always adds; unknown names are
  ignored), `archived=true` for soft-deleted contacts only. `X-HubSpot-RateLimit-*` headers.
* `GET /crm/v3/objects/contacts/{contactId}`: one contact by id, or by a unique property
  named in `idProperty` (`email`, `hs_object_id`), with `properties` and `archived`; a
  404 with category OBJECT_NOT_FOUND when there is none.
* `POST /crm/v3/objects/contacts/search`: filterGroups (ORed) of filters (ANDed), one sort
  (an object `{"propertyName", "direction"}`, or a string as HubSpot's own clients send
  it: `"lastmodifieddate"` ascending, `"-lastmodifieddate"` descending),
  `limit` up to 200, offset `after`, `total`, and the deep-paging cap: a request with
  `after` at or past 10,000 (`search_cap`) is a 400, so clients must re-anchor their window.
  Archived contacts are never found by search, as in HubSpot.
* Bearer auth answering 401 with HubSpot's error body; a ten-secondly burst limit (the
  kit's `RateLimit`) and a daily limit, both answering 429 the way HubSpot does: a body
  with `category: RATE_LIMITS`, `errorType: RATE_LIMIT` and the `policyName`, and the
  `X-HubSpot-RateLimit-*` headers (Daily, Daily-Remaining, Interval-Milliseconds, Max,
  Remaining, Secondly, Secondly-Remaining), which every answer carries.
* A public app's OAuth (`GET /oauth/authorize`, `POST /oauth/v1/token`: the kit's
  authorization server, for `EMULATOR_CLIENT_ID`; refresh tokens do not rotate, as at
  HubSpot): the API takes the access tokens it issued as well as the private app's token.

Tests steer the data through `app[STATE]` (touch, archive, clear an email) and faults, rate
limits and the request log through `app[CONTROL]`.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.emulator_kit import (
    AUTHORIZATION,
    CONTROL,
    RateLimit,
    add_authorization_routes,
    add_control_routes,
    emulator_middleware,
    new_control,
)
from connectors.hubspot import synthetic
from connectors.hubspot.client import TOKEN_PATH

CONTACTS_PATH: Final = "/crm/v3/objects/contacts"
SEARCH_PATH: Final = "/crm/v3/objects/contacts/search"
#: The emulator's well-known token (not a secret: it opens only this local stand-in).
EMULATOR_TOKEN: Final = "pat-eu1-00000000-0000-4000-8000-emulator0001"  # noqa: S105
#: The public app registered at the emulated portal (OAuth authorization code; not secrets).
EMULATOR_CLIENT_ID: Final = "00000000-0000-4000-8000-emulatorapp1"
EMULATOR_CLIENT_SECRET: Final = "emulator-public-app-secret"  # noqa: S105
SEARCH_CAP: Final = 10_000
LIST_MAX_LIMIT: Final = 100
SEARCH_MAX_LIMIT: Final = 200
#: What HubSpot returns when no properties are asked for.
UNASKED_PROPERTIES: Final = ("firstname", "lastname", "email")
#: Every property a contact can have; requests for other names are ignored, as HubSpot does.
SCHEMA: Final = frozenset(synthetic.PROPERTIES)


@dataclass
class HubSpotState:
    """The portal's contacts (kept in ascending id order) and the knobs tests turn."""

    contacts: list[dict[str, Any]]
    token: str
    page_cap: int | None = None
    search_cap: int = SEARCH_CAP
    burst_max: int = 190
    daily_limit: int = 1_000_000
    daily_used: int = 0
    #: Bodies of search requests as received, so tests can see what a client asked for.
    search_bodies: list[dict[str, Any]] = field(default_factory=list)

    def active(self) -> list[dict[str, Any]]:
        return [c for c in self.contacts if not c["archived"]]

    def touch(self, count: int, *, now: datetime | None = None) -> list[str]:
        """Give the first `count` active contacts a new job title; returns their ids."""
        changed = self.active()[:count]
        for c in changed:
            props = c["properties"]
            props["jobtitle"] = synthetic.next_job_title(props.get("jobtitle"))
            synthetic.mark_modified(c, now)
        return [c["id"] for c in changed]

    def archive(self, count: int, *, now: datetime | None = None) -> list[str]:
        """Archive (soft-delete) the last `count` active contacts; returns their ids."""
        changed = self.active()[::-1][:count]
        for c in changed:
            c["archived"] = True
            c["archivedAt"] = synthetic.mark_modified(c, now)
        return [c["id"] for c in changed]

    def retire(self, count: int) -> list[str]:
        """The CRM's leaver signal (the control surface's "retire"): archive contacts."""
        if count > len(self.active()):
            raise ValueError(f"only {len(self.active())} contacts are active, {count} asked")
        return self.archive(count)

    def size(self) -> int:
        return len(self.contacts)

    def clear_email(self, count: int, *, now: datetime | None = None) -> list[str]:
        """Empty the email of `count` active contacts from the middle of the portal."""
        candidates = [c for c in self.active() if c["properties"].get("email")]
        middle = len(candidates) // 2
        changed = candidates[middle : middle + count]
        if len(changed) < count:
            changed += candidates[: count - len(changed)]
        for c in changed:
            c["properties"]["email"] = None
            synthetic.mark_modified(c, now)
        return [c["id"] for c in changed]


STATE: Final = web.AppKey("hubspot_state", HubSpotState)


# --------------------------------------------------------------------------- responses


class _Invalid(Exception):
    """A request HubSpot would refuse with 400 VALIDATION_ERROR."""


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: str
) -> web.Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), **extra}
    return _json(body, status=status, headers=headers)


def _too_many(wait: float, policy: str = "TEN_SECONDLY_ROLLING") -> web.Response:
    message = f"You have reached your {policy.lower()} limit."
    headers = {"Retry-After": str(max(1, math.ceil(wait)))} if wait > 0 else None
    return _error(
        429, message, headers=headers, category="RATE_LIMITS", errorType="RATE_LIMIT",
        policyName=policy,
    )  # fmt: skip


def _limit_headers(request: web.Request) -> dict[str, str]:
    state, rate = request.app[STATE], request.app[CONTROL].rate_limit
    if rate is not None:
        limit, remaining, window = rate.requests, rate.requests - rate._count, rate.window
    else:
        limit, remaining, window = state.burst_max, state.burst_max, 10.0
    secondly = max(1, math.ceil(limit / window))
    return {
        "X-HubSpot-RateLimit-Max": str(limit),
        "X-HubSpot-RateLimit-Remaining": str(max(0, remaining)),
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
        "X-HubSpot-RateLimit-Secondly": str(secondly),
        "X-HubSpot-RateLimit-Secondly-Remaining": str(min(secondly, max(0, remaining))),
        "X-HubSpot-RateLimit-Daily": str(state.daily_limit),
        "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, state.daily_limit - state.daily_used)),
    }


async def _add_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every API answer, a 429 included, says where the caller stands, as HubSpot's do."""
    if not request.path.startswith("/_emulator"):
        for name, value in _limit_headers(request).items():
            response.headers.setdefault(name, value)


@web.middleware
async def _hubspot_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer auth, the daily limit and HubSpot-style 400s, in the order HubSpot applies them."""
    if request.path.startswith(("/_emulator", "/oauth/")):
        return await handler(request)  # the control surface; the OAuth endpoints
    state = request.app[STATE]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    issued = request.app[AUTHORIZATION].accepts(token.strip())
    if scheme.lower() != "bearer" or (token.strip() != state.token and not issued):
        problem = "is invalid or has expired" if token.strip() else "was not found"
        return _error(401, f"The access token {problem}.", category="INVALID_AUTHENTICATION")
    state.daily_used += 1
    if state.daily_used > state.daily_limit:
        return _too_many(0.0, "DAILY")
    try:
        return await handler(request)
    except _Invalid as exc:
        return _error(400, str(exc), category="VALIDATION_ERROR")


def _view(contact: dict[str, Any], wanted: Iterable[str]) -> dict[str, Any]:
    props = contact["properties"]
    names = dict.fromkeys(n for n in (*wanted, *synthetic.DEFAULT_PROPERTIES) if n in SCHEMA)
    out: dict[str, Any] = {
        "id": contact["id"],
        "properties": {n: props.get(n) for n in names},
        "createdAt": contact["createdAt"],
        "updatedAt": contact["updatedAt"],
        "archived": contact["archived"],
    }
    if contact["archived"]:
        out["archivedAt"] = contact.get("archivedAt")
    return out


def _limit(raw: Any, *, default: int, maximum: int, clamp: bool, cap: int | None) -> int:
    if raw is None or raw == "":
        value = default
    else:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise _Invalid(f"limit must be a whole number, got {type(raw).__name__}") from None
        if value < 1 or (value > maximum and not clamp):
            raise _Invalid(f"limit must be between 1 and {maximum}")
    value = min(value, maximum)
    return min(value, cap) if cap else value


# --------------------------------------------------------------------------- list


def _id_number(contact: dict[str, Any]) -> int:
    return int(contact["id"])


async def _list_contacts(request: web.Request) -> web.Response:
    state, query = request.app[STATE], request.query
    limit = _limit(
        query.get("limit"), default=10, maximum=LIST_MAX_LIMIT, clamp=True, cap=state.page_cap
    )
    archived = _flag(query, "archived")
    after = query.get("after", "")
    start = 0
    if after:
        if not after.isdigit():
            raise _Invalid("after is not a valid paging cursor")
        start = bisect.bisect_left(state.contacts, int(after), key=_id_number)
    asked = [p.strip() for v in query.getall("properties", []) for p in v.split(",") if p.strip()]
    wanted = asked or UNASKED_PROPERTIES
    results: list[dict[str, Any]] = []
    next_after: str | None = None
    for index in range(start, len(state.contacts)):
        c = state.contacts[index]
        if c["archived"] != archived:
            continue
        if len(results) == limit:
            next_after = c["id"]
            break
        results.append(_view(c, wanted))
    body: dict[str, Any] = {"results": results}
    if next_after is not None:
        link = str(request.url.update_query(after=next_after))
        body["paging"] = {"next": {"after": next_after, "link": link}}
    return _json(body)


def _flag(query: Any, name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise _Invalid(f"{name} must be true or false")
    return bool(value == "true")


#: Properties HubSpot accepts as `idProperty` for contacts (unique-value properties).
ID_PROPERTIES: Final = frozenset({"hs_object_id", "email"})


async def _get_contact(request: web.Request) -> web.Response:
    """One contact, by id or by a unique property (`idProperty=email`)."""
    state, query = request.app[STATE], request.query
    key = request.match_info["contact_id"]
    archived = _flag(query, "archived")
    id_property = query.get("idProperty") or "hs_object_id"
    if id_property not in ID_PROPERTIES:
        raise _Invalid(f"{id_property} is not a unique identifier property")
    found: dict[str, Any] | None = None
    if id_property == "hs_object_id":
        if key.isdigit():
            at = bisect.bisect_left(state.contacts, int(key), key=_id_number)
            if at < len(state.contacts) and state.contacts[at]["id"] == key:
                found = state.contacts[at]
    else:
        wanted = key.lower()
        found = next(
            (c for c in state.contacts if str(c["properties"].get(id_property) or "").lower()
             == wanted), None,
        )  # fmt: skip
    if found is None or found["archived"] != archived:
        return _error(404, "resource not found", category="OBJECT_NOT_FOUND")
    asked = [p.strip() for v in query.getall("properties", []) for p in v.split(",") if p.strip()]
    return _json(_view(found, asked or UNASKED_PROPERTIES))


# --------------------------------------------------------------------------- search


def _comparable(name: str, raw: Any) -> int | str | None:
    """A property value in the form filters and sorts compare (None: no usable value)."""
    if raw is None or raw == "":
        return None
    text = str(raw)
    if name in synthetic.DATE_PROPERTIES:
        return synthetic.to_epoch_ms(text)
    if name == "hs_object_id":
        return int(text) if text.isdigit() else None
    return text.lower()


def _operand(name: str, raw: Any) -> int | str:
    if raw is None or isinstance(raw, dict | list):
        raise _Invalid(f"filter on {name} needs a value")
    value = _comparable(name, raw)
    if value is None:
        raise _Invalid(f"filter value for {name} is not valid for its type")
    return value


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "EQ": lambda a, b: a == b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}
Predicate = Callable[[dict[str, Any]], bool]


def _value_of(name: str, contact: dict[str, Any]) -> int | str | None:
    return _comparable(name, contact["properties"].get(name))


def _predicate(spec: Any) -> Predicate:
    if not isinstance(spec, dict) or not isinstance(spec.get("propertyName"), str):
        raise _Invalid("each filter needs a propertyName and an operator")
    name, op = spec["propertyName"], spec.get("operator")
    get = partial(_value_of, name)
    if op in _COMPARE:
        compare, target = _COMPARE[op], _operand(name, spec.get("value"))
        return lambda c: (v := get(c)) is not None and compare(v, target)
    if op == "NEQ":
        target = _operand(name, spec.get("value"))
        return lambda c: get(c) != target
    if op == "BETWEEN":
        low: Any = _operand(name, spec.get("value"))
        high: Any = _operand(name, spec.get("highValue"))
        return lambda c: (v := get(c)) is not None and low <= v <= high
    if op in ("IN", "NOT_IN"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise _Invalid(f"{op} on {name} needs a list of values")
        members = {_operand(name, v) for v in values}
        inside = op == "IN"
        return lambda c: (get(c) in members) == inside
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        has = op == "HAS_PROPERTY"
        return lambda c: (get(c) is not None) == has
    raise _Invalid(f"unknown filter operator {op!r}")


def _matcher(groups: Any) -> Predicate:
    if groups is None:
        groups = []
    if not isinstance(groups, list) or len(groups) > 5:
        raise _Invalid("filterGroups must be a list of at most 5 groups")
    compiled: list[list[Predicate]] = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or len(filters) > 6:
            raise _Invalid("each filter group needs a list of at most 6 filters")
        compiled.append([_predicate(f) for f in filters])
    if sum(len(g) for g in compiled) > 18:
        raise _Invalid("a search can hold at most 18 filters")
    if not compiled:
        return lambda c: True
    return lambda c: any(all(p(c) for p in group) for group in compiled)


def _ordering(sorts: Any) -> tuple[Callable[[dict[str, Any]], tuple[Any, ...]], bool]:
    """Sort key and `reverse` flag; HubSpot allows one sort, ties fall back to the id."""
    if not sorts:
        return (lambda c: (0, 0, _id_number(c))), False
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise _Invalid("a search can have only one sort")
    spec = sorts[0]
    if isinstance(spec, str) and spec.strip("-"):
        # HubSpot's clients send sorts as strings: a property name, "-" for descending.
        name, descending = spec.removeprefix("-"), spec.startswith("-")
    elif isinstance(spec, dict) and isinstance(spec.get("propertyName"), str):
        direction = spec.get("direction", "ASCENDING")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise _Invalid("a sort's direction is ASCENDING or DESCENDING")
        name, descending = spec["propertyName"], direction == "DESCENDING"
    else:
        raise _Invalid("a sort needs a propertyName")

    def key(c: dict[str, Any]) -> tuple[Any, ...]:
        value = _value_of(name, c)
        return (value is None, value if value is not None else 0, _id_number(c))

    return key, descending


async def _search_contacts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _Invalid("Invalid input JSON on line 1") from None
    if not isinstance(body, dict):
        raise _Invalid("the search body must be a JSON object")
    state.search_bodies.append(body)
    limit = _limit(
        body.get("limit"), default=10, maximum=SEARCH_MAX_LIMIT, clamp=False, cap=state.page_cap
    )
    after_raw = body.get("after") or 0
    if not str(after_raw).isdigit():
        raise _Invalid("after is not a valid paging cursor")
    after = int(after_raw)
    if after >= state.search_cap:
        raise _Invalid(
            f"Search paging is limited to {state.search_cap} results; "
            "narrow the filters instead of paging further."
        )
    matches, (key, descending) = _matcher(body.get("filterGroups")), _ordering(body.get("sorts"))
    found = sorted((c for c in state.contacts if not c["archived"] and matches(c)), key=key)
    if descending:
        found.reverse()
    page = found[after : after + limit]
    properties = body.get("properties") or list(UNASKED_PROPERTIES)
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise _Invalid("properties must be a list of property names")
    out: dict[str, Any] = {"total": len(found), "results": [_view(c, properties) for c in page]}
    if after + len(page) < len(found):
        out["paging"] = {"next": {"after": str(after + len(page))}}
    return _json(out)


# --------------------------------------------------------------------------- app


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    token: str = EMULATOR_TOKEN,
    archived_share: float = 0.03,
    page_cap: int | None = None,
    search_cap: int = SEARCH_CAP,
    ten_secondly: int | None = None,
    daily_limit: int = 1_000_000,
) -> web.Application:
    """An emulated HubSpot portal holding `people` synthetic contacts.

    `page_cap` serves at most that many results per page whatever the client asks (tests:
    many pages from few people); `search_cap` moves the 10,000-result search cap;
    `ten_secondly` enforces a burst limit (off by default so that suites run at full speed).
    """
    app = web.Application(middlewares=[emulator_middleware, _hubspot_middleware])
    control = new_control(_too_many)
    if ten_secondly is not None:
        control.rate_limit = RateLimit(requests=ten_secondly, window=10.0)
    app[CONTROL] = control
    app[STATE] = control.people = HubSpotState(
        contacts=list(synthetic.contacts(people, seed=seed, archived_share=archived_share)),
        token=token,
        page_cap=page_cap,
        search_cap=search_cap,
        daily_limit=daily_limit,
    )
    app.router.add_get(CONTACTS_PATH, _list_contacts)
    app.router.add_post(SEARCH_PATH, _search_contacts)
    app.router.add_get(CONTACTS_PATH + "/{contact_id}", _get_contact)
    app.on_response_prepare.append(_add_limit_headers)
    control.vendor = "hubspot"
    add_authorization_routes(
        app, EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, authorize_path="/oauth/authorize",
        token_path=TOKEN_PATH, rotate=False,
    )  # fmt: skip
    add_control_routes(app)
    return app
