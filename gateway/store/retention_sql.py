"""What the retention job reads and removes, in SQL once for both engines.

Kept apart from `gateway.store.gateway_sql` (which mixes this in) because it is a room of
its own: a tenant's retention overrides, the questions "which rows are past their time"
and the bounded deletions that answer them, and the claim that keeps the job on one
replica at a time. The store decides nothing here: the caller (`gateway.lifecycle.retention`)
passes the cutoff times and the batches; the store only knows which column holds a row's
time and how to delete a batch in one transaction.

Finding is separate from deleting so that a dry run and a real run count the same rows,
and so that deleting goes in batches of the caller's size: each batch is one short
transaction, and a sync page or a feed read waits at most for one batch, never for a
whole year of events. Finding reads outside any transaction (on SQLite a reader
connection of its own), so it holds no write lock however long it scans.

People under a restriction (GDPR Art. 18) are never found by the event queries: storage
is the one processing a restriction allows, and nothing of theirs is deleted until it is
lifted or they are erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from gateway.store.database import Database, time_text
from gateway.store.database import need_time as _need
from gateway.store.database import read_time as _dt
from gateway.store.event_wire import event_wire
from gateway.store.records import (
    RETENTION_FIELDS,
    ExpiredKind,
    JobState,
    RecordKey,
    RetentionField,
    RetentionOverrides,
)

#: Keys matched in one statement (SQLite admits 32,766 parameters).
_KEYS_PER_STATEMENT: Final = 1000
#: Not found by the event queries: people whose processing is restricted.
_NOT_RESTRICTED: Final = (
    "NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant = e.tenant"
    " AND s.subject_id = e.subject_id AND s.kind = 'restricted')"
)
#: Each event with its newest sibling (same tenant, source and person) first.
_BY_PERSON: Final = "PARTITION BY source, subject_id ORDER BY seq DESC"


@dataclass(frozen=True, slots=True)
class _Expiry:
    """How one kind of record is found past its time: its table, key columns, the scope
    (a tenant column, or the owning account's tenant; "" for gateway-wide records), the
    condition on its time column(s) with one `?` for the cutoff, and whether the gateway
    itself has such records (the operators', whose tenant is NULL)."""

    table: str
    key: tuple[str, ...]
    scope: str
    expired: str
    operators: bool = False
    #: Rows elsewhere that belong to a record and go with it: (table, column holding the
    #: record's one-column key). A finished run's seen log is gone already (`finish_run`);
    #: this is for one whose owner never recorded its end.
    owned: tuple[str, str] | None = None


_ACCOUNT_TENANT: Final = "(SELECT a.tenant FROM accounts a WHERE a.id = r.account_id)"
_EXPIRIES: Final[dict[ExpiredKind, _Expiry]] = {
    "sync_runs": _Expiry(
        "sync_runs",
        ("id",),
        "r.tenant",
        "r.status != 'running' AND r.finished_at < ?",
        owned=("run_seen", "run"),
    ),
    "dsr_requests": _Expiry(
        "dsr_requests", ("id",), "r.tenant", "r.state != 'open' AND r.closed_at < ?"
    ),
    # A receipt is part of its suppression (the list shows which consumers confirmed):
    # it goes only once the person is no longer suppressed as erased.
    "erasure_receipts": _Expiry(
        "erasure_receipts",
        ("subject_id", "consumer_id"),
        "r.tenant",
        "r.acknowledged_at < ? AND NOT EXISTS (SELECT 1 FROM suppressions s"
        " WHERE s.tenant = r.tenant AND s.subject_id = r.subject_id AND s.kind = 'erased')",
    ),
    # Idle for longer than any session lives (30 minutes idle, 12 hours at most).
    "sessions": _Expiry("sessions", ("id",), _ACCOUNT_TENANT, "r.last_seen_at < ?", operators=True),
    "invitations": _Expiry(
        "invitations",
        ("token_hash",),
        _ACCOUNT_TENANT,
        "COALESCE(r.used_at, r.expires_at) < ?",
        operators=True,
    ),
    "api_tokens": _Expiry(
        "api_tokens",
        ("id",),
        "r.tenant",
        "COALESCE(r.revoked_at, r.expires_at) < ?",
        operators=True,
    ),
    "oidc_pending": _Expiry("oidc_pending", ("state_hash",), "r.tenant", "r.expires_at < ?"),
    "signin_throttles": _Expiry(
        "signin_throttles",
        ("key",),
        "",
        "COALESCE(r.locked_until, r.first_failure_at) < ?",
        operators=True,
    ),
}


def keep_event_head(db: Database, tenant: str) -> None:
    """Inside a transaction, before events are deleted or rewritten: hold the tenant's lock
    and keep the highest event number it ever gave (`event_heads`), so numbers are never
    given twice and a consumer's cursor never skips what comes after it, whichever event
    goes; and bump the tenant's feed generation, so feed pages kept in memory by any
    replica (`gateway.delivery.blocks`) are read afresh."""
    db.lock_tenant(tenant)
    rows = db.all(
        "SELECT (SELECT MAX(seq) FROM events WHERE tenant = ?),"
        " (SELECT last_seq FROM event_heads WHERE tenant = ?)",
        (tenant, tenant),
    )
    db.execute(
        "INSERT INTO event_heads (tenant, last_seq, generation) VALUES (?, ?, 1)"
        " ON CONFLICT (tenant) DO UPDATE SET last_seq = excluded.last_seq,"
        " generation = event_heads.generation + 1",
        (tenant, max(int(rows[0][0] or 0), int(rows[0][1] or 0))),
    )


class SqlRetention:
    """The `Store` protocol's retention methods (mixed into `SqlStore`)."""

    _db: Database

    # ------------------------------------------------------------------ policy

    def retention_policy(self, tenant: str) -> RetentionOverrides | None:
        columns = ", ".join(RETENTION_FIELDS)
        rows = self._db.all(
            f"SELECT {columns}, updated_at, updated_by FROM retention_policies WHERE tenant = ?",
            (tenant,),
        )
        if not rows:
            return None
        row = rows[0]
        n = len(RETENTION_FIELDS)
        days = {f: int(v) for f, v in zip(RETENTION_FIELDS, row[:n], strict=True) if v is not None}
        return RetentionOverrides(tenant, days, _need(row[n]), str(row[n + 1]))

    def set_retention_policy(self, overrides: RetentionOverrides) -> None:
        days: Mapping[RetentionField, int] = overrides.days
        columns = ", ".join(RETENTION_FIELDS)
        updates = ", ".join(f"{f} = excluded.{f}" for f in RETENTION_FIELDS)
        self._db.execute(
            f"INSERT INTO retention_policies (tenant, {columns}, updated_at, updated_by)"
            f" VALUES (?, {', '.join('?' * len(RETENTION_FIELDS))}, ?, ?)"
            f" ON CONFLICT (tenant) DO UPDATE SET {updates},"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (
                overrides.tenant,
                *(days.get(f) for f in RETENTION_FIELDS),
                self._db.time(overrides.updated_at),
                overrides.updated_by,
            ),
        )

    # ------------------------------------------------------------------ feed events

    def superseded_events(self, tenant: str, before: datetime) -> list[int]:
        rows = self._db.all(
            "SELECT seq FROM (SELECT tenant, seq, subject_id, occurred_at,"
            f" ROW_NUMBER() OVER ({_BY_PERSON}) AS newest FROM events WHERE tenant = ?) AS e"
            f" WHERE newest > 1 AND occurred_at < ? AND {_NOT_RESTRICTED} ORDER BY seq",
            (tenant, self._db.time(before)),
        )
        return [int(r[0]) for r in rows]

    def tombstones_with_data(self, tenant: str, before: datetime) -> list[int]:
        rows = self._db.all(
            "SELECT seq FROM events e WHERE tenant = ?"
            " AND type IN ('subject.deleted', 'subject.erased') AND data IS NOT NULL"
            f" AND occurred_at < ? AND {_NOT_RESTRICTED} ORDER BY seq",
            (tenant, self._db.time(before)),
        )
        return [int(r[0]) for r in rows]

    def leaver_events(self, tenant: str, before: datetime) -> list[tuple[str, str, int]]:
        rows = self._db.all(
            "SELECT source, subject_id, seq FROM (SELECT tenant, seq, source, subject_id,"
            f" FIRST_VALUE(type) OVER ({_BY_PERSON}) AS last_type,"
            f" FIRST_VALUE(occurred_at) OVER ({_BY_PERSON}) AS last_at"
            " FROM events WHERE tenant = ?) AS e"
            " WHERE last_type = 'subject.deleted' AND last_at < ?"
            f" AND {_NOT_RESTRICTED} ORDER BY source, subject_id, seq",
            (tenant, self._db.time(before)),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def delete_events(self, tenant: str, seqs: Sequence[int]) -> int:
        deleted = 0
        with self._db.transaction():
            keep_event_head(self._db, tenant)
            for start in range(0, len(seqs), _KEYS_PER_STATEMENT):
                match, params = self._db.one_of(seqs[start : start + _KEYS_PER_STATEMENT])
                deleted += self._db.execute(
                    f"DELETE FROM events WHERE tenant = ? AND seq {match}", (tenant, *params)
                )
        return deleted

    def clear_event_data(self, tenant: str, seqs: Sequence[int]) -> int:
        cleared = 0
        with self._db.transaction():
            keep_event_head(self._db, tenant)
            for start in range(0, len(seqs), _KEYS_PER_STATEMENT):
                match, params = self._db.one_of(seqs[start : start + _KEYS_PER_STATEMENT])
                rows = self._db.all(
                    "SELECT seq, id, type, subject_id, occurred_at, source, instruction_id"
                    f" FROM events WHERE tenant = ? AND data IS NOT NULL AND seq {match}",
                    (tenant, *params),
                )
                for seq, event_id, kind, subject_id, at, source, instruction in rows:
                    # The feed's bytes, rebuilt by their one writer: the same event, no data.
                    wire = event_wire(
                        seq=seq, id=event_id, type=kind, subject_id=subject_id, data=None,
                        occurred_at=time_text(_need(at)), source=source,
                        instruction_id=instruction,
                    )  # fmt: skip
                    cleared += self._db.execute(
                        "UPDATE events SET data = NULL, wire = ? WHERE tenant = ? AND seq = ?",
                        (wire, tenant, seq),
                    )
        return cleared

    def forget_leavers(self, tenant: str, people: Sequence[tuple[str, str]]) -> int:
        by_source: dict[str, list[str]] = {}
        for source, subject_id in people:
            by_source.setdefault(source, []).append(subject_id)
        forgotten = 0
        with self._db.transaction():
            for source, ids in sorted(by_source.items()):
                for start in range(0, len(ids), _KEYS_PER_STATEMENT):
                    match, params = self._db.one_of(ids[start : start + _KEYS_PER_STATEMENT])
                    # Only while still absent: one who came back since is kept.
                    forgotten += self._db.execute(
                        "DELETE FROM subjects WHERE tenant = ? AND connector = ? AND present = 0"
                        f" AND subject_id {match}",
                        (tenant, source, *params),
                    )
        return forgotten

    # ------------------------------------------------------------------ other records

    def expired_records(
        self, kind: ExpiredKind, tenant: str | None, before: datetime
    ) -> list[RecordKey]:
        spec = _EXPIRIES[kind]
        params: list[object] = []
        if tenant is None:
            if not spec.operators:
                return []  # a tenant's records only
            scope = f" AND {spec.scope} IS NULL" if spec.scope else ""
        elif not spec.scope:
            return []  # gateway-wide records only
        else:
            scope, params = f" AND {spec.scope} = ?", [tenant]
        rows = self._db.all(
            f"SELECT {', '.join('r.' + k for k in spec.key)} FROM {spec.table} r"
            f" WHERE {spec.expired}{scope} ORDER BY {', '.join('r.' + k for k in spec.key)}",
            (self._db.time(before), *params),
        )
        return [tuple(_key(v) for v in r) for r in rows]

    def delete_records(
        self, kind: ExpiredKind, tenant: str | None, keys: Sequence[RecordKey]
    ) -> int:
        spec = _EXPIRIES[kind]
        deleted = 0
        with self._db.transaction():
            if len(spec.key) == 1:
                values = [k[0] for k in keys]
                for start in range(0, len(values), _KEYS_PER_STATEMENT):
                    match, params = self._db.one_of(values[start : start + _KEYS_PER_STATEMENT])
                    if spec.owned is not None:
                        table, column = spec.owned
                        self._db.execute(f"DELETE FROM {table} WHERE {column} {match}", params)
                    deleted += self._db.execute(
                        f"DELETE FROM {spec.table} WHERE {spec.key[0]} {match}", params
                    )
            else:
                where = " AND ".join(f"{k} = ?" for k in spec.key)
                for key in keys:
                    deleted += self._db.execute(
                        f"DELETE FROM {spec.table} WHERE tenant = ? AND {where}", (tenant, *key)
                    )
        return deleted

    # ------------------------------------------------------------------ one owner at a time

    def claim_job(self, name: str, owner: str, until: datetime, now: datetime) -> bool:
        db = self._db
        with db.transaction():
            db.execute(
                "INSERT INTO job_claims (name, first_run_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, db.time(now)),
            )
            changed = db.execute(
                "UPDATE job_claims SET claimed_by = ?, claimed_until = ? WHERE name = ?"
                " AND (claimed_by = ? OR claimed_by IS NULL OR claimed_until IS NULL"
                " OR claimed_until < ?)",
                (owner, db.time(until), name, owner, db.time(now)),
            )
        return changed == 1

    def finish_job(self, name: str, owner: str, outcome: str, at: datetime) -> bool:
        db = self._db
        success = ", last_success_at = ?" if outcome == "succeeded" else ""
        params: tuple[object, ...] = (db.time(at), outcome)
        if success:
            params = (*params, db.time(at))
        changed = db.execute(
            "UPDATE job_claims SET claimed_by = NULL, claimed_until = NULL,"
            f" last_finished_at = ?, last_outcome = ?{success} WHERE name = ? AND claimed_by = ?",
            (*params, name, owner),
        )
        return changed == 1

    def job_state(self, name: str) -> JobState | None:
        rows = self._db.all(
            "SELECT name, claimed_by, claimed_until, first_run_at, last_finished_at,"
            " last_outcome, last_success_at FROM job_claims WHERE name = ?",
            (name,),
        )
        if not rows:
            return None
        r = rows[0]
        return JobState(
            name=r[0], claimed_by=r[1], claimed_until=_dt(r[2]), first_run_at=_need(r[3]),
            last_finished_at=_dt(r[4]), last_outcome=r[5], last_success_at=_dt(r[6]),
        )  # fmt: skip


def _key(value: Any) -> str | bytes:
    """A key column's value as the records hold it (PostgreSQL hands bytea over as bytes
    or memoryview, SQLite BLOBs as bytes)."""
    if isinstance(value, memoryview):
        return bytes(value)
    return cast("str | bytes", value)


__all__ = ["SqlRetention", "keep_event_head"]
