"""The store contract for push destinations, their workers' leases and dead letters, on
every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.store.protocols import LeaseLost
from gateway.store.records import Destination, NewEvent, NotFound, Store, Tenant

T0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
SID = [f"{i:032x}" for i in range(1, 6)]


def _dest(tenant: str = "acme", id: str = "dst_0000000000000001") -> Destination:
    return Destination(
        tenant=tenant, id=id, kind="webhook", url="https://lms.example/hooks",
        sealed_secrets=b"sealed", event_types=("subject.upserted", "subject.erased"),
        thin=False, batch_size=100, max_attempts=5, max_age_seconds=3600, created_at=T0,
    )  # fmt: skip


@pytest.fixture
def acme(store: Store) -> Store:
    store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
    store.create_tenant(Tenant("beta", "Beta", T0, b"k"))
    return store


def test_destinations_are_created_read_changed_and_deleted(acme: Store) -> None:
    d = _dest()
    acme.create_destination(d)
    acme.create_destination(_dest("beta", "dst_0000000000000002"))
    assert acme.get_destination("acme", d.id) == d
    assert [x.id for x in acme.list_destinations("acme")] == [d.id]
    assert [(x.tenant, x.id) for x in acme.list_destinations()] == [
        ("acme", d.id), ("beta", "dst_0000000000000002")]  # fmt: skip
    changed = replace(
        d, sealed_secrets=b"new", previous_until=T0 + timedelta(days=1), thin=True,
        event_types=("subject.deleted",), batch_size=10, max_attempts=2, max_age_seconds=60,
        paused_at=T0,
    )  # fmt: skip
    assert acme.change_destination(changed) == changed
    with pytest.raises(NotFound):
        acme.get_destination("beta", d.id)
    with pytest.raises(NotFound):
        acme.change_destination(replace(d, id="dst_ffffffffffffffff"))
    with pytest.raises(NotFound):
        acme.create_destination(_dest("nobody"))
    assert acme.delete_destination("acme", d.id)
    assert not acme.delete_destination("acme", d.id)
    assert acme.list_destinations("acme") == []


def test_one_replica_holds_a_destination_and_fences_its_progress(acme: Store) -> None:
    d = _dest()
    acme.create_destination(d)
    until = T0 + timedelta(seconds=30)
    assert acme.claim_destination("acme", d.id, "a", until, T0)
    assert acme.claim_destination("acme", d.id, "a", until, T0)  # renewed
    assert not acme.claim_destination("acme", d.id, "b", until, T0 + timedelta(seconds=10))
    assert not acme.claim_destination("acme", "dst_gone", "a", until, T0)
    acme.destination_failed("acme", d.id, "a", attempts=2, since=T0, reason="status-503")
    got = acme.get_destination("acme", d.id)
    assert (got.attempts, got.failing_since, got.failure) == (2, T0, "status-503")
    acme.advance_destination("acme", d.id, "a", 7, at=T0, delivered=True)
    got = acme.get_destination("acme", d.id)
    assert (got.after_seq, got.attempts, got.failure, got.delivered_at) == (7, 0, None, T0)
    acme.advance_destination("acme", d.id, "a", 7, at=T0 + timedelta(1), delivered=False)
    assert acme.get_destination("acme", d.id).delivered_at == T0
    # The lease runs out; another replica takes it, and the first one's writes fail.
    assert acme.claim_destination("acme", d.id, "b", until, until + timedelta(seconds=1))
    with pytest.raises(LeaseLost):
        acme.advance_destination("acme", d.id, "a", 9, at=T0, delivered=True)
    with pytest.raises(LeaseLost):
        acme.destination_failed("acme", d.id, "a", attempts=1, since=T0, reason="x")
    with pytest.raises(LeaseLost):
        acme.replayed("acme", d.id, "a", [], done=True)
    # Never backwards.
    with pytest.raises(LeaseLost):
        acme.advance_destination("acme", d.id, "b", 3, at=T0, delivered=True)
    assert acme.get_destination("acme", d.id).after_seq == 7


def test_dead_letters_park_people_until_replayed(acme: Store) -> None:
    d = _dest()
    acme.create_destination(d)
    acme.claim_destination("acme", d.id, "a", T0 + timedelta(minutes=1), T0)
    events = [
        NewEvent(f"evt_{i}", "subject.upserted", SID[i % 2], {"email": "a@b.nl"}, T0, "afas",
                 "ins_1")
        for i in range(4)
    ]  # fmt: skip
    assert acme.append_events("acme", events) == [1, 2, 3, 4]
    acme.advance_destination(
        "acme", d.id, "a", 3, at=T0, delivered=False, dead=[(1, SID[0]), (3, SID[0])],
        reason="status-400",
    )  # fmt: skip
    letters = acme.dead_letters("acme", d.id, 0, 10)
    assert [(x.seq, x.subject_id, x.reason, x.dead_at) for x in letters] == [
        (1, SID[0], "status-400", T0), (3, SID[0], "status-400", T0)]  # fmt: skip
    assert [x.seq for x in acme.dead_letters("acme", d.id, 1, 10)] == [3]
    assert acme.parked_subjects("acme", d.id) == {SID[0]}
    assert acme.dead_letter_counts() == {("acme", d.id): 2}
    rows = acme.events_by_seq("acme", [3, 1, 99])
    assert [(r[0], r[2]) for r in rows] == [(1, SID[0]), (3, SID[0])]
    assert orjson.loads(rows[0][4])["id"] == "evt_0"
    assert acme.request_replay("acme", d.id, T0) == 2
    assert acme.get_destination("acme", d.id).replay_requested_at == T0
    with pytest.raises(NotFound):
        acme.request_replay("acme", "dst_gone", T0)
    acme.replayed("acme", d.id, "a", [1], done=False)
    assert acme.get_destination("acme", d.id).replay_requested_at == T0
    acme.replayed("acme", d.id, "a", [3], done=True)
    assert acme.get_destination("acme", d.id).replay_requested_at is None
    assert acme.parked_subjects("acme", d.id) == frozenset()
    assert acme.dead_letter_counts() == {}
    acme.advance_destination(
        "acme", d.id, "a", 4, at=T0, delivered=False, dead=[(4, SID[1])], reason="timeout"
    )
    assert acme.delete_destination("acme", d.id)
    assert acme.dead_letter_counts() == {}
