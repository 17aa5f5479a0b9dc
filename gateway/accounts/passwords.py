"""Passwords: argon2id hashes (argon2-cffi) and the rules a new password must meet.

Parameters are one of OWASP's equivalent argon2id minimums: 9 MiB, 4 passes, 1 lane (the
list: 46/1, 19/2, 12/3, 9/4, 7/5 MiB/passes). Measured on this project's 2-core reference
machine, 20 hashes at once (two at a time) took 240-254 ms with 9/4 against 289-410 ms with
19/2, whose larger working sets fight over the shared cache, while one hash alone costs
about the same (17 vs 19-25 ms); so 20 people signing in at once stay under 300 ms
(`bench/bench_auth.py`). Stored hashes carry their parameters: a hash made with others is
re-made at its owner's next sign-in (`needs_rehash`).

Strength is judged by zxcvbn (a maintained port of Dropbox's estimator, with lists of common
passwords, names and keyboard patterns) and by length; the rules are NIST SP 800-63B's:
length over composition, no common or context-derived passwords, no forced rotation.
"""

from __future__ import annotations

import os
import threading
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn  # type: ignore[import-untyped]

from gateway.accounts.errors import WeakPassword

MIN_LENGTH: Final = 12
#: Longer passwords are refused rather than hashed: no one types 256 characters, and the
#: estimator's cost grows with length.
MAX_LENGTH: Final = 256
#: zxcvbn's score (0-4) a new password must reach: "safely unguessable" (about 10^10 guesses).
MIN_SCORE: Final = 3
#: Only the first part is judged: zxcvbn slows quadratically on long input, and a long
#: password passes on length anyway.
_JUDGED: Final = 64

HASHER: Final = PasswordHasher(time_cost=4, memory_cost=9 * 1024, parallelism=1)
#: At most one hash per core at a time. Sign-ins arrive on the worker-thread pool (more
#: threads than cores); letting every thread hash at once makes each one slower and the
#: last of a burst later still (measured: 20 hashes took 241 ms on 6 threads, 218 ms on 2).
_SLOTS: Final = threading.BoundedSemaphore(os.cpu_count() or 2)
#: A hash to verify against when the account does not exist, so that an unknown email
#: takes as long as a wrong password (no timing oracle for who has an account).
_DUMMY: Final = HASHER.hash("sluis-no-such-account")


def check_rules(password: str, *, context: tuple[str, ...] = ()) -> None:
    """Raise `WeakPassword` saying which rule a new password breaks."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_LENGTH} characters")
    if not password.isprintable():
        raise WeakPassword("the password may not contain control characters")
    lowered = password.lower()
    for item in context:
        local = item.lower().partition("@")[0]
        if len(local) >= 3 and local in lowered:
            raise WeakPassword("the password may not contain your name or email address")
    words = [w for c in context for w in c.lower().replace("@", " ").replace(".", " ").split()]
    result = zxcvbn(password[:_JUDGED], user_inputs=[*words, "sluis"])
    if int(result["score"]) < MIN_SCORE:
        raise WeakPassword(
            "the password is too easy to guess (common, or made of your name or email); "
            "a few unrelated words make a strong one"
        )


def hash_password(password: str) -> str:
    with _SLOTS:
        return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant work whether or not there is a stored hash."""
    if len(password) > MAX_LENGTH:
        password = password[:MAX_LENGTH]
    try:
        with _SLOTS:
            matched = HASHER.verify(stored if stored is not None else _DUMMY, password)
        return matched and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return HASHER.check_needs_rehash(stored)
