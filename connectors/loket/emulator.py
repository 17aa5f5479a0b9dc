"""A local Loket.nl: its OAuth token endpoint and the v2 API's employer, employee,
employment and organisational-entity lists, served as Loket serves them.

Faithful where a client goes wrong in production (research notes, `connector_apis.md`
section 7f; the OpenAPI-derived operation list of Loket's v2 API; integrations that run
against Loket, such as Tools4ever's HelloID source connector):

* `GET /authorize` (Loket: `https://oauth.loket.nl/authorize`) and `POST /token`
  (`https://oauth.loket.nl/token`): the emulator kit's authorization server
  (`add_authorization_routes`) for the app `EMULATOR_CLIENT_ID`. The consent screen
  consents at once (or refuses, with `deny`) and sends the browser back with a one-time
  code; the token endpoint exchanges it (PKCE S256, the same redirect URI) and takes the
  refresh-token grant with `client_id` and `client_secret` in the form body, answering
  `access_token`, `token_type`, `expires_in` (3599 seconds: Loket's access tokens live an
  hour less a second) and a `refresh_token`. With `rotate` (the default) every refresh
  token works once: the answer carries the next one, and the used one is refused as
  `invalid_grant` afterwards. A wrong client is `invalid_client` (401), a wrong or used
  refresh token or code `invalid_grant` (400), as RFC 6749 says. `EMULATOR_REFRESH_TOKEN`
  works from the start, as if an admin had connected the app already (the demo, the
  contract suite and `sluis emulator` use it).
* Everything under `/v2` needs `Authorization: Bearer <access token>` the token endpoint
  issued; none, an unknown or an expired one is a 401.
* Lists page by `pageNumber` (from 1) and `pageSize` (default 10, at most 1000) inside the
  envelope `{"_embedded": [...], "currentPage", "pageSize", "totalItems", "totalPages"}`;
  a page past the last is an empty `_embedded`. Items come in a stable order (by id for
  employers, by employee number for employees and employments).
* `GET /v2/providers/employers` lists the employers the user may see;
  `/v2/providers/employers/{employerId}/employees` the employees of one (personal details,
  contact information with the private `emailAddress` next to `businessEmailAddress`,
  address, identity document: no BSN); `/employees/employments` their employments (with
  the employee's id and `endDate`); `/actualorganizationalentities` the current function
  and department of every employment. An employer the user may not see is a 403, an
  unknown one a 404.
* The BSN (`/v2/providers/employers/employees/{employeeId}/citizenservicenumber`), the
  SEPA payment information (IBAN) and the wages of an employment have endpoints of their
  own, as in Loket, where the BSN is separately authorised. The connector never asks for
  them; the tests check that it does not.
* No filter on a modification time: a list is always the whole population.

Invented where Loket publishes nothing (and marked so in the tests): the rate limit (by
default 100 requests per 10 seconds, a fixed window, answered 429 with `Retry-After`),
the error body (`{"messages": [{"code", "type", "description"}]}`), the 401 for a bad
token, the page-size cap, the `employment.id` link on an organisational entity, whether
refresh tokens rotate, and PKCE at the authorize endpoint (the kit's server requires it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import orjson
from aiohttp import web

from connectors.emulator_kit import (
    AUTHORIZATION,
    CONTROL,
    RateLimit,
    add_authorization_routes,
    add_control_routes,
    emulator_middleware,
    new_control,
)
from connectors.loket import synthetic
from connectors.loket.synthetic import Employer, Person

EMULATOR_CLIENT_ID: Final = "0b7a7c4e-5c7e-4d0b-9a57-10ce7e5e0001"
EMULATOR_CLIENT_SECRET: Final = "loket-emulator-secret-" + "0123456789abcdef" * 2
EMULATOR_REFRESH_TOKEN: Final = "loket-emulator-refresh-" + "fedcba9876543210" * 2
AUTHORIZE_PATH: Final = "/authorize"
TOKEN_PATH: Final = "/token"  # noqa: S105 - a path, not a secret
API: Final = "/v2"
EMPLOYERS_PATH: Final = API + "/providers/employers"
TOKEN_TTL: Final = 3599
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 1000


@dataclass
class LoketAccount:
    """One Loket user as an app sees it: its employers and their people (the app's OAuth
    grant is the kit's authorization server, `app[AUTHORIZATION]`)."""

    employers: list[Employer]
    people: list[Person]
    #: Employers this user may not read (their lists answer 403).
    forbidden: frozenset[str] = frozenset()
    today: Callable[[], date] = date.today
    rng: random.Random = field(default_factory=random.Random)

    #: Per employer: its people, and each of their employments with its person (built on
    #: first use; `remove` starts them again).
    _staff: dict[str, list[Person]] = field(default_factory=dict)
    _jobs: dict[str, list[tuple[Person, synthetic.Employment]]] = field(default_factory=dict)

    def staff(self, employer: Employer) -> list[Person]:
        found = self._staff.get(employer.id)
        if found is None:
            found = self._staff[employer.id] = [
                p for p in self.people if p.employer_id == employer.id
            ]
        return found

    def jobs(self, employer: Employer) -> list[tuple[Person, synthetic.Employment]]:
        found = self._jobs.get(employer.id)
        if found is None:
            found = self._jobs[employer.id] = [
                (p, e) for p in self.staff(employer) for e in p.employments
            ]
        return found

    # ------------------------------------------------------------------ HR admin's edits

    def _active(self, p: Person) -> bool:
        end = p.current().end
        return end is None or end >= self.today()

    def _pick(self, count: int, want: Callable[[Person], bool]) -> list[Person]:
        candidates = [p for p in self.people if want(p)]
        if count > len(candidates):
            raise ValueError(f"only {len(candidates)} people qualify, {count} asked")
        return self.rng.sample(candidates, count)

    def touch(self, count: int) -> list[str]:
        """Give `count` active people another function now; returns their ids."""
        chosen = self._pick(count, self._active)
        for p in chosen:
            job = p.current()
            job.function = synthetic.next_function(job.function)
            job.deviating_function = None
        return [p.id for p in chosen]

    def retire(self, count: int) -> list[str]:
        """`count` active people leave: their latest employment ended a week ago."""
        chosen = self._pick(count, self._active)
        for p in chosen:
            p.current().end = self.today() - timedelta(days=7)
        return [p.id for p in chosen]

    def break_email(self, count: int) -> list[str]:
        """Clear the business email of `count` people (an admin emptied the field)."""
        chosen = self._pick(count, lambda p: bool(p.values["businessEmailAddress"]))
        for p in chosen:
            p.values["businessEmailAddress"] = None
        return [p.id for p in chosen]

    def remove(self, count: int) -> list[str]:
        """Delete `count` employees outright (a wrongly entered person)."""
        chosen = self._pick(count, lambda p: True)
        gone = {p.id for p in chosen}
        self.people = [p for p in self.people if p.id not in gone]
        self._staff.clear()
        self._jobs.clear()
        return sorted(gone)

    def size(self) -> int:
        return len(self.people)


ACCOUNT: Final = web.AppKey("loket_account", LoketAccount)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, description: str, code: int, headers: dict[str, str] | None = None
) -> web.Response:
    """The emulator's Loket error body (its shape is not published: see the docstring)."""
    body = {"messages": [{"code": code, "type": "Error", "description": description}]}
    return _json(body, status, headers)


def too_many(wait: float) -> web.Response:
    return error_response(
        429, "Too many requests", 429, {"Retry-After": str(max(1, math.ceil(wait)))}
    )


@web.middleware
async def loket_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer auth for everything under /v2: an access token the token endpoint issued."""
    if not request.path.startswith(API + "/"):
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not request.app[AUTHORIZATION].accepts(given):
        return error_response(401, "The access token is missing, invalid or expired", 401)
    return await handler(request)


# --------------------------------------------------------------------------- lists


class _BadRequest(Exception):
    pass


def _whole(query: Any, name: str, default: int, high: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit():
        raise _BadRequest(f"{name} must be a positive whole number")
    value = int(text)
    if not 1 <= value <= high:
        raise _BadRequest(f"{name} must be from 1 to {high}")
    return value


def paged(request: web.Request, items: Sequence[Any], view: Callable[[Any], Any]) -> web.Response:
    try:
        number = _whole(request.query, "pageNumber", 1, 10**9)
        size = _whole(request.query, "pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    except _BadRequest as exc:
        return error_response(400, str(exc), 400)
    total = len(items)
    start = (number - 1) * size
    return _json(
        {
            "_embedded": [view(i) for i in items[start : start + size]],
            "currentPage": number,
            "pageSize": size,
            "totalItems": total,
            "totalPages": math.ceil(total / size),
        }
    )


def _employer(request: web.Request) -> tuple[LoketAccount, Employer] | web.Response:
    account = request.app[ACCOUNT]
    wanted = request.match_info["employer_id"]
    found = next((e for e in account.employers if e.id == wanted), None)
    if found is None:
        return error_response(404, "Employer not found", 404)
    if found.id in account.forbidden:
        return error_response(403, "Not authorized for this employer", 403)
    return account, found


async def list_employers(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    visible = sorted(
        (e for e in account.employers if e.id not in account.forbidden), key=lambda e: e.id
    )
    return paged(
        request,
        visible,
        lambda e: {"id": e.id, "companyName": e.name, "employerNumber": e.number},
    )


async def list_employees(request: web.Request) -> web.Response:
    found = _employer(request)
    if isinstance(found, web.Response):
        return found
    account, employer = found
    return paged(request, account.staff(employer), synthetic.employee_view)


async def list_employments(request: web.Request) -> web.Response:
    found = _employer(request)
    if isinstance(found, web.Response):
        return found
    account, employer = found
    return paged(request, account.jobs(employer), lambda pair: synthetic.employment_view(*pair))


async def list_entities(request: web.Request) -> web.Response:
    found = _employer(request)
    if isinstance(found, web.Response):
        return found
    account, employer = found
    return paged(request, account.jobs(employer), lambda pair: synthetic.entity_view(pair[1]))


async def citizen_service_number(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    wanted = request.match_info["employee_id"]
    found = next((p for p in account.people if p.id == wanted), None)
    if found is None:
        return error_response(404, "Employee not found", 404)
    return _json({"content": {"citizenServiceNumber": found.bsn}})


def _employment(request: web.Request) -> synthetic.Employment | None:
    wanted = request.match_info["employment_id"]
    for p in request.app[ACCOUNT].people:
        for e in p.employments:
            if e.id == wanted:
                return e
    return None


async def payment_information(request: web.Request) -> web.Response:
    job = _employment(request)
    if job is None:
        return error_response(404, "Employment not found", 404)
    item = {
        "id": job.payment_id,
        "iban": job.iban,
        "bic": None,
        "startDate": synthetic.spell(job.start),
    }
    return paged(request, [item], lambda i: i)


async def wages(request: web.Request) -> web.Response:
    job = _employment(request)
    if job is None:
        return error_response(404, "Employment not found", 404)
    item = {"id": job.wage_id, "grossWage": job.salary, "startDate": synthetic.spell(job.start)}
    return paged(request, [item], lambda i: i)


def make_app(
    *,
    people: int = 1000,
    seed: int = 2026,
    employers: int = 1,
    client_id: str = EMULATOR_CLIENT_ID,
    client_secret: str = EMULATOR_CLIENT_SECRET,
    refresh_token: str = EMULATOR_REFRESH_TOKEN,
    rotate: bool = True,
    token_ttl: int = TOKEN_TTL,
    leaver_share: float = 0.05,
    rate_limit: tuple[int, float] | None = (100, 10.0),
    forbidden_employers: int = 0,
) -> web.Application:
    """A Loket user with `people` synthetic employees spread over `employers` employers.

    `rotate`: each refresh token works once (the answer carries the next); `token_ttl`:
    how long an access token works, in seconds; `refresh_token` works from the start (an
    admin's connect, done already). `rate_limit`:
    (requests, seconds) in a fixed window, or None. `forbidden_employers`: how many of the
    employers (the last ones) the user may not read, although it sees them exist.
    """
    rng = random.Random(seed)
    employer_list = synthetic.employers(employers, rng)
    app = web.Application(middlewares=[emulator_middleware, loket_middleware])
    control = new_control(too_many)
    if rate_limit is not None:
        control.rate_limit = RateLimit(requests=rate_limit[0], window=rate_limit[1])
    app[CONTROL] = control
    forbidden = frozenset(e.id for e in employer_list[len(employer_list) - forbidden_employers :])
    app[ACCOUNT] = control.people = LoketAccount(
        employers=employer_list,
        people=list(synthetic.people(people, employer_list, seed=seed, leaver_share=leaver_share)),
        forbidden=forbidden,
        rng=random.Random(seed + 1),
    )
    server = add_authorization_routes(
        app, client_id, client_secret, authorize_path=AUTHORIZE_PATH, token_path=TOKEN_PATH,
        rotate=rotate, expires_in=token_ttl,
    )  # fmt: skip
    server.refresh_tokens.add(refresh_token)
    r = app.router
    r.add_get(EMPLOYERS_PATH, list_employers)
    r.add_get(EMPLOYERS_PATH + "/{employer_id}/employees", list_employees)
    r.add_get(EMPLOYERS_PATH + "/{employer_id}/employees/employments", list_employments)
    r.add_get(EMPLOYERS_PATH + "/{employer_id}/actualorganizationalentities", list_entities)
    r.add_get(
        EMPLOYERS_PATH + "/employees/{employee_id}/citizenservicenumber", citizen_service_number
    )
    r.add_get(
        EMPLOYERS_PATH + "/employees/employments/{employment_id}/paymentinformationsepa",
        payment_information,
    )
    r.add_get(EMPLOYERS_PATH + "/employees/employments/{employment_id}/wages", wages)
    control.vendor = "loket"
    add_control_routes(app)
    return app
