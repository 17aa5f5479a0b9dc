"""PostgreSQL's statistics keep up with tables that grow faster than autovacuum looks (a
first full sync; autovacuum off, as on these machines): a table this process bulk-loads is
analysed each time it doubles, so the planner sees it as it is (at 100,000 subjects it
scanned them all for a page of 1,000 ids while it took the table for empty), on a sample
small enough to cost a tenth of the default's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.postgres import PostgresStore
from gateway.store.postgres_db import ANALYZE_TARGET, PostgresDatabase
from gateway.store.records import Consumer, NewEvent, SubjectWrite, Tenant
from tests.pg import database_url, fresh_schema

T0 = datetime(2026, 11, 30, tzinfo=UTC)
ROWS = 3000


def _analysed(store: PostgresStore, table: str) -> bool:
    rows = store.database.all("SELECT reltuples FROM pg_class WHERE oid = ?::regclass", (table,))
    return float(rows[0][0]) >= ROWS * 0.5


def test_bulk_loaded_tables_are_analysed_as_they_grow() -> None:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=3)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            for page in range(ROWS // 500):
                ids = [f"{page * 500 + n:032x}" for n in range(500)]
                with store.transaction():
                    store.write_subjects(
                        "acme", "afas", "run_1", [SubjectWrite(s, b"d" * 32, True) for s in ids]
                    )
                    store.append_events("acme", [
                        NewEvent(f"evt_{s}", "subject.upserted", s, {"email": "a@b.nl"}, T0,
                                 "afas", "ins_1")
                        for s in ids
                    ])  # fmt: skip
            deadline = time.monotonic() + 10
            while not (_analysed(store, "subjects") and _analysed(store, "events")):
                assert time.monotonic() < deadline, "the bulk-loaded tables were not analysed"
                time.sleep(0.05)
            wanted = [f"{n:032x}" for n in range(0, ROWS, 7)]
            assert len(store.subject_states("acme", "afas", wanted)) == len(wanted)
            # On a small sample (`ANALYZE_TARGET`): a tenth of the default's histogram.
            bounds = store.database.all(
                "SELECT array_length(histogram_bounds, 1) FROM pg_stats"
                " WHERE tablename = 'events' AND attname = 'subject_id'"
                " AND schemaname = current_schema()"
            )
            assert bounds and 2 <= bounds[0][0] <= ANALYZE_TARGET + 1
            match, ids = store.database.one_of(wanted[:50])
            plan = store.database.all(
                "EXPLAIN SELECT subject_id FROM subjects WHERE tenant = ? AND connector = ?"
                f" AND subject_id {match}",
                ("acme", "afas", *ids),
            )
            assert "subjects_pkey" in " ".join(str(r[0]) for r in plan)
            block = store.feed_block("acme", 100, 1000)
            assert block is not None and block.count == 1000 and block.last_seq == 1100
        finally:
            store.close()


def _prepared(db: PostgresDatabase) -> dict[str, tuple[int, int]]:
    """The statements this session prepared: (generic plans, custom plans) by text."""
    return {
        str(text): (int(generic), int(custom))
        for text, generic, custom in db.all(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    }


def test_a_statement_vouched_for_keeps_one_plan_and_every_other_is_planned_for_its_values() -> None:
    """Planning every statement on every run was 43% of the server's CPU under 64 feed
    consumers: a statement whose caller vouches that its plan depends on no value
    (`reuse_plan`) is prepared and keeps a generic plan, alone, in a transaction, and as
    the last statement before its COMMIT; every other statement is never prepared, so it
    is planned for the values it is given each time (a kept plan made while a table was
    small went on scanning it as it grew)."""
    with fresh_schema() as schema:
        db = PostgresDatabase.open(database_url(schema), pool_size=1)  # one session
        try:
            db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            db.executemany("INSERT INTO t (k, n) VALUES (?, ?)", [(f"k{i}", i) for i in range(20)])
            for i in range(8):
                assert db.all("SELECT n FROM t WHERE k = ?", (f"k{i}",), reuse_plan=True) == [(i,)]
                assert db.all("SELECT k FROM t WHERE n = ?", (i,)) == [(f"k{i}",)]
                with db.transaction():
                    db.execute("UPDATE t SET n = n WHERE k = ?", (f"k{i}",), reuse_plan=True)
                with db.transaction():
                    db.all_then_commit(
                        "SELECT count(*) FROM t WHERE k = ?", ("k1",), reuse_plan=True
                    )
                match, ids = db.one_of([f"k{i}", "k19"])
                assert len(db.all(f"SELECT n FROM t WHERE k {match}", ids)) == 2
            prepared = _prepared(db)
            for text in (
                "SELECT n FROM t WHERE k = $1",
                "UPDATE t SET n = n WHERE k = $1",
                "SELECT count(*) FROM t WHERE k = $1",
            ):
                generic, custom = prepared[text]
                assert generic >= 3 and custom <= 5, (text, generic, custom)
            # (`executemany` prepares its statement: one row, by key, at a time.)
            others = [t for t in prepared if "n = $1" in t or "json" in t]
            assert others == [], others
        finally:
            db.close()


def test_a_feed_page_s_reads_and_a_ledger_append_keep_their_plans() -> None:
    """The statements every feed page and every page commit send are vouched for."""
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=1)
        ledger = SqlLedgerStore(store.database)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            store.create_consumer(Consumer("con_1", "acme", "lms", T0), b"h" * 32)
            for i in range(8):
                access = store.feed_access(b"h" * 32, ("acme", "afas"))
                assert access is not None and access.consumer.id == "con_1"
                assert store.feed_access(b"h" * 32) is not None
                assert store.source_standing("acme", "afas") == (None, [])
                ledger.append(
                    "acme", i, entries=[(b'{"i":%d}' % i, bytes([i]) * 32)], nodes=[],
                    frontier=[bytes([i]) * 32], checkpoint_note=f"cp {i + 1}",
                )  # fmt: skip
            kept = [t for t, (generic, _) in _prepared(store.database).items() if generic >= 3]
            assert sum("FROM consumers c" in t for t in kept) == 2, kept
            assert any("FROM connectors" in t for t in kept), kept
            assert any("INSERT INTO ledger_entries" in t for t in kept), kept
        finally:
            store.close()
