"""Time-based one-time passwords (RFC 6238, via pyotp) with replay protection.

A code is accepted for its own 30-second step and one step either side (clock drift), and
only once: the account remembers the last step it accepted, and a code of that step or
an earlier one is refused, even if it is still "valid" by the clock. The store's
compare-and-set (`advance_totp_step`) makes that hold for two requests racing with one
code. Recovery codes are ten random single-use codes, kept as SHA-256 hashes (each has
60 bits of entropy, so a plain hash is enough).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Final

import pyotp

ISSUER: Final = "Sluis"
STEP_SECONDS: Final = 30
DRIFT_STEPS: Final = 1
RECOVERY_CODES: Final = 10
_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, label: str) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=ISSUER)


def normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is (within the drift window), or None."""
    code = normalise(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, so the time taken says nothing about which matched.
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            found = step
    return found


def looks_like_totp(code: str) -> bool:
    code = normalise(code)
    return len(code) == 6 and code.isdigit()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


def recovery_hash(code: str) -> bytes:
    return hashlib.sha256(normalise(code).encode()).digest()
