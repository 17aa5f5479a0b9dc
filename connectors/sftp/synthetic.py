"""Synthetic HR exports as Dutch HR systems write them to an SFTP drop: semicolon-separated
CSV, Dutch column names, UTF-8 with a byte-order mark or Windows-1252.

Each row carries the four columns the platform may receive (Voornaam, Achternaam, E-mail,
Functie, with the surname prefix in Tussenvoegsel) beside the ones it must never receive:
BSN, IBAN, gross salary, birth date, private email, phone and home address. The shapes follow
`../shared/bench/gen_hrm.py` (the same Dutch names, titles and departments), written the way
a scheduled "medewerkers" export is. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable
from typing import Final, Literal

from connectors.afas.synthetic import (
    CITIES,
    DEPARTMENTS,
    FIRST_NAMES,
    JOB_TITLES,
    LAST_NAMES,
    bsn,
    iban,
)

Encoding = Literal["utf-8-sig", "cp1252"]

COLUMNS: Final = (
    "Personeelsnummer", "Voornaam", "Tussenvoegsel", "Achternaam", "E-mail", "Functie",
    "Afdeling", "BSN", "Geboortedatum", "IBAN", "Bruto salaris", "E-mail privé",
    "Telefoon", "Straat", "Huisnummer", "Postcode", "Woonplaats", "Datum_in_dienst",
    "Datum_uit_dienst",
)  # fmt: skip
#: Columns that must never leave the gateway, for leak scans.
SENSITIVE_FIELDS: Final = (
    "BSN", "IBAN", "Bruto salaris", "Geboortedatum", "E-mail privé", "Telefoon", "Straat",
    "Postcode",
)  # fmt: skip
STREETS: Final = ("Keizersgracht", "Stationsstraat", "Kerkstraat", "Dorpsstraat", "Molenweg")


def employee(number: int, rng: random.Random) -> dict[str, str]:
    """One export row (every value as text, dates as DD-MM-YYYY like the exports write)."""
    first = rng.choice(FIRST_NAMES)
    prefix, surname = rng.choice(LAST_NAMES)
    local = f"{first}.{prefix}{surname}".lower().replace(" ", "").replace("'", "")
    salary = f"{rng.uniform(2200, 9800):.2f}".replace(".", ",")
    return {
        "Personeelsnummer": str(number),
        "Voornaam": first,
        "Tussenvoegsel": prefix,
        "Achternaam": surname,
        "E-mail": f"{local}.{number}@example-employer.nl",
        "Functie": rng.choice(JOB_TITLES),
        "Afdeling": rng.choice(DEPARTMENTS),
        "BSN": bsn(rng),
        "Geboortedatum": f"{rng.randint(1, 28):02d}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1960, 2004)}",
        "IBAN": iban(rng),
        "Bruto salaris": salary,
        "E-mail privé": f"{local}{number}@example-private.nl",
        "Telefoon": f"06{rng.randint(10000000, 99999999)}",
        "Straat": rng.choice(STREETS),
        "Huisnummer": str(rng.randint(1, 400)),
        "Postcode": f"{rng.randint(1000, 9999)} {rng.choice(('AB', 'GD', 'XK'))}",
        "Woonplaats": rng.choice(CITIES),
        "Datum_in_dienst": f"01-{rng.randint(1, 12):02d}-{rng.randint(2000, 2025)}",
        "Datum_uit_dienst": "",
    }


def employees(count: int, seed: int = 1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [employee(100001 + i, rng) for i in range(count)]


def export_bytes(
    rows: Iterable[dict[str, str]], *, encoding: Encoding = "utf-8-sig", delimiter: str = ";"
) -> bytes:
    """The rows as an export file. Windows-1252 cannot spell every name (Turkish or
    Vietnamese letters): such letters become '?', as the exporting systems write them."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.get(column, "") for column in COLUMNS])
    return text.getvalue().encode(encoding, errors="replace")
