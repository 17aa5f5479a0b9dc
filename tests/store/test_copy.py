"""`gateway.store.copy`: SQLite into PostgreSQL, every row, in foreign-key order, in pages.

The CLI's tests copy a demo installation, whose tables fit in one page each; here the
pages are made small so every table is read across several keyset pages (composite keys,
BLOB keys, the implicit rowid), and the schema checks that keep a table from being left
behind are tried one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.store import migrate
from gateway.store.copy import TABLES, CopyError, copy_database, ensure_empty, plan, row_counts
from gateway.store.database import read_time
from gateway.store.gateway_sql import SqlStore
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.records import (
    ConnectorRecord,
    NewEvent,
    RunRecord,
    SubjectState,
    SubjectWrite,
    Tenant,
)
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_db import SqliteDatabase
from tests.pg import database_url, fresh_schema

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def _fill(store: SqliteStore, tenants: int = 3, people: int = 23) -> None:
    """Rows in the tables with composite keys, several tenants each, through the store."""
    for t in range(tenants):
        tenant = f"t{t}"
        store.create_tenant(Tenant(tenant, f"Tenant {t}", T0 + timedelta(days=t), b"\x00" * 8))
        for c in ("afas", "hubspot"):
            store.create_connector(
                ConnectorRecord(
                    tenant=tenant, id=c, type=c, base_url="http://127.0.0.1:1",
                    sealed_credentials=b"\xff\x00sealed", settings={"k": t},
                    mapping_text="m", mapping_digest="sha256:" + "0" * 64, interval_seconds=60,
                    max_delete_share=0.25, created_at=T0,
                )
            )  # fmt: skip
            for r in range(3):
                run_id = f"run-{tenant}-{c}-{2 - r}"  # ids sort against the insertion order
                store.start_run(RunRecord(run_id, tenant, c, "full", "running", T0))
                store.finish_run(run_id, "succeeded", T0 + timedelta(minutes=1), {"n": r})
            store.write_subjects(
                tenant,
                c,
                f"run-{tenant}-{c}-0",
                [SubjectWrite(f"{i:032x}", bytes([i]) * 32, i % 5 != 0) for i in range(people)],
            )
            # A full sync under way: its seen log, a page of ids at a time, travels with it.
            running = f"run-{tenant}-{c}-live"
            store.start_run(RunRecord(running, tenant, c, "full", "running", T0))
            for start in range(0, people - 2, 5):
                ids = [f"{i:032x}" for i in range(start, min(start + 5, people - 2))]
                store.mark_seen(tenant, c, running, ids[::-1])
            # And its journal of writes not merged yet (`Store.journals_subjects`).
            store.mark_seen(
                tenant, c, running, [], [SubjectWrite(f"{100 + t:032x}", b"\x07" * 32, True)]
            )
        store.append_events(
            tenant,
            [
                NewEvent(
                    f"evt-{tenant}-{i}", "subject.upserted", f"{i:032x}", {"n": i},
                    T0 + timedelta(microseconds=i), "afas", "instr-1",
                )
                for i in range(people)
            ],
        )  # fmt: skip
        for start in range(0, people, 4):
            n = min(4, people - start)
            store.ledger.append(
                tenant,
                start,
                entries=[(b'{"i":%d}' % (start + i), bytes([start + i]) * 32) for i in range(n)],
                nodes=[(4, start, bytes([start]) * 32)],
                frontier=[bytes([start]) * 32],
                checkpoint_note=f"note {start + n}\n",
            )


@pytest.fixture
def source(tmp_path: Path) -> Iterator[SqliteDatabase]:
    store = SqliteStore(tmp_path / "sluis.db")
    _fill(store)
    store.close()
    db = SqliteDatabase.open(tmp_path / "sluis.db", create=False)
    yield db
    db.close()


@pytest.fixture
def target() -> Iterator[PostgresDatabase]:
    with fresh_schema() as schema:
        db = PostgresDatabase.open(database_url(), schema=schema, pool_size=3)
        try:
            migrate.upgrade(db)
            yield db
        finally:
            db.close()


def _rows(db: Any, table: str, key: tuple[str, ...], columns: list[tuple[str, bool]]) -> list[Any]:
    """A table's rows in key order, times as instants (text on SQLite, timestamptz here)."""
    names = ", ".join(name for name, _ in columns)
    rows = db.all(f"SELECT {names} FROM {table} ORDER BY {', '.join(key)}")
    return [
        tuple(read_time(v) if is_time else v for v, (_, is_time) in zip(r, columns, strict=True))
        for r in rows
    ]


def test_every_row_arrives_across_many_small_pages(
    source: SqliteDatabase, target: PostgresDatabase
) -> None:
    seen: list[tuple[str, int, int]] = []
    report = copy_database(
        source, target, batch_rows=4, progress=lambda t, n, total: seen.append((t, n, total))
    )
    names = [t for t, _ in TABLES]
    assert list(report.rows) == names
    assert report.rows == row_counts(source, names) == row_counts(target, names)
    assert report.rows["subjects"] == 3 * 2 * 23 and report.rows["ledger_entries"] == 3 * 23
    assert report.rows["run_seen"] == 3 * 2 * 6
    assert report.version == migrate.latest_version("postgres")
    # Every batch reported, never more than a page at a time, ending at the table's total.
    assert ("events", 4, 69) in seen and ("events", 69, 69) in seen
    assert all(b - a <= 4 for (t1, a, _), (t2, b, _) in itertools.pairwise(seen) if t1 == t2)
    for table in plan(source, target):
        key = (
            ("tenant", "connector", "started_at", "id") if table.name == "sync_runs" else table.key
        )
        columns = [(c.name, c.is_time) for c in table.columns]
        assert _rows(target, table.name, key, columns) == _rows(source, table.name, key, columns)
    # PostgreSQL numbered the runs in SQLite's insertion order.
    ours = target.all("SELECT id FROM sync_runs ORDER BY rowid")
    theirs = source.all("SELECT id FROM sync_runs ORDER BY rowid")
    assert ours == theirs and ours[0][0] == "run-t0-afas-2"
    # The running run's sweep finds the same leavers on the copy (present, never marked).
    copied, original = SqlStore(target), SqlStore(source)
    for tenant, c in (("t0", "afas"), ("t2", "hubspot")):
        leavers = list(copied.unseen_present(tenant, c, f"run-{tenant}-{c}-live"))
        assert leavers == list(original.unseen_present(tenant, c, f"run-{tenant}-{c}-live"))
        assert leavers == [f"{i:032x}" for i in (21, 22)]
    # And its journal: merged on the copy as it would have been on the original.
    journaled = f"{100:032x}"
    assert copied.journaled_states("run-t0-afas-live", [journaled]) == original.journaled_states(
        "run-t0-afas-live", [journaled]
    )
    copied.merge_run_writes("run-t0-afas-live")
    assert copied.subject_states("t0", "afas", [journaled]) == {
        journaled: SubjectState(journaled, b"\x07" * 32, True)
    }


def test_every_table_the_migrations_make_is_placed_in_foreign_key_order(
    target: PostgresDatabase, tmp_path: Path
) -> None:
    names = [t for t, _ in TABLES]
    assert set(names) == target.tables() - {"schema_migrations"}
    sqlite = SqliteDatabase.open(tmp_path / "new.db")
    migrate.upgrade(sqlite)
    assert set(names) == sqlite.tables() - {"schema_migrations"}
    sqlite.close()
    references = target.all(
        "SELECT DISTINCT tc.table_name, ccu.table_name"
        " FROM information_schema.table_constraints tc"
        " JOIN information_schema.constraint_column_usage ccu"
        " ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema"
        " WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()"
    )
    assert references  # the check below checks something
    for child, parent in references:
        assert names.index(parent) < names.index(child), f"{child} refers to {parent}"


def test_a_table_the_code_cannot_place_is_an_error(
    source: SqliteDatabase, target: PostgresDatabase
) -> None:
    target.execute("CREATE TABLE run_notes (id TEXT PRIMARY KEY)")
    with pytest.raises(CopyError, match=r"does not know how to order table.* run_notes"):
        copy_database(source, target)


def test_a_source_table_the_target_lacks_is_an_error(
    source: SqliteDatabase, target: PostgresDatabase
) -> None:
    source.execute("CREATE TABLE run_notes (id TEXT PRIMARY KEY)")
    with pytest.raises(CopyError, match=r"the source has table.* the target lacks: run_notes"):
        copy_database(source, target)


def test_columns_must_match_by_name(source: SqliteDatabase, target: PostgresDatabase) -> None:
    target.execute("ALTER TABLE events ADD COLUMN origin TEXT")
    with pytest.raises(CopyError, match=r"table events differs .*missing in the source: origin"):
        copy_database(source, target)


def test_both_sides_must_be_at_the_latest_schema(
    source: SqliteDatabase, target: PostgresDatabase
) -> None:
    target.execute("DELETE FROM schema_migrations")
    with pytest.raises(CopyError, match="target database is at schema version 0"):
        copy_database(source, target)


def test_a_target_with_rows_is_refused_and_keeps_them(
    source: SqliteDatabase, target: PostgresDatabase
) -> None:
    target.execute("INSERT INTO signin_throttles VALUES ('k', 1, now(), NULL)")
    with pytest.raises(CopyError, match="table signin_throttles has rows"):
        ensure_empty(target)
    with pytest.raises(CopyError, match="already holds Sluis data"):
        copy_database(source, target)
    assert row_counts(target, [t for t, _ in TABLES])["signin_throttles"] == 1
    assert row_counts(target, ["tenants"]) == {"tenants": 0}


def test_only_sqlite_to_postgres(source: SqliteDatabase, tmp_path: Path) -> None:
    other = SqliteDatabase.open(tmp_path / "other.db")
    migrate.upgrade(other)
    with pytest.raises(CopyError, match="from SQLite to PostgreSQL only"):
        copy_database(source, other)
    other.close()
