"""Synthetic Loket.nl employees, for the demo, the emulator and the tests.

A person is an employee of one employer with one or more employments (dienstverbanden);
each employment has its actual organisational entity (function, department). The emulator
serves them in Loket's v2 shapes: the employee resource (personal details, contact
information, address, identity document), the employment, the organisational entity, and
on their own endpoints the BSN (separately authorised in Loket), the SEPA payment
information (IBAN) and the wage.

Next to the four things the platform may receive (name, business email, job title, end
date) every person carries what a payroll system holds and must never pass: BSN, IBAN,
salary, birth date and place, home address, private email and phones, passport number,
nationality, civil status. The BSNs pass the eleven-test and the IBANs carry valid check
digits, so a leak is recognisable by pattern as well as by value. Deterministic per seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

from connectors.afas.synthetic import bsn, iban

FIRST_NAMES: Final = (
    "Sanne", "Daan", "Fleur", "Bram", "Noor", "Sem", "Lotte", "Milan", "Anouk", "Thijs",
    "Ayşe", "Mohammed", "Zoë", "Jürgen", "Siobhán", "Priya", "Łukasz", "Femke", "Joris", "Inés",
)  # fmt: skip
#: (prefix, last name): Dutch names keep their prefix ("van der") apart.
LAST_NAMES: Final = (
    ("van der", "Berg"), ("de", "Vries"), ("", "Jansen"), ("van", "Dijk"), ("", "Bakker"),
    ("de", "Graaf"), ("", "Yılmaz"), ("", "El Idrissi"), ("van den", "Heuvel"), ("", "Visser"),
    ("", "Nguyễn"), ("ter", "Horst"), ("", "O'Brien"), ("", "Kowalski"), ("", "Smit"),
)  # fmt: skip
FUNCTIONS: Final = (
    "Salarisadministrateur", "Accountmanager", "Medewerker klantenservice", "Teamleider",
    "Software-ontwikkelaar", "Magazijnmedewerker", "HR-adviseur", "Controller",
    "Office manager", "Verpleegkundige",
)  # fmt: skip
DEPARTMENTS: Final = ((10, "FIN", "Financiën"), (20, "OPS", "Operations"), (30, "HR", "P&O"))
STREETS: Final = ("Oudegracht", "Prinsengracht", "Stationsweg", "Kerkstraat", "Dorpsstraat")
CITIES: Final = ("Utrecht", "Amsterdam", "Zwolle", "Groningen", "Eindhoven")
EMPLOYER_NAMES: Final = ("Bakkerij De Korenschoof B.V.", "Zorggroep Noord", "TechWerk B.V.")
#: The day the synthetic history ends; leavers left on it.
HISTORY_END: Final = date(2026, 6, 30)


def spell(day: date | None) -> str | None:
    """How Loket writes a date: ISO `YYYY-MM-DD`."""
    return day.isoformat() if day is not None else None


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Employment:
    """One dienstverband and its actual organisational entity."""

    id: str
    start: date
    end: date | None
    function: str
    department: tuple[int, str, str]
    entity_id: str
    #: Loket's "afwijkende functieomschrijving": overrides the function's description.
    deviating_function: str | None = None
    salary: float = 0.0
    iban: str = ""
    payment_id: str = ""
    wage_id: str = ""


@dataclass
class Person:
    id: str
    employer_id: str
    number: int
    values: dict[str, Any]
    employments: list[Employment] = field(default_factory=list)
    bsn: str = ""

    def current(self) -> Employment:
        """The latest employment (the one a touch or a retirement changes)."""
        return max(self.employments, key=lambda e: e.start)


@dataclass(frozen=True)
class Employer:
    id: str
    number: int
    name: str


def employers(count: int, rng: random.Random) -> list[Employer]:
    return [
        Employer(_uuid(rng), 1000 + i, EMPLOYER_NAMES[i % len(EMPLOYER_NAMES)] + f" ({i + 1})")
        for i in range(count)
    ]


def _phone(rng: random.Random, mobile: bool) -> str:
    return f"06-{rng.randrange(10**7, 10**8)}" if mobile else f"030-{rng.randrange(10**6, 10**7)}"


def person(number: int, employer: Employer, rng: random.Random, *, left_on: date | None) -> Person:
    first = rng.choice(FIRST_NAMES)
    prefix, last = rng.choice(LAST_NAMES)
    local = f"{first}.{prefix}{last}".lower().replace(" ", "").replace("'", "")
    born = date(rng.randrange(1960, 2004), rng.randrange(1, 13), rng.randrange(1, 29))
    start = date(2015, 1, 1) + timedelta(days=rng.randrange(3800))
    values: dict[str, Any] = {
        "firstName": first,
        "initials": f"{first[0]}.",
        "prefix": prefix or None,
        "lastName": last,
        "dateOfBirth": spell(born),
        "placeOfBirth": rng.choice(("Zeist", "Rotterdam", "Ankara", "Gdańsk", "Cork")),
        "gender": rng.choice(((1, "Man"), (2, "Vrouw"), (3, "Onbekend"))),
        "nationality": rng.choice(((1, "Nederlandse"), (2, "Turkse"), (3, "Poolse"))),
        "civilStatus": rng.choice(((1, "Ongehuwd"), (2, "Gehuwd"), (5, "Geregistreerd partner"))),
        "phoneNumber": _phone(rng, False),
        "mobilePhoneNumber": _phone(rng, True),
        "emailAddress": f"{local}{number}@privemail.example",
        "businessPhoneNumber": f"088-{rng.randrange(10**6, 10**7)}",
        "businessEmailAddress": f"{local}.{number}@werkgever.example",
        "passport": f"NX{rng.randrange(10**6, 10**7)}{rng.choice('ABCDEFGHJK')}",
        "street": rng.choice(STREETS),
        "houseNumber": rng.randrange(1, 300),
        "postalCode": f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'KX', 'RT', 'ZW'))}",
        "city": rng.choice(CITIES),
        "travelDistanceToWork": rng.randrange(1, 80),
    }
    found = Person(_uuid(rng), employer.id, number, values, bsn=bsn(rng))
    if rng.random() < 0.06:  # an earlier, ended employment (re-hired)
        old_end = start - timedelta(days=rng.randrange(30, 400))
        found.employments.append(_employment(rng, old_end - timedelta(days=700), old_end))
    found.employments.append(_employment(rng, start, left_on))
    return found


def _employment(rng: random.Random, start: date, end: date | None) -> Employment:
    deviating = "Senior " + rng.choice(FUNCTIONS).lower() if rng.random() < 0.1 else None
    return Employment(
        id=_uuid(rng),
        start=start,
        end=end,
        function=rng.choice(FUNCTIONS),
        department=rng.choice(DEPARTMENTS),
        entity_id=_uuid(rng),
        deviating_function=deviating,
        salary=round(rng.uniform(2400, 9800), 2) + 0.13,
        iban=iban(rng),
        payment_id=_uuid(rng),
        wage_id=_uuid(rng),
    )


def people(
    count: int, employer_list: list[Employer], *, seed: int = 2026, leaver_share: float = 0.05
) -> Iterator[Person]:
    """`count` people spread over the employers in turn; about `leaver_share` of them left
    on `HISTORY_END` (their latest employment ended then)."""
    rng = random.Random(seed)
    for number in range(count):
        left = HISTORY_END if rng.random() < leaver_share else None
        yield person(number, employer_list[number % len(employer_list)], rng, left_on=left)


def next_function(current: str) -> str:
    """A function different from `current`, for "someone changed jobs" in tests."""
    index = FUNCTIONS.index(current) if current in FUNCTIONS else -1
    return FUNCTIONS[(index + 1) % len(FUNCTIONS)]


# --------------------------------------------------------------------------- Loket shapes


def _kv(pair: tuple[int, str] | None) -> dict[str, Any] | None:
    return {"key": pair[0], "value": pair[1]} if pair else None


def formatted_name(p: Person) -> str:
    """Loket's `formattedName`: initials, prefix and last name ("S. van der Berg")."""
    v = p.values
    prefix = f"{v['prefix']} " if v["prefix"] else ""
    return f"{v['initials']} {prefix}{v['lastName']}"


def employee_view(p: Person) -> dict[str, Any]:
    """The employee resource as `GET /providers/employers/{id}/employees` lists it."""
    v = p.values
    return {
        "id": p.id,
        "employeeNumber": p.number + 1,
        "personalDetails": {
            "firstName": v["firstName"],
            "lastName": v["lastName"],
            "prefix": v["prefix"],
            "initials": v["initials"],
            "lastNamePartner": None,
            "prefixPartner": None,
            "formattedName": formatted_name(p),
            "dateOfBirth": v["dateOfBirth"],
            "placeOfBirth": v["placeOfBirth"],
            "dateOfDeath": None,
            "aowDate": None,
            "photo": None,
            "howToFormatLastName": {"key": 1, "value": "Eigen naam"},
            "title": None,
            "nationality": _kv(v["nationality"]),
            "gender": _kv(v["gender"]),
            "civilStatus": _kv(v["civilStatus"]),
        },
        "contactInformation": {
            "phoneNumber": v["phoneNumber"],
            "mobilePhoneNumber": v["mobilePhoneNumber"],
            "faxNumber": None,
            "emailAddress": v["emailAddress"],
            "businessPhoneNumber": v["businessPhoneNumber"],
            "businessMobilePhoneNumber": None,
            "businessEmailAddress": v["businessEmailAddress"],
        },
        "identityDocument": {
            "typeOfDocument": {"key": 1, "value": "Paspoort"},
            "documentIdentification": v["passport"],
        },
        "travel": {"travelDistanceToWork": v["travelDistanceToWork"]},
        "address": {
            "street": v["street"],
            "houseNumber": v["houseNumber"],
            "houseNumberAddition": None,
            "postalCode": v["postalCode"],
            "city": v["city"],
            "location": None,
            "country": {"key": 530, "value": "Nederland", "isoCode": "NL"},
        },
        "deviatingPostalAddress": None,
        "exclusionFromAbsenceStatus": None,
        "statusEmployeeSelfService": {"key": 1, "value": "Niet uitgenodigd"},
        "revokeEmployeeSelfServiceAccessOn": None,
    }


def employment_view(p: Person, e: Employment) -> dict[str, Any]:
    """An employment as `GET /providers/employers/{id}/employees/employments` lists it."""
    return {
        "id": e.id,
        "employee": {
            "id": p.id,
            "employeeNumber": p.number + 1,
            "formattedName": formatted_name(p),
        },
        "startDate": spell(e.start),
        "historicalStartDate": None,
        "endDate": spell(e.end),
        "endOfEmploymentReason": {"key": 2, "value": "Op verzoek werknemer"} if e.end else None,
        "typeOfEmployee": {"key": 1, "value": "Werknemer"},
        "incomeRelationshipNumber": 1,
        "isDirectorAndMajorShareholder": False,
    }


def _function_key(name: str) -> int:
    return 100 + FUNCTIONS.index(name) if name in FUNCTIONS else 999


def entity_view(e: Employment) -> dict[str, Any]:
    """The actual organisational entity of an employment (function and department), as
    `GET /providers/employers/{id}/actualorganizationalentities` lists it."""
    code, short, name = e.department
    return {
        "id": e.entity_id,
        "employment": {"id": e.id},
        "startDate": spell(e.start),
        "endDate": None,
        "function": {"key": _function_key(e.function), "description": e.function},
        "deviatingFunctionGroup": None,
        "deviatingFunctionDescription": e.deviating_function,
        "department": {"key": code, "code": short, "description": name},
        "distributionUnit": None,
        "placeOfEmployment": None,
    }
