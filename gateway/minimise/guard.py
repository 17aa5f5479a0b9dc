"""The second safety net: sensitive data hiding in the values of allowed fields.

A mapping decides which source fields fill the name and job-title fields, but not what an
HR administrator typed into them: "Teamleider (bel 06-12345678)", a BSN pasted into a
title, an IBAN in a name. Before a value leaves, it is scanned for a Dutch citizen service
number (BSN, always a hard block under Art. 46 UAVG), an IBAN, a phone number or an email
address; a hit refuses the whole record with a reason naming the field and the *kind* of
data found, never the value. The customer, as controller, fixes the source.

Candidates are found with our own patterns (runs of digits, IBAN-shaped tokens, an @) and
then confirmed by the libraries that know the rules: python-stdnum checks the BSN
eleven-test and the IBAN mod-97 check digits, phonenumbers decides what is a valid phone
number in NL. Values without a digit or an @ (nearly all names and titles) cost one
regex search, and the checking libraries are loaded only when a candidate turns up.
"""

from __future__ import annotations

import re
from typing import Final

#: Only values with a digit or an @ can hold any of it; everything else skips the scan.
CANDIDATE: Final = re.compile(r"[\d@]")
#: 8 or 9 digits, optionally grouped by spaces, dots or dashes ("1112.22.333").
_BSN: Final = re.compile(r"(?<![\w.-])\d(?:[ .-]?\d){7,8}(?![\w])")
_IBAN: Final = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])"
)
_EMAIL: Final = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE_REGION: Final = "NL"


def sensitive_kinds(value: str) -> list[str]:
    """Kinds of sensitive data found in a name or title value (empty: none)."""
    if not CANDIDATE.search(value):
        return []
    # Imported on first use: most exports never get here (names and titles hold no digit),
    # and `sluis map` starts faster without loading the phone number metadata.
    import phonenumbers  # noqa: PLC0415
    from stdnum import iban as stdnum_iban  # noqa: PLC0415
    from stdnum.nl import bsn as stdnum_bsn  # noqa: PLC0415

    found: list[str] = []
    for match in _BSN.finditer(value):
        if stdnum_bsn.is_valid(re.sub(r"\D", "", match.group())):
            found.append("BSN")
            break
    for match in _IBAN.finditer(value):
        if stdnum_iban.is_valid(match.group()):
            found.append("IBAN")
            break
    if "@" in value and _EMAIL.search(value):
        found.append("email address")
    if sum(c.isdigit() for c in value) >= 6:
        matcher = phonenumbers.PhoneNumberMatcher(
            value, _PHONE_REGION, leniency=phonenumbers.Leniency.VALID
        )
        if matcher.has_next():
            found.append("phone number")
    return found


def refusal(value: str) -> str | None:
    """Why a name or title value may not leave, or None. Names kinds, never the value."""
    kinds = sensitive_kinds(value)
    return f"holds what looks like a {' and a '.join(kinds)}" if kinds else None
