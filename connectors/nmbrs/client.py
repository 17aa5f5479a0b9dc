"""Nmbrs (Visma, Dutch payroll): employees from the REST API, or from the legacy SOAP API.

One connector type, two APIs (setting `api`, default `rest`). Both are turned into ONE
record shape per employee before the projector sees it, so one bundled mapping
(`mappings/nmbrs.toml`) serves either:

    employeeId, companyId, employeeNumber, firstName, initials, prefix, lastName,
    workEmail, jobTitle, startDate, endDate

Nothing else of what Nmbrs sends is kept: the normalisation reads the few values above out
of each answer and lets go of the rest at once (BSN, birth date, private email and phones,
partner, emergency contact: Nmbrs's personal info arrives whole in both APIs). The
projector then drops whatever the mapping does not read. A record that is not an object,
or lacks its id, goes to the projector as it is and is quarantined with a reason there.

REST (`https://api.nmbrsapp.com`, `/api/...`). Authentication: OAuth 2.0 against Nmbrs's
identity server (IdentityServer). A customer admin connects the source once with the
console's "Connect with Nmbrs" (`authorization_server`: the authorization code grant with
PKCE, read-only scopes and `offline_access`); the gateway stores the refresh token it
yields sealed. The connector's own credentials are the app's `client_id` and
`client_secret` and the `subscription_key` of the developer-portal product, sent as
`X-Subscription-Key` on every call; the refresh token is read when the first request needs
it (`connected_refresh_token`: a plain "not connected" error, before any request, until
someone has connected). Access tokens come from `connectors.oauth.Tokens` with the
refresh-token grant; the identity server rotates refresh tokens (each is good once), so
every new one is handed to the gateway to store sealed before the access token is used.
The endpoints are `{identity_url}/connect/authorize` and `{identity_url}/connect/token`;
`identity_url` (a setting) defaults to `https://identityservice.nmbrs.com` when the base
URL is an `nmbrsapp.com` host, else to the base URL's own origin (a stand-in such as the
emulator serves both). Either way the token request goes through the connector's
public-only session, like every API call.

What a run reads, company by company (`GET /api/companies`, paged): the company-wide
history collections the mapping needs, each read in full first and reduced on the fly to
one value per employee: `functions` (job title = the `description` of the latest function
by period), `employments` (the latest employment's start and end dates: an end date in
the past makes a leaver) and `personalinfo` (the work email of the latest entry by
period); then `GET /api/companies/{id}/employees` page by page, each page joined with
those values and handed on. Collections the mapping does not read are not asked for.
Pages: `pageNumber` (1-based) and `pageSize` (setting `page_size`, 1-100, default 100),
answered as `{data, pagination: {pageNumber, totalPages, ...}}`; an answer that echoes
another page number than asked stops the run rather than loop.

No incremental sync: Nmbrs documents no updated-since filter (history rows carry
`createdAt`, but a change to personal info or a deleted employee would be missed by it).
Every run is a full snapshot (the type is `full_only`): the engine's change detection
sends on only what changed, and people missing from a complete run are the deleted ones
(the mass-delete guard bounds a bad answer). A typical Nmbrs customer has a few hundred
employees, so a snapshot is cheap. The watermark is the run's start time, kept in the
cursor.

SOAP (`https://api.nmbrs.nl/soap/v3`, setting `api = "soap"`): for customers whose
integration still runs on the legacy API user token. Credentials `username`, `token` and
`domain`, sent as the `AuthHeaderWithDomain` SOAP header. zeep builds every request and
parses every answer against WSDLs bundled with the connector (`wsdl/`, never fetched at
run time), but sends nothing itself: the envelope goes out through the connector's own
`send` (the public-only session, no redirects, the capped body read), and only the
answer's bytes are handed back to zeep, off the event loop, with DTDs and entities
refused. Per company (`CompanyService.List_GetAll`):
`EmployeeService.PersonalInfo_GetAll_AllEmployeesByCompany` (the employee list: every
field of `PersonalInfo_V2`, BSN included, since SOAP has no field selection),
`Function_GetAll_AllEmployeesByCompany_V2` and `Employment_GetAll_AllEmployeesByCompany`
(each only if the mapping reads what it gives). SOAP does not page: a company arrives
whole, is reduced to the record shape above at once, and is handed on in pages of
`page_size` so the engine checkpoints as it goes. A SOAP Fault is reduced to Nmbrs's
numeric code (`---> 1001:` in the fault string): 1001-1006 are refused credentials or
rights ("auth"), 2003/2004 missing rights on an employee or company ("auth"); the text is
never repeated.

Rate limits: Nmbrs publishes no figures for either API. A 429 waits for `Retry-After`
(or two seconds without it). `requests_per_minute` (a setting, off by default) paces the
connector to 95% of a contract's budget within any 60 seconds.

Errors: REST errors are RFC 7807 problem details; only `status` and a plain `code` are
reported, never `title` or `detail` (they can quote values).

No company at all in the answer stops the run ("refused"): it means a user without
rights, and a snapshot without anyone would make every employee a leaver.

Cursor: `v1|<company id>|<page or offset>|<watermark>`. A resumed run finds its company by
id; a company that vanished meanwhile stops the run (the next full run starts over).

Not verified against Nmbrs's public documentation (assumed, and handled either way where
possible): the endpoint paths `/connect/authorize` and `/connect/token` (IdentityServer's
defaults; discovery was not read), that the three read scopes cover what a run reads
(Nmbrs's own "basic HR employee synchronization" scenario names `company.info.read` and
`employee.info.read` for the company, employee and function lists) and that refresh tokens
rotate; the shape of the REST `personalinfo` rows
(a history whose entries hold `contactInfo.businessEmail`) and that the work email lives
there; the page-size cap; whether rows come in a stable order; the 429 `Retry-After`
values and the rate limits; the names of the SOAP result items (`PersonalInfoItem`,
`EmployeeFunctionItem_V2`, `EmployeeEmploymentItem`: zeep is run non-strict, but a
different name would come back empty, which the run reports as no employees rather
than wrong ones); the exact Fault texts beyond the `---> NNNN:` code.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

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

Api = Literal["rest", "soap"]
REST_IDENTITY: Final = "https://identityservice.nmbrs.com"
AUTHORIZE_PATH: Final = "/connect/authorize"
TOKEN_PATH: Final = "/connect/token"  # noqa: S105 - a path, not a secret
#: What "Connect with Nmbrs" asks for: read-only access to the company list, the employees'
#: basic and personal info (names, work email, functions) and their employments (dates),
#: and `offline_access` for a refresh token. No payroll, salary, leave, bank-account,
#: document or write scope.
OAUTH_SCOPES: Final = (
    "company.info.read", "employee.info.read", "employee.employment.read", "offline_access",
)  # fmt: skip
MAX_PAGE_SIZE: Final = 100
BUDGET_SHARE: Final = 0.95
#: How long a 429 without `Retry-After` waits.
DEFAULT_RETRY_AFTER: Final = 2.0
WSDL_DIR: Final = Path(__file__).resolve().parent / "wsdl"
#: The one record shape both APIs are turned into.
FIELDS: Final = (
    "employeeId", "companyId", "employeeNumber", "firstName", "initials", "prefix",
    "lastName", "workEmail", "jobTitle", "startDate", "endDate",
)  # fmt: skip
#: Which source (beyond the employee list) each field comes from.
_NEEDS: Final = {
    "workEmail": "personalinfo",
    "jobTitle": "functions",
    "startDate": "employments",
    "endDate": "employments",
}
_CODE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_FAULT_CODE: Final = re.compile(r"---> ?(\d{4}):")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_AUTH_FAULTS: Final = frozenset({1001, 1002, 1003, 1004, 1006, 2003, 2004})
_SOAP_NS: Final = "https://api.nmbrs.nl/soap/v3/"


def _whole(settings: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> Any:
    value = settings.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConnectorError("config", f"nmbrs: setting {name} must be a whole number {low}-{high}")
    return value


def _text(value: Any, limit: int = 1000) -> str | None:
    """A plain string value, or None (anything else is not carried on)."""
    if isinstance(value, str) and len(value) <= limit:
        return value
    return None


def _day(value: Any) -> str | None:
    """The date part of an ISO date or date-time (or a `datetime` from zeep)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return str(value.isoformat())[:10]
    if isinstance(value, str) and _DATE.match(value):
        return value[:10]
    return None


def _later(key: tuple[Any, ...], best: tuple[Any, ...] | None) -> bool:
    return best is None or key > best


@dataclass
class _Company:
    id: str
    number: Any


class _Lookups:
    """A company's REST lookups as they are read: what is left, and what was found."""

    def __init__(self, found: dict[str, _Latest]) -> None:
        self.found = found
        self.todo = list(found)
        self.page = 1


@dataclass
class _SoapCompany:
    """A company's SOAP answers as they arrive, then its records in the one shape."""

    answers: dict[str, Any] = field(default_factory=dict)
    records: list[Any] | None = None


class _Latest:
    """One value per employee: the one with the highest key seen (latest by period)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._keys: dict[str, tuple[Any, ...]] = {}

    def offer(self, employee: str, key: tuple[Any, ...], value: Any) -> None:
        if _later(key, self._keys.get(employee)):
            self._keys[employee] = key
            self.values[employee] = value


def _period_key(entry: Mapping[str, Any]) -> tuple[int, int, str]:
    period = entry.get("period")
    year = period.get("year") if isinstance(period, dict) else None
    number = period.get("period") if isinstance(period, dict) else None
    created = entry.get("createdAt")
    return (
        year if isinstance(year, int) else 0,
        number if isinstance(number, int) else 0,
        created if isinstance(created, str) else "",
    )


# --------------------------------------------------------------------------- REST reading


def reduce_rest(resource: str, rows: list[Any], into: _Latest) -> None:
    """Read the one value the gateway wants out of a page of a history collection."""
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("employeeId"), str):
            continue
        employee = row["employeeId"]
        if resource == "functions":
            for entry in _entries(row.get("functions")):
                into.offer(employee, _period_key(entry), _text(entry.get("description")))
        elif resource == "employments":
            for entry in _entries(row.get("employments")):
                start = _day(entry.get("startDate")) or ""
                into.offer(employee, (start,), (start or None, _day(entry.get("endDate"))))
        else:
            for entry in _entries(row.get("info")):
                contact = entry.get("contactInfo")
                email = contact.get("businessEmail") if isinstance(contact, dict) else None
                into.offer(employee, _period_key(entry), _text(email, 320))


def _entries(value: Any) -> list[dict[str, Any]]:
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def normalise_rest(row: Any, company: _Company, lookups: Mapping[str, _Latest]) -> Any:
    """One employee-list row joined with the looked-up values, in the one record shape."""
    if not isinstance(row, dict):
        return row
    employee = row.get("employeeId")
    basic = row.get("employeeBasicInfo")
    basic = basic if isinstance(basic, dict) else {}
    record: dict[str, Any] = {
        "employeeId": employee if isinstance(employee, str) else None,
        "companyId": company.id,
        "employeeNumber": basic.get("employeeNumber"),
        "firstName": _text(basic.get("firstName")),
        "initials": _text(basic.get("initials")),
        "prefix": _text(basic.get("prefix")),
        "lastName": _text(basic.get("lastName")),
    }
    _join(record, employee if isinstance(employee, str) else "", lookups)
    return record


def _join(record: dict[str, Any], employee: str, lookups: Mapping[str, _Latest]) -> None:
    if "personalinfo" in lookups:
        record["workEmail"] = lookups["personalinfo"].values.get(employee)
    if "functions" in lookups:
        record["jobTitle"] = lookups["functions"].values.get(employee)
    if "employments" in lookups:
        start, end = lookups["employments"].values.get(employee, (None, None))
        record["startDate"], record["endDate"] = start, end


# --------------------------------------------------------------------------- SOAP (zeep)


@cache
def soap_client(service: str) -> Any:
    """A zeep client for one bundled WSDL: it builds and parses messages, never sends."""
    import zeep  # noqa: PLC0415 - only SOAP runs load zeep
    from zeep.transports import Transport  # noqa: PLC0415 - only SOAP runs load zeep

    class Offline(Transport):
        """Loads only local files: nothing is fetched, whatever a WSDL might import."""

        def _load_remote_data(self, url: str) -> bytes:
            raise ConnectorError("config", "nmbrs: the bundled WSDL may not fetch anything")

    settings = zeep.Settings(strict=False, xml_huge_tree=True, forbid_dtd=True)
    return zeep.Client(  # type: ignore[no-untyped-call]
        str(WSDL_DIR / f"{service}.wsdl"),
        transport=Offline(),  # type: ignore[no-untyped-call]
        settings=settings,
    )


def read_reply(client: Any, binding: Any, operation: str, reply: Reply) -> Any:
    """A SOAP answer read by zeep: parsed strictly first (zeep's own non-strict parsing
    would *recover* a cut-off answer into a shorter list: people missing, taken for
    leavers), with DTDs and entities refused; a Fault raises `zeep.exceptions.Fault`."""
    from zeep import Settings  # noqa: PLC0415 - only SOAP runs load zeep
    from zeep.loader import parse_xml  # noqa: PLC0415 - only SOAP runs load zeep

    strict = Settings(strict=True, xml_huge_tree=True, forbid_dtd=True, forbid_entities=True)
    doc = parse_xml(reply.body, client.transport, settings=strict)  # type: ignore[arg-type]
    found = binding.get(operation)
    fault = doc.find("soap-env:Body/soap-env:Fault", namespaces=binding.nsmap)
    if reply.status != 200 or fault is not None:
        return binding.process_error(doc, found)
    return found.process_reply(doc)


def _fields(value: Any, *names: str) -> Any:
    for name in names:
        if value is None:
            return None
        value = getattr(value, name, None)
    return value


def _items(value: Any, name: str) -> list[Any]:
    """The list under `name` of a zeep array value (a result or a nested array)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    inner = getattr(value, name, None)
    return list(inner) if isinstance(inner, list) else []


def normalise_soap(
    company: _Company,
    people: Any,
    functions: Any | None,
    employments: Any | None,
) -> list[Any]:
    """A company's SOAP answers, reduced at once to the one record shape (PersonalInfo_V2
    arrives with every field: only names and the work email are read out of it)."""
    titles = _Latest()
    for item in _items(functions, "EmployeeFunctionItem_V2"):
        employee = str(_fields(item, "EmployeeId"))
        for entry in _items(_fields(item, "EmployeeFunctions"), "EmployeeFunction"):
            key = (
                _fields(entry, "StartYear") or 0,
                _fields(entry, "StartPeriod") or 0,
                str(_fields(entry, "CreationDate") or ""),
            )
            titles.offer(employee, key, _text(_fields(entry, "Function", "Description")))
    jobs = _Latest()
    for item in _items(employments, "EmployeeEmploymentItem"):
        employee = str(_fields(item, "EmployeeId"))
        for entry in _items(_fields(item, "EmployeeEmployments"), "Employment"):
            start = _day(_fields(entry, "StartDate")) or ""
            jobs.offer(employee, (start,), (start or None, _day(_fields(entry, "EndDate"))))
    lookups: dict[str, _Latest] = {}
    if functions is not None:
        lookups["functions"] = titles
    if employments is not None:
        lookups["employments"] = jobs
    records: list[Any] = []
    for item in _items(people, "PersonalInfoItem"):
        employee = _fields(item, "EmployeeId")
        latest: Any = None
        best: tuple[Any, ...] | None = None
        for info in _items(_fields(item, "EmployeePersonalInfos"), "PersonalInfo_V2"):
            order: tuple[Any, ...] = (
                _fields(info, "StartYear") or 0,
                _fields(info, "StartPeriod") or 0,
            )
            if _later(order, best):
                best, latest = order, info
        record: dict[str, Any] = {
            "employeeId": str(employee) if isinstance(employee, int) else None,
            "companyId": company.id,
            "employeeNumber": _fields(latest, "EmployeeNumber"),
            "firstName": _text(_fields(latest, "FirstName")),
            "initials": _text(_fields(latest, "Initials")),
            "prefix": _text(_fields(latest, "Prefix")),
            "lastName": _text(_fields(latest, "LastName")),
            "workEmail": _text(_fields(latest, "EmailWork"), 320),
        }
        _join(record, str(employee), lookups)
        records.append(record)
    return records


# --------------------------------------------------------------------------- connector


def identity_url(base_url: str, settings: Mapping[str, Any]) -> str:
    """The identity server's root: the `identity_url` setting, else Nmbrs's for an
    `nmbrsapp.com` API host, else the base URL's own origin (a stand-in serving both)."""
    given = settings.get("identity_url")
    if given is not None:
        url = URL(given) if isinstance(given, str) else None
        if url is None or url.scheme not in ("http", "https") or not url.host or url.user:
            raise ConnectorError("config", "nmbrs: setting identity_url must be an http(s) URL")
        return str(url).rstrip("/")
    base = URL(base_url)
    host = base.host or ""
    if host == "nmbrsapp.com" or host.endswith(".nmbrsapp.com"):
        return REST_IDENTITY
    if base.scheme not in ("http", "https") or not host:
        raise ConnectorError("config", "nmbrs: the base URL must be an http(s) URL")
    return str(base.origin())


def authorization_server(base_url: str, settings: Mapping[str, Any]) -> AuthorizationServer:
    """Nmbrs's identity server as the console's "Connect with Nmbrs" uses it: the
    authorization code grant with PKCE at `{identity}/connect/authorize`, the code and the
    rotating refresh tokens at `{identity}/connect/token`, the client secret in the form
    body (IdentityServer takes it there or as Basic)."""
    identity = identity_url(base_url, settings)
    return AuthorizationServer(
        authorize_url=identity + AUTHORIZE_PATH,
        token_url=identity + TOKEN_PATH,
        scopes=OAUTH_SCOPES,
        client_auth="post",
        vendor="Nmbrs",
    )


class NmbrsConnector(Connector):
    """Employees of the companies an Nmbrs user may read (settings: module docstring)."""

    type: ClassVar[str] = "nmbrs"

    def configure(self, settings: Mapping[str, Any]) -> None:
        api = settings.get("api", "rest")
        if api not in ("rest", "soap"):
            raise ConnectorError("config", 'nmbrs: setting api must be "rest" or "soap"')
        self.api: Api = api
        self.page_size = _whole(settings, "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        per_minute = _whole(settings, "requests_per_minute", None, 1, 1_000_000)
        self.pacer = Pacer(Window.share(per_minute, 60.0, BUDGET_SHARE)) if per_minute else None
        read = set(self.projector.source_fields)
        self.needs = sorted({need for name, need in _NEEDS.items() if name in read})
        credentials = self.config.credentials
        self._companies: tuple[str, list[_Company]] | None = None
        self._held: tuple[str, str, Any] | None = None
        if api == "rest":
            missing = [
                k
                for k in ("client_id", "client_secret", "subscription_key")
                if not str(credentials.get(k, "")).strip()
            ]
            if missing:
                raise ConnectorError(
                    "auth", f"nmbrs: the REST API needs credentials {', '.join(missing)}"
                )
            self.subscription_key = str(credentials["subscription_key"]).strip()
            self.server = authorization_server(self.base_url, settings)
            #: Made when the first request needs a token (the refresh token a "Connect"
            #: stored is read then, not here: a connector not yet connected can be built).
            self.tokens: Tokens | None = None
        else:
            missing = [k for k in ("username", "token", "domain") if not credentials.get(k)]
            if missing:
                raise ConnectorError(
                    "auth", f"nmbrs: the SOAP API needs credentials {', '.join(missing)}"
                )
            self._header = {
                "Username": str(credentials["username"]),
                "Token": str(credentials["token"]),
                "Domain": str(credentials["domain"]),
            }

    # ------------------------------------------------------------------ paging

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        company_id, position, mark = self._position(request.cursor)
        companies = await self._list_companies(mark)
        watermark = mark
        if not companies:
            # Every run is a snapshot: an empty one would make everyone a leaver. No company
            # at all is a user without rights, not a payroll without people.
            raise ConnectorError(
                "refused", "nmbrs: the user may read no company; check its rights in Nmbrs"
            )
        index = 0
        if company_id is not None:
            index = next((i for i, c in enumerate(companies) if c.id == company_id), -1)
            if index < 0:
                raise ConnectorError(
                    "refused", "nmbrs: a company of the run is gone; the next run starts over"
                )
        company = companies[index]
        if self.api == "rest":
            records, more = await self._rest_page(mark, company, position)
        else:
            records, more = await self._soap_page(mark, company, position)
        if more:
            step = 1 if self.api == "rest" else self.page_size
            cursor = f"v1|{company.id}|{position + step}|{mark}"
        elif index + 1 < len(companies):
            self._held = None
            cursor = f"v1|{companies[index + 1].id}|{self._first}|{mark}"
        else:
            self._held = None
            self._companies = None
            cursor = None
        return RawPage(records=records, next_cursor=cursor, watermark=watermark)

    @property
    def _first(self) -> int:
        return 1 if self.api == "rest" else 0

    def _position(self, cursor: str | None) -> tuple[str | None, int, str]:
        if cursor is None:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return None, self._first, now
        parts = cursor.split("|")
        if (
            len(parts) != 4
            or parts[0] != "v1"
            or not (parts[2].isascii() and parts[2].isdigit() and len(parts[2]) <= 9)
            or not _CODE.fullmatch(parts[1])
        ):
            raise ConnectorError(
                "config", "nmbrs: the saved cursor is not one this connector wrote"
            )
        return parts[1], int(parts[2]), parts[3]

    async def _list_companies(self, mark: str) -> list[_Company]:
        if self._companies is not None and self._companies[0] == mark:
            return self._companies[1]
        found: list[_Company] = []
        if self.api == "rest":
            async for rows in self._rest_pages("/api/companies"):
                for row in rows:
                    cid = row.get("companyId") if isinstance(row, dict) else None
                    if isinstance(cid, str) and _CODE.fullmatch(cid):
                        found.append(_Company(cid, row.get("number")))
        else:
            result = await self._soap("CompanyService", "List_GetAll")
            for item in _items(result, "Company"):
                cid = _fields(item, "ID")
                if isinstance(cid, int):
                    found.append(_Company(str(cid), _fields(item, "Number")))
        self._companies = (mark, found)
        return found

    # ------------------------------------------------------------------ REST

    async def _rest_page(self, mark: str, company: _Company, page: int) -> tuple[list[Any], bool]:
        held = self._held if self._held and self._held[:2] == (mark, company.id) else None
        if held is None:
            held = self._held = (mark, company.id, _Lookups({r: _Latest() for r in self.needs}))
        lookups: _Lookups = held[2]
        # The lookups are read first, a page at a time; what was read survives a failed
        # request, so a retry (a 429 waited out) carries on where it stopped.
        while lookups.todo:
            resource = lookups.todo[0]
            path = f"/api/companies/{company.id}/employees/{resource}"
            rows, total = await self._rest_get_page(path, lookups.page)
            reduce_rest(resource, rows, lookups.found[resource])
            more = lookups.page < total if total is not None else len(rows) == self.page_size
            if more and rows:
                lookups.page += 1
            else:
                lookups.todo.pop(0)
                lookups.page = 1
        rows, total = await self._rest_get_page(f"/api/companies/{company.id}/employees", page)
        records = [normalise_rest(row, company, lookups.found) for row in rows]
        more = page < total if total is not None else len(rows) == self.page_size
        return records, more

    async def _rest_pages(self, path: str) -> Any:
        page = 1
        while True:
            rows, total = await self._rest_get_page(path, page)
            yield rows
            more = page < total if total is not None else len(rows) == self.page_size
            if not more or not rows:
                return
            page += 1

    async def _rest_get_page(self, path: str, page: int) -> tuple[list[Any], int | None]:
        params = {"pageNumber": str(page), "pageSize": str(self.page_size)}
        body = await self._tokens().call(lambda token: self._rest_get(token, path, params))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ConnectorError("malformed", "nmbrs: the answer has no data list")
        paging = body.get("pagination")
        paging = paging if isinstance(paging, dict) else {}
        echoed, total = paging.get("pageNumber"), paging.get("totalPages")
        if isinstance(echoed, int) and echoed != page:
            raise ConnectorError(
                "refused", "nmbrs: Nmbrs did not apply the page number; paging cannot go on"
            )
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            total = None
        return data, total

    def _tokens(self) -> Tokens:
        """The access tokens, from the refresh token "Connect" stored (a plain "not
        connected" error, before any request, when there is none)."""
        if self.tokens is None:
            credentials = self.config.credentials
            self.tokens = Tokens(
                self,
                self.server.token_url,
                self.server.client(
                    {k: str(credentials.get(k, "")).strip() for k in ("client_id", "client_secret")}
                ),
                refresh_token=connected_refresh_token(self),
            )
        return self.tokens

    async def _rest_get(self, token: str, path: str, params: Mapping[str, str]) -> Any:
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
            "X-Subscription-Key": self.subscription_key,
        }
        await self._pace()
        reply = await self.send("GET", f"{self.base_url}{path}", headers=headers, params=params)
        if reply.status >= 400:
            raise self._failed(reply)
        return self.json_of(reply.body)

    async def _pace(self) -> None:
        if self.pacer is not None:
            await self.pacer.wait()

    def _failed(self, reply: Reply) -> ConnectorError:
        if reply.status == 429:
            self.stats.rate_limited += 1
        return self.http_error(
            reply.status, reply.body, parse_retry_after(reply.headers.get("Retry-After"))
        )

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        if status == 429 and retry_after is None:
            retry_after = DEFAULT_RETRY_AFTER
        base = super().http_error(status, b"", retry_after)
        code = problem_code(payload)
        if status in (401, 403):
            return ConnectorError(
                "auth",
                f"nmbrs: Nmbrs refused the request (HTTP {status}"
                + (f", code {code}" if code else "")
                + "); check the subscription key and the app's client, or connect the source again",
                status=status,
            )
        if code is None:
            return base
        return ConnectorError(
            base.kind, f"{base} [code {code}]", status=status, retry_after=base.retry_after
        )

    # ------------------------------------------------------------------ SOAP

    async def _soap_page(self, mark: str, company: _Company, offset: int) -> tuple[list[Any], bool]:
        held = self._held if self._held and self._held[:2] == (mark, company.id) else None
        if held is None:
            held = self._held = (mark, company.id, _SoapCompany())
        state: _SoapCompany = held[2]
        if state.records is None:
            # Each answer is kept as it arrives, so a retry asks only for what is missing.
            cid = int(company.id)
            calls = [("people", "PersonalInfo_GetAll_AllEmployeesByCompany")]
            if "functions" in self.needs:
                calls.append(("functions", "Function_GetAll_AllEmployeesByCompany_V2"))
            if "employments" in self.needs:
                calls.append(("employments", "Employment_GetAll_AllEmployeesByCompany"))
            for name, operation in calls:
                if name not in state.answers:
                    state.answers[name] = await self._soap(
                        "EmployeeService", operation, CompanyID=cid
                    )
            answers = state.answers
            state.records = normalise_soap(
                company, answers["people"], answers.get("functions"), answers.get("employments")
            )
            answers.clear()
        records = state.records
        return records[offset : offset + self.page_size], offset + self.page_size < len(records)

    async def _soap(self, service: str, operation: str, **args: Any) -> Any:
        """One SOAP call: zeep writes the envelope, `send` carries it, zeep reads the answer
        (in a thread: a company's answer can be megabytes of XML)."""
        from lxml import etree  # noqa: PLC0415 - only SOAP runs load zeep
        from zeep.exceptions import Error as ZeepError  # noqa: PLC0415 - only SOAP runs load zeep
        from zeep.exceptions import Fault  # noqa: PLC0415 - only SOAP runs load zeep

        client = soap_client(service)
        binding = client.wsdl.services[service].ports[f"{service}Soap"].binding
        header = client.get_element("ns0:AuthHeaderWithDomain")(**self._header)
        envelope = client.create_message(client.service, operation, _soapheaders=[header], **args)
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        action = binding.get(operation).soapaction
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
        await self._pace()
        reply = await self.send(
            "POST", f"{self.base_url}/{service}.asmx", headers=headers, data=body
        )
        kind = reply.headers.get("Content-Type", "")
        if reply.status >= 400 and not (reply.status == 500 and "xml" in kind):
            raise self._failed(reply)
        try:
            return await asyncio.to_thread(read_reply, client, binding, operation, reply)
        except Fault as fault:
            raise soap_fault(operation, fault.message) from None
        except (ZeepError, etree.LxmlError, ValueError, TypeError, AttributeError):
            # zeep's own messages quote the answer: never passed on.
            raise ConnectorError(
                "malformed", f"nmbrs: the SOAP answer to {operation} could not be read"
            ) from None


def soap_fault(operation: str, text: Any) -> ConnectorError:
    """A SOAP Fault reduced to Nmbrs's numeric code (its text can name people)."""
    found = _FAULT_CODE.search(text) if isinstance(text, str) else None
    code = int(found.group(1)) if found else None
    where = f"nmbrs: {operation} failed (SOAP fault" + (f" {code})" if code else ")")
    if code in _AUTH_FAULTS:
        return ConnectorError(
            "auth",
            where + "; check the API user's token, domain and rights on each company",
        )
    if code is None or code == 9999:
        return ConnectorError("unavailable", where)
    return ConnectorError("refused", where)


def problem_code(payload: bytes) -> str | None:
    """The plain `code` of an RFC 7807 problem body (never `title` or `detail`)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


__all__ = ["FIELDS", "NmbrsConnector", "normalise_rest", "normalise_soap", "soap_client"]
