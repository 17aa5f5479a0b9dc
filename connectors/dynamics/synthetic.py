"""Synthetic Dataverse contacts, for the demo, the emulator and the tests.

Rows have the shape the Web API answers them in: columns by their logical names (lower
case), `null` where empty, GUID keys, option sets as integers (`statecode` 0 Active / 1
Inactive, `statuscode` 1 / 2, `gendercode` 1 Male / 2 Female, `familystatuscode` 1-4),
money as a number, times in UTC ISO 8601 with `Z`, and `versionnumber`, the row version
that change tracking counts in. Beside the columns the platform may receive sit the ones a
CRM contact holds that must never pass: birth date, gender, marital status, spouse's name,
annual income, government id (a BSN, passing the eleven-test), the home address, phones
and a private email. Values are distinctive (`+31 ...`, `NL..`) so a leak scan finds them
by value. Deterministic per seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

FIRST_NAMES: Final = (
    "Anouk", "Bas", "Charlotte", "Daan", "Esra", "Fleur", "Gijs", "Hanna", "Ilse", "Jesse",
    "Kees", "Lotte", "Mohammed", "Noor", "Olaf", "Priya", "Rik", "Sanne", "Thijs", "Zoë",
)  # fmt: skip
LAST_NAMES: Final = (
    "de Vries", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot",
    "Bos", "Yılmaz", "Peters", "Hendriks", "van Leeuwen", "O'Neill", "el Amrani",
)  # fmt: skip
TITLES: Final = (
    "Key Account Manager", "Customer Success Manager", "Service Engineer",
    "Procurement Officer", "Office Manager", "Facility Coordinator", "Sales Manager",
    "Implementation Consultant", "Buyer", "Operations Lead",
)  # fmt: skip
EMAIL_DOMAINS: Final = ("example-bouw.nl", "example-logistiek.nl", "example-retail.nl")
PRIVATE_DOMAINS: Final = ("example-mail.nl", "example-home.nl")
STREETS: Final = ("Kerkstraat", "Dorpsweg", "Molenlaan", "Stationsplein", "Wilhelminastraat")
CITIES: Final = ("Zwolle", "Haarlem", "Groningen", "Breda", "Arnhem", "Maastricht")
SPOUSES: Final = ("Merel", "Joris", "Fatima", "Ruben", "Iris", "Koen")
#: Columns a contact carries that must never leave the gateway, for leak scans.
SENSITIVE_FIELDS: Final = (
    "birthdate", "gendercode", "familystatuscode", "spousesname", "annualincome",
    "governmentid", "address1_line1", "address1_city", "address1_postalcode",
    "address1_country", "telephone1", "mobilephone", "emailaddress2",
)  # fmt: skip
#: Bookkeeping columns every contact has.
SYSTEM_FIELDS: Final = (
    "contactid", "statecode", "statuscode", "createdon", "modifiedon", "versionnumber",
)  # fmt: skip
#: Every column of the emulated contact table (its metadata, in effect).
FIELDS: Final = (
    *SYSTEM_FIELDS, "firstname", "lastname", "fullname", "emailaddress1", "jobtitle",
    *SENSITIVE_FIELDS,
)  # fmt: skip

_START: Final = datetime(2022, 1, 1, tzinfo=UTC)
_END: Final = datetime(2026, 6, 30, tzinfo=UTC)


def spell(moment: datetime) -> str:
    """The Web API's datetime spelling: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bsn(rng: random.Random) -> str:
    """A nine-digit number passing the eleven-test, as a real BSN does."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10 and digits[0] != 0:
            return "".join(map(str, digits)) + str(last)


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(max(int((end - start).total_seconds()), 1)))


def contact(number: int, rng: random.Random, *, inactive: bool = False) -> dict[str, Any]:
    """One contact with every column, as `GET contacts` without `$select` answers it."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    created = _moment(rng, _START, _END - timedelta(days=30))
    modified = _moment(rng, created, _END)
    ident = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "contactid": ident,
        "statecode": 1 if inactive else 0,
        "statuscode": 2 if inactive else 1,
        "createdon": spell(created),
        "modifiedon": spell(modified),
        "versionnumber": 0,
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "emailaddress1": f"{local}.{number}@{rng.choice(EMAIL_DOMAINS)}",
        "jobtitle": rng.choice(TITLES),
        "birthdate": f"{rng.randrange(1958, 2004)}-{rng.randrange(1, 13):02d}-"
        f"{rng.randrange(1, 29):02d}",
        "gendercode": rng.choice((1, 2)),
        "familystatuscode": rng.choice((1, 2, 3, 4)),
        "spousesname": f"{rng.choice(SPOUSES)} {last} ({number})",
        "annualincome": float(rng.randrange(28_000, 140_000)) + 0.5,
        "governmentid": bsn(rng),
        "address1_line1": f"{rng.choice(STREETS)} {rng.randrange(1, 300)}",
        "address1_city": rng.choice(CITIES),
        "address1_postalcode": f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'RT', 'XZ'))}",
        "address1_country": "Nederland",
        "telephone1": f"+31 20 {rng.randrange(10**6, 10**7)}",
        "mobilephone": f"+31 6 {rng.randrange(10**7, 10**8)}",
        "emailaddress2": f"{local}.{number}.prive@{rng.choice(PRIVATE_DOMAINS)}",
    }


def contacts(
    count: int, *, seed: int = 2026, inactive_share: float = 0.0
) -> Iterator[dict[str, Any]]:
    """`count` contacts (a share of them deactivated), deterministic per seed."""
    rng = random.Random(seed)
    for number in range(count):
        yield contact(number, rng, inactive=rng.random() < inactive_share)


def next_title(current: str | None) -> str:
    """A job title different from `current`, for "someone changed jobs"."""
    index = TITLES.index(current) if current in TITLES else -1
    return TITLES[(index + 1) % len(TITLES)]
