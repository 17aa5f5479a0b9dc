"""Checkpoint push settings in SQLite: one row per tenant that wants its checkpoints sent.

Kept apart from `gateway.store.sqlite` (which mixes this in) because it is a small room of
its own: the URL a tenant's auditor gave, and how far pushing has got, so a restarted
gateway (or another replica) carries on where the last push ended instead of starting over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from gateway.store.ledger_sqlite import SqliteDatabase
from gateway.store.records import CheckpointPush, NotFound
from gateway.store.sqltime import from_text as _dt
from gateway.store.sqltime import to_text as _ts

PUSH_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS checkpoint_pushes (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id), url TEXT NOT NULL,
    configured_at TEXT NOT NULL, pushed_seq INTEGER, pushed_at TEXT,
    failed_at TEXT, failure TEXT)"""
_COLUMNS: Final = "tenant, url, configured_at, pushed_seq, pushed_at, failed_at, failure"


def _push(row: Any) -> CheckpointPush:
    configured = datetime.fromisoformat(row[2])
    return CheckpointPush(row[0], row[1], configured, row[3], _dt(row[4]), _dt(row[5]), row[6])


class SqliteCheckpointPushes:
    """The `Store` protocol's checkpoint push methods (mixed into `SqliteStore`)."""

    _db: SqliteDatabase

    def _create_push_table(self) -> None:
        self._db.conn.execute(PUSH_SCHEMA)

    def set_checkpoint_push(self, tenant: str, url: str, at: datetime) -> CheckpointPush:
        db = self._db
        with db.lock, db.transaction():
            if not db.conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant,)).fetchone():
                raise NotFound(f"tenant {tenant}")
            db.conn.execute(
                f"INSERT INTO checkpoint_pushes ({_COLUMNS}) VALUES (?, ?, ?, NULL, NULL,"
                " NULL, NULL) ON CONFLICT (tenant) DO UPDATE SET url = excluded.url,"
                " configured_at = excluded.configured_at, pushed_seq = NULL,"
                " pushed_at = NULL, failed_at = NULL, failure = NULL",
                (tenant, url, _ts(at)),
            )
        return CheckpointPush(tenant, url, at.astimezone(UTC))

    def get_checkpoint_push(self, tenant: str) -> CheckpointPush | None:
        rows = self._db.all(f"SELECT {_COLUMNS} FROM checkpoint_pushes WHERE tenant = ?", (tenant,))
        return _push(rows[0]) if rows else None

    def clear_checkpoint_push(self, tenant: str) -> bool:
        db = self._db
        with db.lock, db.transaction():
            cur = db.conn.execute("DELETE FROM checkpoint_pushes WHERE tenant = ?", (tenant,))
            return cur.rowcount > 0

    def list_checkpoint_pushes(self) -> list[CheckpointPush]:
        rows = self._db.all(f"SELECT {_COLUMNS} FROM checkpoint_pushes ORDER BY tenant")
        return [_push(r) for r in rows]

    def checkpoint_pushed(self, tenant: str, url: str, seq: int, at: datetime) -> None:
        db = self._db
        with db.lock, db.transaction():
            db.conn.execute(
                "UPDATE checkpoint_pushes SET pushed_seq = ?, pushed_at = ?, failed_at = NULL,"
                " failure = NULL WHERE tenant = ? AND url = ?"
                " AND (pushed_seq IS NULL OR pushed_seq < ?)",
                (seq, _ts(at), tenant, url, seq),
            )

    def checkpoint_push_failed(self, tenant: str, url: str, reason: str, at: datetime) -> None:
        db = self._db
        with db.lock, db.transaction():
            db.conn.execute(
                "UPDATE checkpoint_pushes SET failed_at = ?, failure = ?"
                " WHERE tenant = ? AND url = ?",
                (_ts(at), reason[:64], tenant, url),
            )
