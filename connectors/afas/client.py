"""AFAS Profit REST: employees read from one GetConnector.

A GetConnector returns every column its administrator put in it; AFAS offers no field
selection on the call. The gateway therefore relies on the projector to drop everything
but names, work email and job title at the door, and onboarding should ship a minimal
GetConnector (key, names, work email, function, end date, modified date) so that BSN,
IBAN and salary never even cross the wire.

Paging is keyset ("seek") paging on the key field. Every call asks `skip=0`,
`take=<page_size>` and `orderbyfieldids=<key_field>`; every page after the first also
filters `<key_field>` with operator 4 (`>`) on the last key of the page before. The cursor
is that last key, `key:<value>`. Paging by `skip` loses a person whenever someone already
read is hard-deleted during the run (every later row moves up a place), and the sync
engine then reports the lost person as gone. With a key, deletes and inserts behind the
cursor leave the rows ahead of it alone: nobody ahead is skipped or read twice. A bare
decimal cursor is a `skip` from before keyset paging (a run resumed across an upgrade):
that one page is fetched at that offset, the rest by key. Any other cursor is a "config"
error. The last page is the one with fewer rows than asked for (or than the answer's
`take`, should a server cap it and say so).

The key field must be filled in every row, unique and sortable, and AFAS must compare it
in the filter as it sorts it. Both happen in one SQL query, by the field's type: text by
the database collation (so "99" sorts after "100042"; that is harmless while sort and
filter agree), numbers as numbers. The default, `Medewerker` (the employee number), asks
for a GetConnector with one row per employee. Paging past a key that is not unique would
skip the rows sharing it, so a page is refused as a "config" error if two of its rows have
equal keys (ignoring case, as a case-insensitive collation would), if its last row has no
key, or if it holds the key it was asked to page past (a server ignoring the filter). Key
values with `,` or `;` are refused too: AFAS reads those as list separators in
`filtervalues`. The cursor holds the employee number of the last person read (a source
key, not a name). It is saved with the run's checkpoint and never logged.

Incremental runs filter the modified field with operator 2 (`>=`) from the watermark
minus an overlap (default one hour), AND-ed with the key filter through AFAS's parallel,
comma-separated lists (`filterfieldids=Gewijzigd_op,Medewerker`, `operatortypes=2,4`).
AFAS writes date-times in Amsterdam local time with a bogus `Z`, so watermarks are
compared as local times and the hour covers the repeated hour when summer time ends, clock
skew and changes committed late. The overlap re-reads a few people; the sync engine
dedupes them by content digest. The watermark is the largest modified value seen so far in
the run (never below `since`), spelled as AFAS spelled it; a run resumed from a checkpoint
by a new connector only knows its own pages, which can make the watermark lower (more
re-reads), never higher (missed changes).

Settings: `connector_id` (default "Sluis_Medewerkers"), `page_size` (`take`, 1-1000,
default 100), `key_field` (the paging key, default "Medewerker"), `modified_field` (default
"Gewijzigd_op"), `overlap_minutes` (default 60) and, for AFAS-certified partner
integrations, `integration_id` (sent as the `IntegrationId` header).

Credentials: `{"token": ...}` holds the token as AFAS Profit shows it, the whole
`<token><version>1</version><data>…</data></token>` XML; a bare data part is accepted and
wrapped. It is base64-encoded into `Authorization: AfasToken …`.

AFAS error bodies carry `externalMessage`, `errorNumber` and `profitLogReference`. The
message text can quote the request or the data (validation errors name values), so it is
never read; errors report the number and the log reference, which an AFAS administrator
looks up in the environment's log. A 500 with such a body is a business error (unknown or
blocked GetConnector, unknown filter field, a page too large): retrying cannot fix it, so
it is a "config" error, while a 5xx without an AFAS body (a proxy, an outage) is retried.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson

from connectors.base import (
    Connector,
    ConnectorError,
    PageRequest,
    RawPage,
    SyncMode,
)

log = logging.getLogger(__name__)

AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")
DEFAULT_CONNECTOR_ID: Final = "Sluis_Medewerkers"
DEFAULT_PAGE_SIZE: Final = 100
#: AFAS asks for columns x rows < 150 000 per call; 1000 rows leaves room for 150 columns.
MAX_PAGE_SIZE: Final = 1000
DEFAULT_OVERLAP_MINUTES: Final = 60
#: Page cursors are `key:<last key read>`; the prefix leaves room for other kinds later.
CURSOR_PREFIX: Final = "key:"
#: Longer keys are refused: every page's query carries one, and AFAS caps a query at 2049.
MAX_KEY_LENGTH: Final = 256

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_TOKEN_DATA = re.compile(r"[A-Za-z0-9]{1,512}")
_TOKEN_XML = re.compile(
    r"<token>\s*<version>\d+</version>\s*<data>[A-Za-z0-9]{1,512}</data>\s*</token>"
)
_LOG_REFERENCE = re.compile(r"[0-9A-Fa-f]{32}")


class AfasConnector(Connector):
    """Employees from an AFAS Profit GetConnector (settings: see the module docstring)."""

    type: ClassVar[str] = "afas"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.connector_id = _name(settings, "connector_id", DEFAULT_CONNECTOR_ID)
        self.key_field = _name(settings, "key_field", "Medewerker")
        self.modified_field = _name(settings, "modified_field", "Gewijzigd_op")
        self.page_size = _whole(settings, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        minutes = _whole(settings, "overlap_minutes", DEFAULT_OVERLAP_MINUTES, 0, 7 * 24 * 60)
        self.overlap = timedelta(minutes=minutes)
        integration = settings.get("integration_id")
        self._headers = {"Authorization": _authorization(self.config.credentials.get("token"))}
        if integration:
            self._headers["IntegrationId"] = _name(settings, "integration_id", "")
        #: Highest modified value seen in this run: (as a local time, as AFAS spelled it).
        self._high: tuple[datetime, str] | None = None

    def auth_headers(self) -> dict[str, str]:
        return dict(self._headers)

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        after, skip = _position(request.cursor)
        if request.cursor is None:
            self._high = None
        params = {
            "skip": str(skip),
            "take": str(self.page_size),
            "orderbyfieldids": self.key_field,
        }
        #: (field, value, operator): AND-ed, so sent as parallel comma-separated lists.
        filters: list[tuple[str, str, str]] = []
        if request.mode is SyncMode.INCREMENTAL and request.since:
            since = parse_afas_datetime(request.since)
            if since is None:
                raise ConnectorError("config", "afas: the watermark to sync from is not a date")
            self._raise_high(since, request.since)
            local = (since - self.overlap).strftime("%Y-%m-%dT%H:%M:%S")
            filters.append((self.modified_field, local, "2"))
        if after is not None:
            filters.append((self.key_field, after, "4"))
        if filters:
            params["filterfieldids"] = ",".join(name for name, _, _ in filters)
            params["filtervalues"] = ",".join(value for _, value, _ in filters)
            params["operatortypes"] = ",".join(op for _, _, op in filters)
        body = await self.request_json(
            "GET", f"/connectors/{quote(self.connector_id, safe='')}", params=params
        )
        rows, applied_take = _rows(body)
        for row in rows:
            if isinstance(row, dict):
                spelled = row.get(self.modified_field)
                if isinstance(spelled, str):
                    self._raise_high(parse_afas_datetime(spelled), spelled)
        self._check_keys(rows, after)
        limit = min(self.page_size, applied_take or self.page_size)
        last = len(rows) < limit
        next_cursor = None if last else CURSOR_PREFIX + self._last_key(rows)
        log.debug(
            "afas: GetConnector %s %s rows=%d",
            self.connector_id,
            "first page" if request.cursor is None else "next page",
            len(rows),
        )
        return RawPage(
            records=rows,
            next_cursor=next_cursor,
            watermark=self._high[1] if self._high else None,
        )

    def _check_keys(self, rows: list[Any], after: str | None) -> None:
        """Refuse a page that shows the key cannot be paged by (on every page, so that a
        GetConnector that breaks the rule fails from the start, not once it outgrows a page).

        A client cannot know AFAS's collation, only what any collation agrees on: no two
        rows with equal keys (ignoring case) and none equal to the key paged past.
        """
        seen = {_same(after)} if after is not None else set()
        for row in rows:
            value = row.get(self.key_field) if isinstance(row, dict) else None
            if value is None or value == "":
                continue
            folded = _same(str(value))
            if folded in seen:
                raise ConnectorError(
                    "config",
                    f"afas: key_field {self.key_field} repeats a value across rows, or AFAS "
                    "ignored the filter on it; keyset paging needs a key that is unique in "
                    "the GetConnector (one row per employee) and filterable",
                )
            seen.add(folded)

    def _last_key(self, rows: list[Any]) -> str:
        """The key of a full page's last row: where the next page starts."""
        tail = rows[-1] if rows else None
        key = _key_text(tail.get(self.key_field) if isinstance(tail, dict) else None)
        if key is None:
            raise ConnectorError(
                "config",
                f"afas: the last row of a page has no usable {self.key_field}; keyset paging "
                "needs a key that is filled in every row, sortable, at most "
                f"{MAX_KEY_LENGTH} characters and without ',' or ';'",
            )
        return key

    def _raise_high(self, moment: datetime | None, spelled: str) -> None:
        if moment is not None and (self._high is None or moment > self._high[0]):
            self._high = (moment, spelled)

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        error = super().http_error(status, payload, retry_after)
        number, reference = _afas_error(payload)
        detail = ", ".join(
            part
            for part in (
                f"errorNumber {number}" if number is not None else "",
                f"profitLogReference {reference}" if reference else "",
            )
            if part
        )
        if status == 404:
            return ConnectorError(
                "config",
                "afas: no such path (HTTP 404); check the base URL (…/profitrestservices) "
                "and keep the query under 2049 characters",
                status=status,
            )
        if not detail:
            return error
        if status in (401, 403):
            message = (
                f"afas: AFAS refused the token (HTTP {status}, {detail}); check the token "
                f"and that its App Connector includes GetConnector {self.connector_id}"
            )
            return ConnectorError("auth", message, status=status)
        if status == 500:
            message = (
                f"afas: AFAS refused GetConnector {self.connector_id} (HTTP 500, {detail}); "
                "look the reference up in the Profit log: the connector may be unknown, "
                "blocked or not authorised, a filter field missing, or the page too large"
            )
            return ConnectorError("config", message, status=status)
        return ConnectorError(
            error.kind, f"{error} ({detail})", status=status, retry_after=error.retry_after
        )


def parse_afas_datetime(text: str) -> datetime | None:
    """An AFAS date-time as a naive Amsterdam local time, or None if it is not one.

    AFAS writes local time with a `Z` that does not mean UTC, so a trailing `Z` is dropped;
    a real offset (from elsewhere) is converted to Amsterdam time.
    """
    stripped = text.strip()
    try:
        moment = datetime.fromisoformat(stripped.removesuffix("Z").removesuffix("z"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(AMSTERDAM).replace(tzinfo=None)
    return moment


def _authorization(token: str | None) -> str:
    """`AfasToken <base64 XML>` from the XML token or its data part."""
    text = (token or "").strip()
    if not text:
        raise ConnectorError("auth", "afas: no token configured (credentials need 'token')")
    if _TOKEN_DATA.fullmatch(text):
        text = f"<token><version>1</version><data>{text}</data></token>"
    elif not _TOKEN_XML.fullmatch(text):
        raise ConnectorError(
            "auth",
            "afas: the token is neither AFAS token XML (<token><version>1</version>"
            "<data>…</data></token>) nor its data part",
        )
    return "AfasToken " + base64.b64encode(text.encode()).decode("ascii")


def _name(settings: Any, key: str, default: str) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConnectorError(
            "config", f"afas: setting {key} must be an AFAS id (letters, digits, _ . -)"
        )
    return value


def _whole(settings: Any, key: str, default: int, low: int, high: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConnectorError("config", f"afas: setting {key} must be a whole number {low}-{high}")
    return value


def _position(cursor: str | None) -> tuple[str | None, int]:
    """Where a cursor points: (the key to page past, or None; the `skip` to send).

    `key:<value>` is the last key read. A bare decimal is a `skip` written before keyset
    paging, honoured for the one page a run resumed across the upgrade asks with it.
    """
    if cursor is None:
        return None, 0
    if cursor.startswith(CURSOR_PREFIX):
        key = _key_text(cursor.removeprefix(CURSOR_PREFIX))
        if key is None:
            raise ConnectorError("config", "afas: the page cursor holds no usable key")
        return key, 0
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 12:
        return None, int(cursor)
    raise ConnectorError(
        "config", "afas: the page cursor is not one this connector wrote; start the sync again"
    )


def _key_text(value: Any) -> str | None:
    """A key value as the text to filter on, or None if it cannot be paged by."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_KEY_LENGTH
        or "," in value
        or ";" in value
    ):
        return None
    return value


def _same(key: str) -> str:
    """A key as a case-insensitive collation tells keys apart."""
    return key.casefold()


def _rows(body: Any) -> tuple[list[Any], int | None]:
    """The rows of a GetConnector answer and the `take` AFAS says it applied."""
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise ConnectorError("malformed", "afas: the answer has no rows list")
    take = body.get("take")
    applied = take if isinstance(take, int) and not isinstance(take, bool) and take > 0 else None
    return rows, applied


def _afas_error(payload: bytes) -> tuple[int | None, str | None]:
    """The safe parts of an AFAS error body: errorNumber and profitLogReference."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    number = body.get("errorNumber")
    reference = body.get("profitLogReference")
    return (
        number if isinstance(number, int) and not isinstance(number, bool) else None,
        reference if isinstance(reference, str) and _LOG_REFERENCE.fullmatch(reference) else None,
    )
