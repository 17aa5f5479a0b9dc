"""Schema migrations: the same versions on both engines, the same tables and columns after
them, a database made by the previous release upgraded with nothing lost, a newer schema
refused, and an upgrade that fails leaving the database as it was.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from connectors.base import SyncMode
from gateway.keys.signing import load_signing_key
from gateway.ledger.log import Ledger
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store import migrate
from gateway.store.database import SchemaTooNew
from gateway.store.postgres import PostgresStore
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.protocols import StoreError
from gateway.store.records import RunRecord
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_db import SqliteDatabase
from tests.pg import database_url, fresh_schema

RELEASE_0_1_0 = Path(__file__).parent / "fixtures" / "release-0.1.0"
#: Columns one engine has that the other keeps implicitly (SQLite's rowid).
ENGINE_ONLY = {("postgres", "sync_runs", "rowid"), ("postgres", "run_seen", "rowid")}


def _load_release(data_dir: Path) -> Path:
    """A data directory as Sluis 0.1.0 left it (its `sluis demo`: two sources synced, a
    feed page read, an operator and an admin), with its keys beside it."""
    data_dir.mkdir()
    db = data_dir / "sluis.db"
    with sqlite3.connect(db) as conn:
        conn.executescript((RELEASE_0_1_0 / "sluis.sql").read_text(encoding="utf-8"))
    conn.close()
    keys = data_dir.parent / f"{data_dir.name}-keys"
    keys.mkdir(mode=0o700)
    for name in ("master.key", "ledger-signing.key"):
        shutil.copy(RELEASE_0_1_0 / name, keys / name)
    return db


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    conn.close()
    return counts


def test_both_engines_have_the_same_migrations() -> None:
    sqlite = [(m.version, m.name) for m in migrate.migrations("sqlite")]
    postgres = [(m.version, m.name) for m in migrate.migrations("postgres")]
    assert sqlite == postgres
    assert sqlite[0] == (1, "initial")


def test_every_table_and_column_exists_on_both_engines(tmp_path: Path) -> None:
    lite = SqliteDatabase.open(tmp_path / "sluis.db")
    migrate.upgrade(lite)
    with fresh_schema() as schema:
        pg = PostgresDatabase.open(database_url(), schema=schema)
        try:
            migrate.upgrade(pg)
            assert lite.tables() == pg.tables()
            for table in sorted(lite.tables()):
                on_sqlite = set(lite.columns(table))
                on_pg = {c for c in pg.columns(table) if ("postgres", table, c) not in ENGINE_ONLY}
                assert on_sqlite == on_pg, table
        finally:
            pg.close()
    lite.close()


def test_a_database_of_the_previous_release_is_upgraded_with_nothing_lost(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    db = _load_release(data_dir)
    before = _counts(db)
    assert "schema_migrations" not in before

    services = Services.open(Settings(data_dir=data_dir))
    try:
        store = services.store
        with _ro(db) as ro:
            assert migrate.current_version(ro) == migrate.latest_version("sqlite")
        after = _counts(db)
        assert {t: n for t, n in after.items() if t in before} == before
        # Tables added since 0.1.0 start empty.
        assert all(n == 0 for t, n in after.items() if t not in {*before, "schema_migrations"})

        # The ledger as 0.1.0 signed it still verifies, and the gateway writes on.
        key = load_signing_key(data_dir.parent / "data-keys" / "ledger-signing.key")
        ledger = Ledger(store.ledger, "demo")
        report = ledger.verify(key.public_key())
        assert report.ok, report.reason
        assert report.entries == before["ledger_entries"]
        connectors = store.list_connectors("demo")
        assert {c.id for c in connectors} == {"afas", "hubspot"}
        assert len(store.feed_rows("demo", 0, 1000)) == before["events"]
        assert [a.email for a in store.accounts.list_accounts(None)] == ["operator@gateway.example"]
        services.ledger("demo").checkpoint(refresh=True)
        assert Ledger(store.ledger, "demo").verify(key.public_key()).ok
        runs = store.list_runs("demo", "afas")
        assert runs and runs[0].status == "succeeded"
        started = store.start_run(
            RunRecord(
                id="run_after_upgrade", tenant="demo", connector="afas",
                mode=SyncMode.FULL.value, status="running", started_at=datetime.now(UTC),
            )
        )  # fmt: skip
        assert started
        assert store.last_run("demo", "afas").id == "run_after_upgrade"  # type: ignore[union-attr]
    finally:
        services.close()


class _ro:
    """A read-only look at a SQLite file (closed afterwards)."""

    def __init__(self, path: Path) -> None:
        self.db = SqliteDatabase.open(path, readonly=True)

    def __enter__(self) -> SqliteDatabase:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


#: The schema of SQLite databases made before 0.1.0: connectors without pause and
#: deletion columns, runs without confirm_deletes (they were added in place back then).
_BEFORE_0_1_0 = (
    """CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL,
        created_at TEXT NOT NULL, sealed_key BLOB NOT NULL)""",
    """CREATE TABLE connectors (
        tenant TEXT NOT NULL REFERENCES tenants (id), id TEXT NOT NULL, type TEXT NOT NULL,
        base_url TEXT NOT NULL, sealed_credentials BLOB NOT NULL, settings TEXT NOT NULL,
        mapping_text TEXT NOT NULL, mapping_digest TEXT NOT NULL,
        interval_seconds INTEGER NOT NULL, max_delete_share REAL NOT NULL,
        created_at TEXT NOT NULL, watermark TEXT, last_success_at TEXT,
        PRIMARY KEY (tenant, id))""",
    """CREATE TABLE sync_runs (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, connector TEXT NOT NULL,
        mode TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL,
        finished_at TEXT, cursor TEXT, watermark TEXT, counts TEXT NOT NULL, error TEXT,
        instruction_id TEXT, pages INTEGER NOT NULL DEFAULT 0, since TEXT)""",
)


def test_an_older_sqlite_database_gains_the_columns_it_lacked(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in _BEFORE_0_1_0:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO tenants VALUES ('acme', 'Acme', '2026-11-22T12:00:00.000000Z', x'00')"
        )
        conn.execute(
            "INSERT INTO connectors VALUES ('acme', 'afas', 'afas', 'http://x', x'00', '{}',"
            " 'm', 'sha256:0', 60, 0.2, '2026-11-22T12:00:00.000000Z', NULL, NULL)"
        )
    conn.close()
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    store = SqliteStore(path)
    try:
        assert store.get_connector("acme", "afas").paused_at is None
        store.set_connector_paused("acme", "afas", at)
    finally:
        store.close()
    reopened = SqliteStore(path)
    try:
        assert reopened.get_connector("acme", "afas").paused_at == at
        assert reopened.list_runs("acme", "afas") == []
    finally:
        reopened.close()


def test_a_schema_newer_than_the_code_is_refused_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "sluis.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    conn.close()
    with pytest.raises(SchemaTooNew, match="version 999, newer than this Sluis"):
        SqliteStore(path)
    with pytest.raises(SchemaTooNew):
        SqliteStore(path, upgrade=False)


def test_a_schema_newer_than_the_code_is_refused_on_postgres() -> None:
    with fresh_schema() as schema:
        PostgresStore(database_url(), schema=schema).close()
        with psycopg.connect(database_url(), autocommit=True) as conn:
            conn.execute(f"INSERT INTO {schema}.schema_migrations VALUES (999, 'future', now())")
        with pytest.raises(SchemaTooNew, match="version 999"):
            PostgresStore(database_url(), schema=schema)


def test_a_failed_upgrade_leaves_the_database_as_it_was() -> None:
    with fresh_schema() as schema:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            # Something already named like a table of ours: the baseline cannot create it.
            conn.execute(f"CREATE TABLE {schema}.events (unrelated INTEGER)")
        db = PostgresDatabase.open(database_url(), schema=schema)
        try:
            with pytest.raises(StoreError, match="database error"):
                migrate.upgrade(db)
            assert db.tables() == {"events"}
            assert migrate.current_version(db) == 0
        finally:
            db.close()


def test_replicas_starting_together_migrate_once() -> None:
    with fresh_schema() as schema:
        applied: list[int] = []
        errors: list[BaseException] = []

        def start() -> None:
            db = PostgresDatabase.open(database_url(), schema=schema)
            try:
                applied.append(len(migrate.upgrade(db)))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                db.close()

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(applied) == [0, 0, 0, migrate.latest_version("postgres")]
