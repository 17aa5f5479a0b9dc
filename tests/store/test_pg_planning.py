"""PostgreSQL's statistics keep up with tables that grow faster than autovacuum looks (a
first full sync; autovacuum off, as on these machines): a table this process bulk-loads is
analysed each time it doubles, so the planner sees it as it is (at 100,000 subjects it
scanned them all for a page of 1,000 ids while it took the table for empty), on a sample
small enough to cost a tenth of the default's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway.store.postgres import PostgresStore
from gateway.store.postgres_db import ANALYZE_TARGET
from gateway.store.records import NewEvent, SubjectWrite, Tenant
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
