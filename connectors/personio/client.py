"""Personio (HRM): employees from the v1 API, asked only for the attributes the mapping reads.

Why v1 (`GET /v1/company/employees`) and not v2 (`/v2/persons` + employments): v1 answers
names, email, position, status and termination date in one list, with `attributes[]` to
ask for only those and `updated_since` for incremental runs. v2 keeps the job title and the
leaver signal on employments, one extra call per person (an N+1 that forum users report),
and pages at 50. v1 is what most integrations use, and Personio still documents it.

Authentication: `POST /v1/auth` with the credential's `client_id` and `client_secret` in
a JSON body (Personio refuses them in the query string from December 2026) gives a bearer
token (`papi-…`, `expires_in` seconds, a day). The token is kept for the connector's life,
fetched again shortly before it expires, and once more after a 401 or 403 (a token that ran
out early: Personio hands out the same stable token for a day from when it first made it,
so a fresh answer may be close to its end). A second refusal is an "auth" error. The token
endpoint is on the base URL's host, so it is reached through the same public-only session
as the employee list: the gateway's address rules cover it.

Minimising at the source: every request names each attribute the mapping reads in
`attributes[]` (`attributes.<name>.value` in the mapping), so salary, birthday, IBAN and
the rest never cross the wire when the API credential may read them; the credential's own
"readable attributes" should be limited to the same (README). Anything that still arrives
(`id` always does) is dropped at the door by the projector.

Paging: `limit` (page size, at most 100) and `offset` (the first element). The cursor is
`<offset>@<watermark>`. The last page is the one with fewer employees than asked (or more:
a server that ignores `limit` under `updated_since`, as the reference says it may, answers
everything at once); an answer that echoes another `offset` than asked stops the run
rather than reading one page for ever. Offset paging cannot see deletions behind it: an
employee deleted during a run moves the rest up a place, and one person may be missed by
that full run (and so counted as gone until the next one); the mass-delete guard bounds
the harm.

Incremental runs send `updated_since` = watermark less `overlap_minutes` (default 60),
spelled in UTC without a zone. Personio reads a zone-less time in a zone it does not
document; European offsets are at or ahead of UTC, so reading it as local time only starts
earlier (a few re-reads the change detection absorbs), never later. With `attributes[]`,
`updated_since` selects only employees whose *named* attributes changed: exactly the
changes that matter here. The watermark is the time the run started (UTC, from the
gateway's clock, carried in the cursor so a resumed run keeps it); the overlap covers
clock skew between the gateway and Personio.

Leavers: the bundled mapping makes `status` `inactive` or a `termination_date` in the past a
leaver (`active = false`). A termination date that passes without any edit changes no
attribute, so only the next full run sees it; hard-deleted employees vanish and are found
by the full run too.

Rate limits: Personio allows the employee list 300 requests a minute with bursts of 15 a
second and answers 429 past that. The connector paces itself to use the budget without
crossing it: at most 95% of `requests_per_minute` in any 60 seconds and one less than
`burst_per_second` in any second (settings; defaults 300 and 15, for accounts with other
contracts). A 429 waits for `Retry-After`, or at least a second without it, as Personio
asks.

Errors: Personio's body is `{"success": false, "error": {"code": N, "message": …}}`; only
the numeric code is reported, never the message.

Settings: `page_size` (1-100, default 100), `overlap_minutes` (0-10080, default 60),
`requests_per_minute` (default 300), `burst_per_second` (default 15), `app_id` (sent as
`X-Personio-App-ID`, default SLUIS) and `partner_id` (`X-Personio-Partner-ID`, if set).
Credentials: `{"client_id": …, "client_secret": …}`.

Not verified against Personio itself (documented nowhere, or only by users): the order of
the employee list (assumed stable, by id); whether `limit` and `offset` apply under
`updated_since` (users say they do; handled either way); the zone of `updated_since`; the
status of a refused `/v1/auth` and of an expired token (401 or 403: both refresh once);
whether a 429 carries `Retry-After`; the 429 body.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import orjson
from multidict import MultiDict

from connectors.base import Connector, ConnectorError, PageRequest, RawPage, SyncMode
from connectors.pacing import Pacer, Window

AUTH_PATH: Final = "/v1/auth"
EMPLOYEES_PATH: Final = "/v1/company/employees"
MAX_PAGE_SIZE: Final = 100
DEFAULT_OVERLAP_MINUTES: Final = 60
#: Fetch a new token this long before the old one's end.
TOKEN_MARGIN_SECONDS: Final = 60.0
#: Personio's tokens last a day; used when an answer does not say.
DEFAULT_TOKEN_SECONDS: Final = 86_400.0
#: The share of the per-minute budget the connector spends.
BUDGET_SHARE: Final = 0.95
#: `attributes.<name>.value` in a mapping reads a Personio attribute.
_ATTRIBUTE = re.compile(r"attributes\.([A-Za-z0-9_]{1,100})\.value")
_APP_ID = re.compile(r"[A-Z0-9_]{1,64}")


def mapped_attributes(source_fields: frozenset[str] | set[str]) -> list[str]:
    """The Personio attributes behind a mapping's `attributes.<name>.value` source fields
    (`id` comes with every employee, so it is never asked for)."""
    names = {m.group(1) for f in source_fields if (m := _ATTRIBUTE.fullmatch(f))}
    names.discard("id")
    return sorted(names)


def _whole(settings: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConnectorError(
            "config", f"personio: setting {name} must be a whole number {low}-{high}"
        )
    return value


class PersonioConnector(Connector):
    """Employees of one Personio account (settings and credentials: the module docstring)."""

    type: ClassVar[str] = "personio"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.page_size = _whole(settings, "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        minutes = _whole(settings, "overlap_minutes", DEFAULT_OVERLAP_MINUTES, 0, 7 * 24 * 60)
        self.overlap = timedelta(minutes=minutes)
        per_minute = _whole(settings, "requests_per_minute", 300, 1, 1_000_000)
        burst = _whole(settings, "burst_per_second", 15, 1, 100_000)
        self.pacer = Pacer(
            Window.share(per_minute, 60.0, BUDGET_SHARE), Window(max(1, burst - 1), 1.0)
        )
        self.attributes = mapped_attributes(self.projector.source_fields)
        self._headers: dict[str, str] = {}
        for key, header, default in (
            ("app_id", "X-Personio-App-ID", "SLUIS"),
            ("partner_id", "X-Personio-Partner-ID", None),
        ):
            value = settings.get(key, default)
            if value is None:
                continue
            if not isinstance(value, str) or not _APP_ID.fullmatch(value):
                raise ConnectorError(
                    "config", f"personio: setting {key} must be UPPER_SNAKE_CASE (A-Z, 0-9, _)"
                )
            self._headers[header] = value
        client_id = str(self.config.credentials.get("client_id", "")).strip()
        secret = str(self.config.credentials.get("client_secret", "")).strip()
        if not client_id or not secret:
            raise ConnectorError(
                "auth", "personio: credentials need client_id and client_secret (API credential)"
            )
        self._login = {"client_id": client_id, "client_secret": secret}
        self._token: str | None = None
        self._token_until = 0.0

    def auth_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def _fetch_token(self) -> None:
        self._token = None
        body = await self.request_json("POST", AUTH_PATH, body=self._login)
        data = body.get("data") if isinstance(body, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip() or len(token) > 4096:
            raise ConnectorError("malformed", "personio: the token answer holds no token")
        expires = data.get("expires_in") if isinstance(data, dict) else None
        seconds = (
            float(expires)
            if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0
            else DEFAULT_TOKEN_SECONDS
        )
        self._token = token.strip()
        self._token_until = time.monotonic() + seconds - TOKEN_MARGIN_SECONDS

    async def _employees(self, params: MultiDict[str]) -> Any:
        """One employee-list call: a token first if there is none (or it is about to end),
        and once more after a refusal of a token that was not fresh."""
        fresh = False
        if self._token is None or time.monotonic() >= self._token_until:
            await self._fetch_token()
            fresh = True
        await self.pacer.wait()
        try:
            return await self.request_json("GET", EMPLOYEES_PATH, params=params)
        except ConnectorError as exc:
            if exc.kind != "auth" or fresh:
                raise
        await self._fetch_token()
        await self.pacer.wait()
        return await self.request_json("GET", EMPLOYEES_PATH, params=params)

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        offset, mark = self._position(request.cursor)
        if mark is None:
            mark = datetime.now(UTC)
        params: MultiDict[str] = MultiDict(
            [("limit", str(self.page_size)), ("offset", str(offset))]
        )
        for name in self.attributes:
            params.add("attributes[]", name)
        if request.mode is SyncMode.INCREMENTAL and request.since:
            since = parse_watermark(request.since)
            if since is None:
                raise ConnectorError("config", "personio: the watermark to sync from is not a time")
            start = (since - self.overlap).astimezone(UTC)
            params["updated_since"] = start.strftime("%Y-%m-%dT%H:%M:%S")
        body = await self._employees(params)
        records = _employees_of(body)
        echoed = body.get("offset")
        if offset and isinstance(echoed, int) and echoed != offset:
            # A server that ignores `offset` would hand out its first page for ever.
            raise ConnectorError(
                "refused", "personio: Personio did not apply the offset; paging cannot go on"
            )
        watermark = spell_watermark(mark)
        if len(records) != self.page_size:
            return RawPage(records=records, next_cursor=None, watermark=watermark)
        return RawPage(
            records=records,
            next_cursor=f"{offset + len(records)}@{watermark}",
            watermark=watermark,
        )

    @staticmethod
    def _position(cursor: str | None) -> tuple[int, datetime | None]:
        if cursor is None:
            return 0, None
        offset, sep, mark = cursor.partition("@")
        when = parse_watermark(mark) if sep else None
        if not (offset.isascii() and offset.isdigit() and len(offset) <= 9) or when is None:
            raise ConnectorError(
                "config", "personio: the saved cursor is not one this connector wrote"
            )
        return int(offset), when

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        if status == 429 and retry_after is None:
            retry_after = 1.0  # Personio asks for at least a second
        base = super().http_error(status, b"", retry_after)
        code = _error_code(payload)
        if status in (401, 403):
            message = (
                f"personio: Personio refused the credentials (HTTP {status}"
                + (f", error code {code}" if code is not None else "")
                + "); check the API credential's client id and secret and that it may read "
                "employees"
            )
            return ConnectorError("auth", message, status=status)
        if code is None:
            return base
        return ConnectorError(
            base.kind, f"{base} [error code {code}]", status=status, retry_after=base.retry_after
        )


def parse_watermark(text: str) -> datetime | None:
    """A watermark as this connector spells it (ISO, UTC); a zone-less one is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def spell_watermark(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _employees_of(body: Any) -> list[Any]:
    """`data` of a list answer, checked for shape (a 200 can still say `success: false`)."""
    if not isinstance(body, dict) or body.get("success") is not True:
        raise ConnectorError("malformed", "personio: the answer is not a successful list")
    data = body.get("data")
    if not isinstance(data, list):
        raise ConnectorError("malformed", "personio: the answer has no data list")
    return data


def _error_code(payload: bytes) -> int | None:
    """The numeric `error.code` of a Personio error body (never its message)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and -(10**6) < code < 10**6:
        return code
    return None
