"""Versioned schema migrations for both backends: numbered SQL files, applied in order.

`gateway/store/schema/<dialect>/NNNN_name.sql` holds one migration each; both dialects have
the same numbers and names (a test holds them to it), so "version 3" means the same tables
and columns on SQLite and PostgreSQL. `schema_migrations` records what was applied.

Why not Alembic or yoyo: the stores speak plain SQL with no ORM, the migrations are plain
SQL too, and what they need from a tool is forty lines (order, a version table, one lock,
refusing a newer schema). Alembic brings SQLAlchemy for it; yoyo opens connections of its
own, outside the store's transactions and the PostgreSQL advisory lock that keeps two
replicas starting at once from both migrating.

All pending migrations apply in one transaction (both engines have transactional DDL): an
upgrade that fails half-way leaves the database as it was. A database whose version is
newer than the code's is refused (`SchemaTooNew`): an older Sluis must not write into a
schema it does not know.

A SQLite database made before versions were recorded (0.1.0 and earlier) is adopted: the
columns earlier releases lacked are added, and the baseline (all `IF NOT EXISTS`) brings in
whatever tables it did not have yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Final, Protocol

from gateway.store.database import Database, Dialect, SchemaTooNew
from gateway.store.protocols import StoreError

_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_END: Final = re.compile(r";[ \t]*$", re.MULTILINE)

_VERSIONS_TABLE: Final[dict[Dialect, str]] = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
    " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
}

#: Columns SQLite databases older than 0.1.0 lack (they were added in place back then).
_LEGACY_COLUMNS: Final = (
    ("connectors", "paused_at", "TEXT"),
    ("connectors", "deleted_at", "TEXT"),
    ("connectors", "deleted_subjects", "TEXT"),
    ("sync_runs", "confirm_deletes", "INTEGER"),
)


class MigratingDatabase(Database, Protocol):
    """What migrating needs beyond the stores' seam: running DDL and looking at tables."""

    def script(self, statements: list[str]) -> None: ...
    def tables(self) -> set[str]: ...
    def columns(self, table: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    #: The version the database is at (0: empty, no Sluis tables).
    current: int
    #: The newest version this code knows.
    latest: int
    pending: tuple[Migration, ...]


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: each ends with `;` at the end of a line; `--`
    comment lines are dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    body = "\n".join(lines)
    return [s.strip() for s in _END.split(body) if s.strip()]


@cache
def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """The dialect's migrations in order; numbers start at 1 and have no gaps."""
    folder = resources.files("gateway.store").joinpath("schema", dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _FILE.match(item.name)
        if match is None:
            continue
        statements = tuple(split_statements(item.read_text(encoding="utf-8")))
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):  # pragma: no cover
        raise StoreError(f"{dialect} migrations are not numbered 1..n without gaps")
    return tuple(found)


def latest_version(dialect: Dialect) -> int:
    return len(migrations(dialect))


def current_version(db: MigratingDatabase) -> int:
    """The version recorded (0 if none; 0 also for a pre-versioning SQLite database)."""
    if "schema_migrations" not in db.tables():
        return 0
    rows = db.all("SELECT MAX(version) FROM schema_migrations")
    return int(rows[0][0] or 0)


def status(db: MigratingDatabase) -> SchemaStatus:
    current = current_version(db)
    known = migrations(db.dialect)
    return SchemaStatus(current, len(known), tuple(m for m in known if m.version > current))


def check_not_newer(db: MigratingDatabase) -> int:
    """The database's version; `SchemaTooNew` if this code does not know it."""
    current = current_version(db)
    latest = latest_version(db.dialect)
    if current > latest:
        raise SchemaTooNew(
            f"the database schema is at version {current}, newer than this Sluis knows "
            f"({latest}); run the Sluis release that upgraded it, or a newer one"
        )
    return current


def upgrade(db: MigratingDatabase) -> list[Migration]:
    """Apply every pending migration in one transaction; returns those applied."""
    with db.transaction():
        if db.dialect == "postgres":
            # Replicas starting together: one migrates, the others wait and find it done.
            db.all("SELECT pg_advisory_xact_lock(7021994512)")
        db.script([_VERSIONS_TABLE[db.dialect]])
        current = check_not_newer(db)
        pending = [m for m in migrations(db.dialect) if m.version > current]
        if not pending:
            return []
        if current == 0 and db.dialect == "sqlite":
            _adopt_legacy_sqlite(db)
        now = datetime.now(UTC)
        for migration in pending:
            db.script(list(migration.statements))
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, db.time(now)),
            )
        return pending


def ready(db: MigratingDatabase, *, apply_migrations: bool) -> None:
    """Make an opened database fit for a store: upgraded (`apply_migrations`) or only
    checked not to be newer than this code. The database is closed if it is not fit."""
    try:
        if apply_migrations:
            upgrade(db)
        else:
            check_not_newer(db)
    except BaseException:
        db.close()
        raise


def _adopt_legacy_sqlite(db: MigratingDatabase) -> None:
    """Bring a SQLite database made before versioning to the point the baseline assumes."""
    tables = db.tables()
    for table, column, kind in _LEGACY_COLUMNS:
        if table in tables and column not in db.columns(table):
            db.script([f"ALTER TABLE {table} ADD COLUMN {column} {kind}"])
