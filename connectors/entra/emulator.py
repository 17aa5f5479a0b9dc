"""A local Microsoft Entra ID: the v2.0 token endpoint and Graph's `/users` and delta query.

Faithful where a client goes wrong in production (Microsoft Graph and identity platform
documentation):

* `POST /{tenant}/oauth2/v2.0/token` takes the client credentials grant as a form
  (`grant_type=client_credentials`, `client_id`, `client_secret`, `scope=<resource>/.default`)
  and answers `{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
  "access_token": …}`. Refusals carry the identity platform's body (`error`,
  `error_description` with an AADSTS number, `error_codes`, `timestamp`, `trace_id`,
  `correlation_id`): an unknown tenant 400 `invalid_request` (AADSTS90002), an unknown
  app 400 `unauthorized_client` (AADSTS700016), a wrong secret 401 `invalid_client`
  (AADSTS7000215), a scope without `/.default` 400 `invalid_scope`, another grant 400
  `unsupported_grant_type`. The tenant is its id or its domain name.
* Graph (`/v1.0`) needs `Authorization: Bearer`: none, an unknown or an expired token is
  401 `InvalidAuthenticationToken`; an app without a users permission is 403
  `Authorization_RequestDenied`. Error bodies are `{"error": {"code", "message",
  "innerError": {"date", "request-id", "client-request-id"}}}`.
* `GET /users/delta` (also spelled `delta()` and `microsoft.graph.delta`, as the SDKs
  do): a first round lists the users that exist now (none deleted) in pages with an
  absolute `@odata.nextLink` (`$skiptoken`), the last page an `@odata.deltaLink`
  (`$deltatoken`). A later round from that link lists only users changed since, in order
  of change, and users deleted since as `{"id", "@removed": {"reason": "changed"}}`
  (soft-deleted, restorable) or `"deleted"` (hard-deleted). `$select` is given on the
  first request only and kept inside the tokens; an unknown property is 400
  `Request_BadRequest`. Without `$select` Graph's default property set comes back.
  Tokens from before `expire_delta_tokens` are 400 `syncStateNotFound` (directory
  resources, as Microsoft announced for its 7-day delta token lifetime), or 410 Gone
  `resyncRequired` with `gone_status=410`.
* `GET /users` (`$select`, `$top` up to 999, `$skiptoken`) and `GET /users/{id}`.
* Throttling as Graph's identity service does: resource units per app and tenant in a
  10-second window (3,500 / 5,000 / 8,000 for tenants of under 50 / up to 500 / more
  users, or `resource_units`); a `/users` read costs 2, less 1 with `$select`, less 1 with
  `$top` under 20, at least 1. Every answer says its cost in `x-ms-resource-unit`, and
  `x-ms-throttle-limit-percentage` once over 80%; past the budget a 429 with
  `Retry-After`, `x-ms-throttle-scope` and `x-ms-throttle-information`.

Invented where Microsoft documents nothing (and marked so in the tests): the delta page
size (100, `page_size`), the shape of the tokens (base64url of the round's state here,
opaque at Graph), the messages, and the answer to a skip token that is no token at all
(400 `Request_BadRequest`).
"""

from __future__ import annotations

import base64
import bisect
import hmac
import math
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.emulator_kit import CONTROL, add_control_routes, emulator_middleware, new_control
from connectors.entra import synthetic

EMULATOR_TENANT_ID: Final = "7f3c2a1e-0b9d-4c8e-a5f6-2d1e0c9b8a70"
EMULATOR_TENANT_DOMAIN: Final = "contosoexample.onmicrosoft.com"
EMULATOR_CLIENT_ID: Final = "3b1e6f0a-5c2d-4e7f-9a8b-1c0d2e3f4a5b"
EMULATOR_CLIENT_SECRET: Final = "Xq8~emulator.Secret_" + "0123456789abcdef" * 2
GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
TOKEN_TTL: Final = 3599.0
DEFAULT_PAGE_SIZE: Final = 100
MAX_TOP: Final = 999
WINDOW: Final = 10.0
DELTA_NAMES: Final = frozenset(
    {"delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"}
)


@dataclass
class Stored:
    """One user as the directory keeps it: values, the change counter of its last change,
    and how it was deleted (None while it exists)."""

    values: dict[str, Any]
    version: int
    removed: str | None = None


@dataclass
class Limiter:
    """Resource units per app and tenant in a sliding 10-second window."""

    units: int
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0

    def admit(self, cost: int, now: float) -> float | None:
        """None if admitted (and counted), else seconds until `cost` fits."""
        while self.spent and now - self.spent[0][0] >= WINDOW:
            self.total -= self.spent.popleft()[1]
        if self.total + cost <= self.units:
            self.spent.append((now, cost))
            self.total += cost
            return None
        over = self.total + cost - self.units
        for at, units in self.spent:
            over -= units
            if over <= 0:
                return max(0.0, at + WINDOW - now)
        return WINDOW

    def share(self) -> float:
        return self.total / self.units


@dataclass
class Directory:
    """One Entra tenant: its app registration, users, change counter and limits."""

    client_id: str
    client_secret: str
    users: dict[str, Stored]
    #: Every user id ever held, sorted (ids are never reused), for paging by id.
    order: list[str] = field(default_factory=list)
    tenant_id: str = EMULATOR_TENANT_ID
    tenant_domain: str = EMULATOR_TENANT_DOMAIN
    version: int = 0
    #: Delta and skip tokens from an older generation are no longer known.
    generation: int = 1
    gone_status: int = 400
    page_size: int = DEFAULT_PAGE_SIZE
    token_ttl: float = TOKEN_TTL
    #: False: the app has no users permission (403 on every Graph call).
    may_read_users: bool = True
    limiter: Limiter | None = None
    tokens: dict[str, float] = field(default_factory=dict)
    issued: int = 0
    monotonic: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    # ------------------------------------------------------------------ admin's edits

    def _bump(self, stored: Stored) -> None:
        self.version += 1
        stored.version = self.version

    def _pick(self, count: int, want: Callable[[Stored], bool]) -> list[Stored]:
        candidates = [u for u in self.users.values() if u.removed is None and want(u)]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} users qualify, {count} asked")
        return self.rng.sample(candidates, count)

    def touch(self, count: int) -> list[str]:
        """Give `count` enabled users a new job title; returns their ids."""
        chosen = self._pick(count, lambda u: bool(u.values["accountEnabled"] and u.values["mail"]))
        for stored in chosen:
            stored.values["jobTitle"] = synthetic.next_title(stored.values.get("jobTitle"))
            self._bump(stored)
        return [u.values["id"] for u in chosen]

    def retire(self, count: int) -> list[str]:
        """`count` enabled users leave: their sign-in is blocked (`accountEnabled` false)."""
        chosen = self._pick(count, lambda u: bool(u.values["accountEnabled"]))
        for stored in chosen:
            stored.values["accountEnabled"] = False
            self._bump(stored)
        return [u.values["id"] for u in chosen]

    def delete(self, count: int, *, hard: bool = False) -> list[str]:
        """Delete `count` users: to the deleted items (restorable), or for good."""
        chosen = self._pick(count, lambda u: True)
        for stored in chosen:
            stored.removed = "deleted" if hard else "changed"
            self._bump(stored)
        return [u.values["id"] for u in chosen]

    def break_email(self, count: int) -> list[str]:
        """Clear the mail of `count` users (no mailbox)."""
        chosen = self._pick(count, lambda u: bool(u.values["mail"]))
        for stored in chosen:
            stored.values["mail"] = None
            self._bump(stored)
        return [u.values["id"] for u in chosen]

    def size(self) -> int:
        return sum(1 for u in self.users.values() if u.removed is None)

    def alive_after(self, after: str, count: int) -> list[Stored]:
        """Up to `count` existing users with ids after `after`, in id order."""
        found: list[Stored] = []
        order = self.order
        for i in range(bisect.bisect_right(order, after), len(order)):
            stored = self.users[order[i]]
            if stored.removed is None:
                found.append(stored)
                if len(found) == count:
                    break
        return found

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token handed out so far is forgotten (7 days passed)."""
        self.generation += 1

    # ------------------------------------------------------------------ tokens

    def issue(self, now: float) -> str:
        self.issued += 1
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
        self.tokens[token] = now + self.token_ttl
        return token

    def valid(self, token: str, now: float) -> bool:
        until = self.tokens.get(token)
        return until is not None and until > now

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id, self.tenant_domain)


DIRECTORY: Final = web.AppKey("entra_directory", Directory)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Graph's error body."""
    inner = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4()),
    }
    return _json(
        {"error": {"code": code, "message": message, "innerError": inner}}, status, headers
    )


def too_many(wait: float) -> web.Response:
    return graph_error(
        429,
        "TooManyRequests",
        "Too many requests.",
        {
            "Retry-After": str(max(1, math.ceil(wait))),
            "x-ms-throttle-scope": f"Tenant_Application/Read/{EMULATOR_CLIENT_ID}/"
            f"{EMULATOR_TENANT_ID}",
            "x-ms-throttle-information": "ResourceUnitLimitExceeded",
        },
    )


def _login_error(status: int, error: str, number: int, text: str) -> web.Response:
    now = datetime.now(UTC)
    body = {
        "error": error,
        "error_description": f"AADSTS{number}: {text}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [number],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
    return _json(body, status)


# --------------------------------------------------------------------------- token endpoint


async def token(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    if not directory.knows_tenant(request.match_info["tenant"]):
        return _login_error(400, "invalid_request", 90002, "Tenant not found.")
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _login_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    client_id, secret, scope = form.get("client_id"), form.get("client_secret"), form.get("scope")
    if not isinstance(client_id, str) or not hmac.compare_digest(
        client_id.encode(), directory.client_id.encode()
    ):
        return _login_error(
            400, "unauthorized_client", 700016, "Application was not found in the directory."
        )
    if not isinstance(secret, str) or not hmac.compare_digest(
        secret.encode(), directory.client_secret.encode()
    ):
        return _login_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    if not isinstance(scope, str) or not scope:
        return _login_error(
            400, "invalid_request", 900144, "The request body must contain 'scope'."
        )
    if not scope.endswith("/.default") or " " in scope.strip():
        return _login_error(
            400, "invalid_scope", 1002012, "The provided value for scope is not valid."
        )
    access = directory.issue(directory.monotonic())
    ttl = int(directory.token_ttl)
    return _json(
        {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": access}
    )


# --------------------------------------------------------------------------- Graph


@web.middleware
async def graph_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer auth, permission, resource-unit throttling for everything under /v1.0."""
    if not request.path.startswith("/v1.0/"):
        return await handler(request)
    directory = request.app[DIRECTORY]
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    challenge = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
    if scheme.lower() != "bearer" or not presented:
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
    if not directory.valid(presented, directory.monotonic()):
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            challenge,
        )
    if not directory.may_read_users:
        return graph_error(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    cost = _cost(request)
    headers = {"x-ms-resource-unit": str(cost)}
    if directory.limiter is not None:
        wait = directory.limiter.admit(cost, directory.monotonic())
        if wait is not None:
            return too_many(wait)
        share = directory.limiter.share()
        if share > 0.8:
            headers["x-ms-throttle-limit-percentage"] = f"{min(share, 1.8):.1f}"
    response = await handler(request)
    response.headers.update(headers)
    return response


def _cost(request: web.Request) -> int:
    query = request.query
    cost = 2
    state = _peek_state(query.get("$skiptoken") or query.get("$deltatoken"))
    if "$select" in query or (state is not None and state.get("s")):
        cost -= 1
    top = query.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost)


class _BadRequest(Exception):
    pass


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).rstrip(b"=").decode()


def _peek_state(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        state = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _select(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in synthetic.PROPERTIES:
            raise _BadRequest(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type 'microsoft.graph.user'."
            )
    return names


def view(values: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    names = synthetic.DEFAULT_PROPERTIES if not select else ("id", *select)
    return {name: values.get(name) for name in dict.fromkeys(names)}


def _link(request: web.Request, path: str, name: str, state: dict[str, Any]) -> str:
    return f"{request.scheme}://{request.host}/v1.0/{path}?${name}={_encode(state)}"


def _context(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/v1.0/$metadata#users"


def _gone(directory: Directory) -> web.Response:
    if directory.gone_status == 410:
        return graph_error(
            410, "resyncRequired", "Resync required. Replace any local items with the server's."
        )
    return graph_error(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must "
        "be synchronized again.",
    )


async def users_delta(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    query = request.query
    token_text = query.get("$skiptoken") or query.get("$deltatoken")
    try:
        if token_text is None:
            select = _select(query.get("$select"))
            state: dict[str, Any] = {"k": "full", "s": select, "u": directory.version, "a": ""}
        else:
            found = _peek_state(token_text)
            if found is None or "g" not in found:
                raise _BadRequest("Invalid state token.")
            if found["g"] != directory.generation:
                return _gone(directory)
            if "$deltatoken" in query:
                # A new round: the changes since the last one, up to now.
                state = {"k": "delta", "s": found.get("s"), "f": found["v"],
                         "u": directory.version, "a": found["v"]}  # fmt: skip
            else:
                state = found
    except _BadRequest as exc:
        return graph_error(400, "Request_BadRequest", str(exc))
    select = state.get("s")
    size = directory.page_size
    records: list[dict[str, Any]]
    if state["k"] == "full":
        after = state["a"]
        alive = directory.alive_after(after, size + 1)
        page = alive[:size]
        more = len(alive) > size
        records = [view(u.values, select) for u in page]
        last = page[-1].values["id"] if page else after
    else:
        after_version, upto = state["a"], state["u"]
        changed = sorted(
            (u for u in directory.users.values() if after_version < u.version <= upto),
            key=lambda u: u.version,
        )
        page = changed[:size]
        more = len(changed) > size
        records = [
            {"id": u.values["id"], "@removed": {"reason": u.removed}}
            if u.removed is not None
            else view(u.values, select)
            for u in page
        ]
        last = page[-1].version if page else after_version
    body: dict[str, Any] = {"@odata.context": _context(request)}
    path = "users/delta"
    if more:
        body["@odata.nextLink"] = _link(
            request, path, "skiptoken", {**state, "a": last, "g": directory.generation}
        )
    else:
        body["@odata.deltaLink"] = _link(
            request, path, "deltatoken", {"g": directory.generation, "s": select, "v": state["u"]}
        )
    body["value"] = records
    return _json(body)


async def list_users(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    query = request.query
    try:
        if "$skiptoken" in query:
            state = _peek_state(query["$skiptoken"])
            if state is None or state.get("k") != "list":
                raise _BadRequest("Invalid skip token.")
        else:
            top_text = query.get("$top", str(DEFAULT_PAGE_SIZE))
            if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_TOP:
                raise _BadRequest(
                    f"Invalid page size specified: '{top_text[:16]}'. Must be between 1 and "
                    "999 inclusive."
                )
            state = {"k": "list", "s": _select(query.get("$select")), "t": int(top_text), "a": ""}
    except _BadRequest as exc:
        return graph_error(400, "Request_BadRequest", str(exc))
    alive = directory.alive_after(state["a"], state["t"] + 1)
    page = alive[: state["t"]]
    body: dict[str, Any] = {"@odata.context": _context(request)}
    if len(alive) > state["t"]:
        body["@odata.nextLink"] = _link(
            request, "users", "skiptoken", {**state, "a": page[-1].values["id"]}
        )
    body["value"] = [view(u.values, state["s"]) for u in page]
    return _json(body)


async def users_function_or_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name in DELTA_NAMES:
        return await users_delta(request)
    directory = request.app[DIRECTORY]
    stored = directory.users.get(name)
    if stored is None or stored.removed is not None:
        return graph_error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{name[:64]}' does not exist or one of its queried reference-property "
            "objects are not present.",
        )
    try:
        select = _select(request.query.get("$select"))
    except _BadRequest as exc:
        return graph_error(400, "Request_BadRequest", str(exc))
    body = {"@odata.context": _context(request) + "/$entity", **view(stored.values, select)}
    return _json(body)


def tier_units(people: int) -> int:
    """Graph's resource units per 10 s for a tenant of this many users (S, M, L)."""
    return 3500 if people < 50 else 5000 if people <= 500 else 8000


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    client_id: str = EMULATOR_CLIENT_ID,
    client_secret: str = EMULATOR_CLIENT_SECRET,
    leaver_share: float = 0.05,
    page_size: int = DEFAULT_PAGE_SIZE,
    token_ttl: float = TOKEN_TTL,
    resource_units: int | None = -1,
    gone_status: int = 400,
    may_read_users: bool = True,
) -> web.Application:
    """An Entra tenant with `people` synthetic users.

    `resource_units`: the Graph budget per 10 s (-1: Graph's for the tenant's size; None:
    no limit); `page_size`: users per delta page; `gone_status`: 400 (`syncStateNotFound`)
    or 410 (`resyncRequired`) for a forgotten delta token; `may_read_users`: False for an
    app without the permission.
    """
    app = web.Application(middlewares=[emulator_middleware, graph_middleware])
    control = new_control(too_many)
    app[CONTROL] = control
    listed = {}
    for number, values in enumerate(synthetic.users(people, seed=seed, leaver_share=leaver_share)):
        listed[values["id"]] = Stored(values, version=number + 1)
    units = tier_units(people) if resource_units == -1 else resource_units
    app[DIRECTORY] = directory = Directory(
        client_id=client_id,
        client_secret=client_secret,
        users=listed,
        order=sorted(listed),
        version=len(listed),
        page_size=page_size,
        token_ttl=token_ttl,
        gone_status=gone_status,
        may_read_users=may_read_users,
        limiter=Limiter(units) if units else None,
        rng=random.Random(seed + 1),
    )
    control.people = directory
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/v1.0/users", list_users)
    app.router.add_get("/v1.0/users/{name}", users_function_or_user)
    control.vendor = "entra"
    add_control_routes(app)
    return app
