"""One path for recording a transfer: the store's transaction first, then the ledger.

Every writer of the ledger that also writes the store (a synced page, a refusal, an admin
action) records through here, so
the lock order is written once: the store's transaction (and its lock) is taken first, the
ledger's append (and the ledger's lock) inside it. Two writers taking them in opposite
orders could deadlock; writes made in the same transaction commit with the entries or not
at all, which is what lets a crashed sync resume without loss or duplicates. A feed page
writes nothing but its entries, outside any transaction, and appends them grouped with
other pages' (`Ledger.append_grouped`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.ledger.audit import Actor, AuditAction, AuditEntry, audit
from gateway.ledger.kinds import LedgerEntry
from gateway.ledger.log import Ledger
from gateway.store.protocols import Store


@contextmanager
def recording(store: Store, ledger: Ledger, entries: Sequence[LedgerEntry]) -> Iterator[None]:
    """Open the store's transaction; after the block's own writes, append `entries` to the
    ledger in it. If the block raises, nothing is appended and nothing is written."""
    with store.transaction():
        yield
        ledger.append(entries)


def record(store: Store, ledger: Ledger, entries: Sequence[LedgerEntry]) -> None:
    """Record `entries` alone (no other writes), in the one lock order."""
    with recording(store, ledger, entries):
        pass


@dataclass(frozen=True, slots=True)
class Acting:
    """Someone acting on one tenant: who (the ledger's `Actor`) and the tenant's ledger the
    action is recorded in. Domain functions that change a tenant's processing take one and
    append their audit entry in the same transaction as their writes, so no caller (API,
    console, CLI) can change anything without the ledger saying who did."""

    actor: Actor
    ledger: Ledger

    @property
    def tenant(self) -> str:
        return self.ledger.tenant

    def entry(self, action: AuditAction, now: datetime, **details: Any) -> AuditEntry:
        return audit(action, time=now, tenant=self.ledger.tenant, actor=self.actor, **details)

    def recording(
        self, store: Store, action: AuditAction, now: datetime, **details: Any
    ) -> AbstractContextManager[None]:
        """The store's transaction, ending with this action's audit entry."""
        return recording(store, self.ledger, [self.entry(action, now, **details)])
