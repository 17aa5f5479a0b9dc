"""HubSpot CRM v3 contacts: a pull connector over the objects list and search APIs.

Minimisation starts at the source: HubSpot returns only the properties a request names, so
the connector asks for exactly the `properties.X` paths of the mapping (and HubSpot's three
bookkeeping properties come along regardless; the projector drops them).

Full sync (cursor `active:<high>:<after>`, then `archived:<high>:<after>`, where `high` is
the newest modification time seen so far in epoch ms, so that a resumed run still reports
the run's maximum): page through the active contacts, then through the archived ones.
HubSpot has no leaver concept; archiving a contact is the nearest, and the mapping's leaver
rule (`archived` is true) turns those into `active = false`. Hard-deleted (GDPR) contacts
appear in neither list: the sync engine treats "gone from a full sync" as a leaver.

Incremental sync (cursor `search:<since-ms>:<offset>`): search `lastmodifieddate GTE
since`, sorted ascending, and after every page move the window to the last modification
time seen instead of paging deeper with `after`. That keeps the offset near zero, so the
10,000-result cap of search is never met (only a single millisecond shared by more than
10,000 contacts can meet it, which is reported rather than skipped), and a contact edited
while the run pages is never skipped: edits only move contacts to the end of the window.
The price is re-reading the contacts at the window's boundary, which the sync engine's
change detection absorbs. Search does not return archived contacts, so incremental runs
learn about leavers only from the periodic full sync that should be scheduled next to them.

Every page reports the run's watermark so far: the highest `lastmodifieddate` of the
active contacts seen (never below the run's `since`), spelled as HubSpot spells it (ISO,
milliseconds, `Z`). The next incremental run searches from there, inclusive, less the
`overlap_seconds` setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import orjson

from connectors.base import (
    Connector,
    ConnectorError,
    PageRequest,
    RawPage,
    SyncMode,
)
from connectors.oauth import (
    REFRESH_TOKEN_KEY,
    AuthorizationServer,
    Tokens,
    connected_refresh_token,
)

CONTACTS_PATH: Final = "/crm/v3/objects/contacts"
#: A public app's consent screen and token endpoint (the latter on the API's own host).
AUTHORIZE_URL: Final = "https://app.hubspot.com/oauth/authorize"
TOKEN_PATH: Final = "/oauth/v1/token"  # noqa: S105 - a path
OAUTH_SCOPES: Final = ("crm.objects.contacts.read",)
SEARCH_PATH: Final = "/crm/v3/objects/contacts/search"
LIST_MAX_LIMIT: Final = 100
SEARCH_MAX_LIMIT: Final = 200
SEARCH_CAP: Final = 10_000
#: Asked for when a mapping reads no properties at all: an empty `properties=` would make
#: HubSpot fall back to its defaults, which include names and email.
_PLACEHOLDER_PROPERTY: Final = "hs_object_id"
#: How long each HubSpot rate-limit policy lasts, for 429s that come without Retry-After.
_POLICY_WAIT: Final = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_AFTER: Final = 1000
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def mapped_properties(source_fields: frozenset[str] | set[str]) -> list[str]:
    """HubSpot property names behind a mapping's `properties.X` source paths."""
    names = {path.split(".", 2)[1] for path in source_fields if path.startswith("properties.")}
    return sorted(names) or [_PLACEHOLDER_PROPERTY]


def epoch_ms(value: str) -> int | None:
    """A HubSpot timestamp (ISO, or epoch-ms digits) in epoch ms; HubSpot keeps time in
    UTC, so an ISO time without an offset is read as UTC."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _int_setting(settings: Mapping[str, Any], name: str, default: int, low: int) -> int:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConnectorError("config", f"hubspot: setting {name} must be a whole number >= {low}")
    return value


def authorization_server(base_url: str, settings: Mapping[str, Any]) -> AuthorizationServer:
    """HubSpot's OAuth endpoints for a public app: the consent screen on app.hubspot.com
    (the `authorize_url` setting moves it, for the emulator), the token endpoint on the API's
    own host, the client secret in the form body. HubSpot's refresh tokens do not rotate."""
    authorize = settings.get("authorize_url", AUTHORIZE_URL)
    if not isinstance(authorize, str) or not re.match(r"https?://[^/\s@]+(/|$)", authorize):
        raise ConnectorError("config", "hubspot: authorize_url must be an http(s) URL")
    return AuthorizationServer(
        authorize_url=authorize,
        token_url=base_url.rstrip("/") + TOKEN_PATH,
        scopes=OAUTH_SCOPES,
        client_auth="post",
        vendor="HubSpot",
    )


class HubSpotConnector(Connector):
    """Contacts of one HubSpot portal. Credentials: a private app's `{"token": ...}`, or a
    public app's `{"client_id", "client_secret"}` plus the `refresh_token` the console's
    "Connect" stores once a portal admin has installed the app (OAuth authorization code).

    Settings: `page_size` (default 100; HubSpot caps lists at 100 and search at 200),
    `overlap_seconds` (default 0: incremental windows start this much before the
    watermark, for portals whose search index lags behind writes), `search_cap` (default
    10,000; only tests move it), `authorize_url` (public apps; default HubSpot's).
    """

    type: ClassVar[str] = "hubspot"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.page_size = _int_setting(settings, "page_size", 100, 1)
        self.overlap_ms = _int_setting(settings, "overlap_seconds", 0, 0) * 1000
        self.search_cap = _int_setting(settings, "search_cap", SEARCH_CAP, 1)
        self.properties = mapped_properties(self.projector.source_fields)
        credentials = self.config.credentials
        #: A public app's tokens (None: a private app's fixed token, or not yet connected).
        self.tokens: Tokens | None = None
        self.public_app = bool(credentials.get("client_id"))
        self._access = ""
        if not self.public_app and not credentials.get("token", "").strip():
            raise ConnectorError(
                "config",
                "hubspot: credentials need a private app's token, or a public app's "
                "client_id and client_secret",
            )
        if self.public_app:
            server = authorization_server(self.base_url, settings)
            refresh = credentials.get(REFRESH_TOKEN_KEY, "").strip()
            if refresh:
                self.tokens = Tokens(
                    self, server.token_url, server.client(credentials), refresh_token=refresh
                )

    def auth_headers(self) -> dict[str, str]:
        token = self._access if self.public_app else self.config.credentials.get("token", "")
        if not token.strip():
            raise ConnectorError("auth", "hubspot: no token configured (credentials.token)")
        return {"Authorization": f"Bearer {token.strip()}"}

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """A private app's call as it is; a public app's with its current access token
        (fetched again once when HubSpot refuses one that was not fresh)."""
        if not self.public_app:
            return await super().request_json(method, path, params=params, body=body)
        if self.tokens is None:
            connected_refresh_token(self)  # raises: nobody has connected the portal yet
            raise AssertionError("unreachable")  # pragma: no cover

        async def attempt(token: str) -> Any:
            self._access = token
            return await Connector.request_json(self, method, path, params=params, body=body)

        return await self.tokens.call(attempt)

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        cursor = request.cursor
        if cursor is None:
            if request.mode is SyncMode.INCREMENTAL:
                floor = self._since_ms(request.since)
                return await self._search(max(0, (floor or 0) - self.overlap_ms), 0, floor)
            return await self._list("active", None, "")
        phase, _, tail = cursor.partition(":")
        first, sep, rest = tail.partition(":")
        if phase in ("active", "archived") and sep and (first.isdigit() or not first):
            return await self._list(phase, int(first) if first else None, rest)
        if phase == "search" and first.isdigit() and rest.isdigit():
            # A window always starts at a time already seen: it counts for the watermark.
            floor = _highest(self._since_ms(request.since), int(first))
            return await self._search(int(first), int(rest), floor)
        raise ConnectorError("config", "hubspot: the saved cursor is not one this connector wrote")

    @staticmethod
    def _since_ms(since: str | None) -> int | None:
        if not since:
            return None
        ms = epoch_ms(since)
        if ms is None:
            raise ConnectorError("config", "hubspot: the watermark to sync from is not a time")
        return ms

    async def _list(self, phase: str, high: int | None, after: str) -> RawPage:
        """One page of the active (then the archived) contacts; `high` is the run's newest
        modification time so far, carried in the cursor so a resumed run keeps it."""
        params = {
            "limit": str(min(self.page_size, LIST_MAX_LIMIT)),
            "properties": ",".join(self.properties),
            "archived": "true" if phase == "archived" else "false",
        }
        if after:
            params["after"] = after
        records, next_after = _page(await self.request_json("GET", CONTACTS_PATH, params=params))
        if phase == "active":
            # Archived contacts are invisible to search: their times must not lift the
            # watermark past edits that only an incremental run would still see.
            high = _highest(high, _latest(records))
        mark = "" if high is None else str(high)
        if next_after:
            next_cursor: str | None = f"{phase}:{mark}:{next_after}"
        else:
            next_cursor = f"archived:{mark}:" if phase == "active" else None
        return RawPage(records=records, next_cursor=next_cursor, watermark=spell_time(high))

    async def _search(self, since_ms: int, offset: int, floor: int | None) -> RawPage:
        """One page of contacts modified at or after `since_ms`, oldest first; `floor` is
        the newest time known before this page (the watermark never goes below it)."""
        window = {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(since_ms)}
        body = {
            "filterGroups": [{"filters": [window]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": min(self.page_size, SEARCH_MAX_LIMIT),
            "after": str(offset),
        }
        records, next_after = _page(await self.request_json("POST", SEARCH_PATH, body=body))
        last_ms = _latest(records)
        watermark = spell_time(_highest(floor, last_ms))
        if not next_after or not records:
            return RawPage(records=records, next_cursor=None, watermark=watermark)
        if last_ms is None:
            raise ConnectorError("malformed", "hubspot: search results lack lastmodifieddate")
        if last_ms > since_ms:
            next_cursor = f"search:{last_ms}:0"
        else:
            # The whole page shares the window's first millisecond: page on within it.
            offset += len(records)
            if offset >= self.search_cap:
                raise ConnectorError(
                    "refused",
                    f"hubspot: more than {self.search_cap} contacts share one modification "
                    "time, beyond what search can page through; run a full sync",
                )
            next_cursor = f"search:{since_ms}:{offset}"
        return RawPage(records=records, next_cursor=next_cursor, watermark=watermark)

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        """The base mapping, plus HubSpot's category / policy and correlationId: support can
        trace a failure with those, and they never hold personal data (the message might)."""
        codes = _error_codes(payload)
        policy = codes.get("policy")
        if status == 429 and retry_after is None and policy:
            retry_after = _POLICY_WAIT.get(policy)
        base = super().http_error(status, b"", retry_after)
        if not codes:
            return base
        detail = ", ".join(f"{k} {v}" for k, v in codes.items())
        return ConnectorError(
            base.kind, f"{base} [{detail}]", status=base.status, retry_after=base.retry_after
        )


def _page(body: Any) -> tuple[list[Any], str | None]:
    """`results` and `paging.next.after` of a list or search response, checked for shape."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ConnectorError("malformed", "hubspot: the response has no results list")
    paging = body.get("paging")
    after = None
    if paging is not None:
        nxt = paging.get("next") if isinstance(paging, dict) else None
        after = nxt.get("after") if isinstance(nxt, dict) else None
        if not isinstance(after, str | int) or isinstance(after, bool) or not str(after):
            raise ConnectorError("malformed", "hubspot: the response has an unreadable cursor")
        after = str(after)
        if len(after) > _MAX_AFTER:  # it becomes part of a checkpoint: keep that small
            raise ConnectorError("malformed", "hubspot: the response has an oversized cursor")
    return body["results"], after


def _latest(records: list[Any]) -> int | None:
    """The newest modification time on a page, in epoch ms (None: no readable time)."""
    best: int | None = None
    for record in records:
        if not isinstance(record, dict):
            continue
        props = record.get("properties")
        raw = props.get("lastmodifieddate") if isinstance(props, dict) else None
        if not isinstance(raw, str):
            raw = record.get("updatedAt")
        ms = epoch_ms(raw) if isinstance(raw, str) else None
        best = _highest(best, ms)
    return best


def _highest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def spell_time(ms: int | None) -> str | None:
    """Epoch ms as HubSpot writes timestamps (`2024-05-06T07:30:12.345Z`)."""
    if ms is None:
        return None
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _error_codes(payload: bytes) -> dict[str, str]:
    """The traceable, data-free parts of a HubSpot error body (never `message`)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(body, dict):
        return {}
    codes: dict[str, str] = {}
    for key, name in (
        ("category", "category"),
        ("errorType", "category"),
        ("policyName", "policy"),
    ):
        value = body.get(key)
        if isinstance(value, str) and _CODE.fullmatch(value) and name not in codes:
            codes[name] = value
    cid = body.get("correlationId")
    if isinstance(cid, str) and _UUID.fullmatch(cid):
        codes["correlationId"] = cid.lower()
    return codes
