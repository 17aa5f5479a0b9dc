"""A run's seen log, on every backend: what a full sync's sweep takes for leavers, and that
the log (keyed ids, personal data) does not outlive its run, connector or tenant.

`mark_seen` appends one row per call to `run_seen` instead of updating each subject;
`unseen_present` is then the present subjects neither written by the run nor in its log,
computed in SQL. The rows are counted straight from the table: the log has no reader of
its own beyond the sweep, and "nothing is left" is what these tests hold the store to.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.gateway_sql import SqlStore
from gateway.store.protocols import LeaseLost, Store
from gateway.store.records import ConnectorRecord, RunRecord, RunStatus, SubjectWrite, Tenant

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
#: Keyed ids as the gateway makes them (32 hex digits), in id order.
SID = sorted(f"{random.Random(i).getrandbits(128):032x}" for i in range(40))


def _connector(tenant: str, connector: str) -> ConnectorRecord:
    return ConnectorRecord(
        tenant=tenant, id=connector, type="afas", base_url="http://127.0.0.1:1",
        sealed_credentials=b"sealed", settings={}, mapping_text="m",
        mapping_digest="sha256:" + "0" * 64, interval_seconds=60, max_delete_share=0.2,
        created_at=T0,
    )  # fmt: skip


def _setup(store: Store) -> None:
    """Tenants acme and beta, each with connectors afas and hubspot, each holding the
    same 20 present subjects from an earlier run."""
    for tenant in ("acme", "beta"):
        store.create_tenant(Tenant(tenant, tenant.title(), T0, b"sealed"))
        for connector in ("afas", "hubspot"):
            store.create_connector(_connector(tenant, connector))
            store.write_subjects(
                tenant, connector, "run_0", [SubjectWrite(s, b"d" * 16, True) for s in SID[:20]]
            )


def _start(store: Store, run_id: str, connector: str = "afas", tenant: str = "acme") -> None:
    assert store.start_run(
        RunRecord(run_id, tenant, connector, "full", "running", T0, owner="replica-a")
    )


def _log_rows(store: Store, where: str = "", params: tuple[object, ...] = ()) -> int:
    assert isinstance(store, SqlStore)
    return int(store.database.all(f"SELECT count(*) FROM run_seen {where}", params)[0][0])


def test_the_sweep_takes_present_subjects_neither_written_nor_marked(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    marked = SID[:6] + SID[9:14]
    random.Random(7).shuffle(marked)  # a page's ids come in the source's order
    with store.transaction():  # as a page commits: its writes and marks together
        store.mark_seen("acme", "afas", "run_1", marked[:4])
        store.write_subjects("acme", "afas", "run_1", [SubjectWrite(SID[6], b"e" * 16, True)])
    store.mark_seen("acme", "afas", "run_1", marked[4:5])
    store.mark_seen("acme", "afas", "run_1", [])  # nothing unchanged: no row
    store.mark_seen("acme", "afas", "run_1", marked[5:])
    # Written by the run: a new subject, and one the source says has gone (absent).
    store.write_subjects("acme", "afas", "run_1", [
        SubjectWrite(SID[30], b"n" * 16, True), SubjectWrite(SID[7], b"g" * 16, False),
    ])  # fmt: skip
    # Marks of another run, or of the same run id under another connector or tenant, are
    # not this run's.
    store.mark_seen("acme", "afas", "run_other", SID[14:16])
    store.mark_seen("acme", "hubspot", "run_1", SID[16:18])
    store.mark_seen("beta", "afas", "run_1", SID[18:20])
    assert _log_rows(store, "WHERE run = ?", ("run_1",)) == 5
    assert list(store.unseen_present("acme", "afas", "run_1")) == [SID[8], *SID[14:20]]
    # The same data from the other side: the hubspot connector's sweep for this run id.
    hubspot = set(SID[:20]) - set(SID[16:18])
    assert list(store.unseen_present("acme", "hubspot", "run_1")) == sorted(hubspot)


def test_a_subject_marked_twice_or_marked_and_written_is_not_a_leaver(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", SID[:20])
    store.mark_seen("acme", "afas", "run_1", SID[:10])  # a page read again after a resume
    store.write_subjects("acme", "afas", "run_1", [SubjectWrite(SID[0], b"x" * 16, True)])
    assert list(store.unseen_present("acme", "afas", "run_1")) == []
    assert list(store.unseen_present("acme", "afas", "run_2")) == SID[:20]


@pytest.mark.parametrize("status", ["succeeded", "failed", "stopped"])
def test_the_log_goes_when_the_run_ends_whatever_its_status(
    store: Store, status: RunStatus
) -> None:
    _setup(store)
    _start(store, "run_1")
    _start(store, "run_h", connector="hubspot")
    store.mark_seen("acme", "afas", "run_1", SID[:10])
    store.mark_seen("acme", "afas", "run_1", SID[10:15])
    store.mark_seen("acme", "hubspot", "run_h", SID[:3])
    store.finish_run("run_1", status, T0, {}, owner="replica-a")
    assert _log_rows(store, "WHERE run = ?", ("run_1",)) == 0
    assert _log_rows(store) == 1  # another run's log is its own
    # A finished run would find everyone unseen: the log is gone, not merely hidden.
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[:20]


def test_a_process_that_lost_the_run_leaves_the_log_to_the_new_owner(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", SID[:15])
    (claimed,) = store.claim_runs("replica-b", T0 + timedelta(minutes=5), 1, expired_before=None)
    assert claimed.id == "run_1"
    with pytest.raises(LeaseLost):
        store.finish_run("run_1", "failed", T0, {}, "lost", owner="replica-a")
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[15:20]
    store.finish_run("run_1", "succeeded", T0, {}, owner="replica-b")
    assert _log_rows(store) == 0


def test_a_resumed_run_sweeps_with_the_marks_of_the_pages_it_committed(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    # Page 1 committed; page 2 crashed inside its transaction (its marks went with it).
    with store.transaction():
        store.mark_seen("acme", "afas", "run_1", SID[:5])
        store.save_run_progress("run_1", "page-2", None, {}, owner="replica-a")

    def crash_inside_page_2() -> None:
        with store.transaction():
            store.mark_seen("acme", "afas", "run_1", SID[5:10])
            raise RuntimeError("the process died mid-page")

    with pytest.raises(RuntimeError):
        crash_inside_page_2()
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[5:20]
    # Another process resumes the same run from page 2's start: the rest is marked.
    store.claim_runs("replica-b", T0 + timedelta(minutes=5), 1, expired_before=None)
    assert store.get_run("run_1").cursor == "page-2"
    with store.transaction():
        store.mark_seen("acme", "afas", "run_1", SID[5:10])
        store.save_run_progress("run_1", "page-3", None, {}, owner="replica-b")
    with store.transaction():
        store.mark_seen("acme", "afas", "run_1", SID[10:18])
        store.save_run_progress("run_1", None, None, {}, owner="replica-b")
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[18:20]
    store.finish_run("run_1", "succeeded", T0, {}, owner="replica-b")
    assert _log_rows(store) == 0


def test_a_deleted_connector_leaves_no_log(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    _start(store, "run_h", connector="hubspot")
    store.mark_seen("acme", "afas", "run_1", SID[:10])
    store.mark_seen("acme", "afas", "run_orphan", SID[10:12])  # a run that never ended
    store.mark_seen("acme", "hubspot", "run_h", SID[:3])
    with store.transaction():  # as `gateway.tenancy.delete_connector` does
        assert store.stop_running_runs("acme", "afas", T0, "deleted") == ["run_1"]
        assert _log_rows(store, "WHERE connector = ?", ("afas",)) == 0
        store.mark_seen("acme", "afas", "run_late", SID[:1])
        store.mark_connector_deleted("acme", "afas", T0, "keep")
    assert _log_rows(store, "WHERE connector = ?", ("afas",)) == 0
    assert _log_rows(store) == 1  # the other connector's running run keeps its log


def test_a_destroyed_tenant_leaves_no_log(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    _start(store, "run_b", tenant="beta")
    store.mark_seen("acme", "afas", "run_1", SID[:10])
    store.mark_seen("acme", "hubspot", "run_orphan", SID[:2])
    store.mark_seen("beta", "afas", "run_b", SID[:4])
    store.terminate_tenant("acme", T0)
    store.destroy_tenant_data("acme", T0 + timedelta(days=1))
    assert _log_rows(store, "WHERE tenant = ?", ("acme",)) == 0
    assert list(store.unseen_present("beta", "afas", "run_b")) == SID[4:20]


def test_run_history_retention_takes_a_runs_log_with_it(store: Store) -> None:
    _setup(store)
    old = T0 - timedelta(days=400)
    for run_id in ("run_old", "run_new"):
        store.start_run(RunRecord(run_id, "acme", "afas", "full", "running", old))
        store.mark_seen("acme", "afas", run_id, SID[:3])
        # An ending its owner recorded without the log's delete: a run stopped by the
        # connector's deletion whose process died, as far as retention can tell.
        assert isinstance(store, SqlStore)
        store.database.execute(
            "UPDATE sync_runs SET status = 'stopped', finished_at = ? WHERE id = ?",
            (store.database.time(old if run_id == "run_old" else T0), run_id),
        )
    keys = store.expired_records("sync_runs", "acme", T0 - timedelta(days=30))
    assert keys == [("run_old",)]
    assert store.delete_records("sync_runs", "acme", keys) == 1
    assert _log_rows(store, "WHERE run = ?", ("run_old",)) == 0
    assert _log_rows(store, "WHERE run = ?", ("run_new",)) == 1
