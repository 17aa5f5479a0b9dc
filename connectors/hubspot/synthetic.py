"""Synthetic HubSpot CRM contacts, for the demo, the emulator and the tests.

Objects have the shape of `GET /crm/v3/objects/contacts`: an `id`, a `properties` object
whose values are all strings (HubSpot's convention, numbers and dates included), and the
`createdAt` / `updatedAt` / `archived` (+ `archivedAt`) envelope. Next to the four
properties the platform may receive sit the ones a CRM also holds and that must never pass
(phones, address, birth date, gender, lead status, free-text notes). Their values are
chosen to be distinctive (`+31 …`, `3511 AB`, upper-case enums) so that a leak scan finds
them by value without matching a name, a job title or an email by accident.

Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

FIRST_NAMES: Final = (
    "Anouk", "Bas", "Chantal", "Daan", "Esra", "Fenna", "Gijs", "Hanna", "Ivo", "Jasmijn",
    "Kevin", "Lotte", "Mehmet", "Noor", "Olga", "Priya", "Ruben", "Sanne", "Thijs", "Wouter",
    "Zoë", "Łukasz", "Siobhán",
)  # fmt: skip
LAST_NAMES: Final = (
    "de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer",
    "Mulder", "de Groot", "Bos", "Peters", "Hendriks", "van Leeuwen", "Yılmaz", "El Amrani",
    "O'Brien", "Nguyễn", "Kowalski",
)  # fmt: skip
JOB_TITLES: Final = (
    "HR Business Partner", "Learning & Development Advisor", "Marketing Specialist",
    "Account Executive", "Operations Coordinator", "Finance Officer", "Product Owner",
    "Office Manager", "Data Engineer", "Customer Success Manager",
)  # fmt: skip
EMAIL_DOMAINS: Final = ("example-bakery.nl", "example-logistics.nl", "example-care.nl")
COMPANIES: Final = ("Korenschoof Bakkerij B.V.", "Transportbedrijf Vlot B.V.", "Zorggroep Eik")
STREETS: Final = ("Dorpsstraat", "Stationsweg", "Kerkstraat", "Molenweg")
CITIES: Final = (
    ("Utrecht", "Utrecht"), ("Eindhoven", "Noord-Brabant"), ("Groningen", "Groningen"),
    ("Zwolle", "Overijssel"), ("Breda", "Noord-Brabant"),
)  # fmt: skip
LIFECYCLE_STAGES: Final = (
    "subscriber", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "evangelist",
)  # fmt: skip
LEAD_STATUSES: Final = ("IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT")
GENDERS: Final = ("FEMALE", "MALE", "NON_BINARY", "UNDISCLOSED")
NOTES: Final = (
    "Asked to postpone the course until she is back from sick leave.",
    "Prefers calls on his private number after 17:00.",
    "Back from parental leave in spring; discuss a part-time schedule.",
    "Works-council member, raised questions about the collective agreement.",
)
#: Properties a contact carries that must never leave the gateway, for leak scans.
SENSITIVE_PROPERTIES: Final = (
    "phone", "mobilephone", "address", "city", "zip", "state", "country", "date_of_birth",
    "gender", "company", "lifecyclestage", "hs_lead_status", "notes_last_contacted", "message",
)  # fmt: skip
#: HubSpot returns these with every object whatever was asked; not personal data, but they
#: are not mapped either, so the projector drops them.
DEFAULT_PROPERTIES: Final = ("hs_object_id", "createdate", "lastmodifieddate")
#: Every property a synthetic contact has.
PROPERTIES: Final = (
    "firstname", "lastname", "email", "jobtitle", *SENSITIVE_PROPERTIES, *DEFAULT_PROPERTIES,
)  # fmt: skip
#: Properties whose values are timestamps (ISO or epoch-ms strings) in search filters.
DATE_PROPERTIES: Final = frozenset({"createdate", "lastmodifieddate", "notes_last_contacted"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_START: Final = datetime(2023, 1, 1, tzinfo=UTC)
#: The synthetic history ends here: anything touched "now" is newer than all of it.
_END: Final = datetime(2026, 6, 30, tzinfo=UTC)


def iso_ms(moment: datetime) -> str:
    """HubSpot's timestamp spelling: UTC, milliseconds, `Z`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def to_epoch_ms(value: str) -> int | None:
    """An ISO timestamp, an ISO date or an epoch-ms string as epoch milliseconds."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span_ms = int((end - start).total_seconds() * 1000)
    return start + timedelta(milliseconds=rng.randrange(max(span_ms, 1)))


def contact(number: int, rng: random.Random, *, archived: bool = False) -> dict[str, Any]:
    """One contact object; `archived` makes it a soft-deleted one (with `archivedAt`)."""
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    object_id = str(1001 + number * 3)
    created = _moment(rng, _START, _END - timedelta(days=30))
    updated = _moment(rng, created, _END)
    city, province = rng.choice(CITIES)
    properties: dict[str, str | None] = {
        "firstname": first,
        "lastname": last,
        "email": f"{local}.{number}@{rng.choice(EMAIL_DOMAINS)}",
        "jobtitle": rng.choice(JOB_TITLES),
        "phone": f"+31 30 {rng.randrange(10**6, 10**7)}",
        "mobilephone": f"+31 6 {rng.randrange(10**7, 10**8)}",
        "address": f"{rng.choice(STREETS)} {rng.randrange(1, 300)}",
        "city": city,
        "zip": f"{rng.randrange(1000, 10000)} {rng.choice(('AB', 'GD', 'XK', 'RT'))}",
        "state": province,
        "country": "Netherlands",
        "date_of_birth": f"{rng.randrange(1960, 2005)}-{rng.randrange(1, 13):02d}-"
        f"{rng.randrange(1, 29):02d}",
        "gender": rng.choice(GENDERS),
        "company": rng.choice(COMPANIES),
        "lifecyclestage": rng.choice(LIFECYCLE_STAGES),
        "hs_lead_status": rng.choice(LEAD_STATUSES),
        "notes_last_contacted": iso_ms(_moment(rng, created, updated)),
        "message": rng.choice(NOTES),
        "hs_object_id": object_id,
        "createdate": iso_ms(created),
        "lastmodifieddate": iso_ms(updated),
    }
    record: dict[str, Any] = {
        "id": object_id,
        "properties": properties,
        "createdAt": iso_ms(created),
        "updatedAt": iso_ms(updated),
        "archived": archived,
    }
    if archived:
        record["archivedAt"] = iso_ms(updated)
    return record


def contacts(
    count: int, *, seed: int = 2026, archived_share: float = 0.03
) -> Iterator[dict[str, Any]]:
    """`count` contacts in ascending id order; about `archived_share` of them archived."""
    rng = random.Random(seed)
    for number in range(count):
        archived = rng.random() < archived_share
        yield contact(number, rng, archived=archived)


def mark_modified(contact: dict[str, Any], now: datetime | None = None) -> str:
    """Stamp a change the way HubSpot does: `updatedAt` and `lastmodifieddate` move together."""
    stamp = iso_ms(now or datetime.now(UTC))
    contact["updatedAt"] = stamp
    contact["properties"]["lastmodifieddate"] = stamp
    return stamp


def next_job_title(current: str | None) -> str:
    """A job title different from `current`, for "someone changed jobs" in tests."""
    index = JOB_TITLES.index(current) if current in JOB_TITLES else -1
    return JOB_TITLES[(index + 1) % len(JOB_TITLES)]
