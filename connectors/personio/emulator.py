"""A local Personio v1 API (authentication and the employees list), served as Personio does.

Faithful where a client goes wrong in production (research notes, `connector_apis.md`
section 2a; Personio's published OpenAPI documents, `personio/api-docs`):

* `POST /v1/auth` takes `client_id` and `client_secret` in a JSON or form body (and, as
  Personio still does until December 2026, in the query string) and answers
  `{"success": true, "data": {"token": "papi-…", "expires_in": 86400, "scope": …}}`. The
  token is stable: the same one comes back for the same credentials until it expires
  (`token_ttl`, 24 hours unless a test shortens it), and then a new one. The endpoint takes
  60 requests a minute; past that it answers 429 for a 60-second cool-down.
* `GET /v1/company/employees` needs `Authorization: Bearer <token>`: none is a 401
  ("Authorization is not provided"), an unknown or expired one a 403 ("Provided
  authorization is not valid"), both with Personio's error body
  `{"success": false, "error": {"code": N, "message": "…"}}`. Every answer echoes the
  token in an `authorization` header, as Personio's do.
* Paging by `limit` (default 50, at most 100) and `offset` (the first element to return,
  not a page number); `metadata` has `total_elements`, `current_page` and `total_pages`.
  Employees come in ascending id order.
* Every attribute is wrapped as `{label, value, type, universal_id}`; related objects
  (supervisor, office, department) nest `{type, attributes}`; custom attributes are
  `dynamic_<id>`. `attributes[]` projects: only the attributes named (and `id`) come
  back. The credential's readable attributes (`readable`, default all) bound both: an
  attribute the credential may not read is never served, asked for or not.
* `updated_since` (ISO 8601 without a zone, or a date; read as the account's local time,
  Europe/Berlin) selects employees with an attribute changed after it; with
  `attributes[]`, only changes to those attributes count. Paging still applies, as users
  observe it (the reference says limit and offset are ignored then).
* Rate limits on the employees list: 300 requests a minute with bursts of 15 a second
  (fixed windows here), answered 429 with `Retry-After`.

Invented where Personio documents nothing (and marked so in the tests): the status and
body of a refused `/v1/auth` (401, code 0), of a `limit` over 100 and of a bad
`updated_since` (400, code 400), and the 429's body and `Retry-After` header (Personio
only asks clients to wait at least a second). The employees' order is assumed, not
documented.
"""

from __future__ import annotations

import hmac
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.emulator_kit import CONTROL, add_control_routes, emulator_middleware, new_control
from connectors.personio import synthetic
from connectors.personio.synthetic import BERLIN, Employee

EMULATOR_CLIENT_ID: Final = "papi-emulator-client"
EMULATOR_CLIENT_SECRET: Final = "papi-emulator-secret-" + "0123456789abcdef" * 2
AUTH_PATH: Final = "/v1/auth"
EMPLOYEES_PATH: Final = "/v1/company/employees"
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
TOKEN_TTL: Final = 24 * 3600.0
SCOPE: Final = "employees:read"


@dataclass
class Window:
    """At most `requests` per `seconds` (a fixed window from its first request)."""

    requests: int
    seconds: float
    started: float = -math.inf
    count: int = 0

    def wait(self, now: float) -> float:
        """0 if a request fits now, else the seconds until the window resets."""
        if now - self.started >= self.seconds:
            self.started, self.count = now, 0
        return 0.0 if self.count < self.requests else self.seconds - (now - self.started)

    def take(self) -> None:
        self.count += 1


@dataclass
class PersonioAccount:
    """One Personio account: its API credential, the employees and the limits."""

    client_id: str
    client_secret: str
    people: list[Employee]
    token_ttl: float = TOKEN_TTL
    #: What the credential may read (Personio's "readable attributes"); None: everything.
    readable: frozenset[str] | None = None
    #: Employee-list limits: per minute and per second (None: off).
    per_minute: Window | None = field(default_factory=lambda: Window(300, 60.0))
    per_second: Window | None = field(default_factory=lambda: Window(15, 1.0))
    auth_window: Window = field(default_factory=lambda: Window(60, 60.0))
    auth_blocked_until: float = 0.0
    #: token → when it stops working (monotonic seconds).
    tokens: dict[str, float] = field(default_factory=dict)
    issued: int = 0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    # ------------------------------------------------------------------ HR admin's edits

    def _active(self, person: Employee) -> bool:
        return person.values.get("status") != "inactive"

    def _pick(self, count: int, want: Callable[[Employee], bool]) -> list[Employee]:
        candidates = [p for p in self.people if want(p)]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} people qualify, {count} asked")
        return self.rng.sample(candidates, count)

    def touch(self, count: int) -> list[str]:
        """Give `count` active people a new position now; returns their ids."""
        now = self.clock()
        chosen = self._pick(count, lambda p: self._active(p) and bool(p.values.get("email")))
        for person in chosen:
            person.set("position", synthetic.next_position(person.values.get("position")), now)
        return [str(p.id) for p in chosen]

    def retire(self, count: int) -> list[str]:
        """`count` active people leave: terminated a week ago, status inactive."""
        now = self.clock()
        ended = synthetic.spell((now - timedelta(days=7)).astimezone(BERLIN).date())
        chosen = self._pick(count, self._active)
        for person in chosen:
            person.set("status", "inactive", now)
            person.set("termination_date", ended, now)
            person.set("last_working_day", ended, now)
        return [str(p.id) for p in chosen]

    def terminate_later(self, count: int, days: int = 30) -> list[str]:
        """`count` active people hand in their notice: a termination date ahead."""
        now = self.clock()
        ends = synthetic.spell((now + timedelta(days=days)).astimezone(BERLIN).date())
        chosen = self._pick(count, lambda p: self._active(p) and not p.values["termination_date"])
        for person in chosen:
            person.set("termination_date", ends, now)
        return [str(p.id) for p in chosen]

    def break_email(self, count: int) -> list[str]:
        """Clear the email of `count` people (an admin emptied the field)."""
        now = self.clock()
        chosen = self._pick(count, lambda p: bool(p.values.get("email")))
        for person in chosen:
            person.set("email", None, now)
        return [str(p.id) for p in chosen]

    def size(self) -> int:
        return len(self.people)

    # ------------------------------------------------------------------ tokens

    def token_for(self, now: float) -> tuple[str, float]:
        """The credential's stable token (a new one once the old one expired)."""
        live = [(t, until) for t, until in self.tokens.items() if until > now]
        if live:
            return live[-1]
        self.issued += 1
        token = "papi-" + secrets.token_urlsafe(32)
        self.tokens[token] = now + self.token_ttl
        return token, now + self.token_ttl

    def valid(self, token: str, now: float) -> bool:
        until = self.tokens.get(token)
        return until is not None and until > now

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (tests: a token that ran out)."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)


ACCOUNT: Final = web.AppKey("personio_account", PersonioAccount)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """Personio's v1 error body."""
    body = {"success": False, "error": {"code": status if code is None else code,
                                        "message": message}}  # fmt: skip
    return _json(body, status, headers)


def too_many(wait: float) -> web.Response:
    return error_response(
        429, "Too Many Requests", 429, {"Retry-After": str(max(1, math.ceil(wait)))}
    )


# --------------------------------------------------------------------------- auth


async def auth(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    now = account.monotonic()
    if now < account.auth_blocked_until:
        return too_many(account.auth_blocked_until - now)
    if account.auth_window.wait(now) > 0:
        account.auth_blocked_until = now + 60.0
        return too_many(60.0)
    account.auth_window.take()
    given: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if raw:
        if request.content_type == "application/json":
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return error_response(400, "Malformed JSON body", 400)
            if isinstance(body, dict):
                given.update(body)
        else:
            given.update(await request.post())
    client_id, secret = given.get("client_id"), given.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        return error_response(401, "Missing client credentials", 0)
    if not (
        hmac.compare_digest(client_id.encode(), account.client_id.encode())
        and hmac.compare_digest(secret.encode(), account.client_secret.encode())
    ):
        return error_response(401, "Wrong credentials", 0)
    token, until = account.token_for(now)
    data = {"token": token, "expires_in": max(0, int(until - now)), "scope": SCOPE}
    return _json({"success": True, "data": data})


@web.middleware
async def personio_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer auth for everything but `/v1/auth`, and the echoed token."""
    if request.path.startswith("/_emulator") or request.path == AUTH_PATH:
        return await handler(request)
    account = request.app[ACCOUNT]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(401, "Authorization is not provided")
    if not account.valid(token, account.monotonic()):
        return error_response(403, "Provided authorization is not valid")
    response = await handler(request)
    response.headers["authorization"] = f"Bearer {token}"
    return response


# --------------------------------------------------------------------------- employees


class _BadRequest(Exception):
    pass


def _whole(query: Any, name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"The {name} parameter must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f" and at most {high}" if high is not None else ""
        raise _BadRequest(f"The {name} parameter must be at least {low}{bound}")
    return value


def parse_since(text: str) -> datetime:
    """`updated_since` as Personio takes it: a date or a time without a zone, local time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _BadRequest("The updated_since parameter must be an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BERLIN)
    return moment


def _limited(account: PersonioAccount) -> web.Response | None:
    now = account.monotonic()
    windows = [w for w in (account.per_second, account.per_minute) if w is not None]
    wait = max((w.wait(now) for w in windows), default=0.0)
    if wait > 0:
        return too_many(wait)
    for window in windows:
        window.take()
    return None


def view(person: Employee, names: tuple[str, ...]) -> dict[str, Any]:
    values = person.values
    return {
        "type": "Employee",
        "attributes": {n: synthetic.wrapped(n, values.get(n)) for n in names},
    }


async def list_employees(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    limited = _limited(account)
    if limited is not None:
        return limited
    query = request.query
    try:
        limit = _whole(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _whole(query, "offset", 0, 0, None)
        since = parse_since(query["updated_since"]) if query.get("updated_since") else None
    except _BadRequest as exc:
        return error_response(400, str(exc), 400)
    readable = account.readable
    asked = [a for v in query.getall("attributes[]", []) for a in v.split(",") if a.strip()]
    known = [n for n in synthetic.ATTRIBUTES if readable is None or n in readable]
    if asked:
        wanted = set(asked)
        names = tuple(n for n in known if n in wanted or n == "id")
    else:
        names = tuple(known)
    if since is not None:
        counted = [n for n in names if n != "id"]
        found = [p for p in account.people if any(p.changed_at(n) > since for n in counted)]
    elif query.get("email"):
        email = query["email"].strip().lower()
        found = [p for p in account.people if str(p.values.get("email") or "").lower() == email]
    else:
        found = account.people
    total = len(found)
    page = found[offset : offset + limit]
    body = {
        "success": True,
        "metadata": {
            "total_elements": total,
            "current_page": offset // limit,
            "total_pages": math.ceil(total / limit),
        },
        "offset": offset,
        "limit": limit,
        "data": [view(p, names) for p in page],
    }
    return _json(body)


async def get_employee(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    raw = request.match_info["employee_id"]
    found = next((p for p in account.people if raw.isdigit() and p.id == int(raw)), None)
    if found is None:
        return error_response(404, "Employee not found", 404)
    readable = account.readable
    names = tuple(n for n in synthetic.ATTRIBUTES if readable is None or n in readable)
    return _json({"success": True, "data": view(found, names)})


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    client_id: str = EMULATOR_CLIENT_ID,
    client_secret: str = EMULATOR_CLIENT_SECRET,
    token_ttl: float = TOKEN_TTL,
    readable: frozenset[str] | None = None,
    leaver_share: float = 0.05,
    per_minute: int | None = 300,
    per_second: int | None = 15,
) -> web.Application:
    """A Personio account with `people` synthetic employees.

    `per_minute`/`per_second` set the employee list's limits (None: off; Personio's are
    300 and 15); `token_ttl` how long a token works; `readable` the attributes the API
    credential may read (None: all).
    """
    app = web.Application(middlewares=[emulator_middleware, personio_middleware])
    control = new_control(too_many)
    app[CONTROL] = control
    app[ACCOUNT] = control.people = PersonioAccount(
        client_id=client_id,
        client_secret=client_secret,
        people=list(synthetic.employees(people, seed=seed, leaver_share=leaver_share)),
        token_ttl=token_ttl,
        readable=readable,
        per_minute=Window(per_minute, 60.0) if per_minute else None,
        per_second=Window(per_second, 1.0) if per_second else None,
        rng=random.Random(seed + 1),
    )
    app.router.add_post(AUTH_PATH, auth)
    app.router.add_get(EMPLOYEES_PATH, list_employees)
    app.router.add_get(EMPLOYEES_PATH + "/{employee_id}", get_employee)
    control.vendor = "personio"
    add_control_routes(app)
    return app
