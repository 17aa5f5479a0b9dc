"""Synthetic Entra ID users, for the demo, the emulator and the tests.

A user is a flat dict of Microsoft Graph `user` properties. Next to the four the platform
may receive (givenName, surname, mail, jobTitle) sit the ones a directory synced from an
HR system holds and that must never pass: mobile and business phones, the street address,
employee id, hire date and type, the organisation data (cost centre, division),
`otherMails` (a private address), `birthday`, the on-premises identifiers, and the
`onPremisesExtensionAttributes` tenants fill from HR (here a BSN, an IBAN, a date of
birth and a salary scale). The BSNs pass the eleven-test and the IBANs carry valid check
digits, so a leak is recognisable by pattern as well as by value. Deterministic per seed.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from connectors.afas.synthetic import bsn, iban

DOMAIN: Final = "contoso-example.nl"
FIRST_NAMES: Final = (
    "Sanne", "Daan", "Fleur", "Bram", "Noor", "Jesse", "Lieke", "Thijs", "Anouk", "Sem",
    "Zeynep", "Jörg", "Zoë", "Łukasz", "Siobhán", "Mohammed", "Priya", "Ines", "Wouter", "Mila",
)  # fmt: skip
LAST_NAMES: Final = (
    "de Jong", "Jansen", "van der Velde", "Bakker", "Visser", "Smit", "Meijer", "de Boer",
    "Mulder", "El Amrani", "Yılmaz", "O'Brien", "Nguyễn", "Kowalski", "van Dijk", "Bos",
)  # fmt: skip
JOB_TITLES: Final = (
    "Teamleider logistiek", "HR-adviseur", "Software engineer", "Klantenservicemedewerker",
    "Salarisadministrateur", "Officemanager", "Productontwerper", "Accountmanager",
    "Controller", "Verpleegkundige",
)  # fmt: skip
DEPARTMENTS: Final = ("Logistiek", "HR", "ICT", "Klantenservice", "Financiën", "Zorg")
OFFICES: Final = ("Utrecht HQ", "Rotterdam Haven", "Eindhoven Campus")
STREETS: Final = ("Oudegracht", "Coolsingel", "Stratumseind", "Vredenburg", "Witte de Withstraat")
CITIES: Final = ("Utrecht", "Rotterdam", "Eindhoven", "Amersfoort")

#: What Graph returns for a user when no `$select` is given.
DEFAULT_PROPERTIES: Final = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
#: Every property a synthetic user has (and so every name the emulator's `$select` knows).
PROPERTIES: Final = (
    "id", "accountEnabled", "userType", "displayName", "givenName", "surname", "mail",
    "userPrincipalName", "jobTitle", "department", "companyName", "officeLocation",
    "preferredLanguage", "usageLocation", "businessPhones", "mobilePhone", "faxNumber",
    "streetAddress", "postalCode", "city", "state", "country", "employeeId",
    "employeeHireDate", "employeeType", "employeeOrgData", "otherMails", "birthday",
    "createdDateTime", "onPremisesSamAccountName", "onPremisesImmutableId",
    "onPremisesExtensionAttributes",
)  # fmt: skip
#: Properties that must never leave the gateway, for leak scans (values are distinctive).
SENSITIVE_PROPERTIES: Final = (
    "businessPhones", "mobilePhone", "faxNumber", "streetAddress", "postalCode",
    "employeeId", "employeeHireDate", "employeeOrgData", "otherMails", "birthday",
    "onPremisesSamAccountName", "onPremisesImmutableId", "onPremisesExtensionAttributes",
)  # fmt: skip

_START: Final = datetime(2018, 1, 1, tzinfo=UTC)
_END: Final = datetime(2026, 6, 30, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(span, 1)))


def _extension_attributes(rng: random.Random, born: str) -> dict[str, str | None]:
    """The 15 on-premises extension attributes, four filled from HR as tenants do."""
    values: dict[str, str | None] = {f"extensionAttribute{i}": None for i in range(1, 16)}
    values["extensionAttribute1"] = bsn(rng)
    values["extensionAttribute2"] = iban(rng)
    values["extensionAttribute3"] = born
    values["extensionAttribute4"] = f"Schaal {rng.randrange(4, 14)} trede {rng.randrange(1, 12)}"
    return values


def user(number: int, rng: random.Random, *, disabled: bool = False) -> dict[str, Any]:
    """One member user; `disabled` blocks their sign-in (a leaver)."""
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    created = _moment(rng, _START, _END - timedelta(days=30))
    born = f"{rng.randrange(1960, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    mail = f"{local}.{number}@{DOMAIN}"
    sam = f"{first[:1]}{last.replace(' ', '')}{number}"[:20].lower()
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "accountEnabled": not disabled,
        "userType": "Member",
        "displayName": f"{first} {last}",
        "givenName": first,
        "surname": last,
        "mail": mail,
        "userPrincipalName": mail,
        "jobTitle": rng.choice(JOB_TITLES),
        "department": rng.choice(DEPARTMENTS),
        "companyName": "Contoso Zorg BV",
        "officeLocation": rng.choice(OFFICES),
        "preferredLanguage": "nl-NL",
        "usageLocation": "NL",
        "businessPhones": [f"+31 30 {rng.randrange(100, 1000)} {rng.randrange(1000, 10000)}"],
        "mobilePhone": f"+31 6 {rng.randrange(10**7, 10**8)}",
        "faxNumber": f"+31 30 {rng.randrange(10**6, 10**7)}",
        "streetAddress": f"{rng.choice(STREETS)} {rng.randrange(1, 300)}",
        "postalCode": f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'KX', 'RT', 'ZW'))}",
        "city": rng.choice(CITIES),
        "state": "Utrecht",
        "country": "Netherlands",
        "employeeId": f"HR{rng.randrange(10**6, 10**7)}",
        "employeeHireDate": _stamp(created),
        "employeeType": rng.choice(("Employee", "Contractor")),
        "employeeOrgData": {
            "division": f"Divisie {rng.choice(CITIES)} {rng.randrange(10, 100)}",
            "costCenter": f"KP-{rng.randrange(1000, 10000)}",
        },
        "otherMails": [f"{local}{number}@example-private.nl"],
        "birthday": f"{born}T00:00:00Z",
        "createdDateTime": _stamp(created),
        "onPremisesSamAccountName": sam,
        "onPremisesImmutableId": base64.b64encode(rng.randbytes(16)).decode(),
        "onPremisesExtensionAttributes": _extension_attributes(rng, born),
    }


def users(count: int, *, seed: int = 2026, leaver_share: float = 0.05) -> Iterator[dict[str, Any]]:
    """`count` users; about `leaver_share` of them have their sign-in blocked."""
    rng = random.Random(seed)
    for number in range(count):
        yield user(number, rng, disabled=rng.random() < leaver_share)


def next_title(current: str | None) -> str:
    """A job title different from `current`, for "someone changed jobs"."""
    index = JOB_TITLES.index(current) if current in JOB_TITLES else -1
    return JOB_TITLES[(index + 1) % len(JOB_TITLES)]
