"""A local Nmbrs: the REST API with its identity server, and the legacy SOAP API.

One app serves both (the same synthetic people, research notes `connector_apis.md`
section 5):

REST (`/api/...`), as Nmbrs documents it:

* The identity server (IdentityServer) is the emulator kit's authorization server for
  `EMULATOR_CLIENT_ID`: `GET /connect/authorize` consents at once (authorization code with
  PKCE S256, the browser sent back to the `redirect_uri`), and `POST /connect/token` takes
  the `authorization_code` grant and the `refresh_token` grant (the client in the form
  body or as Basic). Refresh tokens are one-time: each use hands out a new one and the old
  one stops working (an `invalid_grant` 400 after that), as IdentityServer does with
  `OneTimeOnly` tokens; a wrong client is `invalid_client`. `EMULATOR_REFRESH_TOKEN` is
  one it issued before it started (what the demo and `sluis emulator` hand out). Each
  answer says `expires_in: 3600` (`token_ttl`) and the access token stops working then.
  Neither endpoint meets the API's faults or limits: it is another host at Nmbrs.
* Every API call needs `X-Subscription-Key` (a missing or wrong key is a 401 from the API
  gateway) and `Authorization: Bearer` with a token the identity server issued; an unknown
  or expired token is a 401.
* `GET /api/companies`, `GET /api/companies/{companyId}/employees` and the company-wide
  history collections `.../employees/functions`, `.../employments` and `.../personalinfo`
  page with `pageNumber` (1-based) and `pageSize` (at most `max_page_size`, 100 unless
  a test says otherwise) and answer `{"data": [...], "pagination": {pageNumber, pageSize,
  totalPages, totalRecords}}`. Rows come in a stable order (by employee number).
* Errors are RFC 7807 problem details `{type, title, status, code, detail}`; the `detail`
  quotes what was asked for (as real ones can), so a client must never repeat it.
* A rate limit (off unless set: Nmbrs publishes no figures) answers 429 with `Retry-After`.

SOAP (`/soap/v3/CompanyService.asmx`, `/soap/v3/EmployeeService.asmx`), a small SOAP 1.1
responder: `?WSDL` serves the connector's bundled WSDL with this address in it; a POST with
`SOAPAction` runs `List_GetAll`, `PersonalInfo_GetAll_AllEmployeesByCompany`,
`Function_GetAll_AllEmployeesByCompany_V2` or `Employment_GetAll_AllEmployeesByCompany`
after checking the `AuthHeaderWithDomain` header. PersonalInfo_V2 arrives whole (BSN,
birthday, private email and phones, partner, emergency contact): SOAP has no field
selection. A refused header is a SOAP Fault with HTTP 500 and Nmbrs's
`---> 1001: Authentication failed` text, as ASMX services send them.

Invented where Nmbrs documents nothing: the REST personal-info row's shape (a history of
`{personalInfoId, basicInfo, birthInfo, contactInfo:{businessEmail, privateEmail, ...},
bsn, createdAt, period}`), the 401 bodies, the 429's `Retry-After`, the page-size cap, the
SOAP result item names (`PersonalInfoItem`, `EmployeeFunctionItem_V2`,
`EmployeeEmploymentItem`) and the Fault's exact wording beyond the `---> NNNN:` code.
"""

from __future__ import annotations

import hmac
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

import orjson
from aiohttp import web
from lxml import etree

from connectors.emulator_kit import (
    AUTHORIZATION,
    CONTROL,
    RateLimit,
    add_authorization_routes,
    add_control_routes,
    emulator_middleware,
    new_control,
)
from connectors.nmbrs import synthetic
from connectors.nmbrs.synthetic import Company, Person

EMULATOR_CLIENT_ID: Final = "sluis-nmbrs-emulator"
EMULATOR_CLIENT_SECRET: Final = "nmbrs-emulator-secret-" + "0123456789abcdef" * 2
EMULATOR_REFRESH_TOKEN: Final = "nmbrs-refresh-0"  # noqa: S105 - the stand-in's own
EMULATOR_SUBSCRIPTION_KEY: Final = "0123456789abcdef0123456789abcdef"
EMULATOR_USERNAME: Final = "api@voorbeeld-bv.nl"
EMULATOR_TOKEN: Final = "b" * 32
EMULATOR_DOMAIN: Final = "voorbeeld"
AUTHORIZE_PATH: Final = "/connect/authorize"
TOKEN_PATH: Final = "/connect/token"  # noqa: S105 - a path, not a secret
API: Final = "/api"
SOAP_ROOT: Final = "/soap/v3"
MAX_PAGE_SIZE: Final = 100
TOKEN_TTL: Final = 3600.0
WSDL_DIR: Final = Path(__file__).resolve().parent / "wsdl"
_SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_NS: Final = "https://api.nmbrs.nl/soap/v3/"


@dataclass
class NmbrsAccount:
    """One Nmbrs environment: its companies, the REST API's subscription key and what its
    identity server handed out (the app registration itself is `app[AUTHORIZATION]`'s),
    and the SOAP user."""

    companies: list[Company]
    #: The refresh token the identity server handed out last (the one a client keeps).
    refresh_token: str = EMULATOR_REFRESH_TOKEN
    subscription_key: str = EMULATOR_SUBSCRIPTION_KEY
    username: str = EMULATOR_USERNAME
    soap_token: str = EMULATOR_TOKEN
    domain: str = EMULATOR_DOMAIN
    token_ttl: float = TOKEN_TTL
    max_page_size: int = MAX_PAGE_SIZE
    #: access token → when it stops working (monotonic seconds).
    tokens: dict[str, float] = field(default_factory=dict)
    #: How many token answers the identity server gave (codes and refreshes alike).
    refreshes: int = 0
    monotonic: Callable[[], float] = time.monotonic
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random = field(default_factory=random.Random)

    @property
    def people(self) -> list[Person]:
        return [p for c in self.companies for p in c.people]

    # ------------------------------------------------------------------ HR admin's edits

    def _active(self, person: Person) -> bool:
        job = person.latest_employment()
        return job is not None and (job.end is None or job.end > self.clock().date())

    def _pick(self, count: int, want: Callable[[Person], bool]) -> list[Person]:
        candidates = [p for p in self.people if want(p)]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} people qualify, {count} asked")
        return self.rng.sample(candidates, count)

    def touch(self, count: int) -> list[str]:
        """`count` active people get a new function from the current period."""
        now = self.clock()
        chosen = self._pick(count, lambda p: self._active(p) and bool(p.email_work))
        for person in chosen:
            person.functions.append(synthetic.next_function(person.latest_function(), now))
        return [p.rest_id for p in chosen]

    def retire(self, count: int) -> list[str]:
        """`count` active people leave: their employment ended a week ago."""
        now = self.clock()
        chosen = self._pick(count, self._active)
        for person in chosen:
            job = person.latest_employment()
            assert job is not None
            job.end = (now - timedelta(days=7)).date()
        return [p.rest_id for p in chosen]

    def delete(self, count: int, sparing: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """`count` people (other than `sparing`, by id) are deleted from their company."""
        chosen = self._pick(count, lambda p: p.rest_id not in sparing)
        for company in self.companies:
            company.people = [p for p in company.people if p not in chosen]
        return [p.rest_id for p in chosen]

    def break_email(self, count: int) -> list[str]:
        chosen = self._pick(count, lambda p: bool(p.email_work))
        for person in chosen:
            person.email_work = None
        return [p.rest_id for p in chosen]

    def size(self) -> int:
        return len(self.people)

    # ------------------------------------------------------------------ tokens

    def issued(self, answer: dict[str, Any], now: float) -> dict[str, Any]:
        """A token answer of the identity server, with Nmbrs's lifetime and scope: its
        access token works for `token_ttl` seconds, its refresh token is the newest."""
        self.refreshes += 1
        self.tokens[answer["access_token"]] = now + self.token_ttl
        self.refresh_token = answer["refresh_token"]
        return {
            **answer,
            "expires_in": int(self.token_ttl),
            "token_type": "Bearer",
            "scope": "company.info.read employee.info.read employee.employment.read offline_access",
        }

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)


ACCOUNT: Final = web.AppKey("nmbrs_account", NmbrsAccount)
LIMITS: Final = web.AppKey("nmbrs_limits", list)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def problem(
    status: int, title: str, code: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An RFC 7807 problem details answer, as Nmbrs's API sends them."""
    body = {"type": f"https://developer.nmbrs.com/errors/{code}", "title": title,
            "status": status, "code": code, "detail": detail}  # fmt: skip
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers,
        content_type="application/problem+json",
    )  # fmt: skip


def too_many(wait: float) -> web.Response:
    return problem(
        429, "Too Many Requests", "TooManyRequests", "Rate limit is exceeded.",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )  # fmt: skip


# --------------------------------------------------------------------------- identity


@web.middleware
async def identity_server(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The kit's authorize and token endpoints, answered before the API's faults and
    limits apply (Nmbrs's identity server is another host than its API,
    `identityservice.nmbrs.com`); a token answer gets Nmbrs's lifetime and scope."""
    if request.path == AUTHORIZE_PATH or (request.path == TOKEN_PATH and request.method == "POST"):
        answer = await request.match_info.handler(request)
        if request.path != TOKEN_PATH or answer.status != 200:
            return answer
        assert isinstance(answer, web.Response)
        assert isinstance(answer.body, bytes)
        account = request.app[ACCOUNT]
        body = account.issued(orjson.loads(answer.body), account.monotonic())
        return _json(body, headers={"Cache-Control": "no-store"})
    return await handler(request)


# --------------------------------------------------------------------------- REST


@web.middleware
async def nmbrs_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Subscription key and bearer token for `/api`; the rate limit for both APIs."""
    path = request.path
    if path.startswith("/_emulator"):
        return await handler(request)
    for limit in request.app[LIMITS]:
        wait = limit.admit(request.app[ACCOUNT].monotonic())
        if wait is not None:
            return too_many(wait)
    if not path.startswith(API + "/"):
        return await handler(request)
    account = request.app[ACCOUNT]
    key = request.headers.get("X-Subscription-Key", "")
    if not hmac.compare_digest(key.encode(), account.subscription_key.encode()):
        return _json(
            {"statusCode": 401, "message": "Access denied due to invalid subscription key."}, 401
        )
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    issued = request.app[AUTHORIZATION].accepts(bearer.strip())
    until = account.tokens.get(bearer.strip(), 0.0)
    if scheme.lower() != "bearer" or not issued or until <= account.monotonic():
        return problem(401, "Unauthorized", "Unauthorized", "The access token is not valid.")
    return await handler(request)


class _BadRequest(Exception):
    pass


def _whole(request: web.Request, name: str, default: int, high: int | None) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise _BadRequest(f"The value '{text}' is not valid for {name}.")
    value = int(text)
    if high is not None and value > high:
        raise _BadRequest(f"{name} must be at most {high}.")
    return value


def paged(
    request: web.Request, rows: list[Any], build: Callable[[Any], Any] = lambda row: row
) -> web.Response:
    """One page of `rows`, each made into its answer by `build` (only the page's)."""
    account = request.app[ACCOUNT]
    try:
        number = _whole(request, "pageNumber", 1, None)
        size = _whole(request, "pageSize", account.max_page_size, account.max_page_size)
    except _BadRequest as exc:
        return problem(400, "Bad Request", "InvalidParameter", str(exc))
    start = (number - 1) * size
    body = {
        "data": [build(row) for row in rows[start : start + size]],
        "pagination": {
            "pageNumber": number,
            "pageSize": size,
            "totalPages": math.ceil(len(rows) / size),
            "totalRecords": len(rows),
        },
    }
    return _json(body)


def _company(request: web.Request) -> Company | None:
    wanted = request.match_info["company_id"]
    return next((c for c in request.app[ACCOUNT].companies if c.rest_id == wanted), None)


def _period(year: int, period: int) -> dict[str, int]:
    return {"year": year, "period": period}


def rest_employee(p: Person) -> dict[str, Any]:
    return {
        "employeeId": p.rest_id,
        "employeeBasicInfo": {
            "employeeNumber": p.number, "firstName": p.first_name, "prefix": p.prefix or None,
            "initials": p.initials, "lastName": p.last_name, "employeeType": "payroll",
        },
    }  # fmt: skip


def rest_functions(p: Person) -> dict[str, Any]:
    return {
        "employeeId": p.rest_id,
        "functions": [
            {"functionId": f"{f.record_id:08d}-0000-4000-8000-000000000000", "code": f.code,
             "description": f.description, "createdAt": synthetic.spell_time(f.created_at),
             "period": _period(f.year, f.period)}
            for f in p.functions
        ],
    }  # fmt: skip


def rest_employments(p: Person) -> dict[str, Any]:
    return {
        "employeeId": p.rest_id,
        "employments": [
            {"employmentId": f"{e.employment_id:08d}-0000-4000-8000-000000000001",
             "startDate": f"{e.start.isoformat()}T00:00:00",
             "endDate": f"{e.end.isoformat()}T00:00:00" if e.end else None,
             "seniorityDate": f"{e.start.isoformat()}T00:00:00",
             "changedDate": synthetic.spell_time(e.created_at),
             "createdAt": synthetic.spell_time(e.created_at)}
            for e in p.employments
        ],
    }  # fmt: skip


def rest_personal_info(p: Person) -> dict[str, Any]:
    rows = []
    for year, period in p.info_periods:
        rows.append({
            "personalInfoId": f"{p.soap_id:08d}-{year:04d}-4{period:03d}-8000-000000000002",
            "basicInfo": {"employeeNumber": p.number, "firstName": p.first_name,
                          "initials": p.initials, "prefix": p.prefix or None,
                          "lastName": p.last_name, "nickName": p.nickname},
            "birthInfo": {"birthDate": f"{p.birthday}T00:00:00",
                          "birthCountryCodeISO": "NL", "nationalityCodeISO": "NL",
                          "placeOfBirth": p.place_of_birth, "deceasedOn": None,
                          "gender": p.gender},
            "contactInfo": {"privateEmail": p.email_private, "businessEmail": p.email_work,
                            "businessPhone": p.phone_work, "businessMobilePhone": None,
                            "privatePhone": p.phone_private, "privateMobilePhone": p.mobile_private,
                            "otherPhone": None},
            "partnerInfo": {"partnerPrefix": None, "partnerName": p.partner_last_name,
                            "ascriptionCode": 0},
            "bsn": p.bsn,
            "maritalStatus": p.marital_status,
            "inCaseOfEmergency": p.emergency_contact,
            "createdAt": synthetic.spell_time(p.created_at),
            "period": _period(year, period),
        })  # fmt: skip
    return {"employeeId": p.rest_id, "info": rows}


_COLLECTIONS: Final[dict[str, Callable[[Person], dict[str, Any]]]] = {
    "functions": rest_functions,
    "employments": rest_employments,
    "personalinfo": rest_personal_info,
}


async def list_companies(request: web.Request) -> web.Response:
    rows = [
        {"companyId": c.rest_id, "number": c.number, "name": c.name, "debtorId": None}
        for c in request.app[ACCOUNT].companies
    ]
    return paged(request, rows)


async def list_employees(request: web.Request) -> web.Response:
    company = _company(request)
    if company is None:
        return problem(404, "Not Found", "CompanyNotFound", "Company not found.")
    wanted = request.query.get("employeeId")
    people = [p for p in company.people if wanted is None or p.rest_id == wanted]
    return paged(request, people, rest_employee)


async def list_collection(request: web.Request) -> web.Response:
    company = _company(request)
    if company is None:
        return problem(404, "Not Found", "CompanyNotFound", "Company not found.")
    build = _COLLECTIONS.get(request.match_info["resource"])
    if build is None:
        return problem(404, "Not Found", "ResourceNotFound", "Resource not found.")
    return paged(request, company.people, build)


# --------------------------------------------------------------------------- SOAP


def _fault(code: int, text: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{_SOAP_ENV}">'
        "<soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>"
        "System.Web.Services.Protocols.SoapException: Server was unable to process request."
        f" ---&gt; {code}: {escape(text)}</faultstring><detail /></soap:Fault></soap:Body>"
        "</soap:Envelope>"
    )
    return web.Response(text=body, status=500, content_type="text/xml", charset="utf-8")


def _envelope(service: str, operation: str, items: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{_SOAP_ENV}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>'
        f'<{operation}Response xmlns="{_NS}{service}"><{operation}Result>{items}'
        f"</{operation}Result></{operation}Response></soap:Body></soap:Envelope>"
    )
    return web.Response(text=body, content_type="text/xml", charset="utf-8")


def _x(name: str, value: Any) -> str:
    if value is None:
        return f'<{name} xsi:nil="true" />'
    return f"<{name}>{escape(str(value))}</{name}>"


def _when(day: date | datetime | str | None) -> str | None:
    if day is None:
        return None
    if isinstance(day, str):
        return f"{day}T00:00:00"
    if isinstance(day, datetime):
        return day.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{day.isoformat()}T00:00:00"


def soap_personal_info(p: Person) -> str:
    infos = "".join(
        "<PersonalInfo_V2>"
        + "".join(
            _x(n, v)
            for n, v in (
                ("Id", p.soap_id * 100 + i),
                ("EmployeeNumber", p.number),
                ("BSN", p.bsn),
                ("Title", None),
                ("FirstName", p.first_name),
                ("Initials", p.initials),
                ("Prefix", p.prefix or None),
                ("LastName", p.last_name),
                ("Nickname", p.nickname),
                ("Gender", p.gender),
                ("NationalityCode", p.nationality_code),
                ("PlaceOfBirth", p.place_of_birth),
                ("CountryOfBirthISOCode", "NL"),
                ("IdentificationNumber", None),
                ("IdentificationType", 0),
                ("PartnerPrefix", None),
                ("PartnerLastName", p.partner_last_name),
                ("TelephonePrivate", p.phone_private),
                ("TelephoneWork", p.phone_work),
                ("TelephoneMobilePrivate", p.mobile_private),
                ("TelephoneMobileWork", None),
                ("TelephoneOther", None),
                ("EmailPrivate", p.email_private),
                ("EmailWork", p.email_work),
                ("BurgerlijkeStaat", p.marital_status),
                ("Naamstelling", "E"),
                ("Birthday", _when(p.birthday)),
                ("DeceasedDate", None),
                ("InCaseOfEmergency", p.emergency_contact),
                ("InCaseOfEmergencyPhone", None),
                ("InCaseOfEmergencyRelation", None),
                ("TitleAfter", None),
                ("CreationDate", _when(p.created_at)),
                ("StartPeriod", period),
                ("StartYear", year),
            )
        )
        + "</PersonalInfo_V2>"
        for i, (year, period) in enumerate(p.info_periods)
    )
    return (
        f"<PersonalInfoItem><EmployeeId>{p.soap_id}</EmployeeId>"
        f"<EmployeePersonalInfos>{infos}</EmployeePersonalInfos></PersonalInfoItem>"
    )


def soap_functions(p: Person) -> str:
    rows = "".join(
        f"<EmployeeFunction><RecordId>{f.record_id}</RecordId><Function><Id>{f.code + 900}</Id>"
        f"<Code>{f.code}</Code>{_x('Description', f.description)}</Function>"
        f"<CreationDate>{_when(f.created_at)}</CreationDate><StartPeriod>{f.period}"
        f"</StartPeriod><StartYear>{f.year}</StartYear></EmployeeFunction>"
        for f in p.functions
    )
    return (
        f"<EmployeeFunctionItem_V2><EmployeeId>{p.soap_id}</EmployeeId>"
        f"<EmployeeFunctions>{rows}</EmployeeFunctions></EmployeeFunctionItem_V2>"
    )


def soap_employments(p: Person) -> str:
    rows = "".join(
        f"<Employment><EmploymentId>{e.employment_id}</EmploymentId>"
        f"<CreationDate>{_when(e.created_at)}</CreationDate>"
        f"<StartDate>{_when(e.start)}</StartDate>{_x('EndDate', _when(e.end))}"
        f"<InitialStartDate>{_when(e.start)}</InitialStartDate></Employment>"
        for e in p.employments
    )
    return (
        f"<EmployeeEmploymentItem><EmployeeId>{p.soap_id}</EmployeeId>"
        f"<EmployeeEmployments>{rows}</EmployeeEmployments></EmployeeEmploymentItem>"
    )


_SOAP_OPERATIONS: Final[dict[str, Callable[[Person], str]]] = {
    "PersonalInfo_GetAll_AllEmployeesByCompany": soap_personal_info,
    "Function_GetAll_AllEmployeesByCompany_V2": soap_functions,
    "Employment_GetAll_AllEmployeesByCompany": soap_employments,
}
_ACTION: Final = re.compile(r'^"?https://api\.nmbrs\.nl/soap/v3/(\w+)/(\w+)"?$')


async def wsdl(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    path = WSDL_DIR / f"{service}.wsdl"
    if service not in ("CompanyService", "EmployeeService") or "wsdl" not in {
        k.lower() for k in request.query
    }:
        raise web.HTTPNotFound()
    here = str(request.url.with_query(None))
    text = path.read_text().replace(f"https://api.nmbrs.nl/soap/v3/{service}.asmx", here)
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


async def soap(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    service = request.match_info["service"]
    action = _ACTION.match(request.headers.get("SOAPAction", ""))
    if action is None or action.group(1) != service:
        return _fault(9999, "Unknown SOAPAction")
    operation = action.group(2)
    try:
        doc = etree.fromstring(
            await request.read(), etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError:
        return web.Response(text="Bad Request", status=400)
    ns = {"s": _SOAP_ENV, "n": f"{_NS}{service}"}
    header = doc.find("s:Header/n:AuthHeaderWithDomain", ns)
    given = {
        name: (header.findtext(f"n:{name}", "", ns) if header is not None else "")
        for name in ("Username", "Token", "Domain")
    }
    if not (
        hmac.compare_digest(given["Username"].encode(), account.username.encode())
        and hmac.compare_digest(given["Token"].encode(), account.soap_token.encode())
        and given["Domain"] == account.domain
    ):
        return _fault(1001, f"Authentication failed for {given['Username']}")
    if service == "CompanyService" and operation == "List_GetAll":
        items = "".join(
            f"<Company><ID>{c.soap_id}</ID><Number>{c.number}</Number>{_x('Name', c.name)}"
            "<PhoneNumber>+31 20 5550000</PhoneNumber><KvkNr>12345678</KvkNr></Company>"
            for c in account.companies
        )
        return _envelope(service, operation, items)
    build = _SOAP_OPERATIONS.get(operation)
    if service != "EmployeeService" or build is None:
        return _fault(9999, "Unknown operation")
    wanted = doc.findtext(f"s:Body/n:{operation}/n:CompanyID", "", ns)
    company = next((c for c in account.companies if str(c.soap_id) == wanted.strip()), None)
    if company is None:
        return _fault(2004, f"Unauthorized access to company {wanted}")
    return _envelope(service, operation, "".join(build(p) for p in company.people))


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    companies: int = 1,
    leaver_share: float = 0.05,
    token_ttl: float = TOKEN_TTL,
    max_page_size: int = MAX_PAGE_SIZE,
    per_minute: int | None = None,
) -> web.Application:
    """An Nmbrs environment with `people` synthetic employees over `companies` companies.

    `per_minute` limits both APIs (None: no limit; Nmbrs publishes none); `token_ttl` sets
    how long an access token works; `max_page_size` the REST API's page-size cap.
    """
    app = web.Application(middlewares=[identity_server, emulator_middleware, nmbrs_middleware])
    control = new_control(too_many)
    app[CONTROL] = control
    app[ACCOUNT] = control.people = NmbrsAccount(
        companies=list(
            synthetic.companies(people, seed=seed, companies=companies, leaver_share=leaver_share)
        ),
        token_ttl=token_ttl,
        max_page_size=max_page_size,
        rng=random.Random(seed + 1),
    )
    app[LIMITS] = [RateLimit(per_minute, 60.0)] if per_minute else []
    server = add_authorization_routes(
        app, EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, authorize_path=AUTHORIZE_PATH,
        token_path=TOKEN_PATH, rotate=True,
    )  # fmt: skip
    server.refresh_tokens.add(EMULATOR_REFRESH_TOKEN)  # issued before the emulator started
    r = app.router
    r.add_get(f"{API}/companies", list_companies)
    r.add_get(API + "/companies/{company_id}/employees", list_employees)
    r.add_get(API + "/companies/{company_id}/employees/{resource}", list_collection)
    r.add_get(SOAP_ROOT + "/{service}.asmx", wsdl)
    r.add_post(SOAP_ROOT + "/{service}.asmx", soap)
    control.vendor = "nmbrs"
    add_control_routes(app)
    return app
