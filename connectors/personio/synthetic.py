"""Synthetic Personio employees, for the demo, the emulator and the tests.

A person is kept flat (`values`: attribute name → value) and served in Personio's v1 shape
by the emulator, every attribute wrapped as `{label, value, type, universal_id}`. Next to
the four attributes the platform may receive sit the ones a Personio account holds that
must never pass: gender, salary, hire and probation dates, supervisor, office and
department objects, and the custom (`dynamic_<id>`) attributes tenants add for a BSN, an
IBAN, a birthday, a private address, phone and email, nationality and a tax id. The BSNs
pass the eleven-test and the IBANs carry valid check digits, so a leak is recognisable by
pattern as well as by value. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from connectors.afas.synthetic import bsn, iban

BERLIN: Final = ZoneInfo("Europe/Berlin")
FIRST_NAMES: Final = (
    "Lotte", "Jonas", "Sanne", "Lukas", "Fleur", "Mats", "Emma", "Finn", "Noor", "Milan",
    "Hannah", "Ayşe", "Jörg", "Zoë", "Łukasz", "Siobhán", "Mohammed", "Priya", "Bram", "Ines",
)  # fmt: skip
LAST_NAMES: Final = (
    "de Graaf", "Müller", "van der Berg", "Schmidt", "Jansen", "Weber", "Bakker", "Fischer",
    "de Vries", "Yılmaz", "El Idrissi", "O'Connor", "Nguyễn", "Kowalski", "Schäfer", "Visser",
)  # fmt: skip
POSITIONS: Final = (
    "Account Manager", "HR Generalist", "Backend Engineer", "Customer Success Lead",
    "Payroll Specialist", "Office Manager", "Product Designer", "Sales Development Rep",
    "Controller", "Team Lead Operations",
)  # fmt: skip
OFFICES: Final = ((131014, "Munich"), (131015, "Amsterdam"), (131016, "Berlin"))
DEPARTMENTS: Final = ((281521, "Customer Support"), (281522, "Engineering"), (281523, "People"))
STREETS: Final = ("Prinsengracht", "Leopoldstraße", "Oudegracht", "Torstraße")

#: Custom attributes the account defines: (id, label, type, universal_id); all sensitive.
DYNAMIC: Final = (
    ("dynamic_21827", "IBAN", "standard", "iban"),
    ("dynamic_180883", "Birthday", "date", "date_of_birth"),
    ("dynamic_30001", "BSN", "standard", None),
    ("dynamic_30002", "Private address", "standard", None),
    ("dynamic_30003", "Private phone", "standard", None),
    ("dynamic_30004", "Private email", "standard", None),
    ("dynamic_30005", "Nationality", "standard", "nationality"),
    ("dynamic_30006", "Tax ID", "standard", None),
)
#: Standard attributes: name → (label, type). `universal_id` is the name itself.
STANDARD: Final[dict[str, tuple[str, str]]] = {
    "id": ("ID", "integer"),
    "first_name": ("First name", "standard"),
    "last_name": ("Last name", "standard"),
    "preferred_name": ("Name (preferred)", "standard"),
    "email": ("Email", "standard"),
    "gender": ("Gender", "standard"),
    "status": ("Status", "standard"),
    "position": ("Position", "standard"),
    "supervisor": ("Supervisor", "standard"),
    "employment_type": ("Employment type", "standard"),
    "weekly_working_hours": ("Weekly hours", "standard"),
    "hire_date": ("Hire date", "date"),
    "contract_end_date": ("Contract ends", "date"),
    "termination_date": ("Termination date", "date"),
    "termination_type": ("Termination type", "standard"),
    "termination_reason": ("Termination reason", "standard"),
    "probation_period_end": ("Probation period end", "date"),
    "last_working_day": ("Last day of work", "date"),
    "created_at": ("created_at", "date"),
    "last_modified_at": ("Last modified", "date"),
    "office": ("Office", "standard"),
    "department": ("Department", "standard"),
    "fix_salary": ("Fix salary", "decimal"),
    "fix_salary_interval": ("Salary interval", "standard"),
    "hourly_salary": ("Hourly salary", "decimal"),
    "profile_picture": ("Profile Picture", "standard"),
}
#: Every attribute an employee has, in the order Personio lists them.
ATTRIBUTES: Final = (*STANDARD, *(d[0] for d in DYNAMIC))
#: Attributes that must never leave the gateway, for leak scans (values are distinctive).
SENSITIVE_ATTRIBUTES: Final = (
    "gender", "supervisor", "weekly_working_hours", "hire_date", "probation_period_end",
    "fix_salary", "termination_reason", "office", "department", "profile_picture",
    *(d[0] for d in DYNAMIC),
)  # fmt: skip
#: Attributes whose values are objects (Personio's related entities).
_OBJECTS: Final = frozenset({"supervisor", "office", "department"})

_START: Final = datetime(2019, 1, 1, tzinfo=UTC)
#: The synthetic history ends here: anything touched "now" is newer than all of it.
_END: Final = datetime(2026, 6, 30, tzinfo=UTC)


def spell(moment: datetime | date | None) -> str | None:
    """How Personio v1 writes dates and times: ISO with the account's (Berlin) offset."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=BERLIN)
    return moment.astimezone(BERLIN).isoformat(timespec="seconds")


@dataclass
class Employee:
    """One employee: attribute values, and when each attribute last changed."""

    values: dict[str, Any]
    modified: datetime
    #: attribute → time of its last change, for attributes changed after `modified`.
    changed: dict[str, datetime] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return int(self.values["id"])

    def changed_at(self, name: str) -> datetime:
        return self.changed.get(name, self.modified)

    def set(self, name: str, value: Any, now: datetime) -> None:
        """Change one attribute the way an HR admin does (last_modified_at moves too)."""
        self.values[name] = value
        self.changed[name] = now
        self.changed["last_modified_at"] = now
        self.values["last_modified_at"] = spell(now)


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(span, 1)))


def _phone(rng: random.Random) -> str:
    return f"+49 151 {rng.randrange(10**7, 10**8)}"


def employee(number: int, rng: random.Random, *, left_on: date | None = None) -> Employee:
    """One employee; `left_on` makes them a leaver (status inactive, terminated then)."""
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    created = _moment(rng, _START, _END - timedelta(days=60))
    modified = _moment(rng, created, _END)
    hired = created.date()
    office, department = rng.choice(OFFICES), rng.choice(DEPARTMENTS)
    person_id = 4000 + number * 7
    values: dict[str, Any] = {
        "id": person_id,
        "first_name": first,
        "last_name": last,
        "preferred_name": f"{first} {last}",
        "email": f"{local}.{number}@example-company.eu",
        "gender": rng.choice(("male", "female", "diverse")),
        "status": "inactive" if left_on else rng.choice(("active",) * 8 + ("leave", "onboarding")),
        "position": rng.choice(POSITIONS),
        "supervisor": {
            "type": "Employee",
            "attributes": {
                "id": {
                    "label": "ID",
                    "value": 4000 + rng.randrange(max(number, 1)) * 7,
                    "type": "integer",
                    "universal_id": "id",
                }
            },
        },
        "employment_type": rng.choice(("internal", "external")),
        "weekly_working_hours": f"{rng.choice((24, 32, 36, 40))}.5",
        "hire_date": spell(hired),
        "contract_end_date": None,
        "termination_date": spell(left_on),
        "termination_type": "resignation" if left_on else None,
        "termination_reason": "Relocation abroad with partner" if left_on else None,
        "probation_period_end": spell(hired + timedelta(days=180)),
        "last_working_day": spell(left_on),
        "created_at": spell(created),
        "last_modified_at": spell(modified),
        "office": {"type": "Office", "attributes": {"id": office[0], "name": office[1]}},
        "department": {
            "type": "Department",
            "attributes": {"id": department[0], "name": department[1]},
        },
        "fix_salary": round(rng.uniform(2800, 11000), 2) + 0.37,
        "fix_salary_interval": "monthly",
        "hourly_salary": 0,
        "profile_picture": f"https://api.personio.de/v1/company/employees/{person_id}/profile-picture",
        "dynamic_21827": " ".join(_groups(iban(rng))),
        "dynamic_180883": f"{rng.randrange(1960, 2004)}-{rng.randrange(1, 13):02d}-"
        f"{rng.randrange(1, 29):02d}",
        "dynamic_30001": bsn(rng),
        "dynamic_30002": f"{rng.choice(STREETS)} {rng.randrange(1, 300)}, "
        f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'KX', 'RT'))}",
        "dynamic_30003": _phone(rng),
        "dynamic_30004": f"{local}{number}@example-private.eu",
        "dynamic_30005": rng.choice(("Dutch", "German", "Turkish", "Polish", "Irish")),
        "dynamic_30006": f"DE{rng.randrange(10**10, 10**11)}",
    }
    return Employee(values=values, modified=modified)


def _groups(text: str) -> list[str]:
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def employees(count: int, *, seed: int = 2026, leaver_share: float = 0.05) -> Iterator[Employee]:
    """`count` employees in ascending id order; about `leaver_share` of them left on
    30 June 2026 (status inactive, termination date then)."""
    rng = random.Random(seed)
    for number in range(count):
        left = date(2026, 6, 30) if rng.random() < leaver_share else None
        yield employee(number, rng, left_on=left)


def wrapped(name: str, value: Any) -> dict[str, Any]:
    """One attribute as Personio v1 serves it."""
    standard = STANDARD.get(name)
    if standard is not None:
        label, kind = standard
        out: dict[str, Any] = {"label": label, "value": value, "type": kind, "universal_id": name}
        if name in ("fix_salary", "hourly_salary"):
            out["currency"] = "EUR"
        return out
    for dyn_id, label, kind, universal in DYNAMIC:
        if dyn_id == name:
            return {"label": label, "value": value, "type": kind, "universal_id": universal}
    raise KeyError(name)


def next_position(current: str | None) -> str:
    """A position different from `current`, for "someone changed jobs" in tests."""
    index = POSITIONS.index(current) if current in POSITIONS else -1
    return POSITIONS[(index + 1) % len(POSITIONS)]


def is_object(name: str) -> bool:
    return name in _OBJECTS
