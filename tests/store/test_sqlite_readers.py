"""SQLite reads outside a transaction run on reading connections of their own: they neither
wait for a writer's open transaction nor see its uncommitted rows, while the writing thread
itself reads its own writes."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.store.protocols import StoreError, StoreUnavailable
from gateway.store.records import NewEvent, Tenant
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 2, tzinfo=UTC)


def test_reads_do_not_wait_for_a_writers_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "sluis.db")
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"k"))
    inside, release = threading.Event(), threading.Event()

    def writer() -> list[str]:
        with store.transaction():
            store.create_tenant(Tenant("beta", "Beta BV", T0, b"k"))
            seen = [t.id for t in store.list_tenants()]  # its own write, uncommitted
            inside.set()
            assert release.wait(10)
        return seen

    with ThreadPoolExecutor(2) as pool:
        writing = pool.submit(writer)
        assert inside.wait(10)
        # Another thread reads now, while the transaction is open: at once, committed only.
        reading = pool.submit(lambda: [t.id for t in store.list_tenants()])
        assert reading.result(timeout=5) == ["acme"]
        release.set()
        assert writing.result(timeout=10) == ["acme", "beta"]
    assert [t.id for t in store.list_tenants()] == ["acme", "beta"]
    store.close()
    with pytest.raises(StoreError):
        store.list_tenants()


def test_many_threads_read_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "sluis.db")
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"k"))
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(lambda _: store.get_tenant("acme").name, range(200)))
    assert found == ["Acme BV"] * 200
    store.close()


def test_scrub_waits_a_bounded_time_for_a_reader_then_clears_the_wal(tmp_path: Path) -> None:
    """An erasure's scrub (a TRUNCATE checkpoint) cannot finish while a reader holds an old
    snapshot: it gives up after a bounded wait, with StoreUnavailable, and writes go on;
    once the reader is done, the WAL is emptied and holds nothing of what was deleted."""
    store = SqliteStore(tmp_path / "sluis.db")
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"k"))
    secret = "erase-me@acme.example"
    store.append_events("acme", [NewEvent("evt_1", "subject.upserted", "a" * 32,
                                          {"email": secret}, T0, "afas", "i")])  # fmt: skip
    reader = sqlite3.connect(tmp_path / "sluis.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # holds this snapshot
    with store.transaction():
        store.delete_subject_data("acme", ["a" * 32])
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.scrub()
    assert time.monotonic() - started < 5
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"k"))  # writes go on
    reader.execute("COMMIT")
    reader.close()
    store.scrub()
    wal = tmp_path / "sluis.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name
    store.close()
