"""Retention on every store backend, with a fake clock: a year of a tenant's history as the
sync engine writes it (people changing, leaving, coming back, one restricted; runs,
requests, sessions), then the job at a later time: nothing older than the policy remains,
each live person's newest state is still in the feed (also to a consumer reading from the
start), the ledger verifies and says what went, the dry run counted exactly that and
changed nothing, and the logs name no one. Two jobs on one PostgreSQL database at once:
one runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.ledger.audit import SYSTEM, AuditEntry
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.ledger.record import Acting
from gateway.lifecycle.retention.job import JOB_NAME, RetentionJob, apply_rules
from gateway.lifecycle.retention.policy import PolicyError, RetentionPolicy, policy_for, set_policy
from gateway.runtime.config import Settings
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.account_records import AccountRecord, SessionRecord
from gateway.store.postgres import PostgresStore
from gateway.store.protocols import Store
from gateway.store.records import (
    ConnectorRecord,
    DsrRequest,
    NewEvent,
    RetentionOverrides,
    RunRecord,
    SubjectWrite,
    Suppression,
    Tenant,
)
from tests.pg import database_url, fresh_schema
from tests.store.conftest import BACKENDS

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = RetentionPolicy(
    feed_compaction_days=30, leaver_grace_days=90, run_history_days=730,
    request_history_days=730, short_lived_days=7,
)  # fmt: skip
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as s:
        yield s


def _sid(n: int) -> str:
    return f"{n:032x}"


def _person(n: int, version: int) -> dict[str, str]:
    return {
        "first_name": f"Voornaam{n}", "last_name": f"Achternaam{n}",
        "email": f"persoon{n}.v{version}@werkgever.example", "job_title": f"Functie {version}",
    }  # fmt: skip


class History:
    """What a year of syncs left in the store, and who is who."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ledger = Ledger(store.ledger, "acme", CheckpointSigner(KEY), clock=lambda: T0)
        store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
        for source in ("hr", "crm"):
            store.create_connector(ConnectorRecord(
                tenant="acme", id=source, type="afas", base_url="http://127.0.0.1:1",
                sealed_credentials=b"s", settings={}, mapping_text="m",
                mapping_digest="sha256:" + "0" * 64, interval_seconds=900, created_at=T0,
                max_delete_share=0.5,
            ))  # fmt: skip
        self.seq = 0

    def events(self, at: datetime, changes: list[tuple[int, str, str, int]]) -> None:
        """(person, source, type, version) written as a sync page writes them."""
        rows = []
        for n, source, kind, version in changes:
            self.seq += 1
            data = _person(n, version) if kind == "subject.upserted" else None
            rows.append(NewEvent(f"evt_{self.seq:08x}", kind, _sid(n), data, at, source, "ins_1"))  # type: ignore[arg-type]
            present = kind == "subject.upserted"
            self.store.write_subjects(
                "acme", source, "run", [SubjectWrite(_sid(n), bytes([version]) * 16, present)]
            )
        self.store.append_events("acme", rows)


def _year(store: Store) -> History:
    """Ten people at hr (0-9), three also at crm; over a year: people 0-4 change monthly,
    5 and 6 leave early, 7 leaves late, 8 leaves and comes back, 9 is restricted after
    changing; runs every month; two closed requests and an open one; sessions."""
    h = History(store)
    h.events(T0, [(n, "hr", "subject.upserted", 0) for n in range(10)])
    h.events(T0, [(n, "crm", "subject.upserted", 0) for n in range(3)])
    for month in range(1, 12):
        at = T0 + month * 30 * DAY
        h.events(at, [(n, "hr", "subject.upserted", month) for n in range(5)])
        if month == 2:
            gone = [(n, "hr", "subject.deleted", 0) for n in (5, 6, 8)]
            h.events(at, [*gone, (9, "hr", "subject.upserted", 1)])
        if month == 4:
            h.events(at, [(8, "hr", "subject.upserted", 4), (2, "crm", "subject.deleted", 0)])
        if month == 11:
            h.events(at, [(7, "hr", "subject.deleted", 0)])
        run = RunRecord(f"run_{month:02d}", "acme", "hr", "full", "running", at)
        store.start_run(run)
        store.finish_run(run.id, "succeeded", at + timedelta(minutes=3), {"fetched": 10})
    store.add_suppressions([Suppression("acme", _sid(9), "restricted", T0 + 90 * DAY, "acc_x")])
    for n, closed in enumerate((T0 + 40 * DAY, None)):
        store.create_request(DsrRequest(
            id=f"dsr_{n:016x}", tenant="acme", kind="access", requester="acc_x",
            received_at=T0 + 30 * DAY, due_at=T0 + 60 * DAY, subject_ids=(_sid(n),),
        ))  # fmt: skip
        if closed:
            store.close_request(
                "acme", f"dsr_{n:016x}", state="completed", outcome="fulfilled",
                closed_at=closed, closed_by="acc_x",
            )  # fmt: skip
    store.accounts.create_account(AccountRecord("acc_x", "acme", "admin", "dpo@acme.example",
                                                "Dee Pee", "active", T0))  # fmt: skip
    for n, seen in enumerate((T0 + 200 * DAY, T0 + 359 * DAY)):
        store.accounts.create_session(SessionRecord(f"ses_{n}", bytes([n]) * 32, "acc_x",
                                                    seen, seen, "csrf"))  # fmt: skip
    return h


def _counts(store: Store) -> dict[str, Any]:
    """Everything the job could touch, as rows (to see a dry run change nothing)."""
    return {
        "events": store.events_after("acme", 0, 100_000),
        "subjects": store.subject_states("acme", "hr", [_sid(n) for n in range(10)]),
        "runs": store.list_runs("acme", "hr", 100),
        "requests": store.list_requests("acme"),
        "sessions": [store.accounts.session_by_hash(bytes([n]) * 32) for n in range(2)],
        "ledger": store.ledger.head("acme"),
        "job": store.job_state(JOB_NAME),
    }


def _newest(store: Store) -> dict[tuple[str, str], Any]:
    newest: dict[tuple[str, str], Any] = {}
    for event in store.events_after("acme", 0, 100_000):
        newest[(event.source, event.subject_id)] = event
    return newest


def test_nothing_older_than_the_policy_remains(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    h = _year(store)
    now = T0 + 365 * DAY
    before = _newest(store)
    unchanged = _counts(store)

    dry = apply_rules(store, defaults=POLICY, now=now, dry_run=True)
    assert _counts(store) == unchanged  # the dry run changed nothing
    counted = {(r.tenant, r.rule): r.count for r in dry.removals}
    assert counted[("acme", "feed-compaction")] > 0
    assert counted[("acme", "leavers")] == 3  # 5 and 6 at hr; 2 at crm (7 left too late)
    assert counted[("acme", "run-history")] == 0  # under 24 months
    assert counted[("acme", "requests")] == 0
    assert counted[("acme", "sessions")] == 1
    assert counted[(None, "sessions")] == 0

    caplog.set_level(logging.DEBUG)
    ran = apply_rules(
        store, defaults=POLICY, now=now, dry_run=False, batch_rows=7,
        acting_for=lambda tenant: Acting(SYSTEM, h.ledger),
    )  # fmt: skip
    assert {(r.tenant, r.rule): r.count for r in ran.removals} == counted

    # Nothing older than the policy remains.
    compacted, grace = now - 30 * DAY, now - 90 * DAY
    events = store.events_after("acme", 0, 100_000)
    newest = _newest(store)
    for event in events:
        key = (event.source, event.subject_id)
        if event.subject_id != _sid(9):  # restricted: kept whole
            assert newest[key] == event or event.occurred_at >= compacted, event
        if event.type != "subject.upserted":
            assert event.data is None
    for (source, sid), event in newest.items():
        assert not (event.type == "subject.deleted" and event.occurred_at < grace), (source, sid)
    assert {k for k in before if k not in newest} == {("hr", _sid(5)), ("hr", _sid(6)),
                                                     ("crm", _sid(2))}  # fmt: skip
    # Each live person's newest state is still there, unchanged.
    for key, event in newest.items():
        assert before[key] == event
    assert len(store.events_of_subjects("acme", [_sid(9)])) == 2  # restricted: all kept
    assert set(store.subject_states("acme", "hr", [_sid(n) for n in range(10)])) == {
        _sid(n) for n in (0, 1, 2, 3, 4, 7, 8, 9)
    }
    assert store.accounts.session_by_hash(bytes([0]) * 32) is None
    assert store.accounts.session_by_hash(bytes([1]) * 32) is not None
    # Numbers are never reused, and the feed pages over the gaps.
    assert store.last_event_seq("acme") == h.seq
    paged, after = [], 0
    while page := store.feed_rows("acme", after, 3):
        paged += [r[0] for r in page]
        after = page[-1][0]
    assert paged == [e.seq for e in events]
    # The ledger verifies and says what went, by rule and count only.
    report = h.ledger.verify(KEY.public_key())
    assert report.ok, report.reason
    applied = {
        r.entry.target: r.entry.counts.records  # type: ignore[union-attr]
        for r in h.ledger.entries(after=None, limit=100)
        if getattr(r.entry, "action", None) == "retention.applied"
    }
    assert applied == {rule: n for (t, rule), n in counted.items() if t == "acme" and n}
    # Nobody is named in the logs.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "retention removed for tenant acme" in logged
    assert "@werkgever.example" not in logged and "Voornaam" not in logged
    assert not any(_sid(n) in logged for n in range(10))

    # A second run finds nothing more; a later one finds what has aged since.
    again = apply_rules(store, defaults=POLICY, now=now, dry_run=True)
    assert again.total == 0
    later = apply_rules(store, defaults=POLICY, now=now + 60 * DAY, dry_run=True)
    assert {r.rule for r in later.removals if r.count} == {"leavers", "sessions"}  # 7 left


def test_a_tenants_shorter_policy_applies_and_runs_age_out(store: Store) -> None:
    h = _year(store)
    by = Acting(SYSTEM, h.ledger)
    set_policy(store, by, {"run_history_days": 100, "request_history_days": 30}, POLICY,
               T0 + 364 * DAY)  # fmt: skip
    now = T0 + 365 * DAY
    apply_rules(store, defaults=POLICY, now=now, dry_run=False, acting_for=lambda t: by)
    runs = store.list_runs("acme", "hr", 100)
    assert runs and all(r.finished_at and r.finished_at >= now - 100 * DAY for r in runs)
    assert [r.id for r in store.list_requests("acme")] == [f"dsr_{1:016x}"]  # the open one
    assert h.ledger.verify(KEY.public_key()).ok


def test_the_scheduled_job_is_due_daily_and_metered(store: Store) -> None:
    h = _year(store)
    clock = [T0 + 365 * DAY]
    metrics = GatewayMetrics()
    job = RetentionJob(
        store, metrics, defaults=lambda: POLICY, acting_for=lambda t: Acting(SYSTEM, h.ledger),
        clock=lambda: clock[0], owner="replica-a", interval=86400, batch_rows=5,
    )  # fmt: skip
    first = job.run_once()
    assert first is not None and first.total > 0
    assert job.run_once() is None  # not due again yet
    state = store.job_state(JOB_NAME)
    assert state is not None and state.last_success_at == clock[0] and state.claimed_by is None
    removed = metrics.retention_removed.labels("feed-compaction")._value.get()
    assert removed == sum(r.count for r in first.removals if r.rule == "feed-compaction")
    assert metrics.retention_runs.labels("succeeded")._value.get() == 1
    clock[0] += DAY
    second = job.run_once()
    assert second is not None


@pytest.mark.slow
def test_two_jobs_on_one_database_at_once_one_runs(tmp_path: Path) -> None:
    with fresh_schema() as schema:
        stores = [PostgresStore(database_url(), schema=schema, pool_size=4) for _ in range(2)]
        try:
            h = _year(stores[0])
            now = T0 + 365 * DAY
            barrier = threading.Barrier(2)
            results: dict[str, Any] = {}

            def replica(n: int) -> None:
                store = stores[n]
                ledger = Ledger(store.ledger, "acme", CheckpointSigner(KEY), clock=lambda: now)
                job = RetentionJob(
                    store, GatewayMetrics(), defaults=lambda: POLICY,
                    acting_for=lambda t: Acting(SYSTEM, ledger), clock=lambda: now,
                    owner=f"replica-{n}", interval=86400, batch_rows=3,
                )  # fmt: skip
                barrier.wait()
                results[f"replica-{n}"] = job.run_once()

            threads = [threading.Thread(target=replica, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ran = [name for name, report in results.items() if report is not None]
            assert len(ran) == 1, results
            state = stores[0].job_state(JOB_NAME)
            assert state is not None and state.last_outcome == "succeeded"
            entries = [r.entry for r in h.ledger.entries(after=None, limit=1000)]
            applied = [
                e for e in entries if isinstance(e, AuditEntry) and e.action == "retention.applied"
            ]
            assert len({e.target for e in applied}) == len(applied)  # each rule recorded once
            assert h.ledger.verify(KEY.public_key()).ok
        finally:
            for s in stores:
                s.close()


def test_no_policy_exceeds_the_statement_maxima(store: Store) -> None:
    h = _year(store)
    by = Acting(SYSTEM, h.ledger)
    for days in ({"leaver_grace_days": 91}, {"run_history_days": 731}, {"short_lived_days": 0}):
        with pytest.raises(PolicyError):
            set_policy(store, by, days, POLICY, T0)  # type: ignore[arg-type]
    assert store.retention_policy("acme") is None
    with pytest.raises(ValidationError):
        Settings(retention_feed_compaction_days=91)
    # A day stored by an older release above today's maximum is held to it.
    store.set_retention_policy(RetentionOverrides("acme", {"run_history_days": 9999}, T0, "x"))
    assert policy_for(store, "acme", POLICY).run_history_days == 730
