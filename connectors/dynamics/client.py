"""Microsoft Dynamics 365 / Dataverse (CRM): contacts over the Web API (OData v4), read with
change tracking, asked only for the mapped columns.

Why the Web API with change tracking, not `$filter=modifiedon gt …`: a modified-since query
cannot see deletions at all, and its order and boundaries (seconds, clock skew, several
rows in one second) need an overlap window; Dataverse's change tracking hands out an
opaque delta link that returns exactly the rows changed since, deleted ones included, and
the next delta link. It must be switched on for the table ("Track changes"; on for contact
in most environments). Without it a run gets no delta link and every run is full; the
setting `change_tracking = false` stops asking for it (should an environment refuse the
preference rather than ignore it, as OData allows: not verified).

Authentication: Microsoft Entra ID's client credentials grant, through `connectors.oauth`
(`POST {authority}/{tenant_id}/oauth2/v2.0/token` with the secret in the form body and
`scope={environment origin}/.default`); the app registration must be an application user
of the environment with a security role that may read contacts. Tokens live in memory,
are fetched again a minute before `expires_in` ends and once after a 401. Both hosts go
through the connector's public-only session; the authority is also judged as a URL when
the connector is built (http(s) origin only, https when the environment is, and a public
address unless the gateway allows private sources), since it is not the base URL the
gateway's own check saw.

Minimising at the source: `$select` names exactly the mapping's source fields that are
column logical names (`firstname`, `_parentcustomerid_value`, `new_bsn`: lower-case
letters, digits, underscores) plus the key `contactid`; other names are refused before any
request ("config"), so a mapping cannot widen or bend the query. Names starting with `@`
are annotations the connector itself sets (`@removed`), never asked for. What still
arrives (each row's `@odata.etag`) is dropped by the projector at the door.

Paging: `Prefer: odata.maxpagesize=N` (`page_size`, 1-5,000, default 1,000: a page is
parsed whole, and 5,000 contacts a page held a sync at 262 MiB against 100,000) and
`@odata.nextLink` followed verbatim, but only when it is on the environment's own origin
and the same entity set path; any other link stops the run ("refused"), as does a link
that repeats the one just read. The cursor is `v1|<phase>|<page>|<path and query>`;
only the path and query are kept, and the origin is always the configured one.

Full runs send `Prefer: odata.track-changes`: the last page carries `@odata.deltaLink`,
whose path and query (`…contacts?$select=…&$deltatoken=…`) become the watermark,
`delta:<path and query>`. An incremental run follows it: changed rows come with their
current values; deleted rows come as `$deletedEntity` entries holding only `id` and a
`reason`, which the connector turns into `{"contactid": id, "@removed": "deleted"}`, a
leaver under the bundled mapping (a leaver needs no required field: the engine deletes it
downstream). Deactivation is `statecode` 1 (Inactive): the bundled mapping's other leaver
rule. A watermark whose `$select` differs from today's mapping (the mapping changed) is
not followed: the run reads everyone again with tracking and starts a new delta chain.
An expired delta token (410 Gone; Dataverse keeps changes `ExpireChangeTrackingInDays`,
7 days by default) does the same within the incremental run: every current contact is read
(the engine's change detection keeps the events to real changes), and contacts deleted
meanwhile are removed by the next full run (the scheduler runs one daily). Change tracking
needs the application user to read contacts at Organization depth (Dataverse refuses a
narrower role's tracked read).

Service protection limits: Dataverse counts requests per user in a 5-minute sliding window
(6,000 by default; also 20 minutes of execution time and 52 concurrent requests) and
answers 429 with `Retry-After` past them. The connector sends one request at a time and
paces itself to `budget_share` (default 0.9) of `requests_per_window` in any
`window_seconds` (settings; defaults 6,000 and 300), so it never meets the limit alone; a
429 (another integration sharing the application user) waits `Retry-After`. The
`x-ms-ratelimit-burst-remaining-xrm-requests` header is read into `remaining` for the run's
view; pacing does not depend on it (Microsoft: "intended for debugging purposes").

Errors: Dataverse's body is `{"error": {"code": "0x…", "message": …}}`; only the code is
reported (a message can quote a value), and the token endpoint's OAuth `error` code.

Settings: `authority` (default `https://login.microsoftonline.com`; another national
cloud's, or the emulator's), `api_version` (default `v9.2`), `page_size`,
`change_tracking` (default true), `requests_per_window`, `window_seconds`, `budget_share`.
Credentials: `{"tenant_id": …, "client_id": …, "client_secret": …}`: the directory
(tenant) id is no secret, but it belongs with the app registration's id and secret, and
the console's form asks for credentials only. The entity set is `contacts` only: system
users (`systemusers`, leaver `isdisabled`) would need their own key, mapping and emulator
table, and are not offered.

Checked against Microsoft's public documentation: the token request and `.default` scope;
`Prefer: odata.maxpagesize` (at most 5,000, larger values ignored) and the verbatim
`@odata.nextLink` with a `$skiptoken` paging cookie; no `$skip`; `Prefer:
odata.track-changes`, `@odata.deltaLink` with `$deltatoken`, and the `$deletedEntity` rows
with `id` and `reason`; 429 with `Retry-After` for the service protection limits over a
5-minute sliding window, and the error code `0x80072322`; the error body's `code` and
`message`; the limits (6,000 requests, 20 minutes of execution time and 52 concurrent
requests per user and web server) and the `x-ms-ratelimit-burst-remaining-xrm-requests` /
`-time-remaining-xrm-requests` headers; changed rows before deleted ones (documented for
the SDK's `RetrieveEntityChanges`). Not verified (documented nowhere public, or only by
third parties): the status and code of an expired delta token over the Web API (410 here,
as Business Central documents; the SDK documents only "an exception"); whether the
`$select` of a delta link may differ from the tracked query's (the connector never tries);
the status of the privilege error for a role below Organization depth (403 assumed, an
"auth" error either way if 401/403, "config" if 400); whether a tracked read's delta token
is fixed at its first page or its last (the emulator fixes it at the first, which only
repeats changes, never loses them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import orjson
from yarl import URL

from connectors.base import (
    Connector,
    ConnectorError,
    PageRequest,
    RawPage,
    SyncMode,
    parse_retry_after,
)
from connectors.oauth import Client, Tokens
from connectors.pacing import Pacer, Window

ENTITY_SET: Final = "contacts"
KEY: Final = "contactid"
DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com"
DEFAULT_VERSION: Final = "v9.2"
MAX_PAGE_SIZE: Final = 5000
DEFAULT_PAGE_SIZE: Final = 1000
#: The annotation a deleted row is marked with (never a column).
REMOVED: Final = "@removed"
WATERMARK_PREFIX: Final = "delta:"
#: A runaway guard: 100,000 pages of 5,000 rows is far past any CRM.
MAX_PAGES: Final = 100_000
_COLUMN: Final = re.compile(r"_?[a-z][a-z0-9_]{0,99}")
_TENANT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_VERSION: Final = re.compile(r"v9\.[0-9]")
_CODE: Final = re.compile(r"0x[0-9A-Fa-f]{8}|[A-Za-z][A-Za-z0-9_]{0,63}")
_REMAINING: Final = "x-ms-ratelimit-burst-remaining-xrm-requests"


def select_list(source_fields: frozenset[str] | set[str]) -> list[str]:
    """The `$select` columns for a mapping: its column names plus `contactid`, each checked;
    annotations (`@…`) are left out."""
    names = {KEY}
    for name in source_fields:
        if name.startswith("@"):
            continue
        if not _COLUMN.fullmatch(name):
            raise ConnectorError(
                "config",
                f"dynamics: {name[:80]!r} is not a column logical name the connector will "
                "select (lower-case letters, digits and underscores)",
            )
        names.add(name)
    return sorted(names)


class _DeltaGone(Exception):
    """Dataverse no longer honours the delta token: read everyone again."""


class DynamicsConnector(Connector):
    """Contacts of one Dataverse environment; see the module docstring."""

    type: ClassVar[str] = "dynamics"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.origin = str(self.reachable_origin(self.base_url, "environment URL (base URL)"))
        tenant = str(self.config.credentials.get("tenant_id", "")).strip()
        if not _TENANT.fullmatch(tenant):
            raise ConnectorError(
                "auth",
                "dynamics: credentials need tenant_id, the Entra ID directory (tenant) id or "
                "a verified domain name",
            )
        authority = self.reachable_origin(settings.get("authority", DEFAULT_AUTHORITY), "authority")
        version = settings.get("api_version", DEFAULT_VERSION)
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ConnectorError("config", "dynamics: api_version must look like v9.2")
        self.path = f"/api/data/{version}/{ENTITY_SET}"
        self.page_size = int(
            self.number_setting(settings, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        )
        tracking = settings.get("change_tracking", True)
        if not isinstance(tracking, bool):
            raise ConnectorError(
                "config", "dynamics: setting change_tracking must be true or false"
            )
        #: Ask full reads for a delta link? (Off for a table that cannot be tracked.)
        self.tracking = tracking
        per_window = self.number_setting(settings, "requests_per_window", 6000, 1, 10_000_000)
        seconds = self.number_setting(settings, "window_seconds", 300, 0.001, 86_400)
        share = self.number_setting(settings, "budget_share", 0.9, 0.01, 1.0)
        self.pacer = Pacer(Window.share(per_window, seconds, share))
        self.columns = select_list(self.projector.source_fields)
        #: Does the mapping read the deletion mark? (A custom one may not: deleted rows
        #: are then rejected for what they lack, and the next full run removes them.)
        self.marks_removed = REMOVED in self.projector.source_fields
        self.select = ",".join(self.columns)
        client_id = str(self.config.credentials.get("client_id", "")).strip()
        secret = str(self.config.credentials.get("client_secret", "")).strip()
        if not client_id or not secret:
            raise ConnectorError(
                "auth",
                "dynamics: credentials need client_id and client_secret (an Entra ID app "
                "registration that is an application user of the environment)",
            )
        self.tokens = Tokens(
            self,
            f"{authority}/{tenant}/oauth2/v2.0/token",
            Client(client_id, secret, "post"),
            scope=f"{self.origin}/.default",
        )
        #: The last `x-ms-ratelimit-burst-remaining-xrm-requests` Dataverse sent.
        self.remaining: int | None = None
        #: Delta links not followed (expired, or for another `$select`): full reads instead.
        self.restarts = 0

    # ------------------------------------------------------------------ paging

    def _first_link(self) -> str:
        return f"{self.path}?$select={self.select}"

    def _delta_link(self, since: str) -> str | None:
        """The saved delta link if it is one this connector wrote for today's columns."""
        if not since.startswith(WATERMARK_PREFIX):
            return None
        link = since[len(WATERMARK_PREFIX) :]
        try:
            url = URL(link, encoded=True)
        except (ValueError, TypeError):
            return None
        if url.is_absolute() or url.path != self.path or "$deltatoken" not in url.query:
            return None
        if set(url.query.get("$select", "").split(",")) != set(self.columns):
            return None
        return link

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        if request.cursor is None:
            page = 0
            link = None
            if request.mode is SyncMode.INCREMENTAL and request.since and self.tracking:
                link = self._delta_link(request.since)
                if link is None:
                    self.restarts += 1
            phase = "delta" if link is not None else "full"
            link = link or self._first_link()
        else:
            phase, page, link = _read_cursor(request.cursor)
            if URL(link, encoded=True).path != self.path:
                raise ConnectorError(
                    "config", "dynamics: the saved cursor is for another API version"
                )
        try:
            body = await self._get(link, track=phase == "full" and self.tracking)
        except _DeltaGone:
            if phase != "delta":
                raise ConnectorError(
                    "malformed", "dynamics: Dataverse answered 410 Gone to a full read"
                ) from None
            self.restarts += 1
            phase, page, link = "full", 0, self._first_link()
            body = await self._get(link, track=True)
        records, next_link, delta_link = self._page(body)
        if next_link is not None:
            if next_link == link:
                raise ConnectorError(
                    "refused", "dynamics: Dataverse sent the same page link again; paging stops"
                )
            if page + 1 >= MAX_PAGES:
                raise ConnectorError("refused", "dynamics: the source never reached a last page")
            return RawPage(records, f"v1|{phase}|{page + 1}|{next_link}")
        watermark = f"{WATERMARK_PREFIX}{delta_link}" if delta_link is not None else None
        return RawPage(records, None, watermark=watermark)

    def _page(self, body: Any) -> tuple[list[Any], str | None, str | None]:
        """The rows of an answer (deletions marked), its next link and its delta link."""
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise ConnectorError("malformed", "dynamics: the answer has no value list")
        records: list[Any] = body["value"]
        for i, row in enumerate(records):
            if not isinstance(row, dict):
                continue  # the projector rejects it with a reason
            context = row.get("@odata.context")
            if isinstance(context, str) and context.endswith("/$deletedEntity"):
                # Only the key and the reason come: "deleted", or "changed" (out of the
                # tracked set), which for an unfiltered table is gone as well.
                records[i] = {KEY: row.get("id"), REMOVED: "deleted"}
            elif self.marks_removed:
                row[REMOVED] = None  # present on every row: the mapping's field is seen
        links = []
        for name in ("@odata.nextLink", "@odata.deltaLink"):
            value = body.get(name)
            links.append(None if value is None else self._own(value, name))
        return records, links[0], links[1]

    def _own(self, value: Any, name: str) -> str:
        """The path and query of a link Dataverse sent, if it points at this environment's
        entity set; otherwise the run stops ("refused"): a link elsewhere would carry the
        bearer token to a host nobody configured."""
        try:
            url = URL(value, encoded=True) if isinstance(value, str) else None
        except (ValueError, TypeError):
            url = None
        if url is None:
            raise ConnectorError("malformed", f"dynamics: the answer's {name} is not a link")
        if (
            (url.is_absolute() and str(url.origin()) != self.origin)
            or url.user is not None
            or url.fragment
            or url.path != self.path
        ):
            raise ConnectorError(
                "refused",
                f"dynamics: the answer's {name} leaves the environment's {ENTITY_SET} "
                "(another host or path); paging stops",
            )
        return url.raw_path_qs

    # ------------------------------------------------------------------ HTTP

    async def _get(self, link: str, *, track: bool) -> Any:
        prefer = f"odata.maxpagesize={self.page_size}"
        if track:
            prefer += ", odata.track-changes"

        async def call(token: str) -> Any:
            await self.pacer.wait()
            reply = await self.send(
                "GET",
                URL(f"{self.origin}{link}", encoded=True),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    "OData-MaxVersion": "4.0",
                    "OData-Version": "4.0",
                    "Prefer": prefer,
                },
            )
            remaining = reply.headers.get(_REMAINING, "")
            if remaining.isascii() and remaining.isdigit() and len(remaining) < 10:
                self.remaining = int(remaining)
            if reply.status >= 400:
                raise self._error(reply.status, reply.body, reply.headers.get("Retry-After"))
            return self.json_of(reply.body)

        return await self.tokens.call(call)

    def _error(self, status: int, payload: bytes, retry_after: str | None) -> Exception:
        if status == 410:
            return _DeltaGone()
        if status == 429:
            self.stats.rate_limited += 1
        base = self.http_error(status, b"", parse_retry_after(retry_after))
        code = _error_code(payload)
        detail = f" [error {code}]" if code else ""
        if status == 403:
            return ConnectorError(
                "auth",
                f"dynamics: Dataverse refused the app (HTTP 403){detail}; it must be an "
                "application user of the environment with a role that may read contacts "
                "(at Organization depth, which change tracking needs)",
                status=status,
            )
        if status == 400 and code:
            return ConnectorError(
                "config",
                f"dynamics: Dataverse refused the query (HTTP 400){detail}; check that every "
                f"mapped column exists on {ENTITY_SET} and that change tracking is allowed",
                status=status,
            )
        if not code:
            return base
        return ConnectorError(
            base.kind, f"{base}{detail}", status=status, retry_after=base.retry_after
        )


def _read_cursor(cursor: str) -> tuple[str, int, str]:
    phase, sep, rest = cursor.removeprefix("v1|").partition("|")
    page, sep2, link = rest.partition("|")
    if (
        cursor.startswith("v1|")
        and sep
        and sep2
        and phase in ("full", "delta")
        and page.isascii()
        and page.isdigit()
        and len(page) <= 6
        and link.startswith("/api/data/")
    ):
        return phase, int(page), link
    raise ConnectorError("config", "dynamics: the saved cursor is not one this connector wrote")


def _error_code(payload: bytes) -> str:
    """The `error.code` of a Dataverse error body (never its message)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else ""
