"""Microsoft Entra ID (identity): users pulled from Microsoft Graph with the delta query.

Why the delta query (`GET /users/delta`) for full runs too: its first round lists every
user that exists now, paged through `@odata.nextLink`, and ends with an `@odata.deltaLink`
whose token later answers only what changed since, deletions included. One request shape
serves both modes, and a full run leaves the link the next incremental run starts from.
(`GET /users` pages the same way but has no way to ask "what changed".)

Authentication: OAuth 2.0 client credentials of an app registration in the customer's
tenant, through the shared `connectors.oauth.Tokens` (form-posted client id and secret)
at `{authority}/{tenant_id}/oauth2/v2.0/token` with `scope={graph scheme and host}/.default`
(`https://graph.microsoft.com/.default` for the public cloud). Credentials:
`{"tenant_id", "client_id", "client_secret"}`: the three values an admin copies from the
app registration's overview page. The authority is the `authority` setting, else the
login host of the Graph cloud the base URL names (`login.microsoftonline.com` for
`graph.microsoft.com`, the US Government and China clouds likewise); a base URL outside
Microsoft's clouds (the emulator, a test stand-in) serves its own token endpoint unless
`authority` says otherwise. Both hosts are reached through the connector's public-only
session: the gateway's address rules hold for the token endpoint as for Graph.

Minimising at the source: the first request of a round names in `$select` exactly the
top-level user properties the mapping reads (plus `id`, which Graph always returns), so
phone numbers, addresses, employee ids, hire dates, `onPremisesExtensionAttributes` and
the rest never cross the wire; Graph keeps the selection in the tokens of its nextLink
and deltaLink. Names are checked as plain property names before any request ("config").
Whatever still arrives (`@odata.type`) is dropped by the projector at the door.

Links are followed verbatim, never rebuilt, but only to the configured Graph origin and
path (`<base path>/users/delta`): a link that names another host, scheme, port or path is
refused ("refused"), so a hostile or broken answer cannot point the gateway and its
bearer token anywhere else (SSRF).

Cursor and watermark: the cursor is `v1|<mark>|<nextLink>`; the watermark, reported by
the last page of a round, is `<mark>|<deltaLink>`, where `<mark>` is the time the run
started (UTC, fixed width, never below the previous watermark's) so watermarks grow as
the engine compares them (as text). An incremental run follows the stored deltaLink.

Deletions and leavers: a delta round after the first reports a deleted user as
`{"id": …, "@removed": {"reason": "changed" | "deleted"}}` ("changed": in the deleted
items for 30 days, restorable; "deleted": gone for good). A deleted user signs in no more,
so the connector adds `accountEnabled: false` to such a record (Graph's `@removed` stays
beside it): the bundled mapping's one leaver rule, `accountEnabled = false` (a blocked
sign-in, what offboarding does first), covers both, and no mapping needs a field that only
some runs carry (the engine warns about mapped fields no record held). A full run sees no
tombstones; the engine removes whoever it did not see.

Expired state: Graph keeps a delta token of a directory resource for 7 days. A token it no
longer knows is answered 400 `syncStateNotFound`, or 410 Gone (`resyncRequired`,
`syncStateInvalid`) for some resources; the run then starts a new first round from the
beginning (everyone, as now), whose deltaLink becomes the watermark. Deletions in the
gap are not reported by that round: the scheduler's periodic full sync removes them.

Throttling: Graph counts "resource units" per app and tenant in a 10-second token bucket
(3,500, 5,000 or 8,000 for tenants of under 50, up to 500 and over 500 users). A
`/users` read costs 2 and `$select` takes 1 off, so a delta page is assumed to cost 2
until Graph says otherwise in `x-ms-resource-unit`, which the connector reads on every
answer. It spends at most 90% of `resource_units` (setting, default 3,500, the smallest
tier) in any 10 seconds, leaving the rest to the app's other calls. A 429 waits for
`Retry-After` (Graph sends it; without it, the retry layer's backoff).

Errors: Graph's body is `{"error": {"code", "message", "innerError"}}`; only the code is
reported, never the message (it can quote a value), and of the token endpoint only its
OAuth `error` code.

Not verified against Microsoft's public documentation: the page size of `/users/delta`
(the emulator uses 100); that a delta request is costed like `GET users` (2, less 1 for
`$select`); whether `/users/delta` ever answers 410 rather than 400 `syncStateNotFound`
(both restart); the status of an expired skip token inside a round (treated alike);
that Graph never sends a nextLink on another host (refused if it did).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import orjson
from yarl import URL

from connectors.base import (
    Connector,
    ConnectorError,
    PageRequest,
    RawPage,
    Reply,
    SyncMode,
    parse_retry_after,
)
from connectors.oauth import Client, Tokens

DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com"
#: Login hosts of Microsoft's Graph clouds (national clouds included).
CLOUDS: Final = {
    "graph.microsoft.com": "https://login.microsoftonline.com",
    "graph.microsoft.us": "https://login.microsoftonline.us",
    "dod-graph.microsoft.us": "https://login.microsoftonline.us",
    "microsoftgraph.chinacloudapi.cn": "https://login.chinacloudapi.cn",
}
DELTA: Final = "/users/delta"
#: Graph's own spelling of the function, as its SDKs send it.
DELTA_QUALIFIED: Final = "/users/microsoft.graph.delta"
#: Tenant sizes S, M, L: 3,500, 5,000, 8,000 resource units per 10 s per app and tenant.
DEFAULT_RESOURCE_UNITS: Final = 3500
WINDOW_SECONDS: Final = 10.0
BUDGET_SHARE: Final = 0.9
#: What a delta page is assumed to cost until Graph reports it (`x-ms-resource-unit`).
ASSUMED_COST: Final = 2
#: Codes Graph answers for a delta or skip token it no longer knows.
GONE_CODES: Final = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_PROPERTY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,119}")
_TENANT: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
#: Tenant aliases that cannot take an app-only token.
_NOT_A_TENANT: Final = frozenset({"common", "organizations", "consumers"})
_CODE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
_MARK: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def select_list(source_fields: frozenset[str] | set[str]) -> list[str]:
    """`$select` for a mapping: the top-level user property behind each source field
    (`employeeOrgData.division` asks for `employeeOrgData`), `id` first; annotations
    (`@removed.reason`) come by themselves. A name that is not a plain property name is
    a "config" error, so a mapping cannot put anything else into the query."""
    names = set()
    for path in source_fields:
        top = path.split(".", 1)[0]
        if top.startswith("@"):
            continue
        if not _PROPERTY.fullmatch(top):
            raise ConnectorError(
                "config", f"entra: {top[:80]!r} is not a user property name Graph can $select"
            )
        names.add(top)
    names.discard("id")
    return ["id", *sorted(names)]


def spell_mark(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_mark(text: str) -> datetime | None:
    if not _MARK.fullmatch(text):
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Budget:
    """Spends at most `units` resource units in any `window` seconds (a sliding window
    keeps to any token bucket or fixed window of that size the server counts in)."""

    def __init__(self, units: float, window: float = WINDOW_SECONDS) -> None:
        self.units, self.window = units, window
        self.spent: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def delay(self, cost: float, now: float) -> float:
        spent = self.spent
        while spent and now - spent[0][0] >= self.window:
            self.total -= spent.popleft()[1]
        if self.total + cost <= self.units or not spent:
            return 0.0
        # Wait until enough of the oldest spending has left the window.
        over = self.total + cost - self.units
        for at, units in spent:
            over -= units
            if over <= 0:
                return max(0.0, at + self.window - now)
        return max(0.0, spent[-1][0] + self.window - now)  # pragma: no cover

    async def spend(self, cost: float) -> None:
        while (wait := self.delay(cost, time.monotonic())) > 0:
            await asyncio.sleep(wait)
        self.spent.append((time.monotonic(), cost))
        self.total += cost


class _StateGone(Exception):
    """Graph no longer knows the delta or skip token: start a new round."""


class EntraConnector(Connector):
    """Users of one Entra ID tenant (settings and credentials: the module docstring)."""

    type: ClassVar[str] = "entra"

    def configure(self, settings: Mapping[str, Any]) -> None:
        base = URL(self.base_url)
        if (
            base.scheme not in ("http", "https")
            or not base.host
            or base.user is not None
            or base.password is not None
            or base.query_string
            or base.fragment
        ):
            raise ConnectorError(
                "config",
                "entra: the base URL must be Graph's, e.g. https://graph.microsoft.com/v1.0",
            )
        self.graph = base
        self.delta_paths = (base.path.rstrip("/") + DELTA, base.path.rstrip("/") + DELTA_QUALIFIED)
        units = settings.get("resource_units", DEFAULT_RESOURCE_UNITS)
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= 10**7:
            raise ConnectorError(
                "config", "entra: setting resource_units must be a whole number 1-10000000"
            )
        self.budget = Budget(max(1.0, units * BUDGET_SHARE))
        self.cost = float(ASSUMED_COST)
        self.select = select_list(self.projector.source_fields)
        credentials = self.config.credentials
        tenant = str(credentials.get("tenant_id", "")).strip()
        client_id = str(credentials.get("client_id", "")).strip()
        secret = str(credentials.get("client_secret", "")).strip()
        if not tenant or not client_id or not secret:
            raise ConnectorError(
                "auth", "entra: credentials need tenant_id, client_id and client_secret"
            )
        if not _TENANT.fullmatch(tenant) or tenant.lower() in _NOT_A_TENANT:
            raise ConnectorError(
                "config",
                "entra: tenant_id must be the directory (tenant) id or its domain name",
            )
        authority = settings.get("authority") or CLOUDS.get(base.host or "")
        if authority is None:
            authority = str(base.origin())
        if not isinstance(authority, str) or (
            base.scheme == "https" and not authority.startswith("https://")
        ):
            raise ConnectorError(
                "config", "entra: setting authority must be a URL (https when Graph's is)"
            )
        self.token_url = f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        # The host alone: Entra ID refuses a port in a `.default` scope.
        self.scope = f"{base.scheme}://{base.raw_host}/.default"
        self.tokens = Tokens(self, self.token_url, Client(client_id, secret), scope=self.scope)
        #: Rounds started afresh because Graph no longer knew a token.
        self.restarts = 0

    # ------------------------------------------------------------------ paging

    def first_link(self) -> str:
        query = "$select=" + ",".join(self.select)
        return f"{self.graph.origin()}{self.delta_paths[0]}?{query}"

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        if request.cursor is not None:
            mark, link = _read_cursor(request.cursor)
        else:
            since = request.since if request.mode is SyncMode.INCREMENTAL else None
            floor = None
            link = self.first_link()
            if since:
                floor, link = self._read_watermark(since)
            mark = spell_mark(_after(datetime.now(UTC), floor))
        try:
            body = await self._page(self._checked(link))
        except _StateGone:
            if link == self.first_link():
                raise ConnectorError(
                    "unavailable", "entra: Graph refused to start a delta round"
                ) from None
            self.restarts += 1
            body = await self._page(self.first_link())
        records, next_link, delta_link = _page_of(body)
        for record in records:
            if type(record) is dict and "@removed" in record:
                # A deleted user signs in no more: one leaver rule covers both.
                record.setdefault("accountEnabled", False)
        if next_link is not None:
            return RawPage(records, f"v1|{mark}|{self._checked(next_link)}")
        assert delta_link is not None
        return RawPage(records, None, watermark=f"{mark}|{self._checked(delta_link)}")

    def _read_watermark(self, since: str) -> tuple[datetime, str]:
        stamp, sep, link = since.partition("|")
        moment = read_mark(stamp)
        if not sep or moment is None:
            raise ConnectorError(
                "config", "entra: the watermark to sync from is not one this connector wrote"
            )
        return moment, link

    def _checked(self, link: str) -> str:
        """`link` if it is a delta link on the configured Graph origin and path."""
        try:
            url = URL(link, encoded=True)
        except (TypeError, ValueError):
            url = None
        if (
            url is None
            or not url.is_absolute()
            or url.scheme != self.graph.scheme
            or url.host != self.graph.host
            or url.port != self.graph.port
            or url.user is not None
            or url.password is not None
            or url.fragment
            or url.raw_path not in self.delta_paths
        ):
            raise ConnectorError(
                "refused",
                "entra: Graph answered a paging link to another address than the configured "
                "Graph base URL; it is not followed",
            )
        return link

    # ------------------------------------------------------------------ HTTP

    async def _page(self, url: str) -> Any:
        async def call(token: str) -> Reply:
            await self.budget.spend(self.cost)
            reply = await self.send(
                "GET",
                url,
                headers={"Accept": "application/json", "Authorization": f"Bearer {token}"},
            )
            self._note_cost(reply)
            if reply.status >= 400:
                raise self._error(reply)
            return reply

        reply = await self.tokens.call(call)
        return self.json_of(reply.body)

    def _note_cost(self, reply: Reply) -> None:
        units = reply.headers.get("x-ms-resource-unit", "")
        if units.isascii() and units.isdigit() and 0 < int(units) <= 1000:
            self.cost = float(units)

    def _error(self, reply: Reply) -> Exception:
        status = reply.status
        code = graph_error_code(reply.body)
        if status == 410 or (status == 400 and code.lower() in GONE_CODES):
            return _StateGone()
        if status == 429:
            self.stats.rate_limited += 1
        base = self.http_error(status, b"", parse_retry_after(reply.headers.get("Retry-After")))
        detail = f" [error {code}]" if code else ""
        if status == 403:
            return ConnectorError(
                "auth",
                f"entra: Graph refused to list users (HTTP 403){detail}; the app registration "
                "needs the User.Read.All application permission with admin consent",
                status=status,
            )
        if status == 400:
            return ConnectorError(
                "config",
                f"entra: Graph rejected the request (HTTP 400){detail}; check the mapped "
                "user properties and the base URL",
                status=status,
            )
        return ConnectorError(
            base.kind, f"{base}{detail}", status=status, retry_after=base.retry_after
        )


def _after(now: datetime, floor: datetime | None) -> datetime:
    """`now`, or just after `floor` if the clock stands behind it (watermarks must grow)."""
    if floor is not None and now <= floor:
        return floor + timedelta(microseconds=1)
    return now


def _read_cursor(cursor: str) -> tuple[str, str]:
    version, _, rest = cursor.partition("|")
    mark, sep, link = rest.partition("|")
    if version != "v1" or not sep or read_mark(mark) is None or not link:
        raise ConnectorError("config", "entra: the saved cursor is not one this connector wrote")
    return mark, link


def _page_of(body: Any) -> tuple[list[Any], str | None, str | None]:
    """`value`, `@odata.nextLink` and `@odata.deltaLink` of a delta page, checked: a
    list, and exactly one of the two links."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise ConnectorError("malformed", "entra: the answer has no value list")
    next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
    if next_link is not None and not isinstance(next_link, str):
        next_link = None
    if delta_link is not None and not isinstance(delta_link, str):
        delta_link = None
    if (next_link is None) == (delta_link is None):
        raise ConnectorError(
            "malformed", "entra: the answer has neither or both of nextLink and deltaLink"
        )
    return body["value"], next_link, delta_link


def graph_error_code(payload: bytes) -> str:
    """`error.code` of a Graph error body (never its message)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else ""
