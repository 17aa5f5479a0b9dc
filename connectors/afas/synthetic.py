"""Synthetic AFAS Profit employees, for the demo, the emulator and the tests.

Rows have the shape of a GetConnector export of employees: the four fields the platform may
receive sit next to about thirty that it must never receive (BSN, IBAN, salary, address,
sick leave, ...). The BSNs pass the eleven-test and the IBANs look real, so a leak of either
is recognisable by pattern as well as by value. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Final

FIRST_NAMES: Final = (
    "Anna", "Bram", "Chantal", "Daan", "Eva", "Fatima", "Gijs", "Hanna", "Ivo", "Jasmijn",
    "Kees", "Lotte", "Mohammed", "Noor", "Otto", "Priya", "Quinten", "Roos", "Sem", "Tess",
    "Ünal", "Zoë", "Łukasz", "José", "Siobhán",
)  # fmt: skip
#: (prefix, surname): Dutch surnames keep their prefix ("van den") in its own column.
LAST_NAMES: Final = (
    ("de", "Vries"), ("", "Jansen"), ("van den", "Berg"), ("", "Bakker"), ("", "Visser"),
    ("", "Smit"), ("", "Meijer"), ("de", "Boer"), ("", "Mulder"), ("de", "Groot"),
    ("", "Bos"), ("", "Vos"), ("", "Peters"), ("", "Hendriks"), ("van", "Leeuwen"),
    ("", "Yılmaz"), ("", "El Amrani"), ("", "O'Brien"), ("", "Nguyễn"), ("", "Kowalski"),
)  # fmt: skip
JOB_TITLES: Final = (
    "HR-adviseur", "Teamleider Logistiek", "Software Engineer", "Verpleegkundige",
    "Accountmanager", "Controller", "Docent", "Monteur", "Recruiter", "Data Analist",
)  # fmt: skip
DEPARTMENTS: Final = ("HR", "Logistiek", "IT", "Zorg", "Sales", "Finance", "Onderwijs")
CITIES: Final = ("Eindhoven", "Hengelo", "Utrecht", "Rotterdam", "Groningen", "Zwolle", "Breda")
#: Columns that must never leave the gateway, for leak scans.
SENSITIVE_FIELDS: Final = (
    "BSN", "IBAN", "Email_prive", "Telefoon_mobiel", "Geboortedatum", "Postcode",
    "Salaris_bruto", "Verzuim_reden",
)  # fmt: skip


def bsn(rng: random.Random) -> str:
    """Nine digits that pass the Dutch BSN eleven-test."""
    while True:
        digits = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(7)]
        check = sum(w * d for w, d in zip(range(9, 1, -1), digits, strict=True)) % 11
        if check < 10:
            return "".join(map(str, digits)) + str(check)


def iban(rng: random.Random) -> str:
    """A Dutch IBAN with valid check digits (ISO 13616 mod-97)."""
    bank = rng.choice(("INGB", "ABNA", "RABO", "TRIO"))
    account = f"{rng.randrange(10**10):010d}"
    numeric = "".join(str(int(c, 36)) for c in bank + account + "NL00")
    check = 98 - int(numeric) % 97
    return f"NL{check:02d}{bank}{account}"


def employee(number: int, rng: random.Random, *, left_on: str | None = None) -> dict[str, Any]:
    """One employee row; `left_on` sets an end-of-employment date."""
    first = rng.choice(FIRST_NAMES)
    prefix, surname = rng.choice(LAST_NAMES)
    local = f"{first}.{prefix}{surname}".lower().replace(" ", "").replace("'", "")
    year = rng.randrange(1960, 2005)
    return {
        "Medewerker": str(100000 + number),
        "Voornaam": first,
        "Voorvoegsel": prefix,
        "Achternaam": surname,
        "Roepnaam": first,
        "Email_werk": f"{local}.{number}@example-employer.nl",
        "Email_prive": f"{local}{number}@example-private.nl",
        "Functie": rng.choice(JOB_TITLES),
        "Afdeling": rng.choice(DEPARTMENTS),
        "BSN": bsn(rng),
        "Geboortedatum": f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "Geslacht": rng.choice(("M", "V", "X")),
        "Nationaliteit": rng.choice(("NL", "BE", "DE", "TR", "MA", "PL")),
        "IBAN": iban(rng),
        "Salaris_bruto": round(rng.uniform(2200, 9800), 2),
        "Straat": rng.choice(("Keizersgracht", "Dorpsstraat", "Stationsweg")),
        "Huisnummer": str(rng.randrange(1, 400)),
        "Postcode": f"{rng.randrange(1000, 10000)}{rng.choice(('AB', 'GD', 'XK'))}",
        "Woonplaats": rng.choice(CITIES),
        "Telefoon_mobiel": f"06{rng.randrange(10**7, 10**8)}",
        "Noodcontact": {
            "naam": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[1]}",
            "telefoon": f"06{rng.randrange(10**7, 10**8)}",
        },
        "Verzuim_dagen": rng.randrange(0, 41),
        "Verzuim_reden": rng.choice((None, "griep", "burn-out", "operatie")),
        "Burgerlijke_staat": rng.choice(("gehuwd", "ongehuwd", "samenwonend")),
        "Contract_type": rng.choice(("vast", "tijdelijk", "oproep")),
        "Uren_per_week": rng.choice((16, 24, 32, 36, 40)),
        "Datum_in_dienst": f"{rng.randrange(2000, 2026)}-{rng.randrange(1, 13):02d}-01",
        "Datum_uit_dienst": left_on,
        "Manager": str(100000 + rng.randrange(0, max(number, 1))),
        "Vakbondslid": rng.random() < 0.2,
        "Gewijzigd_op": (
            f"2026-{rng.randrange(1, 11):02d}-{rng.randrange(1, 29):02d}"
            f"T{rng.randrange(0, 24):02d}:00:00Z"
        ),
    }


def employees(
    count: int, *, seed: int = 2026, leaver_share: float = 0.05
) -> Iterator[dict[str, Any]]:
    """`count` employees; about `leaver_share` of them left on 30 June 2026."""
    rng = random.Random(seed)
    for number in range(count):
        left = "2026-06-30" if rng.random() < leaver_share else None
        yield employee(number, rng, left_on=left)
