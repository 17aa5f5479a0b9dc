"""A local Salesforce org: the OAuth token endpoint and the REST query API over Contacts.

Faithful where the connector's correctness depends on it:

* `POST /services/oauth2/token`, `grant_type=client_credentials` with the connected app's
  `client_id` / `client_secret` (form fields, or HTTP Basic): the token answer Salesforce
  gives (`access_token`, `instance_url`, `id`, `token_type`, `issued_at` in epoch ms,
  `signature`, `scope`; no `expires_in`, no refresh token); OAuth errors as
  `{"error", "error_description"}` with 400 (`invalid_client`, `unsupported_grant_type`).
  `instance_url` is this server's own origin unless `instance_url=` says otherwise (tests
  of a token answer that points somewhere it must not).
* `GET /services/data` (the versions), `/services/data/vXX.X/query?q=` and `/queryAll?q=`
  (deleted rows included, `IsDeleted = true`), batches of at most 2,000 (or what the
  `Sforce-Query-Options: batchSize=N` header asks, 200 to 2,000), `nextRecordsUrl`
  spelled as Salesforce spells it (`/services/data/v62.0/query/01g...-2000`, `query`
  even for a queryAll) and followed with `GET` on it; locators expire when unused for
  `locator_seconds` (`INVALID_QUERY_LOCATOR`). The SOQL is parsed, not pattern-matched
  (`emulator_soql.py`): unknown fields are `INVALID_FIELD`, bad syntax `MALFORMED_QUERY`.
* `GET .../sobjects/Contact/deleted/?start=&end=` (getDeleted) and `GET .../limits`.
* Errors as Salesforce's JSON array `[{"message", "errorCode"}]`: 401 `INVALID_SESSION_ID`
  for a missing, wrong or expired session (`session_seconds`), 403
  `REQUEST_LIMIT_EXCEEDED` once the org's API allocation (`api_limit` requests per rolling
  `limit_window` seconds; Salesforce's window is 24 hours) is used up, and for the kit's
  burst limiter and rate-limit faults. Salesforce sends no `Retry-After`; every REST answer
  carries `Sforce-Limit-Info: api-usage=N/M`. Token requests do not count as API calls.

Tests steer the org through `app[STATE]` (touch, delete, clear an email, forget locators)
and faults, rate limits and the request log through `app[CONTROL]`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.emulator_kit import (
    CONTROL,
    RateLimit,
    add_control_routes,
    emulator_middleware,
    new_control,
)
from connectors.salesforce import synthetic
from connectors.salesforce.emulator_soql import SoqlError, ordered, parse

#: The emulator's connected app (not secrets: they open only this local stand-in).
EMULATOR_CLIENT_ID: Final = "3MVG9emulator.SluisIntegrationApp.0000000000000000000001"
EMULATOR_CLIENT_SECRET: Final = "E0000000000000000000000000000000000000000000000000000000000001"  # noqa: S105
API_VERSION: Final = "v62.0"
VERSIONS: Final = ("v60.0", "v61.0", "v62.0", "v63.0")
MAX_BATCH: Final = 2000
MIN_BATCH: Final = 200
ORG_ID: Final = "00D5J000000SluisEAA"
USER_ID: Final = "0055J000000IntegUAA"


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    fields: list[str]
    batch: int
    used: float


@dataclass
class SalesforceState:
    """The org's Contacts (ascending Id), sessions, query locators and API usage."""

    contacts: list[dict[str, Any]]
    client_id: str
    client_secret: str
    instance_url: str | None = None
    session_seconds: float | None = None
    locator_seconds: float = 900.0
    batch_cap: int | None = None
    api_limit: int = 100_000
    limit_window: float = 86_400.0
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, float] = field(default_factory=dict)
    cursors: dict[str, _Cursor] = field(default_factory=dict)
    calls: deque[float] = field(default_factory=deque)
    #: Every SOQL text received, so tests can see what a client asked for.
    queries: list[str] = field(default_factory=list)
    token_requests: int = 0
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def live(self) -> list[dict[str, Any]]:
        return [c for c in self.contacts if not c["IsDeleted"]]

    def _stamp(self, record: dict[str, Any], now: datetime | None) -> None:
        stamp = synthetic.spell(now or datetime.now(UTC))
        record["LastModifiedDate"] = record["SystemModstamp"] = stamp

    def touch(self, count: int, *, now: datetime | None = None) -> list[str]:
        """The first `count` live Contacts get a new Title; returns their Ids."""
        changed = self.live()[:count]
        for c in changed:
            c["Title"] = synthetic.next_title(c["Title"])
            self._stamp(c, now)
        return [c["Id"] for c in changed]

    def delete(self, count: int, *, now: datetime | None = None) -> list[str]:
        """Delete (to the recycle bin) the last `count` live Contacts; returns their Ids."""
        live = self.live()
        if count > len(live):
            raise ValueError(f"only {len(live)} contacts are live, {count} asked")
        changed = live[::-1][:count]
        for c in changed:
            c["IsDeleted"] = True
            self._stamp(c, now)
        return [c["Id"] for c in changed]

    def retire(self, count: int) -> list[str]:
        """The control surface's "retire": a CRM's leaver is a deleted Contact."""
        return self.delete(count)

    def clear_email(self, count: int, *, now: datetime | None = None) -> list[str]:
        """Empty the Email of `count` live Contacts from the middle of the org."""
        candidates = [c for c in self.live() if c["Email"]]
        middle = len(candidates) // 2
        changed = candidates[middle : middle + count]
        for c in changed:
            c["Email"] = None
            self._stamp(c, now)
        return [c["Id"] for c in changed]

    def size(self) -> int:
        return len(self.contacts)

    def forget_locators(self) -> None:
        self.cursors.clear()

    def usage(self) -> int:
        now = self.clock()
        while self.calls and now - self.calls[0] >= self.limit_window:
            self.calls.popleft()
        return len(self.calls)

    def new_locator(self) -> str:
        return synthetic.case_safe(f"01g5J{next(self._serial):010d}")


STATE: Final = web.AppKey("salesforce_state", SalesforceState)


def _json(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _errors(status: int, code: str, message: str) -> web.Response:
    return _json([{"message": message, "errorCode": code}], status=status)


def _too_many(wait: float) -> web.Response:
    return _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def _oauth_error(code: str, description: str) -> web.Response:
    return _json({"error": code, "error_description": description}, status=400)


# --------------------------------------------------------------------------- OAuth


def _client_of(request: web.Request, form: Any) -> tuple[str, str]:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user, _, secret = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, secret
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


async def _token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.token_requests += 1
    form = await request.post()
    grant = form.get("grant_type")
    if not grant:
        return _oauth_error("invalid_request", "grant type is missing")
    if grant != "client_credentials":
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    client_id, secret = _client_of(request, form)
    good_id = hmac.compare_digest(client_id.encode(), state.client_id.encode())
    good_secret = hmac.compare_digest(secret.encode(), state.client_secret.encode())
    if not (good_id and good_secret):
        return _oauth_error("invalid_client", "invalid client credentials")
    nonce = hashlib.sha256(f"{next(state._serial)}:{secret}".encode()).digest()
    token = f"{ORG_ID[:15]}!AQ" + base64.urlsafe_b64encode(nonce).decode().rstrip("=")
    state.sessions[token] = state.clock()
    issued = str(int(time.time() * 1000))
    origin = state.instance_url or str(request.url.origin())
    identity = f"{origin}/id/{ORG_ID}/{USER_ID}"
    mac = hmac.new(secret.encode(), (identity + issued).encode(), hashlib.sha256).digest()
    return _json(
        {
            "access_token": token,
            "signature": base64.b64encode(mac).decode(),
            "scope": "api",
            "instance_url": origin,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued,
        }
    )


# --------------------------------------------------------------------------- REST


@web.middleware
async def _salesforce_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Sessions and the org's API allocation, for the REST API (not the token endpoint)."""
    if not request.path.startswith("/services/data"):
        return await handler(request)
    state = request.app[STATE]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    started = state.sessions.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
    expired = (
        started is not None
        and state.session_seconds is not None
        and state.clock() - started >= state.session_seconds
    )
    if started is None or expired:
        state.sessions.pop(token.strip(), None)
        return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
    if state.usage() >= state.api_limit:
        return _too_many(0.0)
    state.calls.append(state.clock())
    try:
        return await handler(request)
    except SoqlError as exc:
        return _errors(400, exc.code, str(exc))


async def _limit_header(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/services/data"):
        state = request.app[STATE]
        response.headers["Sforce-Limit-Info"] = f"api-usage={state.usage()}/{state.api_limit}"


async def _versions(request: web.Request) -> web.Response:
    return _json(
        [
            {"label": f"Release {v}", "url": f"/services/data/{v}", "version": v[1:]}
            for v in VERSIONS
        ]
    )


def _version(request: web.Request) -> str:
    version = request.match_info["version"]
    if version not in VERSIONS:
        raise web.HTTPNotFound(
            body=orjson.dumps([{"errorCode": "NOT_FOUND", "message": "The requested resource "
                                "does not exist"}]), content_type="application/json")  # fmt: skip
    return version


def _batch_size(request: web.Request, state: SalesforceState) -> int:
    size = MAX_BATCH
    for option in request.headers.get("Sforce-Query-Options", "").split(","):
        name, _, value = option.strip().partition("=")
        if name.strip() == "batchSize" and value.strip().isdigit():
            size = min(MAX_BATCH, max(MIN_BATCH, int(value)))
    return min(size, state.batch_cap) if state.batch_cap else size


def _view(record: dict[str, Any], fields: list[str], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {
            "type": "Contact",
            "url": f"/services/data/{version}/sobjects/Contact/{record['Id']}",
        }
    }
    for name in fields:
        out[name] = record.get(name)
    return out


def _answer(
    state: SalesforceState, version: str, locator: str, cursor: _Cursor, start: int
) -> web.Response:
    batch = cursor.records[start : start + cursor.batch]
    end = start + len(batch)
    body: dict[str, Any] = {"totalSize": len(cursor.records), "done": end >= len(cursor.records)}
    if end < len(cursor.records):
        cursor.used = state.clock()
        state.cursors[locator] = cursor
        body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
    else:
        state.cursors.pop(locator, None)
    body["records"] = [_view(r, cursor.fields, version) for r in batch]
    return _json(body)


async def _query(request: web.Request, *, include_deleted: bool) -> web.Response:
    state, version = request.app[STATE], _version(request)
    text = request.query.get("q")
    if not text:
        return _errors(400, "MALFORMED_QUERY", "A query string has to be specified")
    state.queries.append(text)
    query = parse(text, synthetic.FIELDS, "Contact")
    found = [
        c for c in state.contacts if (include_deleted or not c["IsDeleted"]) and query.where(c)
    ]
    if query.order:
        ordered(found, query.order)
    if query.limit is not None:
        found = found[: query.limit]
    cursor = _Cursor(found, query.fields, _batch_size(request, state), state.clock())
    return _answer(state, version, state.new_locator(), cursor, 0)


async def _query_live(request: web.Request) -> web.Response:
    return await _query(request, include_deleted=False)


async def _query_all(request: web.Request) -> web.Response:
    return await _query(request, include_deleted=True)


async def _query_more(request: web.Request) -> web.Response:
    state, version = request.app[STATE], _version(request)
    locator, _, offset = request.match_info["locator"].rpartition("-")
    cursor = state.cursors.get(locator)
    if (
        cursor is None
        or not offset.isdigit()
        or state.clock() - cursor.used >= state.locator_seconds
    ):
        state.cursors.pop(locator, None)
        return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _answer(state, version, locator, cursor, int(offset))


def _instant(text: str | None, name: str) -> str:
    if not text:
        raise SoqlError("MISSING_ARGUMENT", f"{name} is required")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SoqlError("INVALID_PARAMETER", f"{name} is not a valid dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return synthetic.spell(moment)


async def _get_deleted(request: web.Request) -> web.Response:
    """getDeleted: Ids and times of Contacts deleted in [start, end]."""
    state = request.app[STATE]
    _version(request)
    start = _instant(request.query.get("start"), "start")
    end = _instant(request.query.get("end"), "end")
    deleted = [
        {"id": c["Id"], "deletedDate": c["SystemModstamp"]}
        for c in state.contacts
        if c["IsDeleted"] and start <= c["SystemModstamp"] <= end
    ]
    earliest = min((c["SystemModstamp"] for c in state.contacts), default=start)
    return _json(
        {"deletedRecords": deleted, "earliestDateAvailable": earliest, "latestDateCovered": end}
    )


async def _limits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _version(request)
    used = state.usage()
    return _json(
        {"DailyApiRequests": {"Max": state.api_limit, "Remaining": state.api_limit - used}}
    )


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    client_id: str = EMULATOR_CLIENT_ID,
    client_secret: str = EMULATOR_CLIENT_SECRET,
    batch_cap: int | None = None,
    session_seconds: float | None = None,
    locator_seconds: float = 900.0,
    api_limit: int = 100_000,
    limit_window: float = 86_400.0,
    instance_url: str | None = None,
    burst: tuple[int, float] | None = None,
) -> web.Application:
    """An emulated Salesforce org holding `people` synthetic Contacts.

    `batch_cap` serves at most that many records per batch whatever the client asks (tests:
    many batches from few people); `session_seconds` expires sessions; `api_limit` and
    `limit_window` set the org's API allocation (a rolling window, shortened for tests and
    benchmarks); `burst` = (requests, seconds) enforces the kit's fixed-window limiter too.
    """
    app = web.Application(middlewares=[emulator_middleware, _salesforce_middleware])
    control = new_control(_too_many)
    if burst is not None:
        control.rate_limit = RateLimit(requests=burst[0], window=burst[1])
    app[CONTROL] = control
    app[STATE] = control.people = SalesforceState(
        contacts=list(synthetic.contacts(people, seed=seed)),
        client_id=client_id,
        client_secret=client_secret,
        instance_url=instance_url,
        session_seconds=session_seconds,
        locator_seconds=locator_seconds,
        batch_cap=batch_cap,
        api_limit=api_limit,
        limit_window=limit_window,
    )
    r = app.router
    r.add_post("/services/oauth2/token", _token)
    r.add_get("/services/data", _versions)
    r.add_get("/services/data/", _versions)
    r.add_get("/services/data/{version}/query", _query_live)
    r.add_get("/services/data/{version}/query/", _query_live)
    r.add_get("/services/data/{version}/queryAll", _query_all)
    r.add_get("/services/data/{version}/queryAll/", _query_all)
    r.add_get("/services/data/{version}/query/{locator}", _query_more)
    r.add_get("/services/data/{version}/queryAll/{locator}", _query_more)
    r.add_get("/services/data/{version}/sobjects/Contact/deleted", _get_deleted)
    r.add_get("/services/data/{version}/sobjects/Contact/deleted/", _get_deleted)
    r.add_get("/services/data/{version}/limits", _limits)
    r.add_get("/services/data/{version}/limits/", _limits)
    app.on_response_prepare.append(_limit_header)
    control.vendor = "salesforce"
    add_control_routes(app)
    return app
