"""Storage behind the gateway: the bottom layer, bytes and rows only.

`protocols.py` is the seam (the `Store` and `LedgerStore` protocols and their errors),
`records.py` the row types, `sqlite.py` and `ledger_sqlite.py` the embedded backend. A store
never interprets a ledger entry or a Subject: it keeps what it is given and hands it back.
"""

from __future__ import annotations

from gateway.store.protocols import (
    LedgerReader,
    LedgerStore,
    LogMoved,
    Store,
    StoreConflict,
    StoreError,
    StoreMissing,
)
from gateway.store.records import (
    AppendBase,
    EntryRow,
    LedgerHead,
    NodeRow,
    StoredCheckpoint,
    SubjectSetRow,
    VerifiedPoint,
)

__all__ = [
    "AppendBase",
    "EntryRow",
    "LedgerHead",
    "LedgerReader",
    "LedgerStore",
    "LogMoved",
    "NodeRow",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreMissing",
    "StoredCheckpoint",
    "SubjectSetRow",
    "VerifiedPoint",
]
