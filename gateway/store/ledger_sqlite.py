"""A ledger store on its own SQLite file: the auditor's read path and the ledger's tests.

`create=False` refuses to make a new database (an audit of a mistyped path must fail, not
report an empty, intact log); `readonly=True` opens it read-only for auditors, and asks
only that the ledger tables are there. A writable one is brought up to the current schema
like the gateway store (the ledger tables are part of it).
"""

from __future__ import annotations

from pathlib import Path

from gateway.store import migrate
from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.protocols import StoreError, StoreMissing
from gateway.store.sqlite_db import SqliteDatabase

LEDGER_TABLES = frozenset({"ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_heads"})


class SqliteLedgerStore(SqlLedgerStore):
    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        if (readonly or not create) and not Path(path).is_file():
            raise StoreMissing(f"no ledger database at {path}")
        db = SqliteDatabase.open(path, create=create, readonly=readonly)
        try:
            if (readonly or not create) and not db.tables() >= LEDGER_TABLES:
                raise StoreMissing(f"{db.path} holds no ledger")
            if not readonly:
                migrate.upgrade(db)
        except StoreError as exc:
            db.close()
            if isinstance(exc, StoreMissing):
                raise
            raise StoreError(f"{db.path}: not a usable ledger database ({exc})") from None
        except BaseException:
            db.close()
            raise
        super().__init__(db)
        self.path = db.path
