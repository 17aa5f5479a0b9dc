"""The Store contract: what the sync engine, admin API and feed rely on from any backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.store.protocols import LeaseLost, Store, StoreError
from gateway.store.records import (
    AlreadyExists,
    ConnectorRecord,
    Consumer,
    DsrRequest,
    Instruction,
    NewEvent,
    NotFound,
    RunRecord,
    SubjectWrite,
    Suppression,
    Tenant,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SID = [f"{i:032x}" for i in range(10)]


def _setup(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    store.create_connector(
        ConnectorRecord(
            tenant="acme", id="afas", type="afas", base_url="http://127.0.0.1:1",
            sealed_credentials=b"sealed", settings={"connector_id": "X"},
            mapping_text="m", mapping_digest="sha256:" + "0" * 64, interval_seconds=60,
            max_delete_share=0.2, created_at=T0,
        )
    )  # fmt: skip


def _run(run_id: str, status: str = "running") -> RunRecord:
    return RunRecord(run_id, "acme", "afas", "full", status, T0)  # type: ignore[arg-type]


def test_tenants_and_connectors_round_trip(store: Store) -> None:
    _setup(store)
    assert store.get_tenant("acme").name == "Acme BV"
    with pytest.raises(AlreadyExists):
        store.create_tenant(Tenant("acme", "again", T0, b"x"))
    with pytest.raises(NotFound):
        store.get_tenant("nope")
    c = store.get_connector("acme", "afas")
    assert c.settings == {"connector_id": "X"} and c.watermark is None
    store.set_connector_sync_state("acme", "afas", "2026-11-01T00:00:00Z", T0)
    assert store.get_connector("acme", "afas").watermark == "2026-11-01T00:00:00Z"
    assert [x.id for x in store.list_connectors("acme")] == ["afas"]
    with pytest.raises(NotFound):
        store.get_connector("acme", "hubspot")


def test_instructions_revoke_once(store: Store) -> None:
    _setup(store)
    ins = Instruction(
        "ins_1", "acme", "afas", "admin@acme", T0, "accounts", "sha256:" + "0" * 64,
        {"email": "user.contact.email"}, valid_until=T0 + timedelta(days=30),
    )  # fmt: skip
    store.add_instruction(ins)
    assert store.get_instruction("ins_1").state(T0) == "active"
    assert store.get_instruction("ins_1").state(T0 + timedelta(days=31)) == "expired"
    revoked = store.revoke_instruction("ins_1", "dpo@acme", T0 + timedelta(hours=1))
    assert revoked.state(T0 + timedelta(hours=2)) == "revoked"
    again = store.revoke_instruction("ins_1", "someone-else", T0 + timedelta(hours=3))
    assert again.revoked_by == "dpo@acme"
    with pytest.raises(NotFound):
        store.add_instruction(Instruction("ins_2", "acme", "nope", "a", T0, "p", "d", {}))


def test_one_running_run_per_connector(store: Store) -> None:
    _setup(store)
    assert store.start_run(_run("run_1"))
    assert not store.start_run(_run("run_2"))
    store.save_run_progress("run_1", "200", "2026-11-01", {"fetched": 200})
    r = store.get_run("run_1")
    assert (r.cursor, r.pages, r.counts["fetched"]) == ("200", 1, 200)
    assert [x.id for x in store.running_runs()] == ["run_1"]
    store.finish_run("run_1", "succeeded", T0, {"fetched": 300})
    assert store.start_run(_run("run_2"))
    assert store.last_run("acme", "afas").id == "run_2"  # type: ignore[union-attr]


def test_subjects_events_and_a_rolled_back_transaction(store: Store) -> None:
    _setup(store)
    store.write_subjects(
        "acme",
        "afas",
        "r1",
        [SubjectWrite(s, b"d" * 16, True) for s in SID[:5]],
    )
    states = store.subject_states("acme", "afas", SID)
    assert set(states) == set(SID[:5]) and all(s.present for s in states.values())
    store.mark_seen("acme", "afas", "r2", SID[:3])
    assert list(store.unseen_present("acme", "afas", "r2")) == SID[3:5]
    assert store.count_present("acme", "afas") == 5
    ev = [
        NewEvent(f"evt_{i}", "subject.upserted", SID[i], {"email": "a@b.nl"}, T0, "afas", "ins_1")
        for i in range(3)
    ]
    assert store.append_events("acme", ev) == [1, 2, 3]

    def crash_inside_a_page() -> None:
        with store.transaction():
            store.append_events(
                "acme", [NewEvent("evt_9", "subject.deleted", SID[0], None, T0, "afas", "ins_1")]
            )
            gone = [SubjectWrite(SID[0], b"x" * 16, False)]
            store.write_subjects("acme", "afas", "r3", gone)
            raise RuntimeError("crash inside the page transaction")

    with pytest.raises(RuntimeError):
        crash_inside_a_page()
    assert store.last_event_seq("acme") == 3
    assert store.subject_states("acme", "afas", [SID[0]])[SID[0]].present
    page = store.events_after("acme", 1, 10)
    assert [e.seq for e in page] == [2, 3] and page[0].data == {"email": "a@b.nl"}


def test_consumers_by_token_hash_with_their_feed_state(store: Store) -> None:
    _setup(store)
    store.create_consumer(Consumer("con_1", "acme", "lms", T0), b"h" * 32)
    found = store.feed_access(b"h" * 32)
    assert found is not None and found.consumer.id == "con_1"
    assert (found.consumer.tenant, found.generation, found.restricted) == ("acme", 0, 0)
    assert store.feed_access(b"x" * 32) is None
    # The state is the tenant's `feed_state`, read in the same statement.
    store.append_events("acme", [NewEvent("evt_1", "subject.upserted", SID[0],
                                          {"email": "a@b.nl"}, T0, "afas", "ins_1")])  # fmt: skip
    store.delete_events("acme", [1])
    store.add_suppressions([Suppression("acme", SID[1], "restricted", T0, "acc_1")])
    found = store.feed_access(b"h" * 32)
    assert found is not None
    assert (found.generation, found.restricted) == store.feed_state("acme")
    assert found.generation > 0 and found.restricted == 1


def test_a_sources_standing_is_its_connector_and_instructions_read_together(
    store: Store,
) -> None:
    _setup(store)
    digest = "sha256:" + "0" * 64
    assert store.source_standing("acme", "afas") == (store.get_connector("acme", "afas"), [])
    for n, hours in ((2, 2), (1, 1)):
        store.add_instruction(
            Instruction(f"ins_{n}", "acme", "afas", "a", T0 + timedelta(hours=hours), "p",
                        digest, {"email": "user.contact.email"})
        )  # fmt: skip
    record, instructions = store.source_standing("acme", "afas")
    assert record == store.get_connector("acme", "afas")
    assert instructions == store.list_instructions("acme", "afas")
    assert [i.id for i in instructions] == ["ins_1", "ins_2"]
    assert store.source_standing("acme", "nope") == (None, [])
    assert store.source_standing("beta", "afas") == (None, [])
    store.mark_connector_deleted("acme", "afas", T0 + timedelta(hours=3), "keep")
    assert store.source_standing("acme", "afas") == (None, [])


def test_feed_access_reads_a_sources_standing_in_the_same_statement(store: Store) -> None:
    """`feed_access` with a source: what `source_standing` gives for it, beside the token's
    consumer and feed state; a consumer is found whatever the source (missing, another
    tenant's, deleted), and an unknown token is None."""
    _setup(store)
    store.create_consumer(Consumer("con_1", "acme", "lms", T0), b"h" * 32)
    digest = "sha256:" + "0" * 64
    for n, hours in ((2, 2), (1, 1)):
        store.add_instruction(
            Instruction(f"ins_{n}", "acme", "afas", "a", T0 + timedelta(hours=hours), "p",
                        digest, {"email": "user.contact.email"})
        )  # fmt: skip
    plain = store.feed_access(b"h" * 32)
    assert plain is not None and plain.standings == {}
    found = store.feed_access(b"h" * 32, ("acme", "afas"))
    assert found is not None and found.consumer == plain.consumer
    assert (found.generation, found.restricted) == (plain.generation, plain.restricted)
    assert found.standings == {("acme", "afas"): store.source_standing("acme", "afas")}
    assert [i.id for i in found.standings[("acme", "afas")][1]] == ["ins_1", "ins_2"]
    for source in (("acme", "nope"), ("beta", "afas")):
        missing = store.feed_access(b"h" * 32, source)
        assert missing is not None and missing.consumer.id == "con_1"
        assert missing.standings == {source: (None, [])}
    assert store.feed_access(b"x" * 32, ("acme", "afas")) is None
    store.mark_connector_deleted("acme", "afas", T0 + timedelta(hours=3), "keep")
    deleted = store.feed_access(b"h" * 32, ("acme", "afas"))
    assert deleted is not None and deleted.standings == {("acme", "afas"): (None, [])}


def test_tenants_list_in_id_order_and_connectors_across_tenants(store: Store) -> None:
    _setup(store)
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed"))
    store.create_connector(
        ConnectorRecord(
            tenant="beta", id="hub", type="hubspot", base_url="http://127.0.0.1:2",
            sealed_credentials=b"s", settings={}, mapping_text="m",
            mapping_digest="sha256:" + "1" * 64, interval_seconds=60, max_delete_share=0.2,
            created_at=T0,
        )
    )  # fmt: skip
    assert [t.id for t in store.list_tenants()] == ["acme", "beta"]
    assert store.list_tenants()[0].sealed_key == b"sealed"
    assert [(c.tenant, c.id) for c in store.list_connectors()] == [
        ("acme", "afas"),
        ("beta", "hub"),
    ]
    assert [c.id for c in store.list_connectors("beta")] == ["hub"]
    with pytest.raises(NotFound):
        store.create_connector(
            ConnectorRecord(
                tenant="nope", id="x", type="afas", base_url="http://127.0.0.1:1",
                sealed_credentials=b"s", settings={}, mapping_text="m",
                mapping_digest="sha256:" + "0" * 64, interval_seconds=60,
                max_delete_share=0.2, created_at=T0,
            )
        )  # fmt: skip


def test_instructions_list_in_grant_order(store: Store) -> None:
    _setup(store)
    digest = "sha256:" + "0" * 64
    for n, hours in ((2, 2), (1, 1)):
        store.add_instruction(
            Instruction(f"ins_{n}", "acme", "afas", "a", T0 + timedelta(hours=hours), "p",
                        digest, {"email": "user.contact.email"})
        )  # fmt: skip
    listed = store.list_instructions("acme", "afas")
    assert [i.id for i in listed] == ["ins_1", "ins_2"]
    assert listed[0].fields == {"email": "user.contact.email"}
    assert store.list_instructions("acme", "other") == []
    with pytest.raises(NotFound):
        store.get_instruction("ins_9")


def test_runs_list_newest_first_and_keep_what_finish_says(store: Store) -> None:
    _setup(store)
    for n in range(3):
        run = RunRecord(f"run_{n}", "acme", "afas", "full", "running", T0 + timedelta(minutes=n))
        assert store.start_run(run)
        store.finish_run(f"run_{n}", "failed", T0, {"fetched": n}, error=f"boom {n}")
    assert [r.id for r in store.list_runs("acme", "afas")] == ["run_2", "run_1", "run_0"]
    assert [r.id for r in store.list_runs("acme", "afas", limit=2)] == ["run_2", "run_1"]
    finished = store.get_run("run_1")
    assert (finished.status, finished.error) == ("failed", "boom 1")
    assert finished.counts == {"fetched": 1}
    assert finished.finished_at == T0
    assert store.running_runs() == []
    assert store.last_run("acme", "nope") is None
    with pytest.raises(NotFound):
        store.get_run("run_9")


def test_feed_rows_are_the_events_undecoded(store: Store) -> None:
    _setup(store)
    data = {"first_name": "A", "last_name": None, "email": "a@b.nl", "job_title": None}
    store.append_events(
        "acme",
        [
            NewEvent("evt_1", "subject.upserted", SID[0], data, T0, "afas", "ins_1"),
            NewEvent("evt_2", "subject.deleted", SID[1], None, T0, "afas", "ins_1"),
        ],
    )
    assert store.append_events("acme", []) == []
    rows = store.feed_rows("acme", 0, 10)
    events = store.events_after("acme", 0, 10)
    assert [r[0] for r in rows] == [e.seq for e in events] == [1, 2]
    assert [r[1:4] for r in rows] == [
        ("subject.upserted", SID[0], "afas"),
        ("subject.deleted", SID[1], "afas"),
    ]
    sent = [orjson.loads(r[4]) for r in rows]
    assert [s["id"] for s in sent] == ["evt_1", "evt_2"]
    assert sent[0]["data"] == data and sent[1]["data"] is None and events[1].data is None
    assert sent[0]["occurred_at"].endswith("Z")
    assert datetime.fromisoformat(sent[0]["occurred_at"]) == events[0].occurred_at == T0
    assert store.feed_rows("acme", 1, 10)[0][0] == 2
    assert store.feed_rows("acme", 0, 1)[-1][0] == 1
    assert store.feed_rows("beta", 0, 10) == [] and store.last_event_seq("beta") == 0


def test_a_page_transaction_takes_its_ledger_append_in(store: Store) -> None:
    """The one property the sync engine's crash safety rests on: subjects, events and the
    ledger rows of a page commit together or not at all."""
    _setup(store)
    event = NewEvent("evt_1", "subject.upserted", SID[0], {"email": "a@b.nl"}, T0, "afas", "i")

    def page(fail: bool) -> None:
        with store.transaction():
            store.write_subjects("acme", "afas", "r1", [SubjectWrite(SID[0], b"d" * 16, True)])
            store.append_events("acme", [event])
            store.ledger.append(
                "acme", 0, entries=[(b"{}", b"l" * 32)], nodes=[], frontier=[b"l" * 32],
                checkpoint_note="note 1",
            )  # fmt: skip
            if fail:
                raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        page(fail=True)
    assert store.last_event_seq("acme") == 0
    assert store.subject_states("acme", "afas", [SID[0]]) == {}
    assert store.ledger.head("acme") is None and store.ledger.latest_checkpoint("acme") is None
    page(fail=False)
    assert store.last_event_seq("acme") == 1
    assert store.ledger.head("acme").size == 1  # type: ignore[union-attr]


def test_consumers_keep_their_revocation_and_belong_to_a_tenant(store: Store) -> None:
    _setup(store)
    store.create_consumer(
        Consumer("con_2", "acme", "lms", T0, revoked_at=T0 + timedelta(days=1)), b"r" * 32
    )
    found = store.feed_access(b"r" * 32)
    assert found is not None and found.consumer.revoked_at == T0 + timedelta(days=1)
    with pytest.raises(AlreadyExists):
        store.create_consumer(Consumer("con_3", "acme", "again", T0), b"r" * 32)
    with pytest.raises(NotFound):
        store.create_consumer(Consumer("con_4", "nope", "lms", T0), b"n" * 32)


def test_a_closed_store_refuses_work(store: Store) -> None:
    _setup(store)
    store.close()
    with pytest.raises(StoreError):
        store.list_tenants()


def _connector(store: Store, connector_id: str) -> None:
    store.create_connector(
        ConnectorRecord(
            tenant="acme", id=connector_id, type="afas", base_url="http://127.0.0.1:1",
            sealed_credentials=b"sealed", settings={}, mapping_text="m",
            mapping_digest="sha256:" + "0" * 64, interval_seconds=60, max_delete_share=0.2,
            created_at=T0,
        )
    )  # fmt: skip


def test_a_run_belongs_to_its_owner_while_the_lease_is_renewed(store: Store) -> None:
    _setup(store)
    lease = timedelta(seconds=30)
    run = RunRecord(
        "run_1", "acme", "afas", "full", "running", T0, owner="a", lease_until=T0 + lease
    )
    assert store.start_run(run)
    got = store.get_run("run_1")
    assert (got.owner, got.lease_until) == ("a", T0 + lease)
    assert store.renew_lease("run_1", "a", T0 + 2 * lease)
    assert not store.renew_lease("run_1", "b", T0 + 2 * lease)
    assert store.get_run("run_1").lease_until == T0 + 2 * lease

    store.save_run_progress(
        "run_1", "c1", None, {"fetched": 1}, owner="a", lease_until=T0 + 3 * lease
    )
    assert store.get_run("run_1").lease_until == T0 + 3 * lease
    # Another process may not write the run's progress or its end.
    with pytest.raises(LeaseLost):
        store.save_run_progress("run_1", "c2", None, {"fetched": 2}, owner="b")
    with pytest.raises(LeaseLost):
        store.finish_run("run_1", "succeeded", T0, {"fetched": 2}, owner="b")
    assert (store.get_run("run_1").cursor, store.get_run("run_1").pages) == ("c1", 1)

    # Nobody claims a run with a live lease; once it runs out, one claimer gets it.
    assert store.claim_runs("b", T0 + lease, 10, expired_before=T0 + 2 * lease) == []
    claimed = store.claim_runs("b", T0 + 5 * lease, 10, expired_before=T0 + 4 * lease)
    assert [(r.id, r.owner, r.cursor) for r in claimed] == [("run_1", "b", "c1")]
    assert store.claim_runs("c", T0 + 5 * lease, 10, expired_before=T0 + 4 * lease) == []
    with pytest.raises(LeaseLost):
        store.save_run_progress("run_1", "c9", None, {}, owner="a")
    assert not store.renew_lease("run_1", "a", T0 + 9 * lease)
    store.finish_run("run_1", "succeeded", T0 + lease, {"fetched": 9}, owner="b")
    done = store.get_run("run_1")
    assert (done.status, done.lease_until) == ("succeeded", None)
    with pytest.raises(LeaseLost):  # finished: no longer anyone's to write
        store.save_run_progress("run_1", "c10", None, {}, owner="b")


def test_claiming_takes_the_oldest_first_up_to_the_limit(store: Store) -> None:
    _setup(store)
    for n in range(3):
        _connector(store, f"c{n}")
        started = T0 + timedelta(minutes=n)
        store.start_run(RunRecord(f"run_{n}", "acme", f"c{n}", "full", "running", started))
    store.start_run(RunRecord("run_x", "acme", "afas", "full", "succeeded", T0))
    # Runs without a lease (left by a process before leases, or unshared) are claimable.
    first = store.claim_runs("me", T0 + timedelta(hours=1), 2, expired_before=T0)
    assert [r.id for r in first] == ["run_0", "run_1"]
    rest = store.claim_runs("me", T0 + timedelta(hours=1), 5, expired_before=T0)
    assert [r.id for r in rest] == ["run_2"]
    # At an unshared store's start every running run is taken, leases or not.
    everything = store.claim_runs("next", T0, 10, expired_before=None)
    assert [r.id for r in everything] == ["run_0", "run_1", "run_2"]
    assert store.claim_runs("x", T0, 0, expired_before=None) == []
    assert isinstance(store.shared, bool)


def test_an_admin_stop_leaves_the_owner_to_record_the_end(store: Store) -> None:
    _setup(store)
    store.start_run(RunRecord("run_1", "acme", "afas", "full", "running", T0, owner="a"))
    assert store.stop_running_runs("acme", "afas", T0, "revoked") == ["run_1"]
    with pytest.raises(LeaseLost):  # no page after a stop
        store.save_run_progress("run_1", "c", None, {}, owner="a")
    store.finish_run("run_1", "stopped", T0, {"fetched": 5}, "revoked", owner="a")
    assert store.get_run("run_1").counts == {"fetched": 5}


def test_a_subject_written_twice_in_one_batch_keeps_the_last(store: Store) -> None:
    _setup(store)
    store.write_subjects(
        "acme", "afas", "r1",
        [SubjectWrite(SID[0], b"a" * 16, True), SubjectWrite(SID[0], b"b" * 16, False)],
    )  # fmt: skip
    state = store.subject_states("acme", "afas", [SID[0]])[SID[0]]
    assert (state.digest, state.present) == (b"b" * 16, False)
    store.write_subjects("acme", "afas", "r2", [])
    assert store.count_present("acme", "afas") == 0


def test_a_subject_written_as_new_that_is_stored_already_is_refused_whole(
    store: Store,
) -> None:
    """`SubjectWrite.new` lets a store insert without looking for a row to update; a
    person stored already is refused (`AlreadyExists`), with nothing of the call written,
    in a transaction or alone."""
    _setup(store)
    store.write_subjects("acme", "afas", "r1", [SubjectWrite(SID[0], b"a" * 16, True, True)])
    again = [
        SubjectWrite(SID[1], b"b" * 16, True, True),
        SubjectWrite(SID[2], b"b" * 16, True),
        SubjectWrite(SID[0], b"b" * 16, True, True),
    ]
    with pytest.raises(AlreadyExists):
        store.write_subjects("acme", "afas", "r2", again)
    with pytest.raises(AlreadyExists), store.transaction():
        store.write_subjects("acme", "afas", "r2", again)
    states = store.subject_states("acme", "afas", SID[:3])
    assert list(states) == [SID[0]] and states[SID[0]].digest == b"a" * 16
    # Without the mark the same rows are written (updated or inserted).
    store.write_subjects("acme", "afas", "r2", [w._replace(new=False) for w in again])
    states = store.subject_states("acme", "afas", SID[:3])
    assert {s: states[s].digest for s in states} == dict.fromkeys(SID[:3], b"b" * 16)


def test_a_subject_written_again_takes_the_new_digest_presence_and_run(store: Store) -> None:
    _setup(store)
    store.write_subjects("acme", "afas", "r1", [SubjectWrite(s, b"a" * 16, True) for s in SID[:3]])
    store.write_subjects("acme", "afas", "r2", [
        SubjectWrite(SID[1], b"b" * 16, False), SubjectWrite(SID[3], b"c" * 16, True),
    ])  # fmt: skip
    states = store.subject_states("acme", "afas", SID[:4])
    assert [(states[s].digest, states[s].present) for s in SID[:4]] == [
        (b"a" * 16, True), (b"b" * 16, False), (b"a" * 16, True), (b"c" * 16, True),
    ]  # fmt: skip
    # Written by r2: seen by it; the others present are not.
    assert list(store.unseen_present("acme", "afas", "r2")) == sorted([SID[0], SID[2]])


def test_a_persons_events_are_found_by_email_and_by_subject(store: Store) -> None:
    """What a data-subject request reads: every event holding an email (exactly, as the
    egress schema normalised it), and every event of a set of subjects, in feed order."""
    _setup(store)
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed"))

    def person(email: str | None) -> dict[str, object]:
        return {"first_name": "A", "last_name": "B", "email": email, "job_title": None}

    store.append_events("acme", [
        NewEvent("evt_1", "subject.upserted", SID[0], person("anna@acme.example"), T0, "afas", "i"),
        NewEvent("evt_2", "subject.upserted", SID[1], person("bert@acme.example"), T0, "afas", "i"),
        NewEvent("evt_3", "subject.upserted", SID[2], person("anna@acme.example"), T0, "crm", "i"),
        NewEvent("evt_4", "subject.deleted", SID[0], None, T0, "afas", "i"),
        NewEvent("evt_5", "subject.upserted", SID[0], person("anna.new@acme.example"), T0,
                 "afas", "i"),
        NewEvent("evt_6", "subject.upserted", SID[3], person(None), T0, "afas", "i"),
    ])  # fmt: skip
    store.append_events("beta", [
        NewEvent("evt_7", "subject.upserted", SID[4], person("anna@acme.example"), T0, "x", "i"),
    ])  # fmt: skip
    assert store.subjects_with_email("acme", "anna@acme.example") == [
        (SID[0], "afas"), (SID[2], "crm"),
    ]  # fmt: skip
    assert store.subjects_with_email("acme", "ANNA@acme.example") == []
    assert store.subjects_with_email("acme", "anna@acme.exampl") == []
    assert store.subjects_with_email("acme", "nobody@acme.example") == []
    found = store.events_of_subjects("acme", [SID[0], SID[2], SID[9]])
    assert [e.id for e in found] == ["evt_1", "evt_3", "evt_4", "evt_5"]
    assert found[2].data is None and found[3].data == person("anna.new@acme.example")
    assert store.events_of_subjects("beta", [SID[0]]) == []
    assert store.events_of_subjects("acme", []) == []


def test_erasure_deletes_a_persons_rows_and_suppressions_keep_them_out(store: Store) -> None:
    _setup(store)
    data = {"first_name": "A", "last_name": "B", "email": "a@b.nl", "job_title": None}
    store.append_events("acme", [
        NewEvent("evt_1", "subject.upserted", SID[0], data, T0, "afas", "i"),
        NewEvent("evt_2", "subject.upserted", SID[1], data, T0, "afas", "i"),
        NewEvent("evt_3", "subject.deleted", SID[0], None, T0, "afas", "i"),
    ])  # fmt: skip
    store.write_subjects("acme", "afas", "run_1", [
        SubjectWrite(SID[0], b"d" * 16, True), SubjectWrite(SID[1], b"e" * 16, True),
    ])  # fmt: skip
    with store.transaction():
        assert store.delete_subject_data("acme", [SID[0], SID[7]]) == 2
    store.scrub()
    assert [e.id for e in store.events_after("acme", 0, 10)] == ["evt_2"]
    assert list(store.subject_states("acme", "afas", [SID[0], SID[1]])) == [SID[1]]
    assert store.append_events("acme", [
        NewEvent("evt_4", "subject.erased", SID[0], None, T0, "afas", "i"),
    ]) == [4]  # fmt: skip
    assert store.feed_rows("acme", 2, 10)[0][1] == "subject.erased"
    assert store.suppressed("acme", [SID[0], SID[1]]) == {}
    store.add_suppressions([
        Suppression("acme", SID[0], "erased", T0, "acc_00000000000000aa"),
        Suppression("acme", SID[2], "restricted", T0, "acc_00000000000000aa"),
    ])  # fmt: skip
    store.add_suppressions([Suppression("acme", SID[2], "erased", T0, "system")])
    assert store.suppressed("acme", [SID[0], SID[1], SID[2]]) == {
        SID[0]: "erased", SID[2]: "erased",
    }  # fmt: skip
    assert [(s.subject_id, s.kind, s.by_actor) for s in store.list_suppressions("acme")] == [
        (SID[0], "erased", "acc_00000000000000aa"), (SID[2], "erased", "system"),
    ]  # fmt: skip
    assert store.list_suppressions("acme")[0].created_at == T0
    assert store.restricted("acme") == frozenset()
    assert getattr(store.feed_block("acme", 0, 10), "restricted", None) == 0
    store.add_suppressions([Suppression("acme", SID[3], "restricted", T0, "system")])
    assert store.restricted("acme") == {SID[3]}
    block = store.feed_block("acme", 0, 10)
    assert block is not None and block.restricted == 1  # the feed asks which, then
    assert store.restricted("beta") == frozenset()
    assert store.remove_suppression("acme", SID[0]) is True
    assert store.remove_suppression("acme", SID[0]) is False
    assert store.suppressed("acme", [SID[0]]) == {}


def test_data_subject_requests_are_records_that_close_once(store: Store) -> None:
    _setup(store)
    day = timedelta(days=1)
    first = DsrRequest("dsr_1", "acme", "erasure", "acc_00000000000000aa", T0, T0 + 30 * day,
                       (SID[0], SID[1]))  # fmt: skip
    later = DsrRequest("dsr_2", "acme", "access", "acc_00000000000000aa", T0 + day,
                       T0 + 2 * day, ())  # fmt: skip
    store.create_request(first)
    store.create_request(later)
    with pytest.raises(AlreadyExists):
        store.create_request(first)
    assert store.get_request("acme", "dsr_1") == first
    with pytest.raises(NotFound):
        store.get_request("beta", "dsr_1")
    assert [r.id for r in store.list_requests("acme")] == ["dsr_2", "dsr_1"]  # due first
    assert store.request_counts(T0) == {"acme": (2, 0)}
    assert store.request_counts(T0 + 3 * day) == {"acme": (2, 1)}
    closed = {"state": "completed", "outcome": "fulfilled", "closed_at": T0 + day,
              "closed_by": "acc_00000000000000aa"}  # fmt: skip
    assert store.close_request("acme", "dsr_2", **closed) is True  # type: ignore[arg-type]
    assert store.close_request("acme", "dsr_2", **closed) is False  # type: ignore[arg-type]
    assert store.close_request("beta", "dsr_1", **closed) is False  # type: ignore[arg-type]
    done = store.get_request("acme", "dsr_2")
    assert (done.state, done.outcome, done.closed_at) == ("completed", "fulfilled", T0 + day)
    assert [r.id for r in store.list_requests("acme", "open")] == ["dsr_1"]
    assert store.request_counts(T0 + 60 * day) == {"acme": (1, 1)}


def test_erasure_receipts_keep_the_first_acknowledgement(store: Store) -> None:
    _setup(store)
    later = T0 + timedelta(hours=1)
    assert store.add_erasure_receipt("acme", SID[0], "con_1", T0) == T0
    assert store.add_erasure_receipt("acme", SID[0], "con_1", later) == T0
    assert store.add_erasure_receipt("acme", SID[0], "con_2", later) == later
    assert store.add_erasure_receipt("acme", SID[1], "con_1", later) == later
    assert store.erasure_receipts("acme", [SID[0]]) == [
        (SID[0], "con_1", T0), (SID[0], "con_2", later),
    ]  # fmt: skip
    assert len(store.erasure_receipts("acme", [SID[0], SID[1], SID[2]])) == 3
    assert store.erasure_receipts("acme", []) == []


def test_a_tenant_terminated_then_destroyed_keeps_only_its_row_and_ledger(store: Store) -> None:
    _setup(store)
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed-beta"))
    data = {"first_name": "A", "last_name": "B", "email": "a@b.nl", "job_title": None}
    for tenant in ("acme", "beta"):
        store.append_events(tenant, [
            NewEvent(f"evt_{tenant}", "subject.upserted", SID[0], data, T0, "afas", "i"),
        ])  # fmt: skip
    store.add_suppressions([Suppression("acme", SID[1], "erased", T0, "system")])
    with store.transaction():
        store.ledger.append(
            "acme", 0, entries=[(b"{}", b"\0" * 32)], nodes=[], frontier=[b"\0" * 32],
            checkpoint_note="note",
        )  # fmt: skip
    later = T0 + timedelta(days=1)
    assert store.terminate_tenant("acme", T0) is True
    assert store.terminate_tenant("acme", later) is False
    assert store.get_tenant("acme").terminated_at == T0
    store.destroy_tenant_data("acme", later)
    acme = store.get_tenant("acme")
    assert (acme.sealed_key, acme.destroyed_at, acme.name) == (b"", later, "Acme BV")
    assert store.events_after("acme", 0, 10) == [] and store.list_connectors("acme") == []
    assert store.list_suppressions("acme") == [] and store.list_consumers("acme") == []
    assert [e[0] for e in store.ledger.iter_entries("acme")] == [0]  # the ledger stays
    # Another tenant is untouched.
    assert len(store.events_after("beta", 0, 10)) == 1
    assert store.get_tenant("beta").sealed_key == b"sealed-beta"
    assert store.get_tenant("beta").terminated_at is None


def test_a_pushed_sources_subjects_are_paged_and_forgotten(store: Store) -> None:
    _setup(store)
    store.write_subjects("acme", "afas", "scim_1", [
        SubjectWrite(SID[i], b"d" * 16, i % 2 == 0) for i in range(5)])  # fmt: skip
    assert store.subject_page("acme", "afas", 0, 2) == (5, SID[0:2])
    assert store.subject_page("acme", "afas", 4, 10) == (5, SID[4:5])
    assert store.subject_page("acme", "afas", 9, 10) == (5, [])
    assert store.subject_page("acme", "hubspot", 0, 10) == (0, [])
    # Only absent ones go (1 and 3); a present one (0) is kept.
    assert store.forget_absent_subjects("acme", "afas", [SID[0], SID[1], SID[3]]) == 2
    assert store.subject_page("acme", "afas", 0, 10) == (3, [SID[0], SID[2], SID[4]])
    assert store.forget_absent_subjects("acme", "afas", []) == 0
