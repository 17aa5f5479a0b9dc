"""Feed events carry their wire JSON (`gateway.store.event_wire`), on every backend: written
once by `append_events`, built on read (by the same function, not written back) for events
stored before the column existed, and made from the egress fields alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.store import migrate
from gateway.store.database import time_text
from gateway.store.event_wire import DATA_FIELDS, event_wire, render_events
from gateway.store.gateway_sql import SqlStore
from gateway.store.migrate import MigratingDatabase
from gateway.store.postgres import PostgresStore
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.protocols import Store
from gateway.store.records import NewEvent, Suppression, Tenant
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_db import SqliteDatabase
from tests.pg import database_url, fresh_schema

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SID = [f"{n:032x}" for n in range(5)]
DATA = {"first_name": "Anna", "last_name": "de Vries", "email": "a@b.nl", "job_title": None}


def _events() -> list[NewEvent]:
    return [
        NewEvent("evt_1", "subject.upserted", SID[0], DATA, T0, "afas", "ins_1"),
        NewEvent("evt_2", "subject.deleted", SID[1], None, T0, "afas", "ins_1"),
        NewEvent(
            "evt_3", "subject.upserted", SID[2], {"email": "c@d.nl", "bsn": "123456782"}, T0,
            "crm", "ins_2",
        ),
    ]  # fmt: skip


def _expected(seq: int, e: NewEvent) -> bytes:
    return event_wire(
        seq=seq, id=e.id, type=e.type, subject_id=e.subject_id, data=e.data,
        occurred_at=time_text(e.occurred_at), source=e.source, instruction_id=e.instruction_id,
    )  # fmt: skip


def test_append_events_stores_each_events_wire(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    events = _events()
    assert store.append_events("acme", events) == [1, 2, 3]
    rows = store.feed_rows("acme", 0, 10)
    assert [r[4] for r in rows] == [_expected(n, e) for n, e in enumerate(events, 1)]
    sent = [orjson.loads(r[4]) for r in rows]
    assert sent[0] == {
        "id": "evt_1", "seq": 1, "type": "subject.upserted", "subject_id": SID[0],
        "data": DATA, "occurred_at": "2026-01-02T03:04:05.678901Z", "source": "afas",
        "instruction_id": "ins_1",
    }  # fmt: skip
    assert sent[1]["data"] is None
    # Only the egress fields are ever in the wire bytes, whatever the data held.
    assert sent[2]["data"] == {"first_name": None, "last_name": None, "email": "c@d.nl",
                               "job_title": None}  # fmt: skip
    assert b"123456782" not in rows[2][4]
    assert list(sent[0]["data"]) == list(DATA_FIELDS)


def test_events_rendered_before_the_lock_are_stored_byte_for_byte_the_same(
    store: Store,
) -> None:
    """A sync renders its events before it takes the writer (`render_events`), all but
    their numbers; what is stored is exactly what `event_wire` makes, and mixing rendered
    and plain events in one append numbers them in order."""
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    data = {"first_name": 'Zo\u00eb "Q"', "last_name": "\u00c5s\n"}
    odd = NewEvent('evt_\u00e9"4', "subject.upserted", SID[3], data, T0, "afas", "ins_1")
    events = [*_events(), odd]
    rendered = render_events(events[:2])
    assert all(
        r.wire(n) == _expected(n, e)
        for n, (r, e) in enumerate(zip(rendered, events[:2], strict=True), 1)
    )
    assert render_events([odd])[0].wire(123456789) == _expected(123456789, odd)
    assert store.append_events("acme", [*rendered, events[2], render_events([odd])[0]]) == [
        1, 2, 3, 4]  # fmt: skip
    rows = store.feed_rows("acme", 0, 10)
    assert [r[4] for r in rows] == [_expected(n, e) for n, e in enumerate(events, 1)]
    stored = store.events_after("acme", 0, 10)
    assert [e.data for e in stored] == [e.data for e in events]


def test_events_without_wire_get_it_built_on_read(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    events = _events()
    store.append_events("acme", events)
    stored = [r[4] for r in store.feed_rows("acme", 0, 10)]
    assert isinstance(store, SqlStore)
    store.database.execute("UPDATE events SET wire = NULL WHERE seq <> 2")
    assert [r[4] for r in store.feed_rows("acme", 0, 10)] == stored
    assert [r[4] for r in store.feed_rows("acme", 2, 1)] == stored[2:]
    # Built for the read only: the rows stay as the upgrade left them.
    left = store.database.all("SELECT seq FROM events WHERE wire IS NULL ORDER BY seq")
    assert [r[0] for r in left] == [1, 3]


# ------------------------------------------------------------------ upgrade from version 1


def _at_version_1(db: MigratingDatabase) -> None:
    """A database as the release before the wire column left it, holding one event."""
    with db.transaction():
        db.script([migrate._VERSIONS_TABLE[db.dialect]])
        first = migrate.migrations(db.dialect)[0]
        db.script(list(first.statements))
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (1, first.name, db.time(T0)),
        )
        db.execute(
            "INSERT INTO tenants (id, name, created_at, sealed_key) VALUES (?, ?, ?, ?)",
            ("acme", "Acme BV", db.time(T0), b"sealed"),
        )
        db.execute(
            "INSERT INTO events (tenant, seq, id, type, subject_id, data, occurred_at, source,"
            " instruction_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("acme", 1, "evt_1", "subject.upserted", SID[0], orjson.dumps(DATA).decode(),
             db.time(T0), "afas", "ins_1"),
        )  # fmt: skip


@contextmanager
def _upgraded(kind: str, tmp_path: Path) -> Iterator[Store]:
    if kind == "sqlite":
        db: Any = SqliteDatabase.open(tmp_path / "old.db")
        _at_version_1(db)
        db.close()
        store: Any = SqliteStore(tmp_path / "old.db")
        try:
            yield store
        finally:
            store.close()
        return
    with fresh_schema() as schema:
        db = PostgresDatabase.open(database_url(), schema=schema, pool_size=2)
        _at_version_1(db)
        db.close()
        store = PostgresStore(database_url(), schema=schema, pool_size=2)
        try:
            yield store
        finally:
            store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_upgraded_database_serves_its_old_events(kind: str, tmp_path: Path) -> None:
    with _upgraded(kind, tmp_path) as store:
        assert isinstance(store, SqlStore)
        db: Any = store.database
        assert migrate.status(db).current == migrate.latest_version(db.dialect)
        old = NewEvent("evt_1", "subject.upserted", SID[0], DATA, T0, "afas", "ins_1")
        assert store.feed_rows("acme", 0, 10) == [
            (1, "subject.upserted", SID[0], "afas", _expected(1, old))
        ]
        new = NewEvent("evt_2", "subject.deleted", SID[1], None, T0, "afas", "ins_1")
        assert store.append_events("acme", [new]) == [2]
        assert [r[4] for r in store.feed_rows("acme", 0, 10)] == [
            _expected(1, old),
            _expected(2, new),
        ]


# ------------------------------------------------------------------ one page as one block


def test_a_one_source_page_is_one_block_equal_to_its_rows(store: Store) -> None:
    """`feed_block` joins in the database what `feed_rows` gives row by row: the same
    events, in sequence order, on every backend; 1,200 events with subject ids out of
    order show that the two joined aggregates line up."""
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    many = [
        NewEvent(f"evt_{n}", "subject.upserted", f"{(n * 7919) % 1200:032x}",
                 {**DATA, "first_name": f"A{n}"}, T0, "afas", "ins_1")
        for n in range(1200)
    ]  # fmt: skip
    for at in range(0, 1200, 400):
        store.append_events("acme", many[at : at + 400])
    for after, limit in [(0, 1000), (5, 1), (1000, 1000), (250, 600)]:
        rows = store.feed_rows("acme", after, limit)
        block = store.feed_block("acme", after, limit)
        assert block is not None
        assert block.count == len(rows) and block.last_seq == rows[-1][0]
        assert block.source == "afas"
        assert block.subject_ids == [r[2] for r in rows]
        assert block.wire == b",".join(r[4] for r in rows)
        assert orjson.loads(b"[" + block.wire + b"]") == [orjson.loads(r[4]) for r in rows]
    assert store.feed_block("acme", 1200, 10) is None  # nothing after the head
    assert store.feed_block("beta", 0, 10) is None


def test_a_page_of_two_sources_or_of_old_events_is_no_block(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    store.append_events("acme", _events())  # afas, afas, crm
    assert store.feed_block("acme", 0, 10) is None
    assert store.feed_block("acme", 0, 2) is not None
    assert store.feed_block("acme", 2, 1) is not None
    assert isinstance(store, SqlStore)
    store.database.execute("UPDATE events SET wire = NULL WHERE seq = 2")
    # An event stored before the wire column existed: the row path builds its wire.
    assert store.feed_block("acme", 0, 2) is None
    assert store.feed_block("acme", 0, 1) is not None


def test_every_deletion_or_rewrite_of_events_moves_the_feed_generation(store: Store) -> None:
    """What a replica's kept feed pages depend on (`gateway.delivery.blocks`)."""
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed"))
    assert store.feed_state("acme") == (0, 0)
    store.append_events("acme", _events())
    assert store.feed_state("acme") == (0, 0)  # new events come after every full page
    store.delete_subject_data("acme", [SID[0]])
    first = store.feed_state("acme")[0]
    assert first > 0
    store.delete_events("acme", [2])
    assert store.feed_state("acme")[0] > first
    second = store.feed_state("acme")[0]
    store.clear_event_data("acme", [3])
    assert store.feed_state("acme")[0] > second
    assert store.feed_state("beta") == (0, 0)
    store.add_suppressions([Suppression("acme", SID[2], "restricted", T0, "acc_1")])
    assert store.feed_state("acme")[1] == 1
