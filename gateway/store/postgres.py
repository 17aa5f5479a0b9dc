"""The store for several replicas: the gateway's state, ledger and accounts in PostgreSQL.

The same SQL stores as the embedded default, on a `PostgresDatabase` (a psycopg 3 pool).
What one SQLite writer gave for free is made explicit there: per-tenant advisory locks for
ledger appends and feed numbers, and run leases with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

from gateway.store import migrate
from gateway.store.gateway_sql import SqlStore
from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.ledger_sqlite import LEDGER_TABLES
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.protocols import StoreMissing


class PostgresStore(SqlStore):
    """Gateway state plus the ledger tables in the database at `url`."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 10,
        schema: str | None = None,
        upgrade: bool = True,
    ) -> None:
        db = PostgresDatabase.open(url, password=password, pool_size=pool_size, schema=schema)
        migrate.ready(db, apply_migrations=upgrade)
        super().__init__(db)
        self.url = db.url


class PostgresLedgerStore(SqlLedgerStore):
    """The ledger tables of a PostgreSQL database, read-only by use (the auditor's path):
    nothing is created or upgraded."""

    def __init__(self, url: str, *, password: str | None = None, schema: str | None = None):
        db = PostgresDatabase.open(url, password=password, pool_size=2, schema=schema)
        if not db.tables() >= LEDGER_TABLES:
            db.close()
            raise StoreMissing(f"the database at {db.url} holds no ledger")
        super().__init__(db)
        self.url = db.url
