"""A local Dataverse environment (Web API v9.2, the contacts table) and its Entra ID token
endpoint, served as Microsoft documents them.

Faithful where a client goes wrong in production (Microsoft Learn: "Query data using the
Web API", "Page results", "Use change tracking to synchronize data with external
systems", "Service protection API limits"; research notes, `connector_apis.md` 7c):

* `POST /{tenant}/oauth2/v2.0/token` (Entra ID v2, client credentials in the form body)
  answers `{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
  "access_token": …}` for `scope=<environment URL>/.default`. Refusals carry Entra's body:
  `error`, an `error_description` that starts with an AADSTS number and quotes ids, and
  `error_codes` (401 `invalid_client` for a wrong secret, 400 `unauthorized_client` for an
  unknown app, 400 `invalid_scope`, 400 `invalid_request` for an unknown tenant).
* `GET /api/data/v9.2/contacts` needs `Authorization: Bearer` with a token issued for this
  environment: none, an unknown or an expired one is a 401 with an empty body and a
  `WWW-Authenticate: Bearer authorization_uri=…` header. An app that is not an application
  user of the environment gets a 403 with Dataverse's error body.
* `$select` projects (an unknown column is a 400); without it every column comes back.
  Every row carries `@odata.etag`. Rows come in primary-key order.
* `Prefer: odata.maxpagesize=N` pages (at most 5,000; a larger N is ignored, as Dataverse
  ignores it); `Preference-Applied` says what was applied. A page that is not the last
  ends with `@odata.nextLink`: the same query plus `$skiptoken`, a URL-encoded paging
  cookie (`<cookie pagenumber="2" pagingcookie="…" istracking="…" />`) holding the last
  key read, as Dataverse's do. `$skip` is refused; `$top` is honoured without tracking.
* `Prefer: odata.track-changes` makes the last page carry `@odata.deltaLink`, the query
  plus `$deltatoken=<version>!<MM/dd/yyyy HH:mm:ss>` (URL-encoded). The token's version is
  the table's row version when the read began, so changes made during a long read come
  again in the next delta. A delta request answers the rows changed since (their current
  values, by `$select`, in version order) and then the rows deleted since as
  `{"@odata.context": "…/$metadata#contacts/$deletedEntity", "id": …, "reason": "deleted"}`,
  paged the same way, the last page with the next `@odata.deltaLink`. `$filter`,
  `$orderby`, `$top` and `$expand` are refused with tracking, with Dataverse's message.
* Service protection: requests per user in a sliding window (Dataverse: 6,000 in 300
  seconds per web server), past which a 429 with `Retry-After` (seconds) and the error
  code `0x80072322` answers; every API answer carries
  `x-ms-ratelimit-burst-remaining-xrm-requests` and `…-time-remaining-xrm-requests`.
* Errors: `{"error": {"code": "0x…", "message": "…"}}`.
* For clients that discover before they read (Microsoft's own SDK with MSAL):
  `GET /{tenant}/v2.0/.well-known/openid-configuration` and `GET
  /api/data/v9.2/EntityDefinitions?$filter=LogicalName eq 'contact'` (the one table served).

Invented where Microsoft documents nothing public (and marked so in the tests): the status
and body of an expired or unknown delta token (a 410 Gone with code `0x80044352` here; the
research notes find 410 documented for Business Central only), the exact paging-cookie
attributes a tracked read carries, the codes of an unknown column (`0x80060888`), of
`$skip` and of a tracked query with `$filter` (`0x80060888` too), and of the 403 for an app
that is no application user (`0x80072560`), and the value spelling of
`x-ms-ratelimit-time-remaining-xrm-requests`. The 5-minute window is modelled as exactly
sliding; Dataverse counts per web server too, which one emulator cannot show.
"""

from __future__ import annotations

import bisect
import hmac
import math
import random
import re
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.dynamics import synthetic
from connectors.emulator_kit import CONTROL, add_control_routes, emulator_middleware, new_control

EMULATOR_TENANT: Final = "8f1e2a4c-0d3b-4e5f-9a6b-7c8d9e0f1a2b"
EMULATOR_CLIENT_ID: Final = "3c5e7a9b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"
EMULATOR_CLIENT_SECRET: Final = "dyn~Emulator.Secret_" + "0123456789abcdef" * 2
API: Final = "/api/data/v9.2"
ENTITY_SET: Final = "contacts"
KEY: Final = "contactid"
MAX_PAGE: Final = 5000
TOKEN_TTL: Final = 3599.0
#: Dataverse's documented service protection defaults: 6,000 requests per user in 300 s.
REQUESTS_PER_WINDOW: Final = 6000
WINDOW_SECONDS: Final = 300.0
_TRACKING_REFUSED: Final = ("$filter", "$orderby", "$top", "$expand")
_OUTER_COOKIE: Final = re.compile(
    r'<cookie pagenumber="(\d+)" pagingcookie="([^"]*)" istracking="(True|False)" />'
)
_ATTRIBUTE: Final = re.compile(r'(\w+)="([^"]*)"')
_LOGICAL_NAME: Final = re.compile(r"LogicalName eq '([a-z_]+)'")


@dataclass
class SlidingWindow:
    """At most `requests` in any `seconds` (a true sliding window, per user)."""

    requests: int
    seconds: float
    sent: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> float | None:
        """None if the request is admitted (and counted), else seconds to wait."""
        sent = self.sent
        while sent and now - sent[0] >= self.seconds:
            sent.popleft()
        if len(sent) >= self.requests:
            return max(0.001, sent[len(sent) - self.requests] + self.seconds - now)
        sent.append(now)
        return None

    def remaining(self) -> int:
        return max(0, self.requests - len(self.sent))


@dataclass
class Environment:
    """One Dataverse environment: its app registration, the contacts and the limits."""

    client_id: str
    client_secret: str
    tenant: str
    rows: dict[str, dict[str, Any]]
    token_ttl: float = TOKEN_TTL
    #: Is the app registration an application user of this environment?
    application_user: bool = True
    #: Rows a page holds at most whatever a client prefers (Dataverse: 5,000).
    page_cap: int = MAX_PAGE
    limit: SlidingWindow | None = None
    #: Row version: every create, change and delete takes the next one.
    version: int = 0
    #: (version, id) of deleted rows, in version order.
    tombstones: list[tuple[int, str]] = field(default_factory=list)
    #: Delta tokens for versions below this are no longer honoured (410).
    oldest_delta: int = 0
    #: token → (monotonic end, audience).
    tokens: dict[str, tuple[float, str]] = field(default_factory=dict)
    issued: int = 0
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.keys = sorted(self.rows)
        for key in self.keys:
            self.version += 1
            self.rows[key]["versionnumber"] = self.version

    # ------------------------------------------------------------------ a user's edits

    def _bump(self, row: dict[str, Any]) -> None:
        self.version += 1
        row["versionnumber"] = self.version
        row["modifiedon"] = synthetic.spell(self.clock())

    def _pick(self, count: int, want: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        candidates = [self.rows[k] for k in self.keys if want(self.rows[k])]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} contacts qualify, {count} asked")
        return self.rng.sample(candidates, count)

    @staticmethod
    def _active(row: dict[str, Any]) -> bool:
        return bool(row["statecode"] == 0)

    def touch(self, count: int) -> list[str]:
        """Give `count` active contacts a new job title; returns their ids."""
        chosen = self._pick(count, lambda r: self._active(r) and bool(r["emailaddress1"]))
        for row in chosen:
            row["jobtitle"] = synthetic.next_title(row["jobtitle"])
            self._bump(row)
        return [r[KEY] for r in chosen]

    def retire(self, count: int) -> list[str]:
        """Deactivate `count` active contacts (statecode 1 Inactive, statuscode 2)."""
        chosen = self._pick(count, lambda r: self._active(r) and bool(r["emailaddress1"]))
        for row in chosen:
            row["statecode"], row["statuscode"] = 1, 2
            self._bump(row)
        return [r[KEY] for r in chosen]

    def delete(self, count: int) -> list[str]:
        """Delete `count` active contacts outright."""
        chosen = self._pick(count, lambda r: self._active(r) and bool(r["emailaddress1"]))
        for row in chosen:
            key = row[KEY]
            del self.rows[key]
            self.keys.pop(bisect.bisect_left(self.keys, key))
            self.version += 1
            self.tombstones.append((self.version, key))
        return [r[KEY] for r in chosen]

    def break_email(self, count: int) -> list[str]:
        """Clear the business email of `count` active contacts."""
        chosen = self._pick(count, lambda r: self._active(r) and bool(r["emailaddress1"]))
        for row in chosen:
            row["emailaddress1"] = None
            self._bump(row)
        return [r[KEY] for r in chosen]

    def add(self, count: int) -> list[str]:
        """`count` new contacts."""
        made = []
        for row in synthetic.contacts(count, seed=self.rng.randrange(10**9)):
            key = row[KEY]
            self.rows[key] = row
            bisect.insort(self.keys, key)
            self._bump(row)
            made.append(key)
        return made

    def expire_delta_tokens(self) -> None:
        """Every delta token handed out so far stops working (change tracking's retention
        ran out, or the table's tracking was switched off and on)."""
        self.version += 1
        self.oldest_delta = self.version

    def size(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------------ tokens

    def issue(self, audience: str, now: float) -> str:
        self.issued += 1
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
        self.tokens[token] = (now + self.token_ttl, audience)
        return token

    def valid(self, token: str, audience: str, now: float) -> bool:
        found = self.tokens.get(token)
        return found is not None and found[0] > now and found[1] == audience

    def expire_tokens(self) -> None:
        self.tokens = {t: (0.0, aud) for t, (_, aud) in self.tokens.items()}


ENVIRONMENT: Final = web.AppKey("dynamics_environment", Environment)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Dataverse's Web API error body."""
    return _json({"error": {"code": code, "message": message}}, status, headers)


def too_many(wait: float) -> web.Response:
    return error_response(
        429,
        "0x80072322",
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _entra_error(status: int, error: str, number: int, text: str) -> web.Response:
    trace = secrets.token_hex(16)
    return _json(
        {
            "error": error,
            "error_description": f"AADSTS{number}: {text} Trace ID: {trace} "
            f"Correlation ID: {secrets.token_hex(16)} Timestamp: "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%SZ')}",
            "error_codes": [number],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
        },
        status,
    )


# --------------------------------------------------------------------------- Entra ID


async def token(request: web.Request) -> web.Response:
    env = request.app[ENVIRONMENT]
    if request.match_info["tenant"] != env.tenant:
        return _entra_error(
            400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant']}' not found."
        )
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _entra_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    client_id = str(form.get("client_id") or "")
    secret = form.get("client_secret")
    if not client_id or not hmac.compare_digest(client_id.encode(), env.client_id.encode()):
        return _entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory.",
        )
    if not isinstance(secret, str) or not hmac.compare_digest(
        secret.encode(), env.client_secret.encode()
    ):
        return _entra_error(
            401,
            "invalid_client",
            7000215,
            f"Invalid client secret provided for app '{client_id}'.",
        )
    origin = str(request.url.origin())
    scope = str(form.get("scope") or "")
    if scope != f"{origin}/.default":
        return _entra_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid.",
        )
    ttl = max(0, int(env.token_ttl))
    return _json(
        {
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": env.issue(origin, env.monotonic()),
        }
    )


# --------------------------------------------------------------------------- Web API


@web.middleware
async def dataverse_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer auth, the application-user check and the service protection limit on the
    Web API; OData headers on its answers."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    env = request.app[ENVIRONMENT]
    origin = str(request.url.origin())
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not env.valid(bearer.strip(), origin, env.monotonic()):
        challenge = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{env.tenant}"
            f"/oauth2/authorize, resource_id={origin}/"
        )
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})
    if not env.application_user:
        return error_response(403, "0x80072560", "The user is not a member of the organization.")
    if env.limit is not None:
        wait = env.limit.admit(env.monotonic())
        if wait is not None:
            return too_many(wait)
    response = await handler(request)
    response.headers["OData-Version"] = "4.0"
    if env.limit is not None:
        response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(env.limit.remaining())
    response.headers["x-ms-ratelimit-time-remaining-xrm-requests"] = "1199990.00"
    return response


def _preferences(request: web.Request) -> dict[str, str]:
    found: dict[str, str] = {}
    for header in request.headers.getall("Prefer", []):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"')
    return found


def _paging_cookie(page: int, inner: str, tracking: bool) -> str:
    """A `$skiptoken` value shaped as Dataverse's: the inner cookie URL-encoded twice."""
    wrapped = urllib.parse.quote(urllib.parse.quote(inner, safe=""), safe="")
    return (
        f'<cookie pagenumber="{page}" pagingcookie="{wrapped}" '
        f'istracking="{"True" if tracking else "False"}" />'
    )


def _read_cookie(token: str) -> tuple[int, dict[str, str]] | None:
    """(page number, the inner cookie's attributes) of a `$skiptoken`, or None."""
    outer = _OUTER_COOKIE.fullmatch(token)
    if outer is None:
        return None
    inner = urllib.parse.unquote(urllib.parse.unquote(outer.group(2)))
    attrs = dict(_ATTRIBUTE.findall(inner))
    return int(outer.group(1)), attrs


def _spell_token(version: int, moment: datetime) -> str:
    return f"{version}!{moment.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def _link(origin: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{k}={urllib.parse.quote(v, safe=',')}" for k, v in params)
    return f"{origin}{API}/{ENTITY_SET}?{query}"


async def list_contacts(request: web.Request) -> web.Response:
    env = request.app[ENVIRONMENT]
    query = request.query
    prefer = _preferences(request)
    tracking = "odata.track-changes" in prefer
    origin = str(request.url.origin())
    if "$skip" in query:
        return error_response(400, "0x80060888", "The query parameter $skip is not supported")
    delta_text = query.get("$deltatoken")
    if (tracking or delta_text is not None) and any(q in query for q in _TRACKING_REFUSED):
        refused = next(q for q in _TRACKING_REFUSED if q in query)
        return error_response(
            400,
            "0x80060888",
            f'The "{refused}" query parameter isn\'t supported when Change Tracking is enabled.',
        )
    select_text = query.get("$select")
    if select_text is not None:
        columns = [c.strip() for c in select_text.split(",") if c.strip()]
        for column in columns:
            if column not in synthetic.FIELDS:
                return error_response(
                    400,
                    "0x80060888",
                    f"Could not find a property named '{column}' on type "
                    "'Microsoft.Dynamics.CRM.contact'.",
                )
        if KEY not in columns:
            columns.append(KEY)  # the primary key always comes back
    else:
        columns = list(synthetic.FIELDS)
    asked = prefer.get("odata.maxpagesize")
    size = MAX_PAGE
    applied: list[str] = []
    if asked is not None and asked.isdigit() and 0 < int(asked) <= MAX_PAGE:
        size = int(asked)
        applied.append(f"odata.maxpagesize={size}")
    size = min(size, env.page_cap)
    if tracking:
        applied.append("odata.track-changes")
    top = query.get("$top")
    if top is not None and top.isdigit():
        size = min(size, int(top))

    base_params = [(k, v) for k, v in query.items() if k not in ("$skiptoken",)]
    skiptoken = query.get("$skiptoken")
    cookie = _read_cookie(skiptoken) if skiptoken is not None else (1, {})
    if cookie is None:
        return error_response(400, "0x80040203", "The paging cookie is not valid.")
    page_number, attrs = cookie

    headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
    if delta_text is not None:
        return _delta_page(
            env, origin, columns=columns, size=size, delta_text=delta_text,
            page_number=page_number, attrs=attrs, base_params=base_params, headers=headers,
        )  # fmt: skip

    # A full read, in primary-key order; a tracked one fixes its version on page one.
    snapshot = int(attrs["version"]) if attrs.get("version", "").isdigit() else env.version
    after = attrs.get("last", "").strip("{}").lower()
    start = bisect.bisect_right(env.keys, after) if after else 0
    chosen = env.keys[start : start + size]
    value = [_view(env.rows[k], columns) for k in chosen]
    body: dict[str, Any] = {
        "@odata.context": f"{origin}{API}/$metadata#{ENTITY_SET}({','.join(columns)})",
        "value": value,
    }
    more = start + size < len(env.keys) and top is None
    if more:
        inner = (
            f'<cookie page="{page_number}" version="{snapshot}">'
            f'<contactid last="{{{chosen[-1].upper()}}}" first="{{{chosen[0].upper()}}}" />'
            "</cookie>"
        )
        body["@odata.nextLink"] = _link(
            origin,
            [*base_params, ("$skiptoken", _paging_cookie(page_number + 1, inner, tracking))],
        )
    elif tracking:
        params = [*base_params, ("$deltatoken", _spell_token(snapshot, env.clock()))]
        body["@odata.deltaLink"] = _link(origin, params)
    return _json(body, headers=headers)


def _delta_page(
    env: Environment,
    origin: str,
    *,
    columns: list[str],
    size: int,
    delta_text: str,
    page_number: int,
    attrs: dict[str, str],
    base_params: list[tuple[str, str]],
    headers: dict[str, str],
) -> web.Response:
    version_text, bang, _ = delta_text.partition("!")
    if not bang or not version_text.isdigit() or int(version_text) > env.version:
        return error_response(400, "0x80044352", "The delta token is not valid.")
    since = int(version_text)
    if since < env.oldest_delta:
        return error_response(
            410, "0x80044352", "The delta token has expired; synchronise the data again."
        )
    snapshot = int(attrs["version"]) if attrs.get("version", "").isdigit() else env.version
    # As Dataverse documents for its SDK: new or updated rows first (by version), then
    # the deleted ones; the paging cookie says which part and the last version read.
    part = attrs.get("part", "changed")
    after = int(attrs["last"]) if attrs.get("last", "").isdigit() else since
    pending: list[tuple[str, int, Any]] = []
    if part == "changed":
        updated = [r for r in env.rows.values() if after < r["versionnumber"] <= snapshot]
        updated.sort(key=lambda r: r["versionnumber"])
        pending += [("changed", r["versionnumber"], r) for r in updated]
    floor = after if part == "deleted" else since
    pending += [("deleted", v, key) for v, key in env.tombstones if floor < v <= snapshot]
    chosen = pending[:size]
    value: list[dict[str, Any]] = []
    for kind, _, item in chosen:
        if kind == "deleted":
            value.append(
                {
                    "@odata.context": f"{origin}{API}/$metadata#{ENTITY_SET}/$deletedEntity",
                    "id": item,
                    "reason": "deleted",
                }
            )
        else:
            value.append(_view(item, columns))
    body: dict[str, Any] = {
        "@odata.context": f"{origin}{API}/$metadata#{ENTITY_SET}({','.join(columns)})/$delta",
        "value": value,
    }
    params = [(k, v) for k, v in base_params if k != "$deltatoken"]
    if len(pending) > size:
        last_kind, last_version, _ = chosen[-1]
        inner = (
            f'<cookie page="{page_number}" version="{snapshot}" part="{last_kind}" '
            f'last="{last_version}" />'
        )
        body["@odata.nextLink"] = _link(
            origin,
            [
                *params,
                ("$deltatoken", delta_text),
                ("$skiptoken", _paging_cookie(page_number + 1, inner, True)),
            ],
        )
    else:
        body["@odata.deltaLink"] = _link(
            origin, [*params, ("$deltatoken", _spell_token(snapshot, env.clock()))]
        )
    return _json(body, headers=headers)


def _view(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
    for column in columns:
        out[column] = row.get(column)
    return out


async def entity_definitions(request: web.Request) -> web.Response:
    """Table metadata, as far as a client resolving `contact` to its entity set needs it
    (`$filter=LogicalName eq 'contact'`, the one table this environment serves)."""
    origin = str(request.url.origin())
    found = _LOGICAL_NAME.fullmatch(request.query.get("$filter", "").strip())
    rows = []
    if found is not None and found.group(1) == "contact":
        rows.append(
            {"LogicalName": "contact", "EntitySetName": ENTITY_SET, "PrimaryIdAttribute": KEY}
        )
    select = [c for c in request.query.get("$select", "").split(",") if c]
    if select:
        rows = [{k: v for k, v in row.items() if k in select} for row in rows]
    return _json({"@odata.context": f"{origin}{API}/$metadata#EntityDefinitions", "value": rows})


async def openid_configuration(request: web.Request) -> web.Response:
    """Entra ID's OpenID Connect discovery document for the tenant (what MSAL reads before
    it asks for a token)."""
    env = request.app[ENVIRONMENT]
    tenant = request.match_info["tenant"]
    if tenant != env.tenant:
        return _entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
    root = f"{request.url.origin()}/{tenant}"
    return _json(
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "issuer": f"{request.url.origin()}/{tenant}/v2.0",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }
    )


async def unknown_set(request: web.Request) -> web.Response:
    return error_response(
        404, "0x8006088a", f"Resource not found for the segment '{request.match_info['name']}'."
    )


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    client_id: str = EMULATOR_CLIENT_ID,
    client_secret: str = EMULATOR_CLIENT_SECRET,
    tenant: str = EMULATOR_TENANT,
    token_ttl: float = TOKEN_TTL,
    inactive_share: float = 0.05,
    page_cap: int = MAX_PAGE,
    requests_per_window: int | None = REQUESTS_PER_WINDOW,
    window_seconds: float = WINDOW_SECONDS,
    application_user: bool = True,
) -> web.Application:
    """A Dataverse environment with `people` synthetic contacts.

    `requests_per_window`/`window_seconds` set the service protection limit (None: off);
    `page_cap` bounds a page below Dataverse's 5,000 (tests); `token_ttl` how long an
    access token works; `application_user=False` models an app registration that was never
    added to the environment.
    """
    app = web.Application(middlewares=[emulator_middleware, dataverse_middleware])
    control = new_control(too_many)
    app[CONTROL] = control
    rows = {r[KEY]: r for r in synthetic.contacts(people, seed=seed, inactive_share=inactive_share)}
    app[ENVIRONMENT] = control.people = Environment(
        client_id=client_id,
        client_secret=client_secret,
        tenant=tenant,
        rows=rows,
        token_ttl=token_ttl,
        application_user=application_user,
        page_cap=max(1, min(page_cap, MAX_PAGE)),
        limit=SlidingWindow(requests_per_window, window_seconds) if requests_per_window else None,
        rng=random.Random(seed + 1),
    )
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    app.router.add_get(f"{API}/{ENTITY_SET}", list_contacts)
    app.router.add_get(f"{API}/EntityDefinitions", entity_definitions)
    app.router.add_get(API + "/{name}", unknown_set)
    control.vendor = "dynamics"
    add_control_routes(app)
    return app
