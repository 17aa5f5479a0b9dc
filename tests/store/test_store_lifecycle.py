"""The Store contract for connector and consumer lifecycle (admin API), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.records import (
    ConnectorRecord,
    Consumer,
    NewEvent,
    NotFound,
    RunRecord,
    Store,
    SubjectWrite,
    Tenant,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SID = [f"{i:032x}" for i in range(6)]


def _connector(connector_id: str = "afas") -> ConnectorRecord:
    return ConnectorRecord(
        tenant="acme", id=connector_id, type="afas", base_url="http://127.0.0.1:1",
        sealed_credentials=b"sealed", settings={}, mapping_text="m",
        mapping_digest="sha256:" + "0" * 64, interval_seconds=60, max_delete_share=0.2,
        created_at=T0,
    )  # fmt: skip


def _setup(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    store.create_connector(_connector())


def _event(n: int, sid: str, kind: str = "subject.upserted") -> NewEvent:
    data = None if kind == "subject.deleted" else {"email": f"p{n}@example.nl"}
    return NewEvent(f"evt_{n}", kind, sid, data, T0, "afas", "ins_1")  # type: ignore[arg-type]


def test_update_connector_changes_only_what_is_given(store: Store) -> None:
    _setup(store)
    changed = store.update_connector(
        "acme", "afas", interval_seconds=600, mapping_text="n", mapping_digest="sha256:" + "1" * 64
    )
    assert changed.interval_seconds == 600 and changed.mapping_text == "n"
    assert changed.max_delete_share == 0.2 and changed.sealed_credentials == b"sealed"
    again = store.update_connector("acme", "afas", sealed_credentials=b"new", max_delete_share=0.5)
    assert again.sealed_credentials == b"new" and again.max_delete_share == 0.5
    assert again.interval_seconds == 600
    assert store.update_connector("acme", "afas") == again
    with pytest.raises(NotFound):
        store.update_connector("acme", "nope", interval_seconds=60)


def test_pause_and_resume(store: Store) -> None:
    _setup(store)
    assert store.get_connector("acme", "afas").paused_at is None
    assert store.set_connector_paused("acme", "afas", T0).paused_at == T0
    assert store.list_connectors()[0].paused_at == T0
    assert store.set_connector_paused("acme", "afas", None).paused_at is None
    with pytest.raises(NotFound):
        store.set_connector_paused("acme", "nope", T0)


def test_deleted_connectors_are_hidden_but_kept(store: Store) -> None:
    _setup(store)
    store.create_connector(_connector("crm"))
    assert store.deleted_connector("acme", "afas") is None
    store.mark_connector_deleted("acme", "afas", T0, "keep")
    with pytest.raises(NotFound):
        store.get_connector("acme", "afas")
    assert [c.id for c in store.list_connectors("acme")] == ["crm"]
    assert [c.id for c in store.list_connectors()] == ["crm"]
    gone = store.deleted_connector("acme", "afas")
    assert gone is not None and gone.deleted_at == T0 and gone.deleted_subjects == "keep"
    with pytest.raises(NotFound):
        store.mark_connector_deleted("acme", "afas", T0, "keep")
    with pytest.raises(NotFound):
        store.update_connector("acme", "afas", interval_seconds=60)


def test_stop_running_runs(store: Store) -> None:
    _setup(store)
    store.start_run(RunRecord("run_1", "acme", "afas", "full", "succeeded", T0))
    store.start_run(RunRecord("run_2", "acme", "afas", "full", "running", T0, confirm_deletes=3))
    assert store.get_run("run_2").confirm_deletes == 3
    at = T0 + timedelta(minutes=1)
    assert store.stop_running_runs("acme", "afas", at, "deleted") == ["run_2"]
    run = store.get_run("run_2")
    assert run.status == "stopped" and run.error == "deleted" and run.finished_at == at
    assert store.get_run("run_1").status == "succeeded"
    assert store.stop_running_runs("acme", "afas", at, "deleted") == []


def test_present_subjects_and_latest_events(store: Store) -> None:
    _setup(store)
    store.write_subjects(
        "acme", "afas", "run_1", [SubjectWrite(s, b"d", i != 2) for i, s in enumerate(SID[:4])]
    )
    assert store.present_subjects("acme", "afas") == [SID[0], SID[1], SID[3]]
    store.set_subjects_absent("acme", "afas", [SID[0]])
    assert store.present_subjects("acme", "afas") == [SID[1], SID[3]]
    store.append_events(
        "acme",
        [_event(1, SID[0]), _event(2, SID[1]), _event(3, SID[0], "subject.deleted"),
         _event(4, SID[1])],
    )  # fmt: skip
    latest = store.latest_events("acme", "afas")
    assert [(e.seq, e.subject_id, e.type) for e in latest] == [
        (3, SID[0], "subject.deleted"),
        (4, SID[1], "subject.upserted"),
    ]
    assert latest[1].data == {"email": "p4@example.nl"} and latest[0].data is None
    assert store.latest_events("acme", "crm") == []


def test_consumers_list_revoke_and_rekey(store: Store) -> None:
    _setup(store)
    store.create_tenant(Tenant("globex", "Globex", T0, b"sealed"))
    store.create_consumer(Consumer("con_1", "acme", "lms", T0), b"h1")
    store.create_consumer(Consumer("con_2", "globex", "lms", T0), b"h2")
    assert [c.id for c in store.list_consumers("acme")] == ["con_1"]
    with pytest.raises(NotFound):
        store.get_consumer("acme", "con_2")
    store.replace_consumer_token("acme", "con_1", b"h3")
    assert store.feed_access(b"h1") is None
    found = store.feed_access(b"h3")
    assert found is not None and found.consumer.id == "con_1"
    at = T0 + timedelta(hours=1)
    assert store.revoke_consumer("acme", "con_1", at).revoked_at == at
    assert store.revoke_consumer("acme", "con_1", at + timedelta(1)).revoked_at == at
    with pytest.raises(NotFound):
        store.revoke_consumer("acme", "con_2", at)
    with pytest.raises(NotFound):
        store.replace_consumer_token("acme", "con_2", b"h4")
