"""Synthetic Nmbrs employees, for the emulator, the demo and the tests.

One person is kept once and served by the emulator in both of Nmbrs's shapes: the REST
API's (uuid ids, `employeeBasicInfo`, history collections of functions, employments and
personal info by period) and the SOAP API's (integer ids, `PersonalInfo_V2`,
`EmployeeFunction`, `Employment`). Next to the few fields the platform may receive sit the
ones a payroll system holds and that must never pass: BSN (passing the eleven-test), IBAN
(valid check digits), birth date and place, gender, nationality, marital status, private
email and phones, home address, emergency contact, salary. Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from connectors.afas.synthetic import bsn, iban

FIRST_NAMES: Final = (
    "Eva", "Daan", "Sanne", "Bram", "Fleur", "Thijs", "Noor", "Ruben", "Lotte", "Sem",
    "Ayşe", "Mohammed", "Zoë", "Jörg", "Siobhán", "Priya", "Łukasz", "Ines", "Julia", "Mees",
)  # fmt: skip
LAST_NAMES: Final = (
    ("van", "Dijk"), ("", "Jansen"), ("de", "Vries"), ("van den", "Berg"), ("", "Bakker"),
    ("", "Visser"), ("", "Smit"), ("de", "Jong"), ("", "El Amrani"), ("", "Yılmaz"),
    ("van der", "Meer"), ("", "Nguyễn"), ("", "Kowalski"), ("'t", "Hart"), ("", "Mulder"),
)  # fmt: skip
FUNCTIONS: Final = (
    (11, "Financieel medewerker"), (12, "Salarisadministrateur"), (13, "HR-adviseur"),
    (14, "Software engineer"), (15, "Teamleider klantenservice"), (16, "Accountmanager"),
    (17, "Office manager"), (18, "Controller"), (19, "Magazijnmedewerker"), (20, "Planner"),
)  # fmt: skip
STREETS: Final = ("Prinsengracht", "Oudegracht", "Coolsingel", "Vismarkt", "Grote Markt")
CITIES: Final = ("Amsterdam", "Utrecht", "Rotterdam", "Groningen", "Zwolle")
#: Fields of a person that must never leave the gateway, for leak scans.
SENSITIVE_FIELDS: Final = (
    "bsn", "iban", "birthday", "place_of_birth", "email_private", "phone_private",
    "mobile_private", "address", "emergency_contact", "salary", "partner_last_name",
)  # fmt: skip

_START: Final = date(2015, 1, 1)
_END: Final = date(2026, 6, 30)


@dataclass
class Function:
    code: int
    description: str
    year: int
    period: int
    created_at: datetime
    record_id: int


@dataclass
class Employment:
    start: date
    end: date | None
    created_at: datetime
    employment_id: int


@dataclass
class Person:
    """One Nmbrs employee, with the history Nmbrs keeps by period."""

    number: int
    soap_id: int
    rest_id: str
    first_name: str | None
    initials: str
    prefix: str
    last_name: str
    nickname: str
    gender: str
    email_work: str | None
    email_private: str
    phone_work: str
    phone_private: str
    mobile_private: str
    bsn: str
    iban: str
    birthday: str
    place_of_birth: str
    nationality_code: int
    marital_status: str
    partner_last_name: str
    address: str
    emergency_contact: str
    salary: str
    created_at: datetime
    functions: list[Function] = field(default_factory=list)
    employments: list[Employment] = field(default_factory=list)
    #: Personal-info changes by period: (year, period) of each, newest last.
    info_periods: list[tuple[int, int]] = field(default_factory=list)

    def latest_function(self) -> Function | None:
        if not self.functions:
            return None
        return max(self.functions, key=lambda f: (f.year, f.period, f.created_at))

    def latest_employment(self) -> Employment | None:
        if not self.employments:
            return None
        return max(self.employments, key=lambda e: e.start)

    def sensitive_values(self) -> list[str]:
        return [str(getattr(self, name)) for name in SENSITIVE_FIELDS]


def _stamp(rng: random.Random, start: date, end: date) -> datetime:
    days = max((end - start).days, 1)
    moment = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return moment + timedelta(days=rng.randrange(days), seconds=rng.randrange(86_400))


def person(number: int, rng: random.Random, *, left_on: date | None = None) -> Person:
    """One employee; `left_on` ends their employment then."""
    first = rng.choice(FIRST_NAMES)
    prefix, last = rng.choice(LAST_NAMES)
    local = f"{first}.{prefix}{last}".lower().replace(" ", "").replace("'", "")
    hired = _stamp(rng, _START, _END - timedelta(days=90))
    code, description = rng.choice(FUNCTIONS)
    city = rng.choice(CITIES)
    found = Person(
        number=number + 1,
        soap_id=100_000 + number * 3,
        rest_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        first_name=first if rng.random() > 0.03 else None,
        initials=f"{first[0]}.",
        prefix=prefix,
        last_name=last,
        nickname=first,
        gender=rng.choice(("male", "female", "unknown")),
        email_work=f"{local}.{number}@voorbeeld-bv.nl",
        email_private=f"{local}{number}@prive-mail.nl",
        phone_work=f"+31 20 {rng.randrange(10**6, 10**7)}",
        phone_private=f"+31 30 {rng.randrange(10**6, 10**7)}",
        mobile_private=f"+31 6 {rng.randrange(10**7, 10**8)}",
        bsn=bsn(rng),
        iban=iban(rng),
        birthday=(
            f"{rng.randrange(1960, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        ),
        place_of_birth=rng.choice(("Haarlem", "Leiden", "Paramaribo", "Ankara", "Gdańsk")),
        nationality_code=rng.choice((1, 1, 1, 52, 224)),
        marital_status=rng.choice(("Ongehuwd", "Gehuwd", "Geregistreerd partnerschap")),
        partner_last_name=rng.choice(("Hendriks", "Peters", "Koç", "Wiśniewska")),
        address=f"{rng.choice(STREETS)} {rng.randrange(1, 400)}, "
        f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'KX', 'RT'))} {city}",
        emergency_contact=f"Partner, +31 6 {rng.randrange(10**7, 10**8)}",
        salary=f"{rng.randrange(2400, 9000)}.{rng.randrange(100):02d}",
        created_at=hired,
    )
    found.functions.append(
        Function(code, description, hired.year, hired.month, hired, found.soap_id * 10)
    )
    if rng.random() < 0.4:
        # A promotion some periods later: the job title is the latest by period.
        later = _stamp(rng, hired.date() + timedelta(days=40), _END)
        code2, description2 = rng.choice(FUNCTIONS)
        found.functions.append(
            Function(code2, description2, later.year, later.month, later, found.soap_id * 10 + 1)
        )
    found.employments.append(Employment(hired.date(), left_on, hired, found.soap_id * 10))
    found.info_periods.append((hired.year, hired.month))
    return found


@dataclass
class Company:
    soap_id: int
    rest_id: str
    number: int
    name: str
    people: list[Person] = field(default_factory=list)


def companies(
    people: int, *, seed: int = 2026, companies: int = 1, leaver_share: float = 0.05
) -> Iterator[Company]:
    """`people` employees spread over `companies` companies (a debtor's administrations);
    about `leaver_share` of them left on 30 June 2026."""
    rng = random.Random(seed)
    count = max(1, companies)
    made = [
        Company(
            soap_id=5000 + n,
            rest_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            number=n + 1,
            name=f"Voorbeeld BV {n + 1}",
        )
        for n in range(count)
    ]
    for number in range(people):
        left = date(2026, 6, 30) if rng.random() < leaver_share else None
        made[number * count // max(people, 1)].people.append(person(number, rng, left_on=left))
    yield from made


def next_function(current: Function | None, now: datetime) -> Function:
    """A new function from the current period on, different from `current`."""
    index = next((i for i, f in enumerate(FUNCTIONS) if current and f[0] == current.code), -1)
    code, description = FUNCTIONS[(index + 1) % len(FUNCTIONS)]
    record = (current.record_id + 1) if current else 1
    return Function(code, description, now.year, now.month, now, record)


def spell_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def spell_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]
