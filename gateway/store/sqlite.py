"""The embedded default store: the gateway's state, its ledger and its accounts in one
SQLite file (`SqliteDatabase` under the shared SQL stores).

Opening it brings the schema up to date (`gateway.store.migrate`), so the README's first
command needs nothing else; a file upgraded by a newer Sluis is refused.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store import migrate
from gateway.store.gateway_sql import SqlStore
from gateway.store.sqlite_db import SqliteDatabase


class SqliteStore(SqlStore):
    """Gateway state plus the ledger tables, in `path` (created if missing)."""

    def __init__(self, path: str | Path, *, create: bool = True, upgrade: bool = True) -> None:
        db = SqliteDatabase.open(path, create=create)
        migrate.ready(db, apply_migrations=upgrade)
        super().__init__(db)
        self.path = db.path
