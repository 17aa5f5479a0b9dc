"""Loket.nl (Visma Loket, Dutch payroll): employees of one employer or of every employer
the Loket user may see, with their employment's end date and function.

Authentication: OAuth 2.0 authorization code. The gateway holds the app's `client_id` and
`client_secret`; a customer admin signs in at Loket once through the console's "Connect
with Loket" (`authorization_server`: `https://oauth.loket.nl/authorize`, scope `all`),
which stores the `refresh_token` that sign-in yields, sealed. The connector reads it on its
first request (`connectors.oauth.connected_refresh_token`): until someone has connected the
source, a run fails saying so before anything is sent. `connectors.oauth.Tokens` trades
the refresh token for an access token (`POST https://oauth.loket.nl/token`, form body with
the client id and secret in it, as Loket's integrations send it; an hour less a second)
and, should Loket hand out a new refresh token with it, gives that to `keep_credentials`
to be stored sealed before the access token is used. A 401 from the API fetches one new
access token and tries once more. Both endpoints are derived from the base URL
(`api.loket.nl` → `oauth.loket.nl`, `api.loket-acc.nl` → `oauth.loket-acc.nl`; any other
host: `/authorize` and `/token` on that host, as the emulator serves them), or set as
`authorize_url` and `token_url`. The token endpoint is reached through the connector's
public-only session like every other request, so the gateway's address rules cover it.

Why three lists per employer: Loket keeps what the platform needs in three places. The
employee (`/providers/employers/{id}/employees`) has the name and the business email; the
employment (dienstverband, `/employees/employments`) the end date; the actual
organisational entity (`/actualorganizationalentities`) the function. Per-employee calls
(`/employees/{id}/employments`, then `/employments/{id}/organizationalentities`) would be
two requests a person; the employer-wide lists are one request per page each. So for each
employer the connector first reads the organisational entities (employment id → job
title) and the employments (employee id → the employment that counts), keeping only those
two small maps for that employer, then pages through the employees and adds to each one
an `employment` summary: `{"count", "startDate", "endDate", "jobTitle"}` of the employment
that counts (an open one before an ended one, then the latest end, then the latest start;
the job title is the "afwijkende functieomschrijving" where there is one, else the
function's description). An employee with no employment the user may see gets
`{"count": 0}`: the bundled mapping makes them a leaver rather than keep them active. The
maps are built inside the first employee page of each employer; a retried page continues
the map where it stopped, and a run resumed in another process rebuilds it.

Minimising at the source: Loket's v2 lists take no field selection, so the employee
resource arrives whole (personal details, private contact data, address, identity
document); the projector keeps only what the mapping names and drops the rest at the door.
The BSN, the IBAN and the wage are on endpoints of their own, which the connector never
calls; the README tells the admin to leave the app's user without BSN, payroll and wage
rights, which Loket authorises separately.

Paging: `pageNumber` (from 1) and `pageSize` (setting `page_size`, default 250, as
integrations commonly use) in the `_embedded` envelope; the last page is `totalPages`. An
answer that echoes another `currentPage` than asked stops the run rather than reading one
page for ever. Page-number paging cannot see deletions behind it: a person deleted during
a run moves the rest up a place and one person may be missed by that run (and so counted
as gone until the next); the mass-delete guard bounds the harm.

Incremental sync: none. Loket's employee and employment lists take a `filter` on their
fields but offer no modification time to filter on, and its webhooks are not public, so
every run reads the whole population (the registry marks the type `full_only`). Hard
deletions and people the user may no longer see are found by that full run; leavers by
the employment's end date.

Rate limits: Loket publishes none. The connector paces itself to `requests_per_minute`
if the setting is given, and otherwise learns the budget from the first 429: the requests
it sent in the `Retry-After` window before the refusal are what the server admitted, and
it keeps below that for the rest of its life. Every request is paced, the token endpoint's
included. A 429 waits for `Retry-After` (a second without one).

Errors: only a status and a numeric or short code from the body (`messages[].code`) are
reported, never a description: Loket's descriptions can quote the submitted values. A 403
on an employer's lists means the user lacks rights there ("refused"), not a bad token.

Settings: `employer_id` (one employer's id; default: every employer the user sees),
`page_size` (1-1000, default 250), `requests_per_minute` (optional), `token_url` and
`authorize_url` (optional). Credentials: `client_id`, `client_secret`, and the
`refresh_token` that "Connect" stores.

Not verified against Loket's public documentation (developer.loket.nl renders its
reference in the browser only; what is known comes from the OpenAPI-derived operation
list, third-party integrations and unified-API vendors): whether the authorize endpoint
honours PKCE (the connect sends an S256 challenge and the exchange its verifier; a server
that does not know them ignores them, RFC 6749 3.1) and whether it takes `state` back
unchanged (integrations' scripts show it does); whether refresh tokens rotate
(both are handled); the status for an expired access token (401 assumed); the error
body's shape; any rate limit and whether a 429 carries `Retry-After`; the page-size
cap; the shape of an actual organisational entity (its `employment.id` link,
`function.description`, `deviatingFunctionDescription`) and that an employment carries
`employee.id`; the order of the lists (assumed stable); whether the user-level "filter
settings" Loket applies to employments hide ended ones (the README says to include them);
which resource version a plain `Accept: application/json` gets (Loket versions resources
through `Accept: application/json;version=…`).

No official client: Loket publishes no Python package (none of `loket`, `loket-api`,
`loket-nl`, `visma-loket` is on PyPI; BrynQ's Loket SDK and a C# Kiota client are third
parties'), so there is no fidelity test against one.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import orjson
from yarl import URL

from connectors.base import (
    Connector,
    ConnectorError,
    PageRequest,
    RawPage,
    Reply,
    parse_retry_after,
)
from connectors.oauth import AuthorizationServer, Tokens, connected_refresh_token
from connectors.pacing import Pacer, Window

EMPLOYERS_PATH: Final = "/providers/employers"
#: The scope of Loket's authorization-code grant (the signing-in user's rights decide the
#: rest; see `authorization_server`).
OAUTH_SCOPES: Final = ("all",)
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 250
#: The share of a known per-minute budget the connector spends.
BUDGET_SHARE: Final = 0.95
#: How long the pacer remembers requests: the longest Retry-After it learns from.
_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_CODE: Final = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def _whole(settings: Mapping[str, Any], name: str, default: int | None, high: int) -> int | None:
    value = settings.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConnectorError("config", f"loket: setting {name} must be a whole number 1-{high}")
    return value


def _oauth_url(base_url: str, path: str, explicit: Any, setting: str) -> str:
    """Loket's OAuth endpoint `path` for an API base URL (`api.X` → `https://oauth.X`), or
    `path` on the base URL's own host (the emulator), unless the setting names one."""
    url: URL | None = None
    if explicit is not None:
        with contextlib.suppress(ValueError):
            url = URL(explicit.strip()) if isinstance(explicit, str) else None
    else:
        url = URL(base_url)
        host = url.host or ""
        if host.startswith("api."):
            url = url.with_host("oauth." + host.removeprefix("api."))
        url = url.with_path(path).with_query(None).with_fragment(None)
    if (
        url is None
        or url.scheme not in ("http", "https")
        or not url.host
        or url.user is not None
        or url.password is not None
    ):
        raise ConnectorError("config", f"loket: setting {setting} must be a plain http(s) URL")
    return str(url)


def token_url_for(base_url: str, explicit: Any = None) -> str:
    """Loket's token endpoint for an API base URL (`api.X` → `https://oauth.X/token`), or
    `/token` on the base URL's own host (the emulator), unless `token_url` says otherwise."""
    return _oauth_url(base_url, "/token", explicit, "token_url")


def authorize_url_for(base_url: str, explicit: Any = None) -> str:
    """Loket's consent screen for an API base URL (`api.X` → `https://oauth.X/authorize`),
    or `/authorize` on the base URL's own host, unless `authorize_url` says otherwise."""
    return _oauth_url(base_url, "/authorize", explicit, "authorize_url")


def authorization_server(base_url: str, settings: Mapping[str, Any]) -> AuthorizationServer:
    """Loket's OAuth endpoints for the console's "Connect with Loket": the consent screen
    and the token endpoint on the `oauth.` host beside the API's (`-acc` for acceptance),
    or where the `authorize_url` and `token_url` settings say; scope `all` (the one scope
    Loket's integrations ask for: what the app may read is the signing-in user's rights);
    the client id and secret in the form body, as Loket's integrations send them. Loket's
    refresh tokens may rotate: `Tokens` keeps each new one (module docstring)."""
    return AuthorizationServer(
        authorize_url=authorize_url_for(base_url, settings.get("authorize_url")),
        token_url=token_url_for(base_url, settings.get("token_url")),
        scopes=OAUTH_SCOPES,
        client_auth="post",
        vendor="Loket",
    )


@dataclass
class _Index:
    """One employer's employment summaries, as far as they were read."""

    employer: str
    phase: str = "entities"
    page: int = 1
    titles: dict[str, str] = field(default_factory=dict)
    #: employee id → (rank, employment id, start, end, count)
    best: dict[str, tuple[tuple[bool, str, str], str, str | None, str | None, int]] = field(
        default_factory=dict
    )
    done: bool = False

    def summary(self, employee_id: Any) -> dict[str, Any]:
        found = self.best.get(employee_id) if isinstance(employee_id, str) else None
        if found is None:
            return {"count": 0}
        _, employment, start, end, count = found
        return {
            "count": count,
            "startDate": start,
            "endDate": end,
            "jobTitle": self.titles.get(employment),
        }


class LoketConnector(Connector):
    """Employees of Loket employers (settings and credentials: the module docstring)."""

    type: ClassVar[str] = "loket"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.page_size = _whole(settings, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) or 1
        per_minute = _whole(settings, "requests_per_minute", None, 1_000_000)
        self.pacer = Pacer(*([Window.share(per_minute, 60.0, BUDGET_SHARE)] if per_minute else []))
        employer = settings.get("employer_id")
        if employer is not None and (not isinstance(employer, str) or not _ID.fullmatch(employer)):
            raise ConnectorError("config", "loket: setting employer_id must be an employer's id")
        self._employers: list[str] | None = [employer] if employer else None
        creds = self.config.credentials
        if not creds.get("client_id", "").strip() or not creds.get("client_secret", "").strip():
            raise ConnectorError(
                "auth", "loket: credentials need the app's client_id and client_secret"
            )
        #: Loket's endpoints (checked here: a bad `token_url` is a config error at once).
        self.server = authorization_server(self.base_url, settings)
        #: The refresh-token grant, made on the first request from the refresh token the
        #: console's "Connect" stored (`_tokens`); None until then.
        self.tokens: Tokens | None = None
        self._bearer: str | None = None
        self._index: _Index | None = None

    def _tokens(self) -> Tokens:
        """The connector's tokens, from the stored refresh token; a plain "not connected"
        error, before any request, when no admin has connected the source yet."""
        if self.tokens is None:
            self.tokens = Tokens(
                self,
                self.server.token_url,
                self.server.client(self.config.credentials),
                refresh_token=connected_refresh_token(self),
            )
        return self.tokens

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._bearer}"} if self._bearer else {}

    async def send(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        data: bytes | Mapping[str, str] | None = None,
    ) -> Reply:
        """Every request, the token endpoint's included, paced; a 429 teaches the pacer."""
        await self.pacer.wait()
        reply = await super().send(method, url, headers=headers, params=params, data=data)
        if reply.status == 429:
            wait = parse_retry_after(reply.headers.get("Retry-After"))
            self.pacer.learn(wait, time.monotonic())
        return reply

    async def _get(self, path: str, page: int, size: int) -> tuple[list[Any], int]:
        """One page of a Loket list: its items and the number of pages."""
        params = {"pageNumber": str(page), "pageSize": str(size)}
        tokens = self._tokens()

        async def attempt(token: str) -> Any:
            self._bearer = token
            return await self.request_json("GET", path, params=params)

        body = await tokens.call(attempt)
        return _envelope(body, page)

    async def _employer_ids(self) -> list[str]:
        if self._employers is None:
            found: list[str] = []
            page, pages = 1, 1
            while page <= pages:
                items, pages = await self._get(EMPLOYERS_PATH, page, MAX_PAGE_SIZE)
                for item in items:
                    ident = item.get("id") if isinstance(item, dict) else None
                    if not isinstance(ident, str) or not _ID.fullmatch(ident):
                        raise ConnectorError("malformed", "loket: an employer without an id")
                    found.append(ident)
                page += 1
            self._employers = sorted(set(found))
        return self._employers

    async def _index_for(self, employer: str) -> _Index:
        """The employer's employment summaries, read on first need (and continued where a
        failed attempt stopped)."""
        index = self._index
        if index is None or index.employer != employer:
            index = self._index = _Index(employer)
        base = f"{EMPLOYERS_PATH}/{employer}"
        while not index.done:
            if index.phase == "entities":
                items, pages = await self._get(
                    f"{base}/actualorganizationalentities", index.page, self.page_size
                )
                for item in items:
                    _read_entity(item, index.titles)
            else:
                items, pages = await self._get(
                    f"{base}/employees/employments", index.page, self.page_size
                )
                for item in items:
                    _read_employment(item, index.best)
            if index.page < pages:
                index.page += 1
            elif index.phase == "entities":
                index.phase, index.page = "employments", 1
            else:
                index.done = True
        return index

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        employer, page, mark = _position(request.cursor)
        if mark is None:
            mark = datetime.now(UTC)
        watermark = spell_watermark(mark)
        employers = await self._employer_ids()
        if not employers:
            return RawPage(records=[], next_cursor=None, watermark=watermark)
        if employer is None:
            employer = employers[0]
        elif employer not in employers:
            raise ConnectorError(
                "config", "loket: the employer of the saved position is no longer visible"
            )
        index = await self._index_for(employer)
        items, pages = await self._get(
            f"{EMPLOYERS_PATH}/{employer}/employees", page, self.page_size
        )
        records = [
            {**item, "employment": index.summary(item.get("id"))}
            if isinstance(item, dict)
            else item
            for item in items
        ]
        if page < pages:
            return RawPage(records, f"{employer}:{page + 1}@{watermark}", watermark)
        self._index = None
        at = employers.index(employer)
        if at + 1 < len(employers):
            return RawPage(records, f"{employers[at + 1]}:1@{watermark}", watermark)
        return RawPage(records, None, watermark)

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        if status == 429 and retry_after is None:
            retry_after = 1.0
        code = _error_code(payload)
        detail = f" [error code {code}]" if code is not None else ""
        if status == 401:
            return ConnectorError(
                "auth",
                f"loket: Loket refused the access token (HTTP 401){detail}; "
                "connect the source again if this persists",
                status=status,
            )
        if status == 403:
            return ConnectorError(
                "refused",
                f"loket: the Loket user may not read this employer's employees (HTTP 403)"
                f"{detail}; grant the rights or set employer_id",
                status=status,
            )
        base = super().http_error(status, b"", retry_after)
        if code is None:
            return base
        return ConnectorError(
            base.kind, f"{base}{detail}", status=status, retry_after=base.retry_after
        )


def _position(cursor: str | None) -> tuple[str | None, int, datetime | None]:
    if cursor is None:
        return None, 1, None
    where, sep, mark = cursor.partition("@")
    employer, colon, page = where.partition(":")
    when = parse_watermark(mark) if sep else None
    if (
        not colon
        or not _ID.fullmatch(employer)
        or not (page.isascii() and page.isdigit() and 0 < len(page) <= 9 and int(page) > 0)
        or when is None
    ):
        raise ConnectorError("config", "loket: the saved cursor is not one this connector wrote")
    return employer, int(page), when


def _envelope(body: Any, page: int) -> tuple[list[Any], int]:
    """`_embedded` and `totalPages` of a list answer, checked for shape."""
    if not isinstance(body, dict):
        raise ConnectorError("malformed", "loket: the answer is not a list envelope")
    items = body.get("_embedded")
    if items is None:
        items = []
    pages = body.get("totalPages")
    if (
        not isinstance(items, list)
        or isinstance(pages, bool)
        or not isinstance(pages, int)
        or pages < 0
    ):
        raise ConnectorError("malformed", "loket: the answer has no _embedded list or totalPages")
    current = body.get("currentPage")
    if isinstance(current, int) and not isinstance(current, bool) and current != page:
        # A server that ignores `pageNumber` would hand out its first page for ever.
        raise ConnectorError(
            "refused", "loket: Loket did not apply the page number; paging cannot go on"
        )
    return items, pages


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _read_entity(item: Any, titles: dict[str, str]) -> None:
    """employment id → job title, from an actual organisational entity."""
    if not isinstance(item, dict):
        return
    employment = item.get("employment")
    ident = employment.get("id") if isinstance(employment, dict) else None
    function = item.get("function")
    title = _text(item.get("deviatingFunctionDescription")) or (
        _text(function.get("description")) if isinstance(function, dict) else None
    )
    if isinstance(ident, str) and title is not None:
        titles[ident] = title


def _read_employment(
    item: Any, best: dict[str, tuple[tuple[bool, str, str], str, str | None, str | None, int]]
) -> None:
    """Keep, per employee, the employment that counts: open before ended, then the latest
    end date, then the latest start date (ISO dates compare as text)."""
    if not isinstance(item, dict):
        return
    employee = item.get("employee")
    who = employee.get("id") if isinstance(employee, dict) else None
    ident = item.get("id")
    if not isinstance(who, str) or not isinstance(ident, str):
        return
    start, end = _text(item.get("startDate")), _text(item.get("endDate"))
    rank = (end is None, end or "", start or "")
    seen = best.get(who)
    count = 1 + (seen[4] if seen else 0)
    if seen is None or rank > seen[0]:
        best[who] = (rank, ident, start, end, count)
    else:
        best[who] = (*seen[:4], count)


def parse_watermark(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def spell_watermark(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error_code(payload: bytes) -> int | str | None:
    """The code of the first message of a Loket error body (never its description)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    messages = body.get("messages") if isinstance(body, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    code = first.get("code") if isinstance(first, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and -(10**6) < code < 10**6:
        return code
    if isinstance(code, str) and _CODE.fullmatch(code):
        return code
    return None
