"""Synthetic Salesforce Contacts, for the demo, the emulator and the tests.

Records have the shape a SOQL query returns them in: an `attributes` object (`type`,
`url`), then the fields by their API names, `null` where empty, timestamps spelled as
Salesforce spells them (`2024-05-04T12:00:01.000+0000`, UTC). Next to the four fields the
platform may receive sit the ones a CRM Contact holds that must never pass: birth date,
mailing address, home and mobile phones, gender identity, a free-text description and, as
in many Dutch orgs, custom fields for the citizen service number (`BSN__c`, passing the
eleven-test) and a bank account (`IBAN__c`). Values are distinctive (`+31 ...`, `NL..TEST`)
so that a leak scan finds them by value.

Ids are 18-character Salesforce ids (key prefix `003` for Contact, with the case-safe
suffix computed as Salesforce does), in ascending creation order. Deterministic per seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

FIRST_NAMES: Final = (
    "Femke", "Pieter", "Annelies", "Bram", "Chayenne", "Dirk", "Elif", "Floor", "Hugo",
    "Imane", "Joost", "Karin", "Lars", "Maaike", "Niels", "Oumaima", "Quinten", "Renée",
    "Stijn", "Tess", "Vera", "Yusuf", "Ángel",
)  # fmt: skip
LAST_NAMES: Final = (
    "Jansen", "de Wit", "van Dijk", "Vermeulen", "Kok", "Brouwer", "van der Linden",
    "Dekker", "Postma", "Kaya", "Şahin", "Hoekstra", "van Beek", "Schouten", "D'Souza",
)  # fmt: skip
TITLES: Final = (
    "Account Manager", "Inside Sales Representative", "Service Desk Agent",
    "Partner Manager", "Field Engineer", "Marketing Coordinator", "Sales Director",
    "Customer Onboarding Specialist", "Solution Architect", "Renewals Specialist",
)  # fmt: skip
EMAIL_DOMAINS: Final = ("example-wholesale.nl", "example-installers.nl", "example-zorg.nl")
STREETS: Final = ("Lindenlaan", "Havenstraat", "Julianaweg", "Beukenhof")
CITIES: Final = ("Amersfoort", "Leeuwarden", "Tilburg", "Delft", "Enschede")
GENDERS: Final = ("Female", "Male", "Nonbinary", "Not Listed")
DESCRIPTIONS: Final = (
    "Asked us not to call during her chemotherapy; email only until further notice.",
    "Union representative; involved in the works-council dispute last spring.",
    "Private number is the best way to reach him in the evening.",
    "On long-term sick leave, manager is the contact meanwhile.",
)
#: Fields a Contact carries that must never leave the gateway, for leak scans.
SENSITIVE_FIELDS: Final = (
    "Birthdate", "Phone", "MobilePhone", "HomePhone", "OtherPhone", "MailingStreet",
    "MailingCity", "MailingPostalCode", "MailingCountry", "GenderIdentity", "Description",
    "BSN__c", "IBAN__c",
)  # fmt: skip
#: Bookkeeping fields every Contact has.
SYSTEM_FIELDS: Final = (
    "Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "AccountId",
)  # fmt: skip
#: Every field of the emulated Contact object (its describe, in effect).
FIELDS: Final = (*SYSTEM_FIELDS, "FirstName", "LastName", "Email", "Title", *SENSITIVE_FIELDS)
#: Fields whose values are datetimes (compared as such in SOQL).
DATETIME_FIELDS: Final = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp"})

_START: Final = datetime(2023, 1, 1, tzinfo=UTC)
#: The synthetic history ends here: anything touched "now" is newer than all of it.
_END: Final = datetime(2026, 6, 30, tzinfo=UTC)
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: Key prefix 003 (Contact), then an instance/pod part, as real ids have.
_PREFIX: Final = "0035J00000"


def spell(moment: datetime) -> str:
    """Salesforce's JSON datetime spelling: UTC, milliseconds, `+0000`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def case_safe(id15: str) -> str:
    """The 18-character form of a 15-character id: three suffix characters, each encoding
    which of five characters are upper case (what makes ids safe in case-blind tools)."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX[bits]
    return id15 + suffix


def contact_id(number: int) -> str:
    digits = ""
    value = number + 1000
    for _ in range(5):
        value, rest = divmod(value, 62)
        digits = _BASE62[rest] + digits
    return case_safe(_PREFIX + digits)


def bsn(rng: random.Random) -> str:
    """A nine-digit number passing the eleven-test, as a real BSN does."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10 and digits[0] != 0:
            return "".join(map(str, digits)) + str(last)


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span_ms = int((end - start).total_seconds() * 1000)
    return start + timedelta(milliseconds=rng.randrange(max(span_ms, 1)))


def contact(number: int, rng: random.Random, *, version: str = "v62.0") -> dict[str, Any]:
    """One Contact as a query returns it with every field selected."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    created = _moment(rng, _START, _END - timedelta(days=30))
    modified = _moment(rng, created, _END)
    ident = contact_id(number)
    return {
        "attributes": {
            "type": "Contact",
            "url": f"/services/data/{version}/sobjects/Contact/{ident}",
        },
        "Id": ident,
        "IsDeleted": False,
        "CreatedDate": spell(created),
        "LastModifiedDate": spell(modified),
        "SystemModstamp": spell(modified),
        "AccountId": "0015J00000" + contact_id(number // 7)[10:15] + "AAA",
        "FirstName": first,
        "LastName": last,
        "Email": f"{local}.{number}@{rng.choice(EMAIL_DOMAINS)}",
        "Title": rng.choice(TITLES),
        "Birthdate": f"{rng.randrange(1960, 2004)}-{rng.randrange(1, 13):02d}-"
        f"{rng.randrange(1, 29):02d}",
        "Phone": f"+31 33 {rng.randrange(10**6, 10**7)}",
        "MobilePhone": f"+31 6 {rng.randrange(10**7, 10**8)}",
        "HomePhone": f"+31 58 {rng.randrange(10**6, 10**7)}",
        "OtherPhone": None if rng.random() < 0.5 else f"+31 13 {rng.randrange(10**6, 10**7)}",
        "MailingStreet": f"{rng.choice(STREETS)} {rng.randrange(1, 250)}",
        "MailingCity": rng.choice(CITIES),
        "MailingPostalCode": f"{rng.randrange(1000, 10000)} {rng.choice(('KL', 'MZ', 'PW'))}",
        "MailingCountry": "Netherlands",
        "GenderIdentity": rng.choice(GENDERS),
        "Description": rng.choice(DESCRIPTIONS),
        "BSN__c": bsn(rng),
        "IBAN__c": f"NL{rng.randrange(10, 100)}TEST0{rng.randrange(10**8, 10**9)}",
    }


def contacts(count: int, *, seed: int = 2026) -> Iterator[dict[str, Any]]:
    """`count` Contacts in ascending id order."""
    rng = random.Random(seed)
    for number in range(count):
        yield contact(number, rng)


def next_title(current: str | None) -> str:
    """A title different from `current`, for "someone changed jobs" in tests."""
    index = TITLES.index(current) if current in TITLES else -1
    return TITLES[(index + 1) % len(TITLES)]
