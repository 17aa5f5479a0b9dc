"""The WAL is copied back into the database file by the background checkpointer, not by a
commit: a writer that fills the WAL past `CHECKPOINT_BYTES` finds it checkpointed soon
after, although the writer's own automatic checkpoint would not start for 256 MB."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from gateway.store.sqlite_db import BACKSTOP_PAGES, CHECKPOINT_BYTES, SqliteDatabase


def _checkpointers() -> int:
    return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())


def test_the_wal_is_checkpointed_beside_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "sluis.db"
    before = _checkpointers()
    db = SqliteDatabase.open(path)
    try:
        assert _checkpointers() == before + 1
        assert db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        assert BACKSTOP_PAGES * 4096 > 10 * CHECKPOINT_BYTES
        db.execute("CREATE TABLE blobs (n INTEGER PRIMARY KEY, b BLOB NOT NULL)")
        chunk = os.urandom(64 * 1024)
        written = 0
        n = 0
        while written < 2 * CHECKPOINT_BYTES:
            with db.transaction():
                for _ in range(16):
                    n += 1
                    db.execute("INSERT INTO blobs VALUES (?, ?)", (n, chunk))
            written += 16 * len(chunk)
        # Only a checkpoint moves the rows into the database file itself.
        deadline = time.monotonic() + 10
        while path.stat().st_size < written and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size >= written
        assert db.all("SELECT count(*) FROM blobs")[0][0] == n
    finally:
        db.close()
    assert _checkpointers() == before


def test_a_read_only_database_has_no_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "sluis.db"
    SqliteDatabase.open(path).close()
    before = _checkpointers()
    db = SqliteDatabase.open(path, readonly=True)
    try:
        assert _checkpointers() == before
    finally:
        db.close()
