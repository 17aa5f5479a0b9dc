"""`one_of` on PostgreSQL: text crosses as one JSON array (psycopg adapts a list element by
element in Python), matches exactly what was given, whatever the characters, and is still
planned as an index lookup; other values keep the array parameter."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.store.postgres import PostgresStore
from gateway.store.records import SubjectWrite, Tenant
from tests.pg import database_url, fresh_schema

T0 = datetime(2026, 11, 30, tzinfo=UTC)
ODD = ['a"b', "c,d", "e\\f", "{g}", "h i", "\u00e9\u00f1", "NULL", "", "j'k", "l\nm"]


def test_text_matches_exactly_and_is_looked_up_by_index() -> None:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=2)
        try:
            db = store.database
            db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            db.executemany(
                "INSERT INTO t (k, n) VALUES (?, ?)",
                [(k, i) for i, k in enumerate([*ODD, *(f"{n:032x}" for n in range(5000))])],
            )
            db.execute("ANALYZE t")
            match, params = db.one_of([*ODD, "absent", "{g}"])
            assert "json" in match
            found = db.all(f"SELECT k FROM t WHERE k {match}", params)
            assert sorted(r[0] for r in found) == sorted(ODD)
            ids = [f"{n:032x}" for n in range(0, 5000, 20)]
            match, params = db.one_of(ids)
            plan = " ".join(
                r[0] for r in db.all(f"EXPLAIN SELECT n FROM t WHERE k {match}", params)
            )
            assert "Index" in plan and "Seq Scan on t" not in plan, plan
            assert len(db.all(f"SELECT n FROM t WHERE k {match}", params)) == len(ids)
            match, params = db.one_of([3, 4, 99999])
            assert match == "= ANY(?)"
            by_number = db.all(f"SELECT k FROM t WHERE n {match}", params)
            assert sorted(r[0] for r in by_number) == sorted(ODD[3:5])
        finally:
            store.close()


def test_subject_states_of_a_page_are_found_through_the_json_array() -> None:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=2)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            ids = [f"{n:032x}" for n in range(600)]
            with store.transaction():
                store.write_subjects(
                    "acme", "afas", "run_1",
                    [SubjectWrite(s, bytes([n % 256]) * 16, n % 2 == 0) for n, s in enumerate(ids)],
                )  # fmt: skip
            states = store.subject_states("acme", "afas", [*ids[::3], "not-there"])
            assert sorted(states) == sorted(ids[::3])
            assert states[ids[3]].digest == bytes([3]) * 16
            assert states[ids[3]].present is False
        finally:
            store.close()
