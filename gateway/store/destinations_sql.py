"""Push destinations and their dead letters (`Store` methods, mixed into `SqlStore`).

A small room of its own: a destination's configuration, and its worker's state (cursor,
failures, lease, replay) kept in the database so a restart or another replica carries on
where the last owner stopped. Every write of the worker's progress is fenced by the lease
(`LeaseLost` when another replica holds it now), as a sync run's page commits are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import orjson

from gateway.store.database import Database
from gateway.store.database import need_time as _need
from gateway.store.database import read_time as _dt
from gateway.store.protocols import LeaseLost
from gateway.store.records import DeadLetter, Destination, FeedRow, NotFound

_CONFIG: Final = (
    "tenant, id, kind, url, sealed_secrets, event_types, thin, batch_size, max_attempts,"
    " max_age_seconds, created_at, previous_until, paused_at"
)
_COLUMNS: Final = (
    _CONFIG + ", after_seq, attempts, failing_since, failure, delivered_at, replay_requested_at"
)
#: Sequence numbers per statement when events are read by number.
_SEQS_PER_STATEMENT: Final = 500


def _destination(r: Sequence[Any]) -> Destination:
    return Destination(
        tenant=r[0], id=r[1], kind=r[2], url=r[3], sealed_secrets=bytes(r[4]),
        event_types=tuple(orjson.loads(r[5])), thin=bool(r[6]), batch_size=int(r[7]),
        max_attempts=int(r[8]), max_age_seconds=int(r[9]), created_at=_need(r[10]),
        previous_until=_dt(r[11]), paused_at=_dt(r[12]), after_seq=int(r[13]),
        attempts=int(r[14]), failing_since=_dt(r[15]), failure=r[16], delivered_at=_dt(r[17]),
        replay_requested_at=_dt(r[18]),
    )  # fmt: skip


class SqlDestinations:
    """The `Store` protocol's destination methods (mixed into `SqlStore`)."""

    _db: Database

    def create_destination(self, d: Destination) -> None:
        db = self._db
        with db.transaction():
            if not db.all("SELECT 1 FROM tenants WHERE id = ?", (d.tenant,)):
                raise NotFound(f"tenant {d.tenant}")
            db.execute(
                f"INSERT INTO destinations ({_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL, NULL)",
                (d.tenant, d.id, d.kind, d.url, d.sealed_secrets,
                 orjson.dumps(list(d.event_types)).decode(), int(d.thin), d.batch_size,
                 d.max_attempts, d.max_age_seconds, db.time(d.created_at),
                 db.time(d.previous_until), db.time(d.paused_at), d.after_seq),
            )  # fmt: skip

    def get_destination(self, tenant: str, destination: str) -> Destination:
        rows = self._db.all(
            f"SELECT {_COLUMNS} FROM destinations WHERE tenant = ? AND id = ?",
            (tenant, destination),
        )
        if not rows:
            raise NotFound(f"destination {destination}")
        return _destination(rows[0])

    def list_destinations(self, tenant: str | None = None) -> list[Destination]:
        if tenant is None:
            rows = self._db.all(f"SELECT {_COLUMNS} FROM destinations ORDER BY tenant, id")
        else:
            rows = self._db.all(
                f"SELECT {_COLUMNS} FROM destinations WHERE tenant = ? ORDER BY id", (tenant,)
            )
        return [_destination(r) for r in rows]

    def change_destination(self, d: Destination) -> Destination:
        db = self._db
        changed = db.execute(
            "UPDATE destinations SET sealed_secrets = ?, previous_until = ?, event_types = ?,"
            " thin = ?, batch_size = ?, max_attempts = ?, max_age_seconds = ?, paused_at = ?"
            " WHERE tenant = ? AND id = ?",
            (d.sealed_secrets, db.time(d.previous_until),
             orjson.dumps(list(d.event_types)).decode(), int(d.thin), d.batch_size,
             d.max_attempts, d.max_age_seconds, db.time(d.paused_at), d.tenant, d.id),
        )  # fmt: skip
        if changed == 0:
            raise NotFound(f"destination {d.id}")
        return self.get_destination(d.tenant, d.id)

    def delete_destination(self, tenant: str, destination: str) -> bool:
        db = self._db
        with db.transaction():
            db.execute(
                "DELETE FROM destination_dead_letters WHERE tenant = ? AND destination = ?",
                (tenant, destination),
            )
            return (
                db.execute(
                    "DELETE FROM destinations WHERE tenant = ? AND id = ?", (tenant, destination)
                )
                > 0
            )

    def claim_destination(
        self, tenant: str, destination: str, owner: str, until: datetime, now: datetime
    ) -> bool:
        db = self._db
        changed = db.execute(
            "UPDATE destinations SET claimed_by = ?, claimed_until = ?"
            " WHERE tenant = ? AND id = ?"
            " AND (claimed_by = ? OR claimed_until IS NULL OR claimed_until < ?)",
            (owner, db.time(until), tenant, destination, owner, db.time(now)),
        )
        return changed == 1

    def _fenced_lease(
        self, sql: str, params: Sequence[object], tenant: str, destination: str
    ) -> None:
        if self._db.execute(sql, params) != 1:
            raise LeaseLost(f"destination {destination} of {tenant} is no longer ours")

    def advance_destination(
        self,
        tenant: str,
        destination: str,
        owner: str,
        after_seq: int,
        *,
        at: datetime,
        delivered: bool,
        dead: Sequence[tuple[int, str]] = (),
        reason: str = "",
    ) -> None:
        db = self._db
        with db.transaction():
            self._fenced_lease(
                "UPDATE destinations SET after_seq = ?, attempts = 0, failing_since = NULL,"
                " failure = NULL, delivered_at = CASE WHEN ? = 1 THEN ? ELSE delivered_at END"
                " WHERE tenant = ? AND id = ? AND claimed_by = ? AND after_seq <= ?",
                (after_seq, int(delivered), db.time(at), tenant, destination, owner,
                 after_seq),
                tenant, destination,
            )  # fmt: skip
            self._add_dead(tenant, destination, dead, reason, at)

    def _add_dead(
        self,
        tenant: str,
        destination: str,
        dead: Sequence[tuple[int, str]],
        reason: str,
        at: datetime,
    ) -> None:
        if not dead:
            return
        db = self._db
        db.executemany(
            "INSERT INTO destination_dead_letters"
            " (tenant, destination, seq, subject_id, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, destination, seq) DO NOTHING",
            [(tenant, destination, seq, sid, reason[:64], db.time(at)) for seq, sid in dead],
        )

    def destination_failed(
        self,
        tenant: str,
        destination: str,
        owner: str,
        *,
        attempts: int,
        since: datetime,
        reason: str,
    ) -> None:
        db = self._db
        self._fenced_lease(
            "UPDATE destinations SET attempts = ?, failing_since = ?, failure = ?"
            " WHERE tenant = ? AND id = ? AND claimed_by = ?",
            (attempts, db.time(since), reason[:64], tenant, destination, owner),
            tenant, destination,
        )  # fmt: skip

    def dead_letters(
        self, tenant: str, destination: str, after_seq: int, limit: int
    ) -> list[DeadLetter]:
        rows = self._db.all(
            "SELECT seq, subject_id, reason, dead_at FROM destination_dead_letters"
            " WHERE tenant = ? AND destination = ? AND seq > ? ORDER BY seq LIMIT ?",
            (tenant, destination, after_seq, limit),
        )
        return [DeadLetter(int(r[0]), r[1], r[2], _need(r[3])) for r in rows]

    def dead_letter_counts(self) -> dict[tuple[str, str], int]:
        rows = self._db.all(
            "SELECT tenant, destination, count(*) FROM destination_dead_letters"
            " GROUP BY tenant, destination"
        )
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def parked_subjects(self, tenant: str, destination: str) -> frozenset[str]:
        rows = self._db.all(
            "SELECT DISTINCT subject_id FROM destination_dead_letters"
            " WHERE tenant = ? AND destination = ?",
            (tenant, destination),
        )
        return frozenset(str(r[0]) for r in rows)

    def request_replay(self, tenant: str, destination: str, at: datetime) -> int:
        db = self._db
        with db.transaction():
            if not db.execute(
                "UPDATE destinations SET replay_requested_at = ? WHERE tenant = ? AND id = ?",
                (db.time(at), tenant, destination),
            ):
                raise NotFound(f"destination {destination}")
            rows = db.all(
                "SELECT count(*) FROM destination_dead_letters"
                " WHERE tenant = ? AND destination = ?",
                (tenant, destination),
            )
        return int(rows[0][0])

    def replayed(
        self, tenant: str, destination: str, owner: str, seqs: Sequence[int], *, done: bool
    ) -> None:
        db = self._db
        with db.transaction():
            self._fenced_lease(
                "UPDATE destinations SET replay_requested_at = CASE WHEN ? = 1 THEN NULL"
                " ELSE replay_requested_at END WHERE tenant = ? AND id = ? AND claimed_by = ?",
                (int(done), tenant, destination, owner),
                tenant, destination,
            )  # fmt: skip
            for start in range(0, len(seqs), _SEQS_PER_STATEMENT):
                match, values = db.one_of(list(seqs[start : start + _SEQS_PER_STATEMENT]))
                db.execute(
                    "DELETE FROM destination_dead_letters WHERE tenant = ? AND destination = ?"
                    f" AND seq {match}",
                    (tenant, destination, *values),
                )

    def events_by_seq(self, tenant: str, seqs: Sequence[int]) -> list[FeedRow]:
        found: list[FeedRow] = []
        for start in range(0, len(seqs), _SEQS_PER_STATEMENT):
            match, values = self._db.one_of(list(seqs[start : start + _SEQS_PER_STATEMENT]))
            found += self._feed_rows_where(f"seq {match}", (tenant, *values))
        return sorted(found, key=lambda r: r[0])

    def _feed_rows_where(self, where: str, params: Sequence[object]) -> list[FeedRow]:
        raise NotImplementedError  # pragma: no cover - SqlStore has it
