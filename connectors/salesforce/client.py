"""Salesforce (CRM): Contacts read over the REST API with a SOQL query of the mapped fields.

Auth: the OAuth 2.0 client credentials flow of a connected app (or external client app)
with a run-as integration user: `POST {base_url}/services/oauth2/token` with
`grant_type=client_credentials`, `client_id` and `client_secret` (credentials
`{"client_id", "client_secret"}`; `base_url` is the org's My Domain login URL, e.g.
`https://acme.my.salesforce.com`). The answer names an `instance_url`, the host every
query then goes to: it is judged like a configured address (http or https only, an https
login never hands over to plain http, no user info, path or query; and, unless the
gateway allows private sources, `connectors.netguard.check_url` plus the public-only
session). Salesforce issues no refresh token in this flow and no `expires_in`: a session
ends when the org's timeout says so, and the next call answers 401 `INVALID_SESSION_ID`;
the connector then asks for a new token once and repeats the call, and a second 401 is an
"auth" error. The token lives in memory only.

Minimisation at the source: the SOQL `SELECT` lists exactly the mapping's source fields
plus `Id` and `SystemModstamp` (paging and the watermark need them). Each name must be a
plain field API name (`FirstName`, `BSN__c`): letters, digits and single underscores, an
optional `__c`; relationship paths, functions, wildcards, quotes, spaces and SOQL words
are refused before any request ("config"), so a mapping cannot inject SOQL. Whatever still
arrives (`attributes`, `SystemModstamp`) is dropped by the projector at the door.

Full sync: `query` (deleted rows excluded) `ORDER BY Id`, following `nextRecordsUrl`
until `done`. Incremental: `queryAll` `WHERE SystemModstamp > <watermark - overlap>
ORDER BY SystemModstamp, Id`, which also returns Contacts deleted since (to the recycle
bin, `IsDeleted = true`); the bundled mapping's leaver rule turns those into
`active = false`, as the other connectors' leavers. (queryAll is used only when the
mapping reads `IsDeleted`; otherwise deletes are found by the next full sync, whose
missing people the engine removes.) The watermark is the highest `SystemModstamp` seen in
the run, never below `since`, spelled as Salesforce spells it.

Cursors: `v1|<phase>|<high>|<last stamp>|<last Id>|<nextRecordsUrl>`. The
`nextRecordsUrl` must be a relative `/services/data/vNN.N/query/<locator>-<offset>` path
(never an absolute URL the vendor could point anywhere). A locator Salesforce no longer
knows (they expire when unused; `INVALID_QUERY_LOCATOR`), as after a resumed run, is not
fatal: the query is asked again from the last (`SystemModstamp`, `Id`) or `Id` read.

API limits: every answer's `Sforce-Limit-Info: api-usage=N/M` is read. Once the org's
usage reaches `max_api_usage` of its allocation (default 0.9, leaving the rest to the
org's other integrations), the next request waits `limit_wait_seconds` (a
"rate_limited" error the retry layer waits out, then one request probes the usage
again). Salesforce answers an exhausted allocation (or too many long-running calls) with
403 `REQUEST_LIMIT_EXCEEDED`, not 429 and without `Retry-After`: that is "rate_limited"
too, waited out for `limit_wait_seconds`.

Errors: Salesforce's body is a JSON array of `{"message", "errorCode"}`; only the code is
read (a message can quote a value), and the OAuth `error` code of the token endpoint.

Settings: `object` (default `Contact`; `Lead` works the same way, `User` with a mapping
whose leaver rule reads `IsActive`, since users are deactivated, never deleted),
`api_version` (default `v62.0`), `batch_size` (200-2000, sent as
`Sforce-Query-Options: batchSize=N`; Salesforce may send fewer), `overlap_seconds`
(default 60), `max_api_usage` (0.1-1.0, default 0.9), `limit_wait_seconds` (default 60).

Checked against Salesforce's public documentation: queryAll returns deleted rows and its
`nextRecordsUrl` still says `query`; batches of up to 2,000; the `Sforce-Limit-Info:
api-usage=N/M` header; the client credentials flow with a run-as user and the Salesforce
Integration user license; the token answer's fields (also as jsforce types them). Seen only
in third-party material: 403 as the status of `REQUEST_LIMIT_EXCEEDED` (a real answer quoted
publicly, and the research notes); the JSON error array's shape beyond `message` and
`errorCode`. Not verified (the emulator assumes them, the connector survives either way):
that deleting a record moves its `SystemModstamp` (if not, a deletion between incremental
runs is caught by the next full sync); that an expired locator is a 400
`INVALID_QUERY_LOCATOR`, and how long locators live; that field names come back spelled as
the query spelled them (the bundled mapping uses Salesforce's own spelling); the message
texts. Not implemented: the JWT bearer flow.
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
    parse_retry_after,
)

TOKEN_PATH: Final = "/services/oauth2/token"  # noqa: S105 - a path, not a secret
DEFAULT_VERSION: Final = "v62.0"
DEFAULT_OBJECT: Final = "Contact"
#: Fields every query needs whatever the mapping reads: the paging key and the watermark.
ALWAYS: Final = ("Id", "SystemModstamp")
#: A field or object API name: letters, digits, single underscores, an optional `__c`.
_NAME: Final = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?:__c)?")
_RESERVED: Final = frozenset(
    {
        "and", "asc", "by", "desc", "else", "end", "excludes", "false", "first", "from",
        "group", "having", "in", "includes", "last", "like", "limit", "not", "null", "nulls",
        "offset", "or", "order", "select", "then", "tracking", "true", "typeof", "update",
        "using", "view", "when", "where", "with",
    }
)  # fmt: skip
_VERSION: Final = re.compile(r"v\d{2,3}\.0")
_NEXT: Final = re.compile(r"/services/data/v\d{2,3}\.\d/query(?:All)?/[A-Za-z0-9]{15,18}-\d{1,9}")
_ID: Final = re.compile(r"[A-Za-z0-9]{15,18}")
_CODE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_USAGE: Final = re.compile(r"api-usage=(\d+)/(\d+)")
_STAMP: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000")


def field_name(name: str) -> str:
    """`name` if it is a plain field API name, else a "config" error naming it."""
    if not _NAME.fullmatch(name) or len(name) > 80 or name.lower() in _RESERVED:
        raise ConnectorError(
            "config",
            f"salesforce: {name[:80]!r} is not a field API name the connector will query "
            "(letters, digits and single underscores, optionally ending in __c)",
        )
    return name


def select_list(source_fields: frozenset[str] | set[str]) -> list[str]:
    """The SOQL select list for a mapping: its source fields plus `Id` and
    `SystemModstamp`, each checked (so nothing but field names reaches the query)."""
    names = {field_name(n) for n in source_fields}
    lowered = {n.lower() for n in names}
    return sorted(names | {a for a in ALWAYS if a.lower() not in lowered})


def soql_time(stamp: str) -> str:
    """A Salesforce datetime (`...000+0000`) or ISO time as an unquoted SOQL literal."""
    moment = parse_time(stamp)
    if moment is None:
        raise ConnectorError("config", "salesforce: the watermark to sync from is not a time")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime | None:
    value = text.strip()
    if value.endswith("+0000"):
        value = value[:-5] + "+00:00"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def spell(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class SalesforceConnector(Connector):
    """Contacts (or another object) of one Salesforce org; see the module docstring."""

    type: ClassVar[str] = "salesforce"

    def configure(self, settings: Mapping[str, Any]) -> None:
        self.sobject = field_name(str(settings.get("object", DEFAULT_OBJECT)))
        version = settings.get("api_version", DEFAULT_VERSION)
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ConnectorError("config", "salesforce: api_version must look like v62.0")
        self.version = version
        self.batch_size = int(self.number_setting(settings, "batch_size", 2000, 200, 2000))
        self.overlap = timedelta(
            seconds=self.number_setting(settings, "overlap_seconds", 60, 0, 86_400)
        )
        self.max_usage = self.number_setting(settings, "max_api_usage", 0.9, 0.1, 1.0)
        self.limit_wait = self.number_setting(settings, "limit_wait_seconds", 60, 0.001, 300)
        self.fields = select_list(self.projector.source_fields)
        self.deletes_visible = "isdeleted" in {f.lower() for f in self.fields}
        self._token: str | None = None
        self._instance: str | None = None
        self._usage: tuple[int, int] | None = None
        #: Requests held back because the org's usage reached `max_api_usage`.
        self.paced = 0

    # ------------------------------------------------------------------ paging

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        if request.cursor is None:
            since = request.since if request.mode is SyncMode.INCREMENTAL else None
            phase = "changes" if since is not None else "all"
            floor = parse_time(since) if since else None
            if since and floor is None:
                raise ConnectorError(
                    "config", "salesforce: the watermark to sync from is not a time"
                )
            high, last_stamp, last_id = spell(floor) if floor else "", "", ""
            body = await self._start(phase, high, "", "")
        else:
            phase, high, last_stamp, last_id, next_url = _read_cursor(request.cursor)
            try:
                body = await self._data("GET", next_url)
            except _LocatorGone:
                body = await self._start(phase, high, last_stamp, last_id)
        records, done, next_url = _batch(body)
        last_stamp, last_id = _last_key(records, last_stamp, last_id)
        for record in records:
            stamp = record.get("SystemModstamp") if isinstance(record, dict) else None
            if isinstance(stamp, str) and _STAMP.fullmatch(stamp) and stamp > high:
                high = stamp
        next_cursor = None
        if not done:
            next_cursor = "|".join(("v1", phase, high, last_stamp, last_id, next_url))
        return RawPage(records=records, next_cursor=next_cursor, watermark=high or None)

    async def _start(self, phase: str, high: str, last_stamp: str, last_id: str) -> Any:
        """Ask the query of a phase, from its beginning or after the last row read."""
        select = ", ".join(self.fields)
        where: list[str] = []
        if phase == "changes":
            floor = parse_time(high) if high else None
            if floor is not None:
                where.append(f"SystemModstamp > {soql_time(spell(floor - self.overlap))}")
            if last_stamp and last_id:
                t = soql_time(last_stamp)
                where.append(
                    f"(SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > '{last_id}'))"
                )
            order = "SystemModstamp, Id"
        else:
            if last_id:
                where.append(f"Id > '{last_id}'")
            order = "Id"
        # Every name was checked by `field_name`; the only literals are times and Ids read
        # back through strict patterns.
        soql = f"SELECT {select} FROM {self.sobject}"  # noqa: S608
        if where:
            soql += " WHERE " + " AND ".join(where)
        soql += f" ORDER BY {order}"
        resource = "queryAll" if phase == "changes" and self.deletes_visible else "query"
        path = f"/services/data/{self.version}/{resource}"
        return await self._data("GET", path, params={"q": soql})

    # ------------------------------------------------------------------ HTTP

    async def _data(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> Any:
        """One REST call on the instance, with a fresh session once on INVALID_SESSION_ID."""
        if self._usage is not None:
            used, limit = self._usage
            if used >= self.max_usage * limit:
                self._usage = None  # the request after the wait probes the usage again
                self.paced += 1
                raise ConnectorError(
                    "rate_limited",
                    f"salesforce: the org has used {used} of its {limit} API requests "
                    f"(max_api_usage {self.max_usage}); waiting before the next one",
                    retry_after=self.limit_wait,
                )
        for fresh in (False, True):
            if self._token is None:
                await self._authenticate()
            headers = {
                "Authorization": f"Bearer {self._token}",
                "Sforce-Query-Options": f"batchSize={self.batch_size}",
            }
            status, got, payload = await self._send(
                method, f"{self._instance}{path}", params=params, headers=headers
            )
            if status == 401 and not fresh:
                self._token = None
                continue
            if status >= 400:
                raise self._error(status, payload, got)
            return self.json_of(payload)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _authenticate(self) -> None:
        client_id = self.config.credentials.get("client_id", "").strip()
        secret = self.config.credentials.get("client_secret", "").strip()
        if not client_id or not secret:
            raise ConnectorError(
                "auth",
                "salesforce: no connected app configured (credentials.client_id and "
                "credentials.client_secret)",
            )
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        status, _, payload = await self._send(
            "POST", f"{self.base_url}{TOKEN_PATH}", form=form, headers={}
        )
        if status >= 400:
            code = _oauth_code(payload)
            kind = "auth" if status in (400, 401, 403) else None
            if kind is None:
                raise super().http_error(status, b"", None)
            detail = f" [error {code}]" if code else ""
            raise ConnectorError(
                "auth",
                f"salesforce: the token endpoint refused the connected app (HTTP {status}){detail}",
                status=status,
            )
        body = self.json_of(payload)
        token = body.get("access_token") if isinstance(body, dict) else None
        instance = body.get("instance_url") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(instance, str):
            raise ConnectorError(
                "malformed", "salesforce: the token answer lacks access_token or instance_url"
            )
        self._instance = str(self.reachable_origin(instance, "instance_url of the token answer"))
        self._token = token

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request through `Connector.send`, noting the org's API usage it reports."""
        reply = await self.send(
            method, url, headers={"Accept": "application/json", **headers}, params=params, data=form
        )
        usage = _USAGE.search(reply.headers.get("Sforce-Limit-Info", ""))
        if usage:
            self._usage = (int(usage.group(1)), int(usage.group(2)))
        return reply.status, reply.headers, reply.body

    def _error(self, status: int, payload: bytes, headers: Mapping[str, str]) -> Exception:
        code = _error_code(payload)
        if code == "INVALID_QUERY_LOCATOR":
            return _LocatorGone()
        if code == "REQUEST_LIMIT_EXCEEDED":
            self.stats.rate_limited += 1
            return ConnectorError(
                "rate_limited",
                f"salesforce: the org's API limit is reached (HTTP {status} {code})",
                status=status,
                retry_after=self.limit_wait,
            )
        if status == 429:
            self.stats.rate_limited += 1
        base = self.http_error(status, b"", parse_retry_after(headers.get("Retry-After")))
        if code in ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"):
            return ConnectorError(
                "config",
                f"salesforce: the query was refused (HTTP {status} {code}); check that every "
                f"mapped field exists on {self.sobject} and the integration user may read it",
                status=status,
            )
        if not code:
            return base
        return ConnectorError(
            base.kind, f"{base} [errorCode {code}]", status=status, retry_after=base.retry_after
        )


class _LocatorGone(Exception):
    """Salesforce no longer knows the query locator: ask the query again."""


def _batch(body: Any) -> tuple[list[Any], bool, str]:
    """`records`, `done` and `nextRecordsUrl` of a query answer, checked for shape."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ConnectorError("malformed", "salesforce: the query answer has no records list")
    done = body.get("done")
    if not isinstance(done, bool):
        raise ConnectorError("malformed", "salesforce: the query answer has no done flag")
    if done:
        return body["records"], True, ""
    next_url = body.get("nextRecordsUrl")
    if not isinstance(next_url, str) or not _NEXT.fullmatch(next_url):
        raise ConnectorError(
            "malformed", "salesforce: the query answer has an unusable nextRecordsUrl"
        )
    return body["records"], False, next_url


def _last_key(records: list[Any], stamp: str, ident: str) -> tuple[str, str]:
    """The (SystemModstamp, Id) of the last record of a batch, for re-asking the query."""
    for record in reversed(records):
        if isinstance(record, dict):
            got_id, got_stamp = record.get("Id"), record.get("SystemModstamp")
            if isinstance(got_id, str) and _ID.fullmatch(got_id):
                if isinstance(got_stamp, str) and _STAMP.fullmatch(got_stamp):
                    return got_stamp, got_id
                return "", got_id
    return stamp, ident


def _read_cursor(cursor: str) -> tuple[str, str, str, str, str]:
    parts = cursor.split("|")
    if (
        len(parts) == 6
        and parts[0] == "v1"
        and parts[1] in ("all", "changes")
        and all(not p or _STAMP.fullmatch(p) for p in (parts[2], parts[3]))
        and (not parts[4] or _ID.fullmatch(parts[4]))
        and _NEXT.fullmatch(parts[5])
    ):
        return parts[1], parts[2], parts[3], parts[4], parts[5]
    raise ConnectorError("config", "salesforce: the saved cursor is not one this connector wrote")


def _error_code(payload: bytes) -> str:
    """The first `errorCode` of a Salesforce error body (never its message)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    first = body[0] if isinstance(body, list) and body else body
    code = first.get("errorCode") if isinstance(first, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else ""


def _oauth_code(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else ""
