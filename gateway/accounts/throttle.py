"""Backoff after failed sign-ins: per (account, client address) pair, per address, and per
account from addresses it has never signed in from.

Counting per pair is what keeps an attacker from locking a victim out: failures from the
attacker's address lock the attacker's pair, never the victim's sign-in from their own
address. Each address is also limited over all accounts it tries (password spraying). And
each account over all addresses (a guessing attack spread over many addresses), but that
lock binds only addresses the account has never signed in from: the owner, at their usual
desk, still gets in. Locks grow exponentially from 30 seconds and are capped (15 minutes
for a pair, an hour for an address or an account); a success clears the pair and marks the
address as known to the account. Failure counts fall back to zero a day after the first.

Keys are HMACs of the email and address under a key derived from the master key: the
table holds no address or email, and its keys are stable across replicas.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from gateway.store.account_records import ThrottleRecord
from gateway.store.protocols import AccountStore


@dataclass(frozen=True)
class Limit:
    failures: int
    cap: timedelta


PAIR: Final = Limit(5, timedelta(minutes=15))
ADDRESS: Final = Limit(20, timedelta(hours=1))
ACCOUNT: Final = Limit(20, timedelta(hours=1))
FIRST_LOCK: Final = timedelta(seconds=30)
FORGET_AFTER: Final = timedelta(days=1)


def lock_for(limit: Limit, failures: int) -> timedelta | None:
    """How long a key is locked after its `failures`-th failure (None: not locked)."""
    over = failures - limit.failures
    if over < 0:
        return None
    wait: timedelta = min(FIRST_LOCK * (2 ** min(over, 16)), limit.cap)
    return wait


class Throttle:
    def __init__(self, store: AccountStore, key: bytes) -> None:
        self._store = store
        self._key = key

    def _hash(self, kind: str, *parts: str) -> str:
        mac = hmac.new(self._key, "\x00".join((kind, *parts)).encode(), hashlib.sha256)
        return f"{kind}:{mac.hexdigest()[:40]}"

    def keys(self, email: str, client: str) -> tuple[str, str, str]:
        return (
            self._hash("pair", email, client),
            self._hash("addr", client),
            self._hash("acct", email),
        )

    def _known(self, email: str, client: str) -> bool:
        return self._store.get_throttle(self._hash("known", email, client)) is not None

    def retry_after(self, email: str, client: str, now: datetime) -> int | None:
        """Seconds until a sign-in may be tried again, or None if it may now."""
        waits = []
        pair, address, account = self.keys(email, client)
        keys = [pair, address] if self._known(email, client) else [pair, address, account]
        for key in keys:
            found = self._store.get_throttle(key)
            if found is not None and found.locked_until is not None and found.locked_until > now:
                waits.append((found.locked_until - now).total_seconds())
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, email: str, client: str, now: datetime) -> bool:
        """Count a failure; True if it locked the (account, address) pair just now."""
        pair, address, account = self.keys(email, client)
        locked = False
        for key, limit in ((pair, PAIR), (address, ADDRESS), (account, ACCOUNT)):
            found = self._store.get_throttle(key)
            if found is None or now - found.first_failure_at > FORGET_AFTER:
                found = ThrottleRecord(key, 0, now)
            failures = found.failures + 1
            wait = lock_for(limit, failures)
            until = now + wait if wait is not None else None
            self._store.put_throttle(ThrottleRecord(key, failures, found.first_failure_at, until))
            if key == pair and failures == limit.failures:
                locked = True
        return locked

    def succeeded(self, email: str, client: str, now: datetime) -> None:
        self._store.clear_throttle(self.keys(email, client)[0])
        self._store.put_throttle(ThrottleRecord(self._hash("known", email, client), 0, now))
