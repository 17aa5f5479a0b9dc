"""Checkpoint push settings: one row per tenant that wants its checkpoints sent.

Kept apart from `gateway.store.gateway_sql` (which mixes this in) because it is a small room
of its own: the URL a tenant's auditor gave, and how far pushing has got, so a restarted
gateway (or another replica) carries on where the last push ended instead of starting over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from gateway.store.database import Database
from gateway.store.database import need_time as _need
from gateway.store.database import read_time as _dt
from gateway.store.records import CheckpointPush, NotFound

_COLUMNS: Final = "tenant, url, configured_at, pushed_seq, pushed_at, failed_at, failure"


def _push(row: Any) -> CheckpointPush:
    return CheckpointPush(row[0], row[1], _need(row[2]), row[3], _dt(row[4]), _dt(row[5]), row[6])


class SqlCheckpointPushes:
    """The `Store` protocol's checkpoint push methods (mixed into `SqlStore`)."""

    _db: Database

    def set_checkpoint_push(self, tenant: str, url: str, at: datetime) -> CheckpointPush:
        db = self._db
        with db.transaction():
            if not db.all("SELECT 1 FROM tenants WHERE id = ?", (tenant,)):
                raise NotFound(f"tenant {tenant}")
            db.execute(
                f"INSERT INTO checkpoint_pushes ({_COLUMNS}) VALUES (?, ?, ?, NULL, NULL,"
                " NULL, NULL) ON CONFLICT (tenant) DO UPDATE SET url = excluded.url,"
                " configured_at = excluded.configured_at, pushed_seq = NULL,"
                " pushed_at = NULL, failed_at = NULL, failure = NULL",
                (tenant, url, db.time(at)),
            )
        return CheckpointPush(tenant, url, at.astimezone(UTC))

    def get_checkpoint_push(self, tenant: str) -> CheckpointPush | None:
        rows = self._db.all(f"SELECT {_COLUMNS} FROM checkpoint_pushes WHERE tenant = ?", (tenant,))
        return _push(rows[0]) if rows else None

    def clear_checkpoint_push(self, tenant: str) -> bool:
        return self._db.execute("DELETE FROM checkpoint_pushes WHERE tenant = ?", (tenant,)) > 0

    def list_checkpoint_pushes(self) -> list[CheckpointPush]:
        rows = self._db.all(f"SELECT {_COLUMNS} FROM checkpoint_pushes ORDER BY tenant")
        return [_push(r) for r in rows]

    def checkpoint_pushed(self, tenant: str, url: str, seq: int, at: datetime) -> None:
        self._db.execute(
            "UPDATE checkpoint_pushes SET pushed_seq = ?, pushed_at = ?, failed_at = NULL,"
            " failure = NULL WHERE tenant = ? AND url = ?"
            " AND (pushed_seq IS NULL OR pushed_seq < ?)",
            (seq, self._db.time(at), tenant, url, seq),
        )

    def checkpoint_push_failed(self, tenant: str, url: str, reason: str, at: datetime) -> None:
        self._db.execute(
            "UPDATE checkpoint_pushes SET failed_at = ?, failure = ? WHERE tenant = ? AND url = ?",
            (self._db.time(at), reason[:64], tenant, url),
        )

    def claim_checkpoint_push(
        self, tenant: str, url: str, owner: str, until: datetime, now: datetime
    ) -> bool:
        db = self._db
        changed = db.execute(
            "UPDATE checkpoint_pushes SET claimed_by = ?, claimed_until = ?"
            " WHERE tenant = ? AND url = ?"
            " AND (claimed_by = ? OR claimed_until IS NULL OR claimed_until < ?)",
            (owner, db.time(until), tenant, url, owner, db.time(now)),
        )
        return changed == 1
