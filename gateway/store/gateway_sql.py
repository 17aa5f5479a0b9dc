"""The gateway's state in SQL, once for both engines: tenants, connectors, instructions, runs,
subjects (digests only), feed events and consumers, with the ledger and the account
register beside it on the same database.

`SqlStore` runs plain SQL on a `Database` (`gateway.store.database`): SQLite for the embedded
default (`gateway.store.sqlite`), PostgreSQL for several replicas (`gateway.store.postgres`).
A synced page is one transaction: subjects, feed events, run progress and the ledger entry
commit together (`transaction()` nests the ledger's own append), which is what makes a
crash between pages resume without loss or duplicates. The tables are made and upgraded by
`gateway.store.migrate`, never here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final, cast

import orjson

from gateway.store.accounts_sql import SqlAccountStore
from gateway.store.database import Database, Dialect, time_text
from gateway.store.database import need_time as _need
from gateway.store.database import read_time as _dt
from gateway.store.destinations_sql import SqlDestinations
from gateway.store.event_wire import RenderedEvent, event_wire, render_event
from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.protocols import LeaseLost, StoreConflict, StoreError
from gateway.store.push_sql import SqlCheckpointPushes
from gateway.store.records import (
    AlreadyExists,
    ConnectorRecord,
    Consumer,
    DsrRequest,
    EventRow,
    EventType,
    FeedAccess,
    FeedBlock,
    FeedRow,
    Instruction,
    NewEvent,
    NotFound,
    RequestKind,
    RequestOutcome,
    RequestState,
    RunRecord,
    RunStatus,
    SubjectState,
    SubjectWrite,
    Suppression,
    SuppressionKind,
    Tenant,
)
from gateway.store.retention_sql import SqlRetention, keep_event_head


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _standing_columns(alias: str, connector_columns: str, instruction_columns: str) -> str:
    """A source's standing as columns: the connector's (table alias `alias`), then its
    instruction's (alias `i`), as `_connector` and `_instruction` read them back."""
    return ", ".join(
        [f"{alias}.{c.strip()}" for c in connector_columns.split(",")]
        + [f"i.{c.strip()}" for c in instruction_columns.split(",")]
    )


class SqlStore(SqlCheckpointPushes, SqlDestinations, SqlRetention):
    """The `Store` protocol over one `Database` whose schema is up to date."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._t = database.time
        #: The transfer log's rows, on this store's database (one transaction for both).
        self.ledger = SqlLedgerStore(database)
        #: The account register, on this store's database (its transactions included).
        self.accounts = SqlAccountStore(database)

    # ------------------------------------------------------------------ plumbing

    @property
    def database(self) -> Database:
        return self._db

    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    @property
    def journals_subjects(self) -> bool:
        # SQLite only: there each commit's random `subjects` pages go to the WAL whole (a
        # third of a first sync's time); PostgreSQL logs rows, not pages.
        return self._db.dialect == "sqlite"

    def transaction(self) -> AbstractContextManager[None]:
        return self._db.transaction()

    def _all(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        return self._db.all(sql, params, reuse_plan=reuse_plan)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False) -> int:
        return self._db.execute(sql, params, reuse_plan=reuse_plan)

    def _one(self, sql: str, params: Sequence[object], what: str) -> Any:
        rows = self._all(sql, params)
        if not rows:
            raise NotFound(what)
        return rows[0]

    # ------------------------------------------------------------------ tenants

    def create_tenant(self, tenant: Tenant) -> None:
        self._write(
            "INSERT INTO tenants (id, name, created_at, sealed_key) VALUES (?, ?, ?, ?)",
            (tenant.id, tenant.name, self._t(tenant.created_at), tenant.sealed_key),
        )

    def get_tenant(self, tenant_id: str) -> Tenant:
        row = self._one(
            f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE id = ?", (tenant_id,),
            f"tenant {tenant_id}",
        )  # fmt: skip
        return _tenant(row)

    def list_tenants(self) -> list[Tenant]:
        rows = self._all(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY id")
        return [_tenant(r) for r in rows]

    def terminate_tenant(self, tenant_id: str, at: datetime) -> bool:
        return (
            self._write(
                "UPDATE tenants SET terminated_at = ? WHERE id = ? AND terminated_at IS NULL",
                (self._t(at), tenant_id),
            )
            > 0
        )

    def destroy_tenant_data(self, tenant_id: str, at: datetime) -> None:
        """Every row of the tenant's data, its accounts and secrets deleted, its subject key
        overwritten; the tenant row (id, name, dates) and its ledger stay."""
        accounts = "(SELECT id FROM accounts WHERE tenant = ?)"
        with self._db.transaction():
            self._db.lock_tenant(tenant_id)
            for table in _TENANT_TABLES:
                self._write(f"DELETE FROM {table} WHERE tenant = ?", (tenant_id,))
            for table in ("sessions", "api_tokens", "invitations"):
                self._write(f"DELETE FROM {table} WHERE account_id IN {accounts}", (tenant_id,))
            self._write("DELETE FROM accounts WHERE tenant = ?", (tenant_id,))
            self._write(
                "UPDATE tenants SET sealed_key = ?, destroyed_at = ? WHERE id = ?",
                (b"", self._t(at), tenant_id),
            )

    # ------------------------------------------------------------------ connectors

    _CONNECTOR_COLUMNS: Final = (
        "tenant, id, type, base_url, sealed_credentials, settings, mapping_text,"
        " mapping_digest, interval_seconds, max_delete_share, created_at, watermark,"
        " last_success_at"
    )
    _CONNECTOR_READ: Final = _CONNECTOR_COLUMNS + ", paused_at, deleted_at, deleted_subjects"

    def create_connector(self, record: ConnectorRecord) -> None:
        self.get_tenant(record.tenant)
        self._write(
            f"INSERT INTO connectors ({self._CONNECTOR_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.tenant, record.id, record.type, record.base_url,
                record.sealed_credentials, _json(dict(record.settings)), record.mapping_text,
                record.mapping_digest, record.interval_seconds, record.max_delete_share,
                self._t(record.created_at), record.watermark, self._t(record.last_success_at),
            ),
        )  # fmt: skip

    def get_connector(self, tenant: str, connector_id: str) -> ConnectorRecord:
        row = self._one(
            f"SELECT {self._CONNECTOR_READ} FROM connectors WHERE tenant = ? AND id = ?"
            " AND deleted_at IS NULL",
            (tenant, connector_id),
            f"connector {connector_id} of tenant {tenant}",
        )
        return _connector(row)

    def list_connectors(self, tenant: str | None = None) -> list[ConnectorRecord]:
        if tenant is None:
            rows = self._all(
                f"SELECT {self._CONNECTOR_READ} FROM connectors WHERE deleted_at IS NULL"
                " ORDER BY 1, 2"
            )
        else:
            rows = self._all(
                f"SELECT {self._CONNECTOR_READ} FROM connectors WHERE tenant = ?"
                " AND deleted_at IS NULL ORDER BY 2",
                (tenant,),
            )
        return [_connector(r) for r in rows]

    def set_connector_sync_state(
        self, tenant: str, connector_id: str, watermark: str | None, succeeded_at: datetime
    ) -> None:
        self._write(
            "UPDATE connectors SET watermark = COALESCE(?, watermark), last_success_at = ?"
            " WHERE tenant = ? AND id = ?",
            (watermark, self._t(succeeded_at), tenant, connector_id),
        )

    # ------------------------------------------------------------------ instructions

    _INSTRUCTION_COLUMNS: Final = (
        "id, tenant, connector, granted_by, granted_at, purpose, mapping_digest, fields,"
        " valid_until, revoked_at, revoked_by"
    )

    def add_instruction(self, instruction: Instruction) -> None:
        i = instruction
        self.get_connector(i.tenant, i.connector)
        self._write(
            f"INSERT INTO instructions ({self._INSTRUCTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                i.id, i.tenant, i.connector, i.granted_by, self._t(i.granted_at), i.purpose,
                i.mapping_digest, _json(dict(i.fields)), self._t(i.valid_until),
                self._t(i.revoked_at), i.revoked_by,
            ),
        )  # fmt: skip

    def get_instruction(self, instruction_id: str) -> Instruction:
        row = self._one(
            f"SELECT {self._INSTRUCTION_COLUMNS} FROM instructions WHERE id = ?",
            (instruction_id,),
            f"instruction {instruction_id}",
        )
        return _instruction(row)

    def list_instructions(self, tenant: str, connector_id: str) -> list[Instruction]:
        rows = self._all(
            f"SELECT {self._INSTRUCTION_COLUMNS} FROM instructions"
            " WHERE tenant = ? AND connector = ? ORDER BY granted_at, id",
            (tenant, connector_id),
        )
        return [_instruction(r) for r in rows]

    #: `source_standing`'s one statement, spelled once (a feed page and a push batch ask
    #: it for each source): the connector, joined to each of its instructions in grant
    #: order; a row's first `_STANDING_SPLIT` columns are the connector's.
    _STANDING_SPLIT: Final = len(_CONNECTOR_READ.split(","))
    _STANDING_SQL: Final = (
        "SELECT "
        + _standing_columns("c", _CONNECTOR_READ, _INSTRUCTION_COLUMNS)
        + " FROM connectors c"
        " LEFT JOIN instructions i ON i.tenant = c.tenant AND i.connector = c.id"
        " WHERE c.tenant = ? AND c.id = ? AND c.deleted_at IS NULL"
        " ORDER BY i.granted_at, i.id"
    )

    def source_standing(
        self, tenant: str, connector_id: str
    ) -> tuple[ConnectorRecord | None, list[Instruction]]:
        rows = self._all(self._STANDING_SQL, (tenant, connector_id), reuse_plan=True)
        if not rows:
            return None, []
        width = self._STANDING_SPLIT
        record = _connector(rows[0][:width])
        return record, [_instruction(r[width:]) for r in rows if r[width] is not None]

    def revoke_instruction(self, instruction_id: str, by: str, at: datetime) -> Instruction:
        with self._db.transaction():
            current = self.get_instruction(instruction_id)
            if current.revoked_at is None:
                self._db.execute(
                    "UPDATE instructions SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                    (self._t(at), by, instruction_id),
                )
        return self.get_instruction(instruction_id)

    # ------------------------------------------------------------------ runs

    _RUN_COLUMNS: Final = (
        "id, tenant, connector, mode, status, started_at, finished_at, cursor, watermark,"
        " counts, error, instruction_id, pages, since, confirm_deletes, owner, lease_until"
    )

    def start_run(self, run: RunRecord) -> bool:
        try:
            self._write(
                f"INSERT INTO sync_runs ({self._RUN_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id, run.tenant, run.connector, run.mode, run.status,
                    self._t(run.started_at), self._t(run.finished_at), run.cursor, run.watermark,
                    _json(dict(run.counts)), run.error, run.instruction_id, run.pages,
                    run.since, run.confirm_deletes, run.owner, self._t(run.lease_until),
                ),
            )  # fmt: skip
        except AlreadyExists:
            if run.status == "running":
                return False
            raise
        return True

    def get_run(self, run_id: str) -> RunRecord:
        row = self._one(
            f"SELECT {self._RUN_COLUMNS} FROM sync_runs WHERE id = ?", (run_id,), f"run {run_id}"
        )
        return _run(row)

    def running_runs(self) -> list[RunRecord]:
        rows = self._all(
            f"SELECT {self._RUN_COLUMNS} FROM sync_runs WHERE status = 'running'"
            " ORDER BY started_at"
        )
        return [_run(r) for r in rows]

    def last_run(self, tenant: str, connector_id: str) -> RunRecord | None:
        rows = self._all(
            f"SELECT {self._RUN_COLUMNS} FROM sync_runs WHERE tenant = ? AND connector = ?"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (tenant, connector_id),
        )
        return _run(rows[0]) if rows else None

    def list_runs(self, tenant: str, connector_id: str, limit: int = 20) -> list[RunRecord]:
        rows = self._all(
            f"SELECT {self._RUN_COLUMNS} FROM sync_runs WHERE tenant = ? AND connector = ?"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (tenant, connector_id, limit),
        )
        return [_run(r) for r in rows]

    def save_run_progress(
        self,
        run_id: str,
        cursor: str | None,
        watermark: str | None,
        counts: Mapping[str, int],
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        sql = (
            "UPDATE sync_runs SET cursor = ?, watermark = ?, counts = ?, pages = pages + 1,"
            " lease_until = COALESCE(?, lease_until) WHERE id = ?"
        )
        params: tuple[object, ...] = (
            cursor, watermark, _json(dict(counts)), self._t(lease_until), run_id,
        )  # fmt: skip
        self._fenced(sql, params, owner)

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        at: datetime,
        counts: Mapping[str, int],
        error: str | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        with self._db.transaction():
            self._fenced(
                "UPDATE sync_runs SET status = ?, finished_at = ?, counts = ?, error = ?,"
                " lease_until = NULL WHERE id = ?",
                (status, self._t(at), _json(dict(counts)), error, run_id),
                owner,
                running=False,
            )
            # What it journaled goes into `subjects` first (a run that failed or was
            # stopped half-way has its events in the feed). Then its seen log, which served
            # the sweep, goes: keyed ids are not kept longer than they are used. Neither
            # when the fence failed: the owner still needs them.
            self._merge_journal(run_id)
            self._write("DELETE FROM run_seen WHERE run = ?", (run_id,))

    def _fenced(
        self, sql: str, params: tuple[object, ...], owner: str | None, *, running: bool = True
    ) -> None:
        """An update of one run; with `owner`, only while that process owns it (and, with
        `running`, while it still runs): a process that lost the run must not write over
        its successor's progress. An admin's stop leaves the owner, who records the end."""
        # By primary key: one plan serves every page of every run.
        if owner is None:
            self._write(sql, params, reuse_plan=True)
            return
        fence = " AND owner = ? AND status = 'running'" if running else " AND owner = ?"
        if not self._write(sql + fence, (*params, owner), reuse_plan=True):
            raise LeaseLost("the run is no longer this process's to write")

    def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        changed = self._write(
            "UPDATE sync_runs SET lease_until = ? WHERE id = ? AND owner = ?"
            " AND status = 'running'",
            (self._t(until), run_id, owner),
            reuse_plan=True,
        )
        return changed == 1

    def claim_runs(
        self, owner: str, until: datetime, limit: int, *, expired_before: datetime | None
    ) -> list[RunRecord]:
        if limit <= 0:
            return []
        expired = ""
        params: list[object] = []
        if expired_before is not None:
            expired = " AND (lease_until IS NULL OR lease_until < ?)"
            params.append(self._t(expired_before))
        with self._db.transaction():
            rows = self._all(
                f"SELECT id FROM sync_runs WHERE status = 'running'{expired}"
                f" ORDER BY started_at LIMIT ?{self._db.skip_locked}",
                (*params, limit),
            )
            ids = [r[0] for r in rows]
            for run_id in ids:
                self._write(
                    "UPDATE sync_runs SET owner = ?, lease_until = ? WHERE id = ?",
                    (owner, self._t(until), run_id),
                )
            return [self.get_run(run_id) for run_id in ids]

    # ------------------------------------------------------------------ subjects, events

    def subject_states(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> dict[str, SubjectState]:
        found: dict[str, SubjectState] = {}
        for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
            match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
            rows = self._all(
                "SELECT subject_id, digest, present FROM subjects"
                f" WHERE tenant = ? AND connector = ? AND subject_id {match}",
                (tenant, connector_id, *ids),
            )
            for sid, digest, present in rows:
                found[sid] = SubjectState(sid, digest, bool(present))
        return found

    def write_subjects(
        self, tenant: str, connector_id: str, run_id: str, rows: Sequence[SubjectWrite]
    ) -> None:
        if not rows:
            return
        seen = _run_mark(run_id)
        latest = {r.subject_id: r for r in rows}  # one row per id, the last winning
        fresh = [r for r in latest.values() if r.new]
        known = [r for r in latest.values() if not r.new]
        if self._db.dialect == "postgres":
            # One statement each for the new and the known, not `upsert_rows` (a staging
            # table, COPY, the upsert from it: five round trips): a page's transaction runs
            # under the tenant's lock, and on a busy machine it waits out each round trip.
            # Rows the writer found new (`SubjectWrite.new`) are inserted without ON
            # CONFLICT, whose check for a row to update is a second descent of the key's
            # index for each: 1,000 new rows in 10 ms instead of 14 (one already there
            # raises `AlreadyExists`, and the writer writes again without the hint).
            if fresh:
                self._db.execute(
                    "INSERT INTO subjects (tenant, connector, subject_id, digest, present, seen)"
                    " SELECT ?, ?, u.s, u.d, u.p, ? FROM unnest(CAST(? AS text[]),"
                    " CAST(? AS bytea[]), CAST(? AS smallint[])) AS u(s, d, p)",
                    (tenant, connector_id, seen, [r.subject_id for r in fresh],
                     [r.digest for r in fresh], [int(r.present) for r in fresh]),
                )  # fmt: skip
            if known:
                self._db.execute(
                    "INSERT INTO subjects (tenant, connector, subject_id, digest, present, seen)"
                    " SELECT ?, ?, u.s, decode(u.d, 'hex'), u.p, ?"
                    " FROM json_to_recordset(CAST(? AS json)) AS u(s text, d text, p smallint)"
                    " ON CONFLICT (tenant, connector, subject_id) DO UPDATE SET"
                    " digest = excluded.digest, present = excluded.present, seen = excluded.seen",
                    (tenant, connector_id, seen, orjson.dumps(
                        [{"s": r.subject_id, "d": r.digest.hex(), "p": int(r.present)}
                         for r in known]
                    ).decode()),
                )  # fmt: skip
            self._db.wrote("subjects", len(latest))
            return
        columns = ("tenant", "connector", "subject_id", "digest", "present", "seen")

        def stored(writes: list[SubjectWrite]) -> list[tuple[object, ...]]:
            return [(tenant, connector_id, r.subject_id, r.digest, int(r.present), seen)
                    for r in writes]  # fmt: skip

        with self._db.transaction():  # the new and the known together, or neither
            if fresh:
                try:
                    self._db.insert_rows("subjects", columns, stored(fresh))
                except StoreConflict:
                    raise AlreadyExists("a person written as new is stored already") from None
            if known:
                self._db.upsert_rows(
                    "subjects", columns, ("tenant", "connector", "subject_id"), stored(known)
                )

    def mark_seen(
        self,
        tenant: str,
        connector_id: str,
        run_id: str,
        subject_ids: Sequence[str],
        writes: Sequence[SubjectWrite] = (),
    ) -> None:
        # One appended row, not one update per person: an update of `subjects.seen` dirtied
        # a random page of the table for each (keyed ids are spread over its B-tree).
        if not subject_ids and not writes:
            return
        journal = (
            orjson.dumps([(w.subject_id, w.digest.hex(), int(w.present)) for w in writes]).decode()
            if writes
            else None
        )
        self._write(
            "INSERT INTO run_seen (tenant, connector, run, ids, writes) VALUES (?, ?, ?, ?, ?)",
            (tenant, connector_id, run_id, orjson.dumps(list(subject_ids)).decode(), journal),
        )

    def journaled_states(self, run_id: str, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        found: dict[str, SubjectState] = {}
        sql = _JOURNALED[self._db.dialect]
        for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
            match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
            # In journal order, so the last write of each person wins.
            for sid, digest, present in self._all(sql.format(match=match), (run_id, *ids)):
                found[sid] = SubjectState(sid, bytes.fromhex(digest), bool(int(present)))
        return found

    def merge_run_writes(self, run_id: str, *, owner: str | None = None) -> None:
        # An empty journal (every run's start, most sweeps) costs one read, no transaction.
        tenant = self._journal_tenant(run_id)
        if tenant is None:
            return
        with self._db.transaction():
            if owner is not None:
                self._fenced(_TOUCH_RUN, (run_id,), owner)
            self._merge_journal(run_id, tenant)

    def _journal_tenant(self, run_id: str) -> str | None:
        """The tenant of the run's journal, if it holds anything not merged."""
        rows = self._all(
            "SELECT tenant FROM run_seen WHERE run = ? AND writes IS NOT NULL LIMIT 1", (run_id,)
        )
        return str(rows[0][0]) if rows else None

    def _merge_journal(self, run_id: str, tenant: str | None = None) -> None:
        """`merge_run_writes` inside the caller's transaction, under the run's tenant's
        lock (which an erasure takes to strike people from the journal). `tenant`: the
        journal's, if the caller read it already (`_journal_tenant`)."""
        tenant = tenant or self._journal_tenant(run_id)
        if tenant is None:
            return
        self._db.lock_tenant(tenant)
        merged = self._write(_MERGE[self._db.dialect], (_run_mark(run_id), run_id))
        self._write(
            "UPDATE run_seen SET writes = NULL WHERE run = ? AND writes IS NOT NULL", (run_id,)
        )
        self._db.wrote("subjects", merged)

    def count_present(self, tenant: str, connector_id: str) -> int:
        rows = self._all(
            "SELECT count(*) FROM subjects WHERE tenant = ? AND connector = ? AND present = 1",
            (tenant, connector_id),
        )
        return int(rows[0][0])

    def unseen_present(self, tenant: str, connector_id: str, run_id: str) -> Iterator[str]:
        # The database builds the set of ids the log holds (a connector of 500,000 needs
        # no such set in Python), each engine in the way it does well (`_UNSEEN`).
        log = (run_id, tenant, connector_id)
        rows = self._all(
            _UNSEEN[self._db.dialect], (tenant, connector_id, _run_mark(run_id), *log, *log)
        )
        return iter([r[0] for r in rows])

    def append_events(self, tenant: str, events: Sequence[NewEvent | RenderedEvent]) -> list[int]:
        if not events:
            return []
        # Rendered before the lock where the caller could (a sync's page); here otherwise.
        rendered = [e if isinstance(e, RenderedEvent) else render_event(e) for e in events]
        with self._db.transaction():
            # Numbers are given under the tenant's lock, held to COMMIT: a reader never
            # sees seq n+1 before n, whichever process wrote them.
            self._db.lock_tenant(tenant)
            start = self.last_event_seq(tenant) + 1
            # A page's events share one time: bound once.
            stamps: dict[datetime, object] = {}
            rows = []
            for seq, r in enumerate(rendered, start):
                e = r.event
                stamp = stamps.get(e.occurred_at)
                if stamp is None:
                    stamp = stamps[e.occurred_at] = self._t(e.occurred_at)
                rows.append((tenant, seq, e.id, e.type, e.subject_id, r.data_text, stamp,
                             e.source, e.instruction_id, r.wire(seq)))  # fmt: skip
            self._db.insert_rows("events", _EVENT_COLUMNS, rows)
        return list(range(start, start + len(events)))

    def events_after(self, tenant: str, after_seq: int, limit: int) -> list[EventRow]:
        rows = self._db.in_key_order(
            "SELECT tenant, seq, id, type, subject_id, data, occurred_at, source,"
            " instruction_id FROM events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
            (tenant, after_seq, limit),
        )
        return [_event_row(r) for r in rows]

    def feed_rows(self, tenant: str, after_seq: int, limit: int) -> list[FeedRow]:
        params = (tenant, after_seq, limit)
        rows: list[FeedRow]
        if self._db.dialect == "sqlite":
            rows = self._feed_rows_packed(params)
        else:
            rows = self._db.in_key_order(f"SELECT {_FEED_COLUMNS} FROM events {_FEED_PAGE}", params)
        if any(not r[4] for r in rows):
            return self._with_legacy_wire(tenant, rows)
        return rows

    def _feed_rows_packed(self, params: tuple[str, int, int]) -> list[FeedRow]:
        """The page as one row: SQLite hands rows over one step at a time, dropping and
        taking the GIL for each, and with other threads busy (64 consumers) each take can
        wait a switch interval; a 1,000-event page then spent most of its time there. One
        aggregate row is one step, and the decoding stays in C (orjson, bytes.split).

        The two aggregates see the rows in one order, so they line up; wire bytes hold no
        raw newline (compact JSON); a row without wire is empty (`_with_legacy_wire`)."""
        (found,) = self._all(
            "SELECT json_group_array(json_array(seq, type, subject_id, source)),"
            " CAST(group_concat(coalesce(wire, ''), char(10)) AS BLOB)"
            f" FROM (SELECT {_FEED_COLUMNS} FROM events {_FEED_PAGE})",
            params,
        )
        meta = orjson.loads(found[0])
        if not meta:
            return []
        wires: list[bytes] = found[1].split(b"\n")
        if len(wires) != len(meta):  # pragma: no cover - a wire with a raw newline
            raise StoreError("a stored event's wire bytes are not compact JSON")
        rows: list[FeedRow] = [
            (m[0], m[1], m[2], m[3], w) for m, w in zip(meta, wires, strict=True)
        ]
        if any(rows[i][0] >= rows[i + 1][0] for i in range(len(rows) - 1)):
            rows.sort()  # pragma: no cover - SQLite aggregates in the subquery's order
        return rows

    def feed_block(self, tenant: str, after_seq: int, limit: int) -> FeedBlock | None:
        """One aggregate row for the page: the database joins the wire bytes and the subject
        ids, so a page of 1,000 events costs the feed no per-event Python at all (reading
        them as rows and splicing them cost about twice as much, measured in
        bench/bench_feed_load.py). Two aggregates of one ordered subquery line up."""
        db = self._db
        (found,) = db.in_key_order(
            "SELECT count(*), count(wire), max(seq), min(source), max(source),"
            f" {db.joined('subject_id', 'seq')}, {db.joined('wire', 'seq', binary=True)},"
            " (SELECT count(*) FROM suppressions WHERE tenant = ? AND kind = 'restricted')"
            " FROM (SELECT seq, subject_id, source, wire FROM events"
            f" {_FEED_PAGE}) page",
            (tenant, tenant, after_seq, limit),
        )
        count, with_wire, last_seq, source, other_source, subject_ids, wire, held = found
        if not count or count != with_wire or source != other_source:
            return None
        return FeedBlock(
            count=int(count),
            last_seq=int(last_seq),
            source=source,
            subject_ids=subject_ids.split(","),
            restricted=int(held),
            wire=bytes(wire),
        )

    def feed_state(self, tenant: str) -> tuple[int, int]:
        rows = self._all(
            "SELECT (SELECT generation FROM event_heads WHERE tenant = ?),"
            " (SELECT count(*) FROM suppressions WHERE tenant = ? AND kind = 'restricted')",
            (tenant, tenant),
            reuse_plan=True,
        )
        return int(rows[0][0] or 0), int(rows[0][1] or 0)

    def _feed_rows_where(self, where: str, params: Sequence[object]) -> list[FeedRow]:
        """Feed rows of the events matching `where` (after `tenant = ?`), by number: how a
        destination's replay reads its dead letters back."""
        rows: list[FeedRow] = [
            (int(r[0]), r[1], r[2], r[3], bytes(r[4] or b""))
            for r in self._all(
                f"SELECT {_FEED_COLUMNS} FROM events WHERE tenant = ? AND {where} ORDER BY seq",
                params,
            )
        ]
        if any(not r[4] for r in rows):
            return self._with_legacy_wire(str(params[0]), rows)
        return rows

    def _with_legacy_wire(self, tenant: str, rows: list[FeedRow]) -> list[FeedRow]:
        """Events stored before the wire column existed get theirs built now, by the same
        function, and not written back: a feed read stays a read (it never waits for the
        write lock a sync holds), and such events are read once per consumer at most."""
        legacy = self._all(
            "SELECT seq, id, data, occurred_at, instruction_id FROM events"
            " WHERE tenant = ? AND seq >= ? AND seq <= ? AND (wire IS NULL OR wire = ?)",
            (tenant, rows[0][0], rows[-1][0], b""),
        )
        stored = {r[0]: r for r in rows}
        built: dict[int, bytes] = {}
        for seq, event_id, data, occurred_at, instruction_id in legacy:
            if seq not in stored:
                continue  # between the numbers asked for, not one of them
            _, kind, subject_id, source, _ = stored[seq]
            built[seq] = event_wire(
                seq=seq, id=event_id, type=kind, subject_id=subject_id,
                data=None if data is None else orjson.loads(data),
                occurred_at=time_text(_need(occurred_at)), source=source,
                instruction_id=instruction_id,
            )  # fmt: skip
        return [r if r[4] else (*r[:4], built[r[0]]) for r in rows]

    def subjects_with_email(self, tenant: str, email: str) -> list[tuple[str, str]]:
        rows = self._all(
            "SELECT DISTINCT subject_id, source FROM events WHERE tenant = ? AND data IS NOT NULL"
            f" AND {self._db.json_text('data', 'email')} = ? ORDER BY subject_id, source",
            (tenant, email),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def events_of_subjects(self, tenant: str, subject_ids: Sequence[str]) -> list[EventRow]:
        found: list[EventRow] = []
        for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
            match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
            found += [
                _event_row(r)
                for r in self._all(
                    "SELECT tenant, seq, id, type, subject_id, data, occurred_at, source,"
                    f" instruction_id FROM events WHERE tenant = ? AND subject_id {match}",
                    (tenant, *ids),
                )
            ]
        return sorted(found, key=lambda e: e.seq)

    def delete_subject_data(self, tenant: str, subject_ids: Sequence[str]) -> int:
        deleted = 0
        with self._db.transaction():
            # Numbers are never given twice: the highest is kept before any may go.
            keep_event_head(self._db, tenant)
            for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
                match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
                deleted += self._write(
                    f"DELETE FROM events WHERE tenant = ? AND subject_id {match}", (tenant, *ids)
                )
                self._write(
                    f"DELETE FROM subjects WHERE tenant = ? AND subject_id {match}", (tenant, *ids)
                )
                # And from the journals of running full syncs, which would otherwise bring
                # them back into `subjects` when they merge.
                self._write(_UNJOURNAL[self._db.dialect].format(match=match), (*ids, tenant, *ids))
        return deleted

    def scrub(self) -> None:
        self._db.scrub()

    def add_suppressions(self, rows: Sequence[Suppression]) -> None:
        self._db.upsert_rows(
            "suppressions",
            ("tenant", "subject_id", "kind", "created_at", "by_actor"),
            ("tenant", "subject_id"),
            [(r.tenant, r.subject_id, r.kind, self._t(r.created_at), r.by_actor) for r in rows],
        )

    def remove_suppression(self, tenant: str, subject_id: str) -> bool:
        return (
            self._write(
                "DELETE FROM suppressions WHERE tenant = ? AND subject_id = ?", (tenant, subject_id)
            )
            > 0
        )

    def suppressed(self, tenant: str, subject_ids: Sequence[str]) -> dict[str, SuppressionKind]:
        found: dict[str, SuppressionKind] = {}
        for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
            match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
            for sid, kind in self._all(
                "SELECT subject_id, kind FROM suppressions"
                f" WHERE tenant = ? AND subject_id {match}",
                (tenant, *ids),
            ):
                found[str(sid)] = cast(SuppressionKind, kind)
        return found

    def list_suppressions(self, tenant: str) -> list[Suppression]:
        rows = self._all(
            "SELECT tenant, subject_id, kind, created_at, by_actor FROM suppressions"
            " WHERE tenant = ? ORDER BY created_at, subject_id",
            (tenant,),
        )
        return [
            Suppression(r[0], r[1], cast(SuppressionKind, r[2]), _need(r[3]), r[4]) for r in rows
        ]

    def restricted(self, tenant: str) -> frozenset[str]:
        rows = self._all(
            "SELECT subject_id FROM suppressions WHERE tenant = ? AND kind = 'restricted'",
            (tenant,),
        )
        return frozenset(str(r[0]) for r in rows)

    def create_request(self, request: DsrRequest) -> None:
        r = request
        self._write(
            "INSERT INTO dsr_requests (id, tenant, kind, requester, received_at, due_at,"
            " subject_ids, state, outcome, closed_at, closed_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.id, r.tenant, r.kind, r.requester, self._t(r.received_at), self._t(r.due_at),
             orjson.dumps(list(r.subject_ids)).decode(), r.state, r.outcome,
             self._t(r.closed_at), r.closed_by),
        )  # fmt: skip

    def get_request(self, tenant: str, request_id: str) -> DsrRequest:
        row = self._one(
            f"SELECT {_REQUEST_COLUMNS} FROM dsr_requests WHERE tenant = ? AND id = ?",
            (tenant, request_id),
            f"request {request_id}",
        )
        return _request(row)

    def list_requests(self, tenant: str, state: RequestState | None = None) -> list[DsrRequest]:
        where, params = "tenant = ?", [tenant]
        if state is not None:
            where, params = where + " AND state = ?", [tenant, state]
        rows = self._all(
            f"SELECT {_REQUEST_COLUMNS} FROM dsr_requests WHERE {where} ORDER BY due_at, id",
            params,
        )
        return [_request(r) for r in rows]

    def close_request(
        self,
        tenant: str,
        request_id: str,
        *,
        state: RequestState,
        outcome: RequestOutcome,
        closed_at: datetime,
        closed_by: str,
    ) -> bool:
        changed = self._write(
            "UPDATE dsr_requests SET state = ?, outcome = ?, closed_at = ?, closed_by = ?"
            " WHERE tenant = ? AND id = ? AND state = 'open'",
            (state, outcome, self._t(closed_at), closed_by, tenant, request_id),
        )
        return changed > 0

    def request_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        rows = self._all(
            "SELECT tenant, count(*), sum(CASE WHEN due_at < ? THEN 1 ELSE 0 END)"
            " FROM dsr_requests WHERE state = 'open' GROUP BY tenant",
            (self._t(now),),
        )
        return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def add_erasure_receipt(
        self, tenant: str, subject_id: str, consumer_id: str, at: datetime
    ) -> datetime:
        with self._db.transaction():
            self._write(
                "INSERT INTO erasure_receipts (tenant, subject_id, consumer_id, acknowledged_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, subject_id, consumer_id) DO NOTHING",
                (tenant, subject_id, consumer_id, self._t(at)),
            )
            (row,) = self._all(
                "SELECT acknowledged_at FROM erasure_receipts"
                " WHERE tenant = ? AND subject_id = ? AND consumer_id = ?",
                (tenant, subject_id, consumer_id),
            )
        return _need(row[0])

    def erasure_receipts(
        self, tenant: str, subject_ids: Sequence[str]
    ) -> list[tuple[str, str, datetime]]:
        found: list[tuple[str, str, datetime]] = []
        for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
            match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
            found += [
                (str(r[0]), str(r[1]), _need(r[2]))
                for r in self._all(
                    "SELECT subject_id, consumer_id, acknowledged_at FROM erasure_receipts"
                    f" WHERE tenant = ? AND subject_id {match}",
                    (tenant, *ids),
                )
            ]
        return sorted(found)

    def last_event_seq(self, tenant: str) -> int:
        """The highest number given, also when erasure deleted that event since."""
        rows = self._all(
            "SELECT (SELECT MAX(seq) FROM events WHERE tenant = ?),"
            " (SELECT last_seq FROM event_heads WHERE tenant = ?)",
            (tenant, tenant),
            reuse_plan=True,
        )
        return max(int(rows[0][0] or 0), int(rows[0][1] or 0))

    # ------------------------------------------------------------------ consumers

    def create_consumer(self, consumer: Consumer, token_hash: bytes) -> None:
        self.get_tenant(consumer.tenant)
        self._write(
            "INSERT INTO consumers (id, tenant, name, token_hash, created_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (consumer.id, consumer.tenant, consumer.name, token_hash,
             self._t(consumer.created_at), self._t(consumer.revoked_at)),
        )  # fmt: skip

    _ACCESS_SQL: Final = (
        "SELECT c.id, c.tenant, c.name, c.created_at, c.revoked_at,"
        " (SELECT generation FROM event_heads h WHERE h.tenant = c.tenant),"
        " (SELECT count(*) FROM suppressions s WHERE s.tenant = c.tenant"
        "  AND s.kind = 'restricted')"
    )
    _ACCESS_SPLIT: Final = 7
    #: `feed_access` with a source: `source_standing`'s join, left-joined to the consumer
    #: (one row per instruction, the consumer's columns on each).
    _ACCESS_STANDING_SQL: Final = (
        _ACCESS_SQL
        + ", "
        + _standing_columns("k", _CONNECTOR_READ, _INSTRUCTION_COLUMNS)
        + " FROM consumers c"
        " LEFT JOIN connectors k ON k.tenant = ? AND k.id = ? AND k.deleted_at IS NULL"
        " LEFT JOIN instructions i ON i.tenant = k.tenant AND i.connector = k.id"
        " WHERE c.token_hash = ?"
        " ORDER BY i.granted_at, i.id"
    )

    def feed_access(
        self, token_hash: bytes, source: tuple[str, str] | None = None
    ) -> FeedAccess | None:
        # A feed page's first read, one statement: who asks, their tenant's feed state, and
        # with `source` the standing of the source its page most likely holds (each
        # statement is a round trip on PostgreSQL, and another wait for the GIL under load).
        if source is None:
            rows = self._all(
                f"{self._ACCESS_SQL} FROM consumers c WHERE c.token_hash = ?",
                (token_hash,),
                reuse_plan=True,
            )
        else:
            rows = self._all(self._ACCESS_STANDING_SQL, (*source, token_hash), reuse_plan=True)
        if not rows:
            return None
        r = rows[0]
        consumer = Consumer(r[0], r[1], r[2], _need(r[3]), _dt(r[4]))
        standings: dict[tuple[str, str], tuple[ConnectorRecord | None, list[Instruction]]] = {}
        if source is not None:
            split, width = self._ACCESS_SPLIT, self._ACCESS_SPLIT + self._STANDING_SPLIT
            record = None if r[split] is None else _connector(r[split:width])
            standings[source] = (
                record,
                [_instruction(x[width:]) for x in rows if x[width] is not None],
            )
        return FeedAccess(consumer, int(r[5] or 0), int(r[6] or 0), standings)

    # ------------------------------------------------------------------ lifecycle (admin API)
    # Updating, pausing and deleting connectors, and managing feed consumers.

    def update_connector(
        self,
        tenant: str,
        connector_id: str,
        *,
        sealed_credentials: bytes | None = None,
        mapping_text: str | None = None,
        mapping_digest: str | None = None,
        interval_seconds: int | None = None,
        max_delete_share: float | None = None,
    ) -> ConnectorRecord:
        changes = {
            "sealed_credentials": sealed_credentials,
            "mapping_text": mapping_text,
            "mapping_digest": mapping_digest,
            "interval_seconds": interval_seconds,
            "max_delete_share": max_delete_share,
        }
        given = {k: v for k, v in changes.items() if v is not None}
        with self._db.transaction():
            self.get_connector(tenant, connector_id)
            if given:
                sets = ", ".join(f"{k} = ?" for k in given)
                self._db.execute(
                    f"UPDATE connectors SET {sets} WHERE tenant = ? AND id = ?",
                    (*given.values(), tenant, connector_id),
                )
            return self.get_connector(tenant, connector_id)

    def set_connector_paused(
        self, tenant: str, connector_id: str, paused_at: datetime | None
    ) -> ConnectorRecord:
        with self._db.transaction():
            self.get_connector(tenant, connector_id)
            self._db.execute(
                "UPDATE connectors SET paused_at = ? WHERE tenant = ? AND id = ?",
                (self._t(paused_at), tenant, connector_id),
            )
            return self.get_connector(tenant, connector_id)

    def mark_connector_deleted(
        self, tenant: str, connector_id: str, at: datetime, subjects: str
    ) -> None:
        with self._db.transaction():
            self.get_connector(tenant, connector_id)
            # The credentials go with the connector: nothing fetches for it again, and a
            # secret kept is one that can leak (the row stays, for its history).
            self._db.execute(
                "UPDATE connectors SET deleted_at = ?, deleted_subjects = ?,"
                " sealed_credentials = ? WHERE tenant = ? AND id = ?",
                (self._t(at), subjects, b"", tenant, connector_id),
            )
            # Nor are its runs' seen logs (keyed ids): none outlives the connector.
            self._db.execute(
                "DELETE FROM run_seen WHERE tenant = ? AND connector = ?", (tenant, connector_id)
            )

    def deleted_connector(self, tenant: str, connector_id: str) -> ConnectorRecord | None:
        rows = self._all(
            f"SELECT {self._CONNECTOR_READ} FROM connectors WHERE tenant = ? AND id = ?"
            " AND deleted_at IS NOT NULL",
            (tenant, connector_id),
        )
        return _connector(rows[0]) if rows else None

    def stop_running_runs(
        self, tenant: str, connector_id: str, at: datetime, error: str
    ) -> list[str]:
        with self._db.transaction():
            rows = self._all(
                "SELECT id FROM sync_runs WHERE tenant = ? AND connector = ?"
                " AND status = 'running'",
                (tenant, connector_id),
            )
            self._db.execute(
                "UPDATE sync_runs SET status = 'stopped', finished_at = ?, error = ?"
                " WHERE tenant = ? AND connector = ? AND status = 'running'",
                (self._t(at), error, tenant, connector_id),
            )
            # A stopped run commits nothing more (its writes are fenced on `running`): what
            # it journaled goes into `subjects` (its events are in the feed), and its seen
            # log is of no more use; no other run of the connector has one.
            for (run_id,) in rows:
                self._merge_journal(run_id)
            self._db.execute(
                "DELETE FROM run_seen WHERE tenant = ? AND connector = ?", (tenant, connector_id)
            )
        return [r[0] for r in rows]

    def present_subjects(self, tenant: str, connector_id: str) -> list[str]:
        rows = self._all(
            "SELECT subject_id FROM subjects WHERE tenant = ? AND connector = ? AND present = 1"
            " ORDER BY subject_id",
            (tenant, connector_id),
        )
        return [r[0] for r in rows]

    def subject_page(
        self, tenant: str, connector_id: str, offset: int, limit: int
    ) -> tuple[int, list[str]]:
        # Two reads, no transaction: a list page is a view of a moving set anyway (RFC
        # 7644 §3.4.2.4 lets a total change between pages).
        total = self._all(
            "SELECT count(*) FROM subjects WHERE tenant = ? AND connector = ?",
            (tenant, connector_id),
        )
        rows = self._all(
            "SELECT subject_id FROM subjects WHERE tenant = ? AND connector = ?"
            " ORDER BY subject_id LIMIT ? OFFSET ?",
            (tenant, connector_id, max(0, limit), max(0, offset)),
        )
        return int(total[0][0]), [r[0] for r in rows]

    def forget_absent_subjects(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> int:
        forgotten = 0
        with self._db.transaction():
            for start in range(0, len(subject_ids), _IDS_PER_STATEMENT):
                match, ids = self._db.one_of(subject_ids[start : start + _IDS_PER_STATEMENT])
                forgotten += self._write(
                    "DELETE FROM subjects WHERE tenant = ? AND connector = ? AND present = 0"
                    f" AND subject_id {match}",
                    (tenant, connector_id, *ids),
                )
        return forgotten

    def set_subjects_absent(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> None:
        with self._db.transaction():
            self._db.executemany(
                "UPDATE subjects SET present = 0 WHERE tenant = ? AND connector = ?"
                " AND subject_id = ?",
                [(tenant, connector_id, sid) for sid in subject_ids],
            )

    def latest_events(self, tenant: str, source: str) -> list[EventRow]:
        rows = self._all(
            "SELECT tenant, seq, id, type, subject_id, data, occurred_at, source,"
            " instruction_id FROM (SELECT *, ROW_NUMBER() OVER"
            " (PARTITION BY subject_id ORDER BY seq DESC) AS newest"
            " FROM events WHERE tenant = ? AND source = ?) AS latest"
            " WHERE newest = 1 ORDER BY seq",
            (tenant, source),
        )
        return [_event_row(r) for r in rows]

    def list_consumers(self, tenant: str) -> list[Consumer]:
        rows = self._all(
            "SELECT id, tenant, name, created_at, revoked_at FROM consumers WHERE tenant = ?"
            " ORDER BY created_at, id",
            (tenant,),
        )
        return [Consumer(r[0], r[1], r[2], _need(r[3]), _dt(r[4])) for r in rows]

    def get_consumer(self, tenant: str, consumer_id: str) -> Consumer:
        r = self._one(
            "SELECT id, tenant, name, created_at, revoked_at FROM consumers"
            " WHERE tenant = ? AND id = ?",
            (tenant, consumer_id),
            f"consumer {consumer_id} of tenant {tenant}",
        )
        return Consumer(r[0], r[1], r[2], _need(r[3]), _dt(r[4]))

    def revoke_consumer(self, tenant: str, consumer_id: str, at: datetime) -> Consumer:
        with self._db.transaction():
            self.get_consumer(tenant, consumer_id)
            self._db.execute(
                "UPDATE consumers SET revoked_at = COALESCE(revoked_at, ?)"
                " WHERE tenant = ? AND id = ?",
                (self._t(at), tenant, consumer_id),
            )
            return self.get_consumer(tenant, consumer_id)

    def replace_consumer_token(self, tenant: str, consumer_id: str, token_hash: bytes) -> None:
        with self._db.transaction():
            self.get_consumer(tenant, consumer_id)
            self._db.execute(
                "UPDATE consumers SET token_hash = ? WHERE tenant = ? AND id = ?",
                (token_hash, tenant, consumer_id),
            )


_TENANT_COLUMNS: Final = "id, name, created_at, sealed_key, terminated_at, destroyed_at"
#: A tenant's data, deleted when it is destroyed (children before parents).
_TENANT_TABLES: Final = (
    "destination_dead_letters", "destinations",
    "erasure_receipts", "dsr_requests", "suppressions", "event_heads", "events", "subjects",
    "retention_policies",
    "run_seen", "sync_runs", "instructions", "checkpoint_pushes", "consumers", "tenant_oidc",
    "oidc_pending", "connectors",
)  # fmt: skip


def _tenant(r: Sequence[Any]) -> Tenant:
    return Tenant(r[0], r[1], _need(r[2]), r[3], terminated_at=_dt(r[4]), destroyed_at=_dt(r[5]))


_REQUEST_COLUMNS: Final = (
    "id, tenant, kind, requester, received_at, due_at, subject_ids, state, outcome,"
    " closed_at, closed_by"
)


def _request(r: Sequence[Any]) -> DsrRequest:
    return DsrRequest(
        id=r[0], tenant=r[1], kind=cast(RequestKind, r[2]), requester=r[3],
        received_at=_need(r[4]), due_at=_need(r[5]), subject_ids=tuple(orjson.loads(r[6])),
        state=cast(RequestState, r[7]), outcome=cast("RequestOutcome | None", r[8]),
        closed_at=_dt(r[9]), closed_by=r[10],
    )  # fmt: skip


#: What the feed reads of an event, and a page of them (`feed_rows`).
_FEED_COLUMNS: Final = "seq, type, subject_id, source, wire"
_FEED_PAGE: Final = "WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?"


def _run_mark(run_id: str) -> int:
    """A run id as a 63-bit number: the `seen` mark is 8 bytes a row instead of 36."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") >> 1


#: A run's sweep: present subjects the run neither wrote (`seen` is its mark; or in its
#: journal, if the sweep came before the merge) nor found unchanged (its `run_seen` log,
#: expanded from JSON in SQL), in id order. Params: tenant, connector, the run's mark, then
#: the run, tenant, connector twice (the log's ids, its journal). SQLite plans `EXCEPT` as a
#: merge of the subjects (read in id order from the key) with the log's ids sorted in a
#: temporary B-tree: 3x faster than `NOT IN`, which probes an index of the log once per
#: subject; a correlated `NOT EXISTS` would expand the log again for every subject (no
#: hash join). PostgreSQL: `NOT EXISTS` is planned as an anti join, which spills to disk past
#: `work_mem`; `NOT IN` hashes its list only when it fits there, and otherwise scans the
#: whole list for every subject (500,000 of them).
_UNSEEN: Final[dict[Dialect, str]] = {
    "sqlite": (
        "SELECT subject_id FROM subjects WHERE tenant = ? AND connector = ? AND present = 1"
        " AND seen != ? EXCEPT SELECT j.value FROM run_seen r, json_each(r.ids) j"
        " WHERE r.run = ? AND r.tenant = ? AND r.connector = ?"
        " EXCEPT SELECT json_extract(j.value, '$[0]') FROM run_seen r, json_each(r.writes) j"
        " WHERE r.run = ? AND r.tenant = ? AND r.connector = ? ORDER BY subject_id"
    ),
    "postgres": (
        "SELECT s.subject_id FROM subjects s WHERE s.tenant = ? AND s.connector = ?"
        " AND s.present = 1 AND s.seen != ? AND NOT EXISTS (SELECT 1 FROM run_seen r"
        " CROSS JOIN LATERAL json_array_elements_text(CAST(r.ids AS json)) AS j(id)"
        " WHERE r.run = ? AND r.tenant = ? AND r.connector = ? AND j.id = s.subject_id)"
        " AND NOT EXISTS (SELECT 1 FROM run_seen r CROSS JOIN LATERAL"
        " json_array_elements(CAST(r.writes AS json)) AS w(e) WHERE r.run = ?"
        " AND r.tenant = ? AND r.connector = ? AND w.e ->> 0 = s.subject_id)"
        " ORDER BY s.subject_id"
    ),
}


#: The latest journaled state of some people in a run's journal (`journaled_states`), in
#: journal order. Params: the run, then the ids (`{match}`: `Database.one_of`).
_JOURNALED: Final[dict[Dialect, str]] = {
    "sqlite": (
        "SELECT json_extract(j.value, '$[0]') AS sid, json_extract(j.value, '$[1]'),"
        " json_extract(j.value, '$[2]') FROM run_seen r, json_each(r.writes) j"
        " WHERE r.run = ? AND r.writes IS NOT NULL AND sid {match} ORDER BY r.rowid, j.key"
    ),
    "postgres": (
        "SELECT w.e ->> 0, w.e ->> 1, w.e ->> 2 FROM run_seen r CROSS JOIN LATERAL"
        " json_array_elements(CAST(r.writes AS json)) WITH ORDINALITY AS w(e, n)"
        " WHERE r.run = ? AND r.writes IS NOT NULL AND w.e ->> 0 {match} ORDER BY r.rowid, w.n"
    ),
}
#: A run's journal merged into `subjects` (`merge_run_writes`): each person's last write,
#: as `write_subjects` with the run would have written it. Params: the run's mark, the
#: run. In one transaction each page of `subjects` is written to the WAL once, whatever
#: the order, which is the point of the journal. SQLite reads the journal in its order
#: (the index on `run` keeps rowids in order, `json_each` its array's), so a later write
#: of a person updates the earlier one; sorting by id first cost 0.41 s against 0.24 s for
#: 100,000 people, and its sorter 25-30 MB of the gateway's peak memory. `unhex` is
#: registered by `SqliteDatabase` where SQLite is older than 3.41; the SELECT's WHERE keeps
#: SQLite from reading ON CONFLICT as a join's ON. PostgreSQL cannot change a row twice in
#: one statement: it takes each person's last write (DISTINCT ON), in key order.
_MERGE: Final[dict[Dialect, str]] = {
    "sqlite": (
        "INSERT INTO subjects (tenant, connector, subject_id, digest, present, seen)"
        " SELECT r.tenant, r.connector, json_extract(j.value, '$[0]'),"
        " unhex(json_extract(j.value, '$[1]')), json_extract(j.value, '$[2]'), ?"
        " FROM run_seen r, json_each(r.writes) j WHERE r.run = ? AND r.writes IS NOT NULL"
        " ON CONFLICT (tenant, connector, subject_id) DO UPDATE SET"
        " digest = excluded.digest, present = excluded.present, seen = excluded.seen"
    ),
    "postgres": (
        "INSERT INTO subjects (tenant, connector, subject_id, digest, present, seen)"
        " SELECT w.tenant, w.connector, w.sid, decode(w.d, 'hex'), w.p, ? FROM ("
        " SELECT DISTINCT ON (r.tenant, r.connector, e.e ->> 0) r.tenant, r.connector,"
        " e.e ->> 0 AS sid, e.e ->> 1 AS d, CAST(e.e ->> 2 AS smallint) AS p"
        " FROM run_seen r CROSS JOIN LATERAL"
        " json_array_elements(CAST(r.writes AS json)) WITH ORDINALITY AS e(e, n)"
        " WHERE r.run = ? AND r.writes IS NOT NULL"
        " ORDER BY r.tenant, r.connector, e.e ->> 0, r.rowid DESC, e.n DESC) AS w"
        " ORDER BY w.tenant, w.connector, w.sid"
        " ON CONFLICT (tenant, connector, subject_id) DO UPDATE SET"
        " digest = excluded.digest, present = excluded.present, seen = excluded.seen"
    ),
}
#: People struck from a tenant's run journals (an erasure). Params: the ids, the tenant,
#: the ids again (`{match}`: `Database.one_of`); only the rows naming one are rewritten.
_UNJOURNAL: Final[dict[Dialect, str]] = {
    "sqlite": (
        "UPDATE run_seen SET writes = (SELECT json_group_array(json(j.value))"
        " FROM json_each(run_seen.writes) j WHERE NOT json_extract(j.value, '$[0]') {match})"
        " WHERE tenant = ? AND writes IS NOT NULL AND EXISTS (SELECT 1"
        " FROM json_each(run_seen.writes) k WHERE json_extract(k.value, '$[0]') {match})"
    ),
    "postgres": (
        "UPDATE run_seen SET writes = (SELECT CAST(COALESCE(json_agg(w.e ORDER BY w.n),"
        " '[]') AS text) FROM json_array_elements(CAST(run_seen.writes AS json))"
        " WITH ORDINALITY AS w(e, n) WHERE NOT (w.e ->> 0 {match}))"
        " WHERE tenant = ? AND writes IS NOT NULL AND EXISTS (SELECT 1"
        " FROM json_array_elements(CAST(run_seen.writes AS json)) AS k(e)"
        " WHERE k.e ->> 0 {match})"
    ),
}
#: A no-op update of a run, for `_fenced` to hold a merge to its owner.
_TOUCH_RUN: Final = "UPDATE sync_runs SET owner = owner WHERE id = ?"


_EVENT_COLUMNS: Final = (
    "tenant", "seq", "id", "type", "subject_id", "data", "occurred_at", "source",
    "instruction_id", "wire",
)  # fmt: skip


#: Subject ids matched in one statement (SQLite admits 32,766 parameters; a page is 1,000).
_IDS_PER_STATEMENT: Final = 1000


def _event_row(r: Sequence[Any]) -> EventRow:
    return EventRow(
        r[0], r[1], r[2], cast(EventType, r[3]), r[4],
        orjson.loads(r[5]) if r[5] is not None else None, _need(r[6]), r[7], r[8],
    )  # fmt: skip


def _connector(r: Sequence[Any]) -> ConnectorRecord:
    return ConnectorRecord(
        tenant=r[0], id=r[1], type=r[2], base_url=r[3], sealed_credentials=r[4],
        settings=orjson.loads(r[5]), mapping_text=r[6], mapping_digest=r[7],
        interval_seconds=r[8], max_delete_share=r[9], created_at=_need(r[10]),
        watermark=r[11], last_success_at=_dt(r[12]), paused_at=_dt(r[13]),
        deleted_at=_dt(r[14]), deleted_subjects=r[15],
    )  # fmt: skip


def _instruction(r: Sequence[Any]) -> Instruction:
    return Instruction(
        id=r[0], tenant=r[1], connector=r[2], granted_by=r[3], granted_at=_need(r[4]),
        purpose=r[5], mapping_digest=r[6], fields=orjson.loads(r[7]),
        valid_until=_dt(r[8]), revoked_at=_dt(r[9]), revoked_by=r[10],
    )  # fmt: skip


def _run(r: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=r[0], tenant=r[1], connector=r[2], mode=r[3], status=cast(RunStatus, r[4]),
        started_at=_need(r[5]), finished_at=_dt(r[6]), cursor=r[7], watermark=r[8],
        counts=orjson.loads(r[9]), error=r[10], instruction_id=r[11], pages=r[12],
        since=r[13], confirm_deletes=r[14], owner=r[15], lease_until=_dt(r[16]),
    )  # fmt: skip
