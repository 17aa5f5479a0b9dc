"""Which store the settings ask for: SQLite in the data directory (the embedded default), or
PostgreSQL at `database_url` (several replicas). Opened here for `serve`, `demo` and the
`db` and `audit` commands alike, so they all find the same database.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from gateway.runtime.config import Settings
from gateway.store import migrate
from gateway.store.gateway_sql import SqlStore
from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.ledger_sqlite import SqliteLedgerStore
from gateway.store.postgres import PostgresLedgerStore, PostgresStore
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.protocols import Store, StoreError
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_db import SqliteDatabase

DB_FILE: Final = "sluis.db"


def sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / DB_FILE


def describe(settings: Settings) -> str:
    """Where the store is, for messages (never with a password)."""
    if settings.database_url:
        return "PostgreSQL"
    return str(sqlite_path(settings))


def _private_file(path: Path) -> Path:
    """The database file, its WAL and shared-memory files owner-only (0600). SQLite makes
    the -wal and -shm files with the database file's mode, so a new one is created 0600
    before SQLite opens it; files of an older installation are narrowed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
    return path


def open_postgres(url: str, *, password: str | None, pool_size: int = 2) -> PostgresDatabase:
    """A PostgreSQL database by URL (its `options`, a `search_path` say, are kept), its
    schema neither made nor upgraded."""
    return PostgresDatabase.open(url, password=password, pool_size=pool_size)


def open_database(settings: Settings, *, create: bool) -> SqliteDatabase | PostgresDatabase:
    """The database the settings name, with no store on it and its schema untouched (for
    `sluis db`). `create=False` leaves a missing SQLite file missing (`StoreMissing`)."""
    if settings.database_url:
        return open_postgres(settings.database_url, password=settings.database_password)
    path = sqlite_path(settings)
    if create:
        _private_file(path)
    return SqliteDatabase.open(path, create=create)


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """The gateway store the settings name, its schema brought up to date (`upgrade`), or
    only checked not to be newer than this code."""
    if settings.database_url:
        return PostgresStore(
            settings.database_url,
            password=settings.database_password,
            pool_size=settings.database_pool_size,
            upgrade=upgrade,
        )
    return SqliteStore(_private_file(sqlite_path(settings)), upgrade=upgrade)


def open_ledger_reader(
    data_dir: Path, *, database_url: str | None, password: str | None
) -> SqlLedgerStore:
    """The ledger tables, for an auditor (who may have no configuration file): PostgreSQL
    at `database_url`, else `data_dir`'s SQLite file read-only; nothing made anywhere."""
    if database_url:
        return PostgresLedgerStore(database_url, password=password)
    return SqliteLedgerStore(data_dir / DB_FILE, create=False, readonly=True)


def open_read_only_store(settings: Settings) -> SqlStore:
    """The store for a look that changes nothing (a dry run): nothing made, upgraded or
    written (SQLite opened `mode=ro`; PostgreSQL only SELECTed); `StoreError` when the
    database is missing or its schema is older than this code."""
    db: SqliteDatabase | PostgresDatabase
    if settings.database_url:
        db = open_postgres(settings.database_url, password=settings.database_password)
    else:
        path = sqlite_path(settings)
        if not path.is_file():
            raise StoreError(f"no database at {path}")
        db = SqliteDatabase.open(path, create=False, readonly=True)
    migrate.ready(db, apply_migrations=False)
    if migrate.status(db).pending:
        db.close()
        raise StoreError(
            "the database schema is older than this Sluis: run `sluis db upgrade` (or start "
            "`sluis serve`) first"
        )
    return SqlStore(db)
