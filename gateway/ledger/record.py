"""One path for recording a transfer: the store's transaction first, then the ledger.

Every writer of the ledger (a synced page, a refusal, a feed page) records through here, so
the lock order is written once: the store's transaction (and its lock) is taken first, the
ledger's append (and the ledger's lock) inside it. Two writers taking them in opposite
orders could deadlock; writes made in the same transaction commit with the entries or not
at all, which is what lets a crashed sync resume without loss or duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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
